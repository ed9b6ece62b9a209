// Signs in with a real browser: Debian's headless Chromium, driven by playwright-core, types a
// user name into oidc-provider's login form and follows the flow back to the protected page.
//
// Usage: node browser.mjs <start URL> <pomerium address host:port> <login>
// Prints one JSON line: {"url": <final URL>, "text": <final page's text>, "title": ...}.
// Every `*.test.localhost` name resolves to pomerium's address (any port), so URLs keep the
// default HTTPS port; the test CA is not installed in the browser, hence
// --ignore-certificate-errors (for these loopback names only).

import { chromium } from 'playwright-core';

const [start, address, login] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    `--host-resolver-rules=MAP *.test.localhost:443 ${address}, EXCLUDE 127.0.0.1`,
    '--ignore-certificate-errors',
  ],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(start, { waitUntil: 'load', timeout: 20000 });
  // The provider's login form.
  await page.fill('input[name="login"]', login, { timeout: 20000 });
  await page.fill('input[name="password"]', 'any password');
  await Promise.all([page.waitForNavigation({ timeout: 20000 }), page.click('button[type="submit"]')]);
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
