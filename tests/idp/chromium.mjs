// Debian's headless Chromium for the browser tests, launched one way: the `resolve` rules send
// the test's host names to the servers under test (each `MAP host:443 address`), and the test CA
// is not installed in the browser, hence --ignore-certificate-errors (for these loopback names only).

import { chromium } from 'playwright-core';

export async function launch(resolve) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--host-resolver-rules=${[...resolve, 'EXCLUDE 127.0.0.1'].join(', ')}`,
      '--ignore-certificate-errors',
    ],
  });
}
