// Signs in with a real browser: Debian's headless Chromium, driven by playwright-core, types a
// user name into oidc-provider's login form and follows the flow back to the protected page.
//
// Usage: node browser.mjs <start URL> <pomerium address host:port> <login> [<host pattern>] [<host=address>...]
// Prints one JSON line: {"url": <final URL>, "text": <final page's text>, "title": ...}.
// Every name of the host pattern (default `*.test.localhost`) on port 443 resolves to pomerium's
// address (each extra `host=address` sends that host's port 443 to another server instead), so
// URLs keep the default HTTPS port; the test CA is not installed in the browser, hence
// --ignore-certificate-errors (for these loopback names only).
// At oidc-provider's login form the login is typed in; at the development identity provider's
// page (a button per user) the button naming the login is clicked.

import { launch } from './chromium.mjs';

const [start, address, login, hosts = '*.test.localhost', ...elsewhere] = process.argv.slice(2);
const rules = elsewhere.map((pair) => pair.split('=')).map(([host, to]) => `MAP ${host}:443 ${to}`);

const browser = await launch([...rules, `MAP ${hosts}:443 ${address}`]);
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(start, { waitUntil: 'load', timeout: 20000 });
  if (await page.locator('input[name="login"]').count()) {
    // oidc-provider's login form.
    await page.fill('input[name="login"]', login, { timeout: 20000 });
    await page.fill('input[name="password"]', 'any password');
    await Promise.all([page.waitForNavigation({ timeout: 20000 }), page.click('button[type="submit"]')]);
  } else {
    // The development identity provider: one button per user.
    const button = page.locator('button', { hasText: login });
    await Promise.all([page.waitForNavigation({ timeout: 20000 }), button.click({ timeout: 20000 })]);
  }
  // Its consent form, when it asks.
  if (await page.locator('input[value="consent"]').count()) {
    await Promise.all([page.waitForNavigation({ timeout: 20000 }), page.click('button[type="submit"]')]);
  }
  await page.waitForLoadState('load');
  const text = await page.evaluate(() => document.body ? document.body.innerText : '');
  console.log(JSON.stringify({ url: page.url(), title: await page.title(), text }));
} finally {
  await browser.close();
}
