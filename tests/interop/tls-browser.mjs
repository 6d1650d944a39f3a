#!/usr/bin/env node
// Drives Debian's headless chromium to an https page behind gatehouse, trusting only the
// test key given by its SPKI pin (--ignore-certificate-errors-spki-list: no CA install,
// no blanket "ignore certificate errors"), through the sign-in (the test IdP redirects
// straight back), then opens a WebSocket from the page and exchanges one message.
//
// Usage:
//   node tls-browser.mjs --url URL --spki BASE64_SHA256 --ws URL
//
// stdout carries exactly one JSON line:
//   success: {"final_url", "protocol", "body_text", "ws_first", "ws_echo"}  (exit 0)
//   failure: {"error": "..."}                                               (exit 1)

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const CHROMIUM = process.env.GATEHOUSE_CHROMIUM || '/usr/bin/chromium';

for (const method of ['log', 'info', 'debug']) {
  console[method] = (...args) => console.error(...args);
}

let context = null;
let userDataDir = null;

async function finish(code, result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (context) {
    await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  process.exit(code);
}

const watchdog = setTimeout(() => finish(1, { error: 'timed out after 60 s' }), 60_000);

async function main() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      spki: { type: 'string' },
      ws: { type: 'string' },
    },
    strict: true,
  });
  if (!values.url || !values.spki || !values.ws) throw new Error('--url, --spki and --ws are required');
  const { chromium } = await import('playwright-core');
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-chromium-tls-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
      `--ignore-certificate-errors-spki-list=${values.spki}`,
    ],
    timeout: 30_000,
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(30_000);
  let step = 'opening --url';
  try {
    const target = new URL(values.url);
    await Promise.all([
      page.waitForURL((u) => u.href === target.href, { waitUntil: 'load' }),
      page.goto(values.url, { waitUntil: 'commit' }),
    ]);
    step = 'reading the page';
    const body_text = await page.evaluate(() => document.body ? document.body.innerText : '');
    const protocol = await page.evaluate(
      () => performance.getEntriesByType('navigation')[0]?.nextHopProtocol ?? '',
    );
    step = 'using a WebSocket from the page';
    const ws = await page.evaluate((url) => new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      const got = [];
      socket.onmessage = (e) => {
        got.push(String(e.data));
        if (got.length === 1) socket.send('ping from chromium');
        if (got.length === 2) {
          socket.close();
          resolve(got);
        }
      };
      socket.onerror = () => reject(new Error('WebSocket error'));
      socket.onclose = (e) => { if (got.length < 2) reject(new Error(`closed ${e.code}`)); };
    }), values.ws);
    return { final_url: page.url(), protocol, body_text, ws_first: ws[0], ws_echo: ws[1] };
  } catch (err) {
    let where = '';
    try { where = ` (page at ${page.url()})`; } catch { /* ignore */ }
    throw new Error(`${step}: ${err?.message?.split('\n')[0] ?? err}${where}`);
  }
}

try {
  const result = await main();
  clearTimeout(watchdog);
  await finish(0, result);
} catch (err) {
  clearTimeout(watchdog);
  await finish(1, { error: String(err?.message ?? err) });
}
