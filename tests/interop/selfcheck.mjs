#!/usr/bin/env node
// Self-check for the interop harness: starts op.mjs, runs a complete
// authorization code flow with PKCE over plain HTTP (no browser), checks the
// tokens, the refresh grant and RP-initiated logout, then (unless
// --no-browser is given or /usr/bin/chromium is missing) drives
// browser-login.mjs against a tiny relying party served from this process.
//
//   node tests/interop/selfcheck.mjs [--no-browser] [--verbose]
//
// --verbose shows op.mjs's request log and keeps the final screenshot.
//
// Exits 0 when every check passed.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: cli } = parseArgs({
  options: {
    'no-browser': { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});

const CLIENT_ID = 'selfcheck-client';
const CLIENT_SECRET = 'selfcheck-secret';

let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}${detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  }
  return ok;
}
function must(name, ok, detail) {
  if (!check(name, ok, detail)) throw new Error(`cannot continue after: ${name}`);
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function pkcePair() {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

function decodeJwt(jwt) {
  const [h, p, s] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString('utf8')),
    signingInput: `${h}.${p}`,
    signature: Buffer.from(s, 'base64url'),
  };
}

function verifyRs256(jwt, jwks) {
  const { header, signingInput, signature } = decodeJwt(jwt);
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk || header.alg !== 'RS256') return false;
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  return crypto.verify('sha256', Buffer.from(signingInput), key, signature);
}

// A deliberately simple cookie jar: one flow against one host, so names are
// enough; path and domain are ignored.
class CookieJar {
  #cookies = new Map();

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k, v] = a.trim().split('=');
        return (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now())
          || (k.toLowerCase() === 'max-age' && Number(v) <= 0);
      });
      if (expired || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header() {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

async function request(jar, url, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  const cookie = jar.header();
  if (cookie) headers.cookie = cookie;
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar.store(res);
  return res;
}

function startOp(redirectUris, postLogoutUris) {
  const args = [path.join(here, 'op.mjs'), '--port', '0', '--client-id', CLIENT_ID, '--client-secret', CLIENT_SECRET];
  for (const u of redirectUris) args.push('--redirect-uri', u);
  for (const u of postLogoutUris) args.push('--post-logout-redirect-uri', u);
  if (cli.verbose) args.push('--verbose');
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', cli.verbose ? 'inherit' : 'ignore'] });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('op.mjs did not print its issuer within 20 s')), 20_000);
    const rl = readline.createInterface({ input: child.stdout });
    rl.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line).issuer);
      } catch (err) {
        reject(new Error(`op.mjs printed an unexpected first line: ${line}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`op.mjs exited early with code ${code}`));
    });
  });
  return { child, ready };
}

function tokenRequest(tokenEndpoint, form) {
  const basic = Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64');
  return fetch(tokenEndpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${basic}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams(form).toString(),
  });
}

// ---------------------------------------------------------------------------
// Relying party used for the browser part (and whose URIs are registered).

const rpState = new Map(); // state -> { verifier, nonce }
let discovery = null;
let jwks = null;

const rp = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  try {
    if (url.pathname === '/') {
      const { verifier, challenge } = pkcePair();
      const state = b64url(crypto.randomBytes(16));
      const nonce = b64url(crypto.randomBytes(16));
      rpState.set(state, { verifier, nonce });
      const authorize = new URL(discovery.authorization_endpoint);
      authorize.search = new URLSearchParams({
        response_type: 'code',
        client_id: CLIENT_ID,
        redirect_uri: `${rpOrigin}/cb`,
        scope: 'openid email profile groups',
        state,
        nonce,
        code_challenge: challenge,
        code_challenge_method: 'S256',
      }).toString();
      res.writeHead(302, { location: authorize.href });
      res.end();
      return;
    }
    if (url.pathname === '/cb') {
      const state = url.searchParams.get('state');
      const saved = rpState.get(state);
      rpState.delete(state);
      if (!saved || !url.searchParams.get('code')) {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(`bad callback: ${url.search}`);
        return;
      }
      const tr = await tokenRequest(discovery.token_endpoint, {
        grant_type: 'authorization_code',
        code: url.searchParams.get('code'),
        redirect_uri: `${rpOrigin}/cb`,
        code_verifier: saved.verifier,
      });
      const tokens = await tr.json();
      if (!tr.ok || !tokens.id_token || !verifyRs256(tokens.id_token, jwks)) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`token exchange failed: ${JSON.stringify(tokens)}`);
        return;
      }
      const claims = decodeJwt(tokens.id_token).payload;
      const ok = claims.nonce === saved.nonce;
      res.writeHead(ok ? 200 : 400, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!DOCTYPE html><html><head><title>RP home</title></head><body>`
        + `<p>logged in as ${claims.sub}</p><p>groups=${(claims.groups ?? []).join(',')}</p>`
        + `<p>nonce ${ok ? 'ok' : 'mismatch'}</p></body></html>`);
      return;
    }
    res.writeHead(404);
    res.end();
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err?.stack ?? err));
  }
});

await new Promise((resolve) => rp.listen(0, '127.0.0.1', resolve));
const rpOrigin = `http://127.0.0.1:${rp.address().port}`;
const redirectUri = `${rpOrigin}/cb`;
const postLogoutUri = `${rpOrigin}/logged-out`;

const op = startOp([redirectUri], [postLogoutUri]);
let exitCode = 1;

try {
  const issuer = await op.ready;
  must('issuer line is http://127.0.0.1:PORT', /^http:\/\/127\.0\.0\.1:\d+$/.test(issuer), issuer);

  // -- discovery and JWKS --------------------------------------------------
  const discRes = await fetch(`${issuer}/.well-known/openid-configuration`);
  discovery = await discRes.json();
  must('discovery served', discRes.ok);
  check('discovery issuer matches', discovery.issuer === issuer, discovery.issuer);
  for (const field of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'end_session_endpoint', 'userinfo_endpoint']) {
    must(`discovery has ${field}`, typeof discovery[field] === 'string' && discovery[field].startsWith(issuer), discovery[field]);
  }
  check('code_challenge_methods_supported has S256', discovery.code_challenge_methods_supported?.includes('S256'));
  check('scopes_supported has groups', discovery.scopes_supported?.includes('groups'));
  jwks = await (await fetch(discovery.jwks_uri)).json();
  must('jwks has an RS256 signing key', jwks.keys?.some((k) => k.kty === 'RSA' && k.alg === 'RS256'), jwks);

  // -- authorization request without PKCE must be refused -------------------
  {
    const u = new URL(discovery.authorization_endpoint);
    u.search = new URLSearchParams({
      response_type: 'code', client_id: CLIENT_ID, redirect_uri: redirectUri, scope: 'openid', state: 's',
    }).toString();
    const r = await fetch(u, { redirect: 'manual' });
    const loc = r.headers.get('location') ?? '';
    check('authorize without code_challenge is rejected', loc.startsWith(redirectUri) && new URL(loc).searchParams.get('error') === 'invalid_request', loc);
  }

  // -- authorization code flow with PKCE ------------------------------------
  const jar = new CookieJar();
  const { verifier, challenge } = pkcePair();
  const state = b64url(crypto.randomBytes(12));
  const nonce = b64url(crypto.randomBytes(12));
  const authorize = new URL(discovery.authorization_endpoint);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: redirectUri,
    scope: 'openid email profile groups',
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();

  let res = await request(jar, authorize);
  must('authorize redirects to the interaction', res.status === 303 || res.status === 302, res.status);
  const interactionUrl = new URL(res.headers.get('location'), issuer);
  must('interaction URL is /interaction/:uid', /^\/interaction\/[^/]+$/.test(interactionUrl.pathname), interactionUrl.pathname);

  res = await request(jar, interactionUrl);
  const loginHtml = await res.text();
  must('login page served', res.status === 200, res.status);
  check('login page title', loginHtml.includes('<title>Test OP login</title>'));
  const actionMatch = loginHtml.match(/<form method="post" action="([^"]+)"/);
  must('login form action found', actionMatch && actionMatch[1] === `${interactionUrl.pathname}/login`, actionMatch?.[1]);
  check('login form has login, groups and #submit',
    loginHtml.includes('name="login"') && loginHtml.includes('name="groups"') && loginHtml.includes('id="submit"'));

  res = await request(jar, new URL(actionMatch[1], issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'login=alice&groups=admins%2C+dev',
  });
  must('login POST redirects', res.status === 303, res.status);

  let location = new URL(res.headers.get('location'), issuer);
  for (let hops = 0; hops < 10 && !location.href.startsWith(redirectUri); hops += 1) {
    res = await request(jar, location);
    must(`redirect hop ${hops + 1} (${location.pathname}) redirects`, [302, 303].includes(res.status), `${res.status} ${await res.text()}`);
    location = new URL(res.headers.get('location'), location);
  }
  must('flow ends at the redirect_uri', location.href.startsWith(redirectUri), location.href);
  check('callback state matches', location.searchParams.get('state') === state);
  check('callback carries iss', location.searchParams.get('iss') === issuer);
  const code = location.searchParams.get('code');
  must('callback carries a code', !!code);

  res = await tokenRequest(discovery.token_endpoint, {
    grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: 'wrong'.padEnd(43, 'x'),
  });
  check('token exchange with a wrong code_verifier fails', res.status === 400);
  // A failed PKCE check burns the code, so run a second login for the real exchange.

  async function loginAgain(login, groups) {
    const p = pkcePair();
    const st = b64url(crypto.randomBytes(12));
    const nc = b64url(crypto.randomBytes(12));
    const a = new URL(discovery.authorization_endpoint);
    a.search = new URLSearchParams({
      response_type: 'code', client_id: CLIENT_ID, redirect_uri: redirectUri,
      scope: 'openid email profile groups', state: st, nonce: nc,
      code_challenge: p.challenge, code_challenge_method: 'S256', prompt: 'login',
    }).toString();
    let r = await request(jar, a);
    let loc = new URL(r.headers.get('location'), issuer);
    r = await request(jar, loc);
    const html = await r.text();
    const action = html.match(/<form method="post" action="([^"]+)"/)[1];
    r = await request(jar, new URL(action, issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ login, groups }).toString(),
    });
    loc = new URL(r.headers.get('location'), issuer);
    for (let hops = 0; hops < 10 && !loc.href.startsWith(redirectUri); hops += 1) {
      r = await request(jar, loc);
      loc = new URL(r.headers.get('location'), loc);
    }
    if (loc.searchParams.get('state') !== st) throw new Error(`second login ended at ${loc.href}`);
    return { code: loc.searchParams.get('code'), verifier: p.verifier, nonce: nc };
  }

  const second = await loginAgain('alice', 'admins, dev');
  res = await tokenRequest(discovery.token_endpoint, {
    grant_type: 'authorization_code', code: second.code, redirect_uri: redirectUri, code_verifier: second.verifier,
  });
  const tokens = await res.json();
  must('code exchange succeeds', res.status === 200, tokens);
  check('token_type is Bearer', tokens.token_type === 'Bearer', tokens.token_type);
  check('expires_in is the access token TTL (300)', tokens.expires_in === 300, tokens.expires_in);
  must('refresh_token issued', typeof tokens.refresh_token === 'string' && tokens.refresh_token.length > 0);
  must('id_token issued', typeof tokens.id_token === 'string');
  check('id_token signature verifies against jwks', verifyRs256(tokens.id_token, jwks));

  const idt = decodeJwt(tokens.id_token).payload;
  if (cli.verbose) console.log('id_token payload:', JSON.stringify(idt));
  check('id_token iss', idt.iss === issuer, idt.iss);
  check('id_token aud', idt.aud === CLIENT_ID, idt.aud);
  check('id_token sub', idt.sub === 'alice', idt.sub);
  check('id_token email', idt.email === 'alice@example.test', idt.email);
  check('id_token email_verified', idt.email_verified === true, idt.email_verified);
  check('id_token preferred_username', idt.preferred_username === 'alice', idt.preferred_username);
  check('id_token name', idt.name === 'alice', idt.name);
  check('id_token groups', JSON.stringify(idt.groups) === JSON.stringify(['admins', 'dev']), idt.groups);
  check('id_token nonce', idt.nonce === second.nonce, idt.nonce);
  check('id_token lifetime is 300 s', idt.exp - idt.iat === 300, idt.exp - idt.iat);

  res = await fetch(discovery.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  const userinfo = await res.json();
  check('userinfo returns the groups', res.ok && JSON.stringify(userinfo.groups) === '["admins","dev"]', userinfo);

  // -- refresh grant ------------------------------------------------------------
  // RS256 is deterministic and a refreshed ID token repeats every claim of the
  // first one (nonce and auth_time included), so within the same second the
  // two would be byte-identical: wait for the clock to tick over.
  await new Promise((r) => setTimeout(r, 1100));
  res = await tokenRequest(discovery.token_endpoint, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token });
  const refreshed = await res.json();
  must('refresh_token grant succeeds', res.status === 200, refreshed);
  if (cli.verbose) console.log('refresh response:', JSON.stringify(refreshed));
  must('refresh returns a new id_token', typeof refreshed.id_token === 'string' && refreshed.id_token !== tokens.id_token);
  check('refreshed id_token is newer', decodeJwt(refreshed.id_token).payload.iat > idt.iat);
  check('refreshed id_token signature verifies', verifyRs256(refreshed.id_token, jwks));
  const ridt = decodeJwt(refreshed.id_token).payload;
  check('refreshed id_token keeps sub and groups', ridt.sub === 'alice' && JSON.stringify(ridt.groups) === '["admins","dev"]', ridt);
  check('refresh token rotated', typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== tokens.refresh_token);
  check('new access token', refreshed.access_token && refreshed.access_token !== tokens.access_token);

  res = await tokenRequest(discovery.token_endpoint, { grant_type: 'refresh_token', refresh_token: refreshed.refresh_token });
  const refreshed2 = await res.json();
  check('second refresh with the rotated token succeeds', res.status === 200 && !!refreshed2.id_token, refreshed2);

  // -- RP-initiated logout -----------------------------------------------------
  const endSession = new URL(discovery.end_session_endpoint);
  endSession.search = new URLSearchParams({
    id_token_hint: refreshed2.id_token ?? tokens.id_token,
    post_logout_redirect_uri: postLogoutUri,
    state: 'bye-state',
  }).toString();
  res = await request(jar, endSession);
  const logoutHtml = await res.text();
  must('end_session shows the confirmation page', res.status === 200 && logoutHtml.includes('<title>Test OP logout</title>'), `${res.status} ${logoutHtml.slice(0, 300)}`);
  const formAction = logoutHtml.match(/<form id="op.logoutForm" method="post" action="([^"]+)"/)?.[1];
  const xsrf = logoutHtml.match(/name="xsrf" value="([^"]+)"/)?.[1];
  must('logout form and xsrf found', !!formAction && !!xsrf, logoutHtml);
  res = await request(jar, new URL(formAction, issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
  });
  const after = res.headers.get('location') ?? '';
  check('logout confirm redirects to post_logout_redirect_uri with state',
    res.status === 303 && after === `${postLogoutUri}?state=bye-state`, `${res.status} ${after}`);

  res = await tokenRequest(discovery.token_endpoint, { grant_type: 'refresh_token', refresh_token: refreshed2.refresh_token });
  check('refresh token is dead after logout', res.status === 400, res.status);

  res = await request(jar, authorize);
  const relogin = new URL(res.headers.get('location') ?? '/', issuer);
  check('after logout, authorize asks to log in again', relogin.pathname.startsWith('/interaction/'), relogin.href);

  // -- browser --------------------------------------------------------------
  if (cli['no-browser']) {
    console.log('skip browser check (--no-browser)');
  } else if (!fs.existsSync('/usr/bin/chromium')) {
    console.log('skip browser check (/usr/bin/chromium not installed)');
  } else {
    const started = Date.now();
    const shot = path.join(fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'selfcheck-')), 'final.png');
    const out = await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [
        path.join(here, 'browser-login.mjs'),
        '--url', `${rpOrigin}/`,
        '--user', 'bob',
        '--groups', 'ops,dev',
        '--expect-origin', rpOrigin,
        '--screenshot', shot,
      ], { stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.once('error', reject);
      child.once('exit', (codeOut) => resolve({ code: codeOut, stdout }));
    });
    const lines = out.stdout.trim().split('\n');
    check('browser-login prints exactly one line', lines.length === 1, out.stdout);
    let result = {};
    try {
      result = JSON.parse(lines[0]);
    } catch {
      // reported below
    }
    must('browser-login succeeded', out.code === 0 && !result.error, out.stdout);
    check('browser final_url is the RP callback', result.final_url?.startsWith(`${rpOrigin}/cb?`), result.final_url);
    check('browser title', result.title === 'RP home', result.title);
    check('browser body shows the user and groups',
      result.body_text?.includes('logged in as bob') && result.body_text?.includes('groups=ops,dev') && result.body_text?.includes('nonce ok'),
      result.body_text);
    check('screenshot written', fs.existsSync(shot) && fs.statSync(shot).size > 0, shot);
    if (cli.verbose) {
      console.log(`browser login took ${Date.now() - started} ms (screenshot kept at ${shot})`);
    } else {
      console.log(`browser login took ${Date.now() - started} ms`);
      fs.rmSync(path.dirname(shot), { recursive: true, force: true });
    }
  }

  exitCode = failed === 0 ? 0 : 1;
} catch (err) {
  console.log(`FAIL ${err?.message ?? err}`);
  exitCode = 1;
} finally {
  const exited = new Promise((resolve) => {
    if (op.child.exitCode !== null || op.child.signalCode !== null) resolve();
    else op.child.once('exit', resolve);
  });
  op.child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  if (op.child.exitCode === null && op.child.signalCode === null) op.child.kill('SIGKILL');
  rp.closeAllConnections();
  rp.close();
}

console.log(`selfcheck: ${passed} passed, ${failed} failed`);
process.exit(exitCode);
