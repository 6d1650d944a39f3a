#!/usr/bin/env node
// Drives Debian's headless chromium through a real login against the test OP
// (op.mjs), starting from a page behind the proxy under test.
//
// Usage:
//   node browser-login.mjs --url URL --user NAME [--groups a,b]
//                          --expect-origin ORIGIN [--screenshot PATH]
//
// stdout carries exactly one JSON line:
//   success: {"final_url": "...", "title": "...", "body_text": "..."}  (exit 0)
//   failure: {"error": "..."}                                          (exit 1)

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const OVERALL_TIMEOUT_MS = 60_000;
const CHROMIUM = process.env.GATEHOUSE_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

// Keep stdout for the one result line.
for (const method of ['log', 'info', 'debug']) {
  console[method] = (...args) => console.error(...args);
}

let finished = false;
let context = null;
let userDataDir = null;

function cleanupDir() {
  if (userDataDir) {
    try {
      fs.rmSync(userDataDir, { recursive: true, force: true });
    } catch {
      // best effort
    }
    userDataDir = null;
  }
}

async function closeBrowser() {
  const ctx = context;
  context = null;
  if (ctx) {
    try {
      await Promise.race([ctx.close(), new Promise((r) => setTimeout(r, 5000))]);
    } catch {
      // best effort
    }
  }
  cleanupDir();
}

async function finish(code, result) {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  await closeBrowser();
  process.exit(code);
}

function failWith(message) {
  return finish(1, { error: String(message) });
}

const watchdog = setTimeout(() => {
  failWith(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s`);
}, OVERALL_TIMEOUT_MS);

process.on('SIGTERM', () => failWith('terminated by SIGTERM'));
process.on('SIGINT', () => failWith('interrupted by SIGINT'));

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: 'string' },
        user: { type: 'string' },
        groups: { type: 'string', default: '' },
        'expect-origin': { type: 'string' },
        screenshot: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new Error(`bad arguments: ${err.message}`);
  }
  if (!values.url) throw new Error('--url is required');
  if (!values.user) throw new Error('--user is required');
  if (!values['expect-origin']) throw new Error('--expect-origin is required');
  const expectOrigin = values['expect-origin'];

  const { chromium } = await import('playwright-core');

  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });

  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(30_000);

  let step = 'opening --url';
  try {
    await page.goto(values.url, { waitUntil: 'domcontentloaded' });

    step = 'waiting for the OP login form';
    const loginInput = page.locator('input[name=login]');
    await loginInput.waitFor({ state: 'visible' });

    step = 'filling the login form';
    await loginInput.fill(values.user);
    await page.locator('input[name=groups]').fill(values.groups);

    step = `submitting and waiting for ${expectOrigin}`;
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(expectOrigin), { waitUntil: 'load' }),
      page.locator('#submit').click(),
    ]);
    await page.waitForLoadState('load');

    step = 'reading the final page';
    const result = {
      final_url: page.url(),
      title: await page.title(),
      body_text: await page.evaluate(() => document.body ? document.body.innerText : ''),
    };

    if (values.screenshot) {
      step = 'taking the screenshot';
      await page.screenshot({ path: values.screenshot, fullPage: true });
    }
    return result;
  } catch (err) {
    let where = '';
    try {
      where = ` (page at ${page.url()})`;
    } catch {
      // ignore
    }
    if (values.screenshot) {
      try {
        await page.screenshot({ path: values.screenshot, fullPage: true, timeout: 5000 });
      } catch {
        // ignore
      }
    }
    throw new Error(`${step}: ${err?.message?.split('\n')[0] ?? err}${where}`);
  }
}

try {
  const result = await main();
  clearTimeout(watchdog);
  await finish(0, result);
} catch (err) {
  clearTimeout(watchdog);
  await failWith(err?.message ?? err);
}
