//! The cookie store: the whole session AEAD-sealed into the session cookie, split into
//! chunks when long (`chunks.rs`). Nothing to run, and nothing any other replica can see:
//! ending a session before its time works through this replica's revocation list
//! (`revoked.rs`) only.

use super::jar::{CookieJar, HEADER_LIMIT_WARNING};
use super::{cache, chunks, RequestCookies, Session, SessionError};
use axum::http::HeaderValue;
use std::sync::Arc;

/// Reads the session, if the request carries one that opens. Bad input is `None`.
pub fn load(jar: &CookieJar, cookies: &RequestCookies<'_>) -> Option<Arc<Session>> {
    let name = jar.cookie_name();
    let sealed = chunks::join(cookies, name)?;
    if let Some(hit) = cache::get(jar.id, &sealed, None) {
        return Some(hit);
    }
    let generation = cache::generation();
    let plain = jar.codec.open(name, &sealed)?;
    let session = Arc::new(serde_json::from_slice::<Session>(&plain).ok()?);
    cache::put(jar.id, &sealed, &session, generation);
    Some(session)
}

/// `Set-Cookie` values that store `session`, clearing chunks it no longer uses.
pub fn save(
    jar: &CookieJar,
    session: &Session,
    cookies: &RequestCookies<'_>,
) -> Result<Vec<HeaderValue>, SessionError> {
    let name = jar.cookie_name();
    let plain = serde_json::to_vec(session).map_err(|_| SessionError::Seal)?;
    let sealed = jar
        .codec
        .seal(name, &plain)
        .map_err(|_| SessionError::Seal)?;
    if sealed.len() > HEADER_LIMIT_WARNING {
        tracing::warn!(
            bytes = sealed.len(),
            "the session cookie is large: proxies in front of gatehouse with 8 KB header limits (nginx's default) may refuse requests; request fewer claims or scopes, or keep sessions in Redis (session_store = redis)"
        );
    }
    let max = chunks::CHUNK_LEN * chunks::MAX_CHUNKS;
    let parts = chunks::split(name, &sealed).ok_or(SessionError::TooLarge {
        bytes: sealed.len(),
        max,
    })?;
    let mut out: Vec<HeaderValue> = parts
        .iter()
        .filter_map(|(n, v)| jar.session_cookie(n.clone(), v.clone()))
        .collect();
    for old in cookies.names() {
        if chunks::is_session_cookie(name, old) && !parts.iter().any(|(n, _)| n == old) {
            out.extend(jar.removal(old));
        }
    }
    Ok(out)
}
