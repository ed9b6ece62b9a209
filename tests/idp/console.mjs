// The web console in a real browser: Debian's headless Chromium, driven by playwright-core, signs
// in at oidc-provider through the Pomerium route in front of the console, opens the form of a new
// policy, saves it with a typo in its rule, reads the diagnostic shown, fixes the typo in the text
// the form kept, saves again and reports the page it lands on.
//
// Usage: node console.mjs <new policy URL> <pomerium address host:port> <login> <host pattern> <policy name>
// Prints one JSON line: {"typo": <the text first saved>, "diagnostics": <the refused save's diagnostics>, "kept": <the text kept
// had the typo>, "url": <final URL>, "text": <final page's text>}.
// As in browser.mjs, every name of the host pattern on port 443 resolves to pomerium's address,
// and the test CA is not installed in the browser, hence --ignore-certificate-errors.

import { launch } from './chromium.mjs';

const [start, address, login, hosts, name] = process.argv.slice(2);
const timeout = 20000;

const browser = await launch([`MAP ${hosts}:443 ${address}`]);
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(start, { waitUntil: 'load', timeout });
  await page.fill('input[name="login"]', login, { timeout });
  await page.fill('input[name="password"]', 'any password');
  await Promise.all([page.waitForNavigation({ timeout }), page.click('button[type="submit"]')]);
  if (await page.locator('input[value="consent"]').count()) {
    await Promise.all([page.waitForNavigation({ timeout }), page.click('button[type="submit"]')]);
  }
  await page.waitForLoadState('load');
  // The new policy's form: a name, and a typo in the rule's criterion.
  const template = await page.inputValue('#text', { timeout });
  const typo = template.replace('"name": ""', `"name": ${JSON.stringify(name)}`).replace('"email"', '"emial"');
  await page.fill('#text', typo);
  await Promise.all([page.waitForNavigation({ timeout }), page.click('#save')]);
  const diagnostics = await page.locator('#diagnostics').innerText({ timeout });
  const kept = await page.inputValue('#text', { timeout });
  await page.fill('#text', kept.replace('"emial"', '"email"'));
  await Promise.all([page.waitForNavigation({ timeout }), page.click('#save')]);
  await page.waitForLoadState('load');
  const text = await page.evaluate(() => (document.body ? document.body.innerText : ''));
  console.log(JSON.stringify({ typo, diagnostics, kept: kept.includes('"emial"'), url: page.url(), text }));
} finally {
  await browser.close();
}
