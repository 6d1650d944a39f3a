// Verifies gatehouse's identity assertions the way an app would, with an independent
// JWT library (panva's `jose`): the key set is fetched from gatehouse's JWKS URL, and
// `iss`, `aud`, `exp`/`nbf` and the algorithm are checked. Used by
// tests/integration/assertion.rs.
//
//   node verify-assertion.mjs --jwks URL --issuer ISS --audience AUD < tokens.json
//
// stdin: a JSON array of tokens. stdout: one JSON object, {"results": [{ok, header,
// payload} | {ok: false, error}], "thumbprints": [{kid, thumbprint}]}: each published
// key's RFC 7638 thumbprint as jose computes it, beside the kid gatehouse gave it.
import { createRemoteJWKSet, jwtVerify, calculateJwkThumbprint, decodeProtectedHeader } from 'jose';

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

const jwksUrl = new URL(arg('jwks'));
const issuer = arg('issuer');
const audience = arg('audience');

let input = '';
for await (const chunk of process.stdin) input += chunk;
const tokens = JSON.parse(input);

const keys = createRemoteJWKSet(jwksUrl, { cooldownDuration: 0 });
const results = [];
for (const token of tokens) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, keys, {
      issuer,
      audience,
      algorithms: ['ES256', 'ES384', 'RS256', 'EdDSA'],
      typ: 'JWT',
      requiredClaims: ['exp', 'iat', 'nbf', 'sub', 'jti'],
    });
    results.push({ ok: true, header: protectedHeader, payload });
  } catch (e) {
    let header = null;
    try { header = decodeProtectedHeader(token); } catch { /* not a JWS */ }
    results.push({ ok: false, error: `${e.code ?? e.name}: ${e.message}`, header });
  }
}

const set = await (await fetch(jwksUrl)).json();
const thumbprints = [];
for (const jwk of set.keys) {
  thumbprints.push({ kid: jwk.kid, thumbprint: await calculateJwkThumbprint(jwk, 'sha256') });
}
console.log(JSON.stringify({ results, thumbprints }));
