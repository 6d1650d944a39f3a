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
// After that default run, each provider-quirk option of op.mjs is exercised
// against its own op.mjs (see "Provider-quirk variants" below): issuer under
// a path (Keycloak, Vault, Authentik with its trailing slash), HTTPS with a
// private CA, ES256/PS256/EdDSA keys, no refresh tokens, single-use refresh
// tokens, claims only in userinfo, a different userinfo sub, string and
// multiple audiences, no end-session endpoint, token lifetimes, and the
// option combinations op.mjs must refuse. `--variant NAME` (repeatable) runs
// only those variants; `--no-variants` skips them.
//
// Exits 0 when every check passed.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: cli } = parseArgs({
  options: {
    'no-browser': { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    variant: { type: 'string', multiple: true },
    'no-variants': { type: 'boolean', default: false },
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

function startOp(redirectUris, postLogoutUris, extraArgs = []) {
  const args = [path.join(here, 'op.mjs'), '--port', '0', '--client-id', CLIENT_ID, '--client-secret', CLIENT_SECRET];
  for (const u of redirectUris) args.push('--redirect-uri', u);
  for (const u of postLogoutUris) args.push('--post-logout-redirect-uri', u);
  args.push(...extraArgs);
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

} catch (err) {
  failed += 1;
  console.log(`FAIL ${err?.message ?? err}`);
} finally {
  await stopOp(op.child);
  rp.closeAllConnections();
  rp.close();
}

async function stopOp(child) {
  const exited = new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', resolve);
  });
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

// ---------------------------------------------------------------------------
// Provider-quirk variants: one op.mjs per variant, with the options that make
// it behave like a provider gatehouse has a preset for. Requests go through
// node:http/https (not fetch) so that the HTTPS variant can trust a private CA.

function sender(ca) {
  return (url, { method = 'GET', headers = {}, body } = {}) => new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const allHeaders = { ...headers };
    if (body !== undefined) allHeaders['content-length'] = Buffer.byteLength(body);
    const req = mod.request(u, { method, headers: allHeaders, ...(ca ? { ca } : {}) }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode,
          ok: res.statusCode >= 200 && res.statusCode < 300,
          headers: {
            get: (name) => {
              const v = res.headers[name.toLowerCase()];
              return Array.isArray(v) ? v.join(', ') : (v ?? null);
            },
            getSetCookie: () => res.headers['set-cookie'] ?? [],
          },
          text: async () => text,
          json: async () => JSON.parse(text),
        });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function verifyJwt(jwt, keys, expectedAlg) {
  const { header, signingInput, signature } = decodeJwt(jwt);
  const jwk = keys.keys.find((k) => k.kid === header.kid);
  if (!jwk || header.alg !== expectedAlg || jwk.alg !== expectedAlg) return false;
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const data = Buffer.from(signingInput);
  switch (expectedAlg) {
    case 'RS256':
      return crypto.verify('sha256', data, key, signature);
    case 'PS256':
      return crypto.verify('sha256', data, { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature);
    case 'ES256':
      return crypto.verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, signature);
    case 'EdDSA':
      return crypto.verify(null, data, key, signature);
    default:
      return false;
  }
}

const discoveryUrl = (issuer) => `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;

// Starts op.mjs with extra options and hands `body` an environment with the
// issuer, discovery, JWKS and request helpers; always stops the OP.
async function withOp(name, extraArgs, body, { ca } = {}) {
  console.log(`-- variant ${name}: op.mjs ${extraArgs.join(' ')}`);
  const redirect = 'http://127.0.0.1:9/cb';
  const postLogout = 'http://127.0.0.1:9/logged-out';
  const started = startOp([redirect], [postLogout], extraArgs);
  try {
    const issuer = await started.ready;
    const send = sender(ca);
    const discRes = await send(discoveryUrl(issuer));
    must(`${name}: discovery served at ${new URL(discoveryUrl(issuer)).pathname}`, discRes.status === 200, discRes.status);
    const disc = await discRes.json();
    const keys = await (await send(disc.jwks_uri)).json();
    const env = { name, issuer, discovery: disc, jwks: keys, send, redirectUri: redirect, postLogoutUri: postLogout };
    await body(env);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}: ${err?.message ?? err}`);
  } finally {
    await stopOp(started.child);
  }
}

async function sendWithJar(env, jar, url, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  const cookie = jar.header();
  if (cookie) headers.cookie = cookie;
  const res = await env.send(url, { ...init, headers });
  jar.store(res);
  return res;
}

function tokenRequestVia(env, form) {
  const basic = Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64');
  return env.send(env.discovery.token_endpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
}

// Authorization code flow with PKCE S256 up to the redirect back to the RP,
// then the code exchange. Returns what the checks need.
async function codeFlow(env, { login = 'alice', groups = 'admins, dev', scope = 'openid email profile groups' } = {}) {
  const jar = new CookieJar();
  const setCookies = [];
  const go = async (url, init) => {
    const r = await sendWithJar(env, jar, url, init);
    setCookies.push(...r.headers.getSetCookie());
    return r;
  };
  const p = pkcePair();
  const st = b64url(crypto.randomBytes(12));
  const nc = b64url(crypto.randomBytes(12));
  const a = new URL(env.discovery.authorization_endpoint);
  a.search = new URLSearchParams({
    response_type: 'code', client_id: CLIENT_ID, redirect_uri: env.redirectUri, scope, state: st, nonce: nc,
    code_challenge: p.challenge, code_challenge_method: 'S256',
  }).toString();
  let r = await go(a.href);
  if (![302, 303].includes(r.status)) throw new Error(`authorize answered ${r.status}: ${(await r.text()).slice(0, 300)}`);
  const interaction = new URL(r.headers.get('location'), a);
  r = await go(interaction.href);
  const html = await r.text();
  const action = html.match(/<form method="post" action="([^"]+)"/)?.[1];
  if (r.status !== 200 || !action) throw new Error(`login page: ${r.status} ${html.slice(0, 300)}`);
  r = await go(new URL(action, interaction).href, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ login, groups }).toString(),
  });
  let loc = new URL(r.headers.get('location') ?? '', interaction);
  for (let hops = 0; hops < 10 && !loc.href.startsWith(env.redirectUri); hops += 1) {
    r = await go(loc.href);
    if (![302, 303].includes(r.status)) throw new Error(`hop ${loc.pathname} answered ${r.status}: ${(await r.text()).slice(0, 300)}`);
    loc = new URL(r.headers.get('location'), loc);
  }
  if (loc.searchParams.get('state') !== st || !loc.searchParams.get('code')) throw new Error(`flow ended at ${loc.href}`);
  const res = await tokenRequestVia(env, {
    grant_type: 'authorization_code', code: loc.searchParams.get('code'), redirect_uri: env.redirectUri, code_verifier: p.verifier,
  });
  const tokens = await res.json();
  if (res.status !== 200) throw new Error(`code exchange answered ${res.status}: ${JSON.stringify(tokens)}`);
  return {
    tokens,
    idt: decodeJwt(tokens.id_token).payload,
    header: decodeJwt(tokens.id_token).header,
    nonce: nc,
    callbackIss: loc.searchParams.get('iss'),
    interactionPath: interaction.pathname,
    loginAction: action,
    setCookies,
    jar,
  };
}

async function userinfoVia(env, accessToken) {
  const r = await env.send(env.discovery.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
  return { status: r.status, body: r.status === 200 ? await r.json() : await r.text() };
}

async function refreshVia(env, refreshToken) {
  const r = await tokenRequestVia(env, { grant_type: 'refresh_token', refresh_token: refreshToken });
  return { status: r.status, body: await r.json() };
}

// Issuer-under-a-path checks shared by the Keycloak, Vault and Authentik variants.
async function checkIssuerPath(env, issuerPath, flow) {
  const { name, issuer, discovery: disc } = env;
  const escaped = issuerPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  check(`${name}: ready line issuer is http://127.0.0.1:PORT${issuerPath}`, new RegExp(`^http://127\\.0\\.0\\.1:\\d+${escaped}$`).test(issuer), issuer);
  check(`${name}: discovery issuer is byte for byte the ready line`, disc.issuer === issuer, disc.issuer);
  const base = issuer.endsWith('/') ? issuer : `${issuer}/`;
  const fields = ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint', 'revocation_endpoint', 'introspection_endpoint'];
  if (disc.end_session_endpoint) fields.push('end_session_endpoint');
  const outside = fields.filter((f) => !(typeof disc[f] === 'string' && disc[f].startsWith(base) && !disc[f].slice(base.length).startsWith('/')));
  check(`${name}: every endpoint is under ${base.slice(base.indexOf('/', 8))}`, outside.length === 0, outside.map((f) => disc[f]));
  const origin = new URL(issuer).origin;
  const rootDisc = await env.send(`${origin}/.well-known/openid-configuration`);
  check(`${name}: nothing is served outside the issuer path`, rootDisc.status === 404, rootDisc.status);
  const prefix = issuerPath.replace(/\/$/, '');
  check(`${name}: login interaction is under the issuer path`, flow.interactionPath.startsWith(`${prefix}/interaction/`) && flow.loginAction === `${flow.interactionPath}/login`, flow.interactionPath);
  check(`${name}: callback iss is the issuer`, flow.callbackIss === issuer, flow.callbackIss);
  check(`${name}: id_token iss is the issuer byte for byte`, flow.idt.iss === issuer, flow.idt.iss);
}

function makeTestPki() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'selfcheck-tls-'));
  const run = (args) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.error?.message ?? r.stderr}`);
  };
  fs.writeFileSync(path.join(dir, 'server.ext'),
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n');
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-days', '2', '-subj', '/CN=selfcheck private CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr',
    '-subj', '/CN=127.0.0.1']);
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '2', '-days', '2',
    '-extfile', 'server.ext', '-out', 'server.pem']);
  return { dir, ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'server.pem'), key: path.join(dir, 'server.key') };
}

function runOpExpectingFailure(extraArgs) {
  const r = spawnSync(process.execPath, [path.join(here, 'op.mjs'), '--port', '0', '--client-id', CLIENT_ID,
    '--client-secret', CLIENT_SECRET, '--redirect-uri', 'http://127.0.0.1:9/cb', ...extraArgs], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// oidc-provider puts no at_hash into ID tokens from the token endpoint (it is
// optional there), and auth_time only when max_age or require_auth_time ask.
const PROTOCOL_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'iat', 'nonce'];
const PROFILE_CLAIMS = ['email', 'email_verified', 'groups', 'preferred_username', 'name'];

const variants = {
  // Keycloak: issuer https://host/realms/<realm>.
  async keycloak() {
    await withOp('keycloak', ['--issuer-path', '/realms/main'], async (env) => {
      const flow = await codeFlow(env);
      await checkIssuerPath(env, '/realms/main', flow);
      check('keycloak: id_token verifies (RS256)', verifyJwt(flow.tokens.id_token, env.jwks, 'RS256'));
      const ui = await userinfoVia(env, flow.tokens.access_token);
      check('keycloak: userinfo under the path answers', ui.status === 200 && ui.body.sub === 'alice', ui);
      const rf = await refreshVia(env, flow.tokens.refresh_token);
      check('keycloak: refresh works, refreshed iss is the issuer', rf.status === 200 && decodeJwt(rf.body.id_token).payload.iss === env.issuer, rf.body);
      // RP-initiated logout under the path.
      const es = new URL(env.discovery.end_session_endpoint);
      es.search = new URLSearchParams({ id_token_hint: flow.tokens.id_token, post_logout_redirect_uri: env.postLogoutUri, state: 'kc' }).toString();
      let r = await sendWithJar(env, flow.jar, es.href);
      const html = await r.text();
      const action = html.match(/<form id="op.logoutForm" method="post" action="([^"]+)"/)?.[1];
      const xsrf = html.match(/name="xsrf" value="([^"]+)"/)?.[1];
      must('keycloak: logout page under the path', r.status === 200 && !!action && !!xsrf && new URL(action, es).pathname.startsWith('/realms/main/'), `${r.status} ${action}`);
      r = await sendWithJar(env, flow.jar, new URL(action, es).href, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
      });
      check('keycloak: logout confirm redirects to post_logout_redirect_uri', r.status === 303 && r.headers.get('location') === `${env.postLogoutUri}?state=kc`, `${r.status} ${r.headers.get('location')}`);
    });
  },

  // Authentik: issuer https://host/application/o/<slug>/ WITH the trailing slash.
  async authentik() {
    await withOp('authentik', ['--issuer-path', '/application/o/headlamp/'], async (env) => {
      const flow = await codeFlow(env);
      check('authentik: issuer keeps its trailing slash', env.issuer.endsWith('/application/o/headlamp/'), env.issuer);
      await checkIssuerPath(env, '/application/o/headlamp/', flow);
      const rf = await refreshVia(env, flow.tokens.refresh_token);
      check('authentik: refreshed id_token iss keeps the trailing slash', rf.status === 200 && decodeJwt(rf.body.id_token).payload.iss === env.issuer, rf.body);
      const noSlash = await env.send(env.issuer.replace(/\/$/, ''));
      check('authentik: the issuer without its slash is not a discovery document', noSlash.status === 404, noSlash.status);
    });
  },

  // Vault: issuer .../v1/identity/oidc/provider/<name>, no refresh tokens, aud a string.
  async vault() {
    await withOp('vault', ['--issuer-path', '/v1/identity/oidc/provider/default', '--no-refresh-token', '--aud-string'], async (env) => {
      const flow = await codeFlow(env, { scope: 'openid email profile groups offline_access' });
      await checkIssuerPath(env, '/v1/identity/oidc/provider/default', flow);
      check('vault: discovery grant_types_supported lacks refresh_token',
        Array.isArray(env.discovery.grant_types_supported) && !env.discovery.grant_types_supported.includes('refresh_token'), env.discovery.grant_types_supported);
      check('vault: no refresh_token in the token response (offline_access asked)', !('refresh_token' in flow.tokens), Object.keys(flow.tokens));
      check('vault: access_token and id_token issued', !!flow.tokens.access_token && !!flow.tokens.id_token);
      check('vault: aud is a plain string (the client_id)', typeof flow.idt.aud === 'string' && flow.idt.aud === CLIENT_ID, flow.idt.aud);
      const rf = await refreshVia(env, 'made-up-refresh-token');
      // oidc-provider answers invalid_request "requested grant type is not allowed for this client".
      check('vault: refresh_token grant refused (400, grant not allowed for the client)',
        rf.status === 400 && !rf.body.access_token && /grant type is not allowed/.test(rf.body.error_description ?? ''), rf);
      const ui = await userinfoVia(env, flow.tokens.access_token);
      check('vault: userinfo works', ui.status === 200 && ui.body.sub === 'alice', ui);
    });
  },

  // tsidp: single-use refresh tokens, no end-session endpoint, 5-minute tokens, openid email profile only.
  async tsidp() {
    await withOp('tsidp', ['--single-use-refresh', '--no-end-session', '--access-token-ttl', '300', '--id-token-ttl', '300'], async (env) => {
      check('tsidp: discovery has no end_session_endpoint', !('end_session_endpoint' in env.discovery), env.discovery.end_session_endpoint);
      const es = await env.send(`${env.issuer}/session/end`);
      check('tsidp: /session/end is not served', es.status === 404, es.status);
      const flow = await codeFlow(env, { scope: 'openid email profile' });
      check('tsidp: expires_in is 300', flow.tokens.expires_in === 300, flow.tokens.expires_in);
      check('tsidp: id_token lives 300 s', flow.idt.exp - flow.idt.iat === 300, flow.idt.exp - flow.idt.iat);
      const basic = Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64');
      const intro = await env.send(env.discovery.introspection_endpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: flow.tokens.access_token }).toString(),
      });
      const introBody = await intro.json();
      check('tsidp: access token lives 300 s (introspection exp - iat)', introBody.active === true && introBody.exp - introBody.iat === 300, introBody);
      const first = flow.tokens.refresh_token;
      must('tsidp: refresh token issued', typeof first === 'string');
      const rf1 = await refreshVia(env, first);
      check('tsidp: first refresh works and rotates', rf1.status === 200 && typeof rf1.body.refresh_token === 'string' && rf1.body.refresh_token !== first, rf1);
      const reuse = await refreshVia(env, first);
      check('tsidp: an already used refresh token is refused with invalid_grant', reuse.status === 400 && reuse.body.error === 'invalid_grant', reuse);
      const after = await refreshVia(env, rf1.body.refresh_token);
      check('tsidp: reuse revokes the grant, so the rotated token is refused too (oidc-provider)', after.status === 400 && after.body.error === 'invalid_grant', after);
    });
  },

  // A spec-conforming OP: scope claims only from userinfo.
  async 'userinfo-only'() {
    await withOp('userinfo-only', ['--claims-in-userinfo-only'], async (env) => {
      const flow = await codeFlow(env);
      if (cli.verbose) console.log('id_token payload:', JSON.stringify(flow.idt));
      const missing = PROTOCOL_CLAIMS.filter((c) => !(c in flow.idt));
      check('userinfo-only: id_token has the protocol claims', missing.length === 0, { missing, claims: Object.keys(flow.idt) });
      const leaked = PROFILE_CLAIMS.filter((c) => c in flow.idt);
      check('userinfo-only: id_token lacks email, email_verified, groups, preferred_username, name', leaked.length === 0, leaked);
      const ui = await userinfoVia(env, flow.tokens.access_token);
      check('userinfo-only: userinfo has them all, same sub',
        ui.status === 200 && ui.body.sub === 'alice' && ui.body.email === 'alice@example.test' && ui.body.email_verified === true
        && ui.body.preferred_username === 'alice' && ui.body.name === 'alice' && JSON.stringify(ui.body.groups) === '["admins","dev"]', ui);
      const rf = await refreshVia(env, flow.tokens.refresh_token);
      const ridt = rf.status === 200 ? decodeJwt(rf.body.id_token).payload : {};
      check('userinfo-only: refreshed id_token lacks them too', rf.status === 200 && PROFILE_CLAIMS.every((c) => !(c in ridt)) && ridt.sub === 'alice', ridt);
    });
  },

  async 'userinfo-sub'() {
    await withOp('userinfo-sub', ['--userinfo-sub', 'mallory'], async (env) => {
      const flow = await codeFlow(env);
      check('userinfo-sub: id_token sub is the user', flow.idt.sub === 'alice', flow.idt.sub);
      const ui = await userinfoVia(env, flow.tokens.access_token);
      check('userinfo-sub: userinfo sub is the given one, other claims kept',
        ui.status === 200 && ui.body.sub === 'mallory' && ui.body.email === 'alice@example.test' && JSON.stringify(ui.body.groups) === '["admins","dev"]', ui);
    });
  },

  // ES256 keys, and lifetimes other than the defaults.
  async es256() {
    await withOp('es256', ['--signing-alg', 'ES256', '--access-token-ttl', '120', '--id-token-ttl', '90'], async (env) => {
      check('es256: jwks holds exactly one EC P-256 ES256 key',
        env.jwks.keys.length === 1 && env.jwks.keys[0].kty === 'EC' && env.jwks.keys[0].crv === 'P-256' && env.jwks.keys[0].alg === 'ES256' && !('d' in env.jwks.keys[0]), env.jwks);
      check('es256: discovery id_token_signing_alg_values_supported is [ES256]',
        JSON.stringify(env.discovery.id_token_signing_alg_values_supported) === '["ES256"]', env.discovery.id_token_signing_alg_values_supported);
      const flow = await codeFlow(env);
      check('es256: id_token header alg ES256 with the JWKS kid', flow.header.alg === 'ES256' && flow.header.kid === env.jwks.keys[0].kid, flow.header);
      check('es256: id_token signature verifies', verifyJwt(flow.tokens.id_token, env.jwks, 'ES256'));
      check('es256: expires_in is --access-token-ttl 120', flow.tokens.expires_in === 120, flow.tokens.expires_in);
      check('es256: id_token lives --id-token-ttl 90 s', flow.idt.exp - flow.idt.iat === 90, flow.idt.exp - flow.idt.iat);
      const rf = await refreshVia(env, flow.tokens.refresh_token);
      check('es256: refreshed id_token is ES256 and verifies', rf.status === 200 && verifyJwt(rf.body.id_token, env.jwks, 'ES256'), rf.body);
    });
  },

  async ps256() {
    await withOp('ps256', ['--signing-alg', 'PS256'], async (env) => {
      check('ps256: jwks holds exactly one RSA PS256 key', env.jwks.keys.length === 1 && env.jwks.keys[0].kty === 'RSA' && env.jwks.keys[0].alg === 'PS256', env.jwks);
      const flow = await codeFlow(env);
      check('ps256: id_token is PS256 and verifies', verifyJwt(flow.tokens.id_token, env.jwks, 'PS256'), flow.header);
    });
  },

  // Vault may sign with EdDSA keys, which the Kubernetes API server cannot use.
  async eddsa() {
    await withOp('eddsa', ['--signing-alg', 'EdDSA'], async (env) => {
      check('eddsa: jwks holds exactly one OKP Ed25519 EdDSA key',
        env.jwks.keys.length === 1 && env.jwks.keys[0].kty === 'OKP' && env.jwks.keys[0].crv === 'Ed25519' && env.jwks.keys[0].alg === 'EdDSA', env.jwks);
      const flow = await codeFlow(env);
      check('eddsa: id_token is EdDSA and verifies', verifyJwt(flow.tokens.id_token, env.jwks, 'EdDSA'), flow.header);
    });
  },

  async 'extra-aud'() {
    await withOp('extra-aud', ['--extra-aud', 'kubernetes', '--extra-aud', 'https://api.example.test'], async (env) => {
      const flow = await codeFlow(env);
      check('extra-aud: aud is [client_id, extra...]', JSON.stringify(flow.idt.aud) === JSON.stringify([CLIENT_ID, 'kubernetes', 'https://api.example.test']), flow.idt.aud);
      check('extra-aud: azp is the client_id', flow.idt.azp === CLIENT_ID, flow.idt.azp);
      check('extra-aud: id_token verifies', verifyJwt(flow.tokens.id_token, env.jwks, 'RS256'));
      const rf = await refreshVia(env, flow.tokens.refresh_token);
      const ridt = rf.status === 200 ? decodeJwt(rf.body.id_token).payload : {};
      check('extra-aud: refreshed id_token has the same aud and azp', JSON.stringify(ridt.aud) === JSON.stringify(flow.idt.aud) && ridt.azp === CLIENT_ID, ridt);
      const ui = await userinfoVia(env, rf.body.access_token);
      check('extra-aud: userinfo works', ui.status === 200 && ui.body.sub === 'alice', ui);
      const es = new URL(env.discovery.end_session_endpoint);
      es.search = new URLSearchParams({ id_token_hint: rf.body.id_token, post_logout_redirect_uri: env.postLogoutUri }).toString();
      const r = await sendWithJar(env, flow.jar, es.href);
      const esHtml = await r.text();
      const action = esHtml.match(/<form id="op.logoutForm" method="post" action="([^"]+)"/)?.[1];
      const xsrf = esHtml.match(/name="xsrf" value="([^"]+)"/)?.[1];
      must('extra-aud: end_session accepts it as id_token_hint', r.status === 200 && !!action && !!xsrf, `${r.status} ${esHtml.match(/<pre[^]*<\/pre>/)?.[0] ?? ''}`);
      const done = await sendWithJar(env, flow.jar, new URL(action, es).href, {
        method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
      });
      check('extra-aud: logout confirm redirects to post_logout_redirect_uri', done.status === 303 && done.headers.get('location') === env.postLogoutUri, `${done.status} ${done.headers.get('location')}`);
    });
  },

  async tls() {
    if (spawnSync('openssl', ['version']).status !== 0) {
      console.log('skip variant tls (openssl not installed)');
      return;
    }
    const pki = makeTestPki();
    try {
      const caPem = fs.readFileSync(pki.ca);
      await withOp('tls', ['--tls-cert', pki.cert, '--tls-key', pki.key], async (env) => {
        check('tls: ready line issuer is https://127.0.0.1:PORT', /^https:\/\/127\.0\.0\.1:\d+$/.test(env.issuer), env.issuer);
        check('tls: discovery issuer matches', env.discovery.issuer === env.issuer, env.discovery.issuer);
        check('tls: endpoints are https under the issuer',
          ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint', 'end_session_endpoint'].every((f) => env.discovery[f]?.startsWith(`${env.issuer}/`)),
          env.discovery.token_endpoint);
        let untrusted;
        try {
          await sender(undefined)(discoveryUrl(env.issuer));
          untrusted = 'connected';
        } catch (err) {
          untrusted = err.code ?? err.message;
        }
        check('tls: the certificate is only trusted through the private CA', /CERT|VERIFY/.test(untrusted), untrusted);
        const flow = await codeFlow(env);
        check('tls: id_token iss and callback iss are the https issuer', flow.idt.iss === env.issuer && flow.callbackIss === env.issuer, flow.idt.iss);
        check('tls: OP cookies are Secure', flow.setCookies.length > 0 && flow.setCookies.every((c) => /;\s*secure/i.test(c)), flow.setCookies);
        const ui = await userinfoVia(env, flow.tokens.access_token);
        check('tls: userinfo over https', ui.status === 200 && ui.body.sub === 'alice', ui);
        const rf = await refreshVia(env, flow.tokens.refresh_token);
        check('tls: refresh over https', rf.status === 200 && !!rf.body.id_token, rf.body);
      }, { ca: caPem });
      await withOp('tls-path', ['--tls-cert', pki.cert, '--tls-key', pki.key, '--issuer-path', '/realms/main'], async (env) => {
        check('tls-path: issuer is https://127.0.0.1:PORT/realms/main', /^https:\/\/127\.0\.0\.1:\d+\/realms\/main$/.test(env.issuer), env.issuer);
        const flow = await codeFlow(env);
        check('tls-path: endpoints, interaction and iss under the https issuer',
          env.discovery.issuer === env.issuer && env.discovery.token_endpoint.startsWith(`${env.issuer}/`)
          && flow.interactionPath.startsWith('/realms/main/interaction/') && flow.idt.iss === env.issuer && flow.callbackIss === env.issuer,
          { token_endpoint: env.discovery.token_endpoint, iss: flow.idt.iss });
      }, { ca: caPem });
    } finally {
      fs.rmSync(pki.dir, { recursive: true, force: true });
    }
  },

  // Options that contradict each other or are malformed make op.mjs exit 2 at once.
  async 'bad-options'() {
    console.log('-- variant bad-options');
    const cases = [
      [['--aud-string', '--extra-aud', 'x'], /contradict/],
      [['--no-refresh-token', '--single-use-refresh'], /contradict/],
      [['--tls-cert', '/nonexistent.pem'], /go together/],
      [['--tls-cert', '/nonexistent.pem', '--tls-key', '/nonexistent.key'], /cannot read/],
      [['--signing-alg', 'HS256'], /--signing-alg must be one of/],
      [['--issuer-path', 'realms/main'], /--issuer-path must start with/],
      [['--issuer-path', '/realms/main?x=1'], /--issuer-path must be a plain path/],
      [['--issuer-path', '/realms//main'], /--issuer-path must be a plain path/],
      [['--extra-aud', CLIENT_ID], /must differ/],
      [['--userinfo-sub', ''], /must not be empty/],
    ];
    for (const [args, pattern] of cases) {
      const r = runOpExpectingFailure(args);
      check(`bad-options: ${args.join(' ')} -> exit 2`, r.status === 2 && r.stdout === '' && pattern.test(r.stderr), { status: r.status, stderr: r.stderr.trim().split('\n').pop() });
    }
  },
};

async function runVariants() {
  const wanted = cli.variant ?? Object.keys(variants);
  for (const name of wanted) {
    if (!variants[name]) {
      failed += 1;
      console.log(`FAIL unknown variant ${name} (known: ${Object.keys(variants).join(', ')})`);
      continue;
    }
    await variants[name]();
  }
}

if (!cli['no-variants']) {
  await runVariants();
}

exitCode = failed === 0 ? 0 : 1;
console.log(`selfcheck: ${passed} passed, ${failed} failed`);
process.exit(exitCode);
