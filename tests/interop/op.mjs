#!/usr/bin/env node
// Test OpenID Provider for gatehouse's integration tests.
//
// Runs a real `oidc-provider` (v9) on 127.0.0.1 with one confidential client,
// in-memory storage, freshly generated signing keys and a minimal login page
// that accepts any user name and a comma-separated list of groups.
//
// stdout carries exactly one line, `{"issuer":"http://127.0.0.1:PORT"}`, once
// the server is listening. Everything else goes to stderr.
//
// Usage:
//   node op.mjs --client-id ID --client-secret SECRET --redirect-uri URI
//               [--redirect-uri URI ...] [--post-logout-redirect-uri URI ...]
//               [--port N] [--id-token-ttl SECONDS] [--access-token-ttl SECONDS]
//               [--verbose] [--exit-on-stdin-close]
//               provider quirks (see README.md):
//               [--issuer-path PATH] [--tls-cert FILE --tls-key FILE]
//               [--signing-alg RS256|PS256|ES256|EdDSA] [--no-refresh-token]
//               [--single-use-refresh] [--claims-in-userinfo-only]
//               [--userinfo-sub SUB] [--aud-string] [--extra-aud AUD ...]
//               [--no-end-session] [--profile NAME] [--iss-without-scheme]
//               [--backchannel-logout-uri URI]
//               [--slow-refresh-ms N]
//
// GET /test/stats answers what the provider has counted since it started:
// {"refreshes": successful refresh_token grants, "grant_errors": refused
// token requests, "grants_revoked": grants revoked (a rotated refresh token
// used twice revokes the whole grant)}. --slow-refresh-ms N holds every
// refresh_token answer N ms after the token was rotated (a slow provider).
//
// --profile NAME sends what that provider sends (PROFILES below): the scopes
// it knows, the claims each scope adds to the ID token, and whether refresh
// tokens come always, never, or only with offline_access. `default` (no
// option) sends every claim for every scope and a refresh token every time.

import http from 'node:http';
import https from 'node:https';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseArgs } from 'node:util';

// oidc-provider prints notices with console.info; keep stdout reserved for
// the single ready line by routing every console method to stderr. This has
// to happen before the library is loaded, hence the dynamic import below.
for (const method of ['log', 'info', 'debug']) {
  console[method] = (...args) => console.error(...args);
}

function fail(message) {
  process.stderr.write(`op.mjs: ${message}\n`);
  process.exit(2);
}

function parseSeconds(name, raw) {
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) fail(`--${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true },
      'post-logout-redirect-uri': { type: 'string', multiple: true },
      'id-token-ttl': { type: 'string', default: '300' },
      'access-token-ttl': { type: 'string', default: '300' },
      verbose: { type: 'boolean', default: false },
      'exit-on-stdin-close': { type: 'boolean', default: false },
      // Provider quirks; none of them changes anything unless given.
      'issuer-path': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'signing-alg': { type: 'string', default: 'RS256' },
      'no-refresh-token': { type: 'boolean', default: false },
      'single-use-refresh': { type: 'boolean', default: false },
      'claims-in-userinfo-only': { type: 'boolean', default: false },
      'userinfo-sub': { type: 'string' },
      'aud-string': { type: 'boolean', default: false },
      'extra-aud': { type: 'string', multiple: true },
      'no-end-session': { type: 'boolean', default: false },
      profile: { type: 'string', default: 'default' },
      'iss-without-scheme': { type: 'boolean', default: false },
      'slow-refresh-ms': { type: 'string', default: '0' },
      'backchannel-logout-uri': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
} catch (err) {
  fail(err.message);
}
const opts = parsed.values;

const port = Number(opts.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid --port ${opts.port}`);
if (!opts['client-id']) fail('--client-id is required');
if (!opts['client-secret']) fail('--client-secret is required');
const redirectUris = opts['redirect-uri'] ?? [];
if (redirectUris.length === 0) fail('at least one --redirect-uri is required');
const postLogoutRedirectUris = opts['post-logout-redirect-uri'] ?? [];
const idTokenTtl = parseSeconds('id-token-ttl', opts['id-token-ttl']);
const accessTokenTtl = parseSeconds('access-token-ttl', opts['access-token-ttl']);
const verbose = opts.verbose;

// --issuer-path: every endpoint lives under it. `mountPrefix` is the path
// without a trailing slash (what gets stripped from request paths); the
// issuer keeps the path exactly as given, trailing slash included.
const issuerPath = opts['issuer-path'] ?? '';
if (issuerPath !== '') {
  if (!issuerPath.startsWith('/') || issuerPath.startsWith('//')) fail(`--issuer-path must start with a single /, got ${JSON.stringify(issuerPath)}`);
  if (/[?#\s%]/.test(issuerPath) || issuerPath.includes('//') || issuerPath.split('/').some((seg) => seg === '.' || seg === '..')) {
    fail(`--issuer-path must be a plain path (no query, fragment, spaces, escapes, empty or dot segments), got ${JSON.stringify(issuerPath)}`);
  }
}
const mountPrefix = issuerPath.endsWith('/') ? issuerPath.slice(0, -1) : issuerPath;

// --tls-cert / --tls-key: serve HTTPS instead of HTTP.
if (!!opts['tls-cert'] !== !!opts['tls-key']) fail('--tls-cert and --tls-key go together');
let tlsOptions = null;
if (opts['tls-cert']) {
  try {
    tlsOptions = { cert: fs.readFileSync(opts['tls-cert']), key: fs.readFileSync(opts['tls-key']) };
  } catch (err) {
    fail(`cannot read the TLS certificate or key: ${err.message}`);
  }
}

// --signing-alg: the one key in the JWKS, and the client's ID token alg.
const SIGNING_ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
const signingAlg = opts['signing-alg'];
if (!SIGNING_ALGS.includes(signingAlg)) fail(`--signing-alg must be one of ${SIGNING_ALGS.join(', ')}, got ${JSON.stringify(signingAlg)}`);

// ---------------------------------------------------------------------------
// Provider profiles: what each provider puts into an ID token for its scopes
// (CONTRACTS.md §3, examples/providers/<name>/README.md). `account` builds the
// claims of a login from the groups typed on the login form; `claims` says
// which of them each scope releases; `refresh` is always | never | offline.

const guid = (name) => {
  const h = crypto.createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
};
const PROFILES = {
  default: {
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'] },
    refresh: 'always',
    account: (login, groups) => ({ email: `${login}@example.test`, email_verified: true, preferred_username: login, name: login, groups }),
  },
  // Only the scopes openid, email and profile; no groups, no email_verified.
  tsidp: {
    scopes: ['openid', 'email', 'profile'],
    claims: { openid: ['sub'], email: ['email'], profile: ['name', 'preferred_username', 'picture'] },
    refresh: 'always',
    account: (login) => ({ email: `${login}@example.test`, preferred_username: login, name: login, picture: 'https://example.test/p.png' }),
  },
  // Scope openid yields sub, aud, iat, exp, nonce and nothing else; no refresh tokens.
  vault: {
    scopes: ['openid'],
    claims: { openid: ['sub'] },
    refresh: 'never',
    account: () => ({}),
  },
  // email_verified false by default; groups with the profile scope; refresh only with offline_access.
  authentik: {
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'given_name', 'preferred_username', 'nickname', 'groups'] },
    refresh: 'offline',
    account: (login, groups) => ({ email: `${login}@example.test`, email_verified: false, preferred_username: login, nickname: login, name: login, given_name: login, groups }),
  },
  // Groups are object IDs (GUIDs) in every ID token; email unverified and without email_verified.
  entra: {
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    claims: { openid: ['sub', 'oid', 'tid', 'groups'], email: ['email'], profile: ['name', 'preferred_username'] },
    refresh: 'offline',
    account: (login, groups) => ({ oid: guid(`oid:${login}`), tid: guid('tenant'), email: `${login}@example.test`, preferred_username: `${login}@example.test`, name: login, groups: groups.map(guid) }),
  },
  // Group paths (/admins) and realm roles in realm_access.roles; email_verified
  // false (a user an administrator created, with no verification); refresh tokens always.
  keycloak: {
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    claims: { openid: ['sub', 'groups', 'realm_access'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username', 'given_name'] },
    refresh: 'always',
    account: (login, groups) => ({ email: `${login}@example.test`, email_verified: false, preferred_username: login, name: login, given_name: login, groups: groups.map((g) => `/${g}`), realm_access: { roles: ['realm-viewer'] } }),
  },
  // groups with the groups scope, email_verified, refresh only with offline_access.
  dex: {
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'] },
    refresh: 'offline',
    account: (login, groups) => ({ email: `${login}@example.test`, email_verified: true, preferred_username: login, name: login, groups }),
  },
  // No groups, no preferred_username; hd for a Workspace domain; refresh with access_type=offline.
  google: {
    scopes: ['openid', 'email', 'profile'],
    claims: { openid: ['sub', 'hd'], email: ['email', 'email_verified'], profile: ['name', 'given_name', 'picture'] },
    refresh: 'always',
    account: (login) => ({ hd: 'example.test', email: `${login}@example.test`, email_verified: true, name: login, given_name: login, picture: 'https://example.test/p.png' }),
  },
};
const profile = PROFILES[opts.profile];
if (!profile) fail(`--profile must be one of ${Object.keys(PROFILES).join(', ')}, got ${JSON.stringify(opts.profile)}`);

const noRefreshToken = opts['no-refresh-token'] || profile.refresh === 'never';
if (noRefreshToken && opts['single-use-refresh']) fail('--no-refresh-token and --single-use-refresh contradict each other');
const claimsInUserinfoOnly = opts['claims-in-userinfo-only'];
const userinfoSub = opts['userinfo-sub'];
if (userinfoSub !== undefined && userinfoSub === '') fail('--userinfo-sub must not be empty');
const extraAudiences = opts['extra-aud'] ?? [];
if (extraAudiences.some((a) => a === '')) fail('--extra-aud must not be empty');
if (extraAudiences.includes(opts['client-id'])) fail('--extra-aud must differ from --client-id');
if (opts['aud-string'] && extraAudiences.length > 0) fail('--aud-string and --extra-aud contradict each other');
const endSession = !opts['no-end-session'];
if (!endSession && postLogoutRedirectUris.length > 0 && verbose) {
  process.stderr.write('op.mjs: --no-end-session: ignoring --post-logout-redirect-uri\n');
}

// --backchannel-logout-uri URI: Back-Channel Logout 1.0. The client registers URI
// with backchannel_logout_session_required, so ID tokens and logout tokens carry
// `sid`; a sign-out at /session/end posts a logout token there.
const backchannelLogoutUri = opts['backchannel-logout-uri'];
if (backchannelLogoutUri !== undefined) {
  let parsedUri;
  try {
    parsedUri = new URL(backchannelLogoutUri);
  } catch {
    fail(`--backchannel-logout-uri must be an absolute URL, got ${JSON.stringify(backchannelLogoutUri)}`);
  }
  if (!['http:', 'https:'].includes(parsedUri.protocol)) fail('--backchannel-logout-uri must be http or https');
  if (!endSession) fail('--backchannel-logout-uri needs the end-session endpoint (drop --no-end-session)');
}

// oidc-provider 9 sends outgoing requests (the logout tokens among them) through its
// `fetch` option with an undici dispatcher that destroys any connection to a
// special-use address, loopback included (helpers/fetch_request.js, SSRF
// protection). The RP under test listens on 127.0.0.1, so with
// --backchannel-logout-uri, and only then, the option drops that dispatcher.
const loopbackFetch = (url, options) => {
  const { dispatcher: _ssrfGuard, ...rest } = options;
  return globalThis.fetch(url, rest);
};

const { default: Provider } = await import('oidc-provider');

// ---------------------------------------------------------------------------
// Accounts: any login name is accepted; the groups typed on the login form
// are remembered per login so that findAccount can hand them out later.

const groupsByLogin = new Map();

function accountFor(login) {
  return {
    accountId: login,
    async claims() {
      return { sub: login, ...profile.account(login, [...(groupsByLogin.get(login) ?? [])]) };
    },
  };
}

// ---------------------------------------------------------------------------
// Small HTML helpers.

function escapeHtml(value) {
  return String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
${body}
</body>
</html>
`;
}

// ---------------------------------------------------------------------------
// Signing keys and cookie keys, new for every run.

function freshSigningJwk(alg) {
  let pair;
  switch (alg) {
    case 'RS256':
    case 'PS256':
      pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      break;
    case 'ES256':
      pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      break;
    case 'EdDSA':
      pair = crypto.generateKeyPairSync('ed25519');
      break;
    default:
      throw new Error(`no key type for ${alg}`);
  }
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomUUID(), alg, use: 'sig' };
}

// ---------------------------------------------------------------------------
// The HTTP server has to be listening before the Provider can be built,
// because the issuer contains the port the OS picked.

let providerHandler = null;

// Profiles whose provider issues refresh tokens only for offline_access:
// oidc-provider drops that scope from a request without prompt=consent, which
// these providers do not need, so remember the requests that asked for it by
// their nonce (the code carries it to the token endpoint).
const offlineNonces = new Set();
function rememberOffline(url) {
  const query = new URLSearchParams((url ?? '').split('?')[1] ?? '');
  const nonce = query.get('nonce');
  if (nonce && (query.get('scope') ?? '').split(' ').includes('offline_access')) offlineNonces.add(nonce);
}

let interactionHandler = null;

const server = (tlsOptions ? https : http).createServer(tlsOptions ?? {}, (req, res) => {
  const fullUrl = req.url;
  if (verbose) {
    const started = Date.now();
    res.on('finish', () => {
      process.stderr.write(`op.mjs: ${req.method} ${fullUrl} -> ${res.statusCode} (${Date.now() - started} ms)\n`);
    });
  }
  if (!providerHandler) {
    res.statusCode = 503;
    res.end('starting\n');
    return;
  }
  let path = (req.url ?? '/').split('?')[0];
  if (mountPrefix) {
    // Everything lives under the issuer path; strip it the way a mounting
    // router would. oidc-provider builds endpoint URLs from ctx.mountPath
    // (set below, next to the provider).
    if (path !== mountPrefix && !path.startsWith(`${mountPrefix}/`)) {
      res.statusCode = 404;
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end(`not found: everything is under ${issuerPath}\n`);
      return;
    }
    req.url = req.url.slice(mountPrefix.length) || '/';
    path = path.slice(mountPrefix.length) || '/';
  }
  if (path.startsWith('/interaction/')) {
    interactionHandler(req, res, path).catch((err) => {
      // oidc-provider errors (e.g. SessionNotFound for an unknown or expired
      // interaction) carry their own 4xx status; anything else is a bug here.
      const status = Number.isInteger(err?.statusCode) ? err.statusCode : 500;
      const description = err?.error_description ? `${err.message}: ${err.error_description}` : String(err?.message ?? err);
      process.stderr.write(`op.mjs: interaction error (${status}): ${status >= 500 ? err?.stack ?? err : description}\n`);
      if (!res.headersSent) {
        res.statusCode = status;
        res.setHeader('Content-Type', 'text/html; charset=utf-8');
        res.end(page('Test OP error', `<h1>Interaction failed</h1><pre id="error">${escapeHtml(description)}</pre>`));
      } else {
        res.end();
      }
    });
    return;
  }
  if (profile.refresh === 'offline' && path === '/auth') rememberOffline(req.url);
  if (path === '/test/stats') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(stats));
    return;
  }
  providerHandler(req, res);
});

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', () => {
    server.off('error', reject);
    resolve();
  });
});

const actualPort = server.address().port;
const issuer = `${tlsOptions ? 'https' : 'http'}://127.0.0.1:${actualPort}${issuerPath}`;

const configuration = {
  clients: [
    {
      client_id: opts['client-id'],
      client_secret: opts['client-secret'],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: noRefreshToken ? ['authorization_code'] : ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: redirectUris,
      ...(endSession ? { post_logout_redirect_uris: postLogoutRedirectUris } : {}),
      id_token_signed_response_alg: signingAlg,
      ...(backchannelLogoutUri !== undefined
        ? { backchannel_logout_uri: backchannelLogoutUri, backchannel_logout_session_required: true }
        : {}),
    },
  ],
  ...(backchannelLogoutUri !== undefined ? { fetch: loopbackFetch } : {}),
  jwks: { keys: [freshSigningJwk(signingAlg)] },
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    // Cookies are scoped by host, not port: the proxy under test also lives
    // on 127.0.0.1, so use names that cannot collide with its cookies.
    names: {
      session: 'testop_session',
      interaction: 'testop_interaction',
      resume: 'testop_interaction_resume',
    },
  },
  responseTypes: ['code'],
  pkce: {
    required: () => true,
  },
  scopes: profile.scopes,
  claims: profile.claims,
  // Put the scope-derived claims into the ID token itself, not only userinfo.
  // With --claims-in-userinfo-only (oidc-provider's own default), the ID token
  // of the code flow keeps only the protocol claims and the scope-derived
  // ones are served by userinfo alone.
  conformIdTokenClaims: claimsInUserinfoOnly,
  findAccount: async (_ctx, sub) => accountFor(sub),
  // Hand out a refresh token with every code exchange, no offline_access or
  // prompt=consent needed, and rotate it on each use (a used one is refused
  // with invalid_grant, and oidc-provider then revokes the whole grant).
  // --no-refresh-token (or a profile without them): never; a profile that
  // issues them only for offline_access: when the grant holds that scope.
  issueRefreshToken: async (_ctx, _client, code) =>
    !noRefreshToken && (profile.refresh !== 'offline' || offlineNonces.has(code.nonce)),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTokenTtl,
    IdToken: idTokenTtl,
    AuthorizationCode: 60,
    RefreshToken: 24 * 60 * 60,
    Interaction: 60 * 60,
    Session: 24 * 60 * 60,
    Grant: 24 * 60 * 60,
  },
  interactions: {
    url: async (_ctx, interaction) => `${mountPrefix}/interaction/${interaction.uid}`,
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    backchannelLogout: { enabled: backchannelLogoutUri !== undefined },
    rpInitiatedLogout: {
      enabled: endSession,
      // `form` is the library's hidden form (id "op.logoutForm", posting the
      // xsrf token to /session/end/confirm). Put a real submit button inside
      // it so that submitting the form signs the user out.
      logoutSource: async (ctx, form) => {
        const withButton = form.replace(
          '</form>',
          '<button type="submit" id="logout" name="logout" value="yes">Sign out</button></form>',
        );
        ctx.type = 'html';
        ctx.body = page('Test OP logout', `<h1>Sign out of the test OP?</h1>\n${withButton}`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.type = 'html';
        ctx.body = page('Test OP signed out', '<h1 id="signed-out">Signed out</h1>');
      },
    },
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    const rows = Object.entries(out)
      .map(([key, value]) => `<pre class="${escapeHtml(key)}">${escapeHtml(key)}: ${escapeHtml(value)}</pre>`)
      .join('\n');
    ctx.body = page('Test OP error', `<h1>Test OP error</h1>\n${rows}`);
  },
};

const provider = new Provider(issuer, configuration);

// --issuer-path: requests reach the provider with the path stripped; tell it
// where it is mounted so that discovery and redirects name the full URLs.
if (mountPrefix) {
  provider.use(async (ctx, next) => {
    ctx.mountPath = mountPrefix;
    await next();
  });
}

// --no-refresh-token: the refresh_token grant is always registered in
// oidc-provider, so take it out of discovery's grant_types_supported (as a
// provider without refresh tokens would list it); the client is not allowed
// that grant either (unauthorized_client).
if (noRefreshToken) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'discovery' && ctx.status === 200 && Array.isArray(ctx.body?.grant_types_supported)) {
      ctx.body = { ...ctx.body, grant_types_supported: ctx.body.grant_types_supported.filter((g) => g !== 'refresh_token') };
    }
  });
}

// --userinfo-sub: answer userinfo with another subject than the ID token's.
if (userinfoSub !== undefined) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'userinfo' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      ctx.body = { ...ctx.body, sub: userinfoSub };
    }
  });
}

// --extra-aud: oidc-provider 9 has no setting or hook for the ID token's
// audience (extraTokenClaims only reaches access tokens, and the audiences
// helper of older versions is gone); IdToken#issue always signs with
// aud = client_id. So wrap it: for ID tokens, hand it a view of the client
// whose clientId is [client_id, ...extra], and add azp = client_id as OIDC
// Core 2 asks for when there are several audiences.
if (extraAudiences.length > 0) {
  const originalIssue = provider.IdToken.prototype.issue;
  provider.IdToken.prototype.issue = async function issueWithExtraAudiences(options = {}) {
    if (options.use !== 'idtoken' || !this.client) return originalIssue.call(this, options);
    const client = this.client;
    this.set('azp', client.clientId);
    this.client = Object.create(client, { clientId: { value: [client.clientId, ...extraAudiences], enumerable: true } });
    try {
      return await originalIssue.call(this, options);
    } finally {
      this.client = client;
    }
  };
  // end_session looks the client up by the id_token_hint's aud, which it
  // expects to be a string; let an array resolve to its first entry (the
  // client_id). An end-session request that also carries client_id is still
  // refused by oidc-provider ("client_id does not match the provided
  // id_token_hint"), because it compares client_id with the whole aud.
  const originalFind = provider.Client.find;
  provider.Client.find = function findWithAudienceArray(id, ...rest) {
    return originalFind.call(this, Array.isArray(id) ? id[0] : id, ...rest);
  };
}

// --iss-without-scheme (Google): ID tokens carry the issuer without its
// scheme (`accounts.google.com`); discovery and everything else keep it.
// IdToken#issue signs with provider.issuer, so swap it for the signing only.
if (opts['iss-without-scheme']) {
  if (extraAudiences.length > 0) fail('--iss-without-scheme and --extra-aud do not combine');
  const originalIssue = provider.IdToken.prototype.issue;
  provider.IdToken.prototype.issue = async function issueWithoutScheme(options = {}) {
    if (options.use !== 'idtoken') return originalIssue.call(this, options);
    const full = provider.issuer;
    provider.issuer = full.replace(/^https?:\/\//, '');
    try {
      return await originalIssue.call(this, options);
    } finally {
      provider.issuer = full;
    }
  };
}

// What GET /test/stats answers.
const stats = { refreshes: 0, grant_errors: 0, grants_revoked: 0 };
provider.on('grant.success', (ctx) => {
  if (ctx.oidc?.params?.grant_type === 'refresh_token') stats.refreshes += 1;
});
provider.on('grant.error', () => { stats.grant_errors += 1; });
provider.on('grant.revoked', () => { stats.grants_revoked += 1; });

// --slow-refresh-ms: the refresh is done (the old token is spent) before the
// answer is held back, as a slow network or provider would.
const slowRefreshMs = Number(opts['slow-refresh-ms']);
if (!Number.isInteger(slowRefreshMs) || slowRefreshMs < 0) fail(`--slow-refresh-ms must be a whole number, got ${JSON.stringify(opts['slow-refresh-ms'])}`);
if (slowRefreshMs > 0) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'token' && ctx.oidc?.params?.grant_type === 'refresh_token') {
      await new Promise((resolve) => { setTimeout(resolve, slowRefreshMs); });
    }
  });
}

for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error', 'userinfo.error', 'jwks.error', 'discovery.error', 'backchannel.error']) {
  provider.on(event, (_ctx, err) => {
    process.stderr.write(`op.mjs: ${event}: ${err?.name ?? 'Error'}: ${err?.message ?? err}${err?.error_description ? ` (${err.error_description})` : ''}\n`);
  });
}
if (verbose) {
  provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
    process.stderr.write(`op.mjs: backchannel.success: ${client.clientId} sub ${accountId} sid ${sid}\n`);
  });
}

// ---------------------------------------------------------------------------
// Interactions: one page that does login and consent together.

async function readUrlencoded(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

function requestedClaimNames(params) {
  if (!params.claims) return [];
  try {
    const claims = JSON.parse(params.claims);
    return [...new Set([
      ...Object.keys(claims.id_token ?? {}),
      ...Object.keys(claims.userinfo ?? {}),
    ])];
  } catch {
    return [];
  }
}

interactionHandler = async (req, res, path) => {
  const segments = path.split('/').filter(Boolean); // ['interaction', uid, ...]
  const uid = segments[1];
  const action = segments[2];

  if (req.method === 'GET' && segments.length === 2) {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) {
      sendHtml(res, 400, page('Test OP error', '<h1>Interaction mismatch</h1>'));
      return;
    }
    const suggestedLogin = details.session?.accountId ?? '';
    sendHtml(res, 200, page('Test OP login', `<h1>Test OP login</h1>
<p>Client: <code id="client-id">${escapeHtml(details.params.client_id)}</code>,
scope: <code id="scope">${escapeHtml(details.params.scope)}</code>,
prompt: <code id="prompt">${escapeHtml(details.prompt.name)}</code></p>
<form method="post" action="${escapeHtml(mountPrefix)}/interaction/${escapeHtml(uid)}/login">
  <label>Login <input name="login" value="${escapeHtml(suggestedLogin)}" autocomplete="off"></label>
  <label>Groups (comma-separated) <input name="groups" value="" autocomplete="off"></label>
  <button type="submit" id="submit">Sign in</button>
</form>`));
    return;
  }

  if (req.method === 'POST' && segments.length === 3 && action === 'login') {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) {
      sendHtml(res, 400, page('Test OP error', '<h1>Interaction mismatch</h1>'));
      return;
    }
    const form = await readUrlencoded(req);
    const login = (form.get('login') ?? '').trim();
    if (!login) {
      sendHtml(res, 400, page('Test OP error', '<h1>login must not be empty</h1>'));
      return;
    }
    const groups = (form.get('groups') ?? '')
      .split(',')
      .map((g) => g.trim())
      .filter((g) => g.length > 0);
    groupsByLogin.set(login, groups);

    const { params, prompt } = details;
    const grant = new provider.Grant({ accountId: login, clientId: params.client_id });
    if (params.scope) grant.addOIDCScope(params.scope);
    const claimNames = [
      ...requestedClaimNames(params),
      ...(prompt.details?.missingOIDCClaims ?? []),
    ];
    if (claimNames.length > 0) grant.addOIDCClaims([...new Set(claimNames)]);
    for (const [indicator, scopes] of Object.entries(prompt.details?.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();

    await provider.interactionFinished(
      req,
      res,
      {
        login: { accountId: login },
        consent: { grantId },
      },
      { mergeWithLastSubmission: false },
    );
    return;
  }

  sendHtml(res, 404, page('Test OP error', '<h1>Not found</h1>'));
};

// Static clients are only validated when first looked up; do it now so that
// bad metadata (e.g. a malformed redirect URI) fails at startup, not mid-test.
try {
  const client = await provider.Client.find(opts['client-id']);
  if (!client) throw new Error('client not found after configuration');
} catch (err) {
  fail(`invalid client configuration: ${err?.message ?? err}${err?.error_description ? ` (${err.error_description})` : ''}`);
}

providerHandler = provider.callback();

// ---------------------------------------------------------------------------
// Ready, and clean shutdown.

let shuttingDown = false;
function shutdown(reason) {
  if (shuttingDown) return;
  shuttingDown = true;
  if (verbose) process.stderr.write(`op.mjs: shutting down (${reason})\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (opts['exit-on-stdin-close']) {
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
process.stderr.write(`op.mjs: listening, issuer ${issuer}, client ${opts['client-id']}\n`);
