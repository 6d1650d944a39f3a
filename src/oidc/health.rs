//! Whether the provider answers right now. A login is only sent to the provider after a
//! recent check found it up: otherwise the browser would land on a browser error page
//! (or a token exchange would fail after the code is spent), where gatehouse can say
//! which provider is down and why. The answer is kept briefly (longer when it is up), so
//! a burst of logins costs one check, and a provider that comes back is noticed within
//! seconds, without a restart. A failed call to the token endpoint marks it down too.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an "up" answer is believed.
const KEEP_UP: Duration = Duration::from_secs(5);
/// How long a "down" answer is believed before the next check.
const KEEP_DOWN: Duration = Duration::from_secs(1);
/// How long after a failure a due refresh is skipped (while the tokens are still valid),
/// so a hung provider does not hold every request of signed-in users.
const SKIP_REFRESH: Duration = Duration::from_secs(10);

/// The last answer: when, and the cause if the provider was down.
#[derive(Default)]
pub struct Health {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    /// `Ok` when the provider answered `url` (its discovery document) recently, else why
    /// not. Checks again when the last answer is too old.
    pub async fn check(&self, http: &reqwest::Client, url: &str) -> Result<(), String> {
        if let Some(known) = self.recent() {
            return known;
        }
        let answer = probe(http, url).await;
        if let Err(cause) = &answer {
            tracing::warn!(%url, %cause, "the identity provider is not answering");
        }
        self.set(answer.clone());
        answer
    }

    /// Records that a call to the provider failed for a network reason.
    pub fn mark_down(&self, cause: &str) {
        self.set(Err(cause.to_string()));
    }

    /// Whether the provider failed within the last few seconds.
    pub fn down_recently(&self) -> bool {
        self.last
            .lock()
            .ok()
            .and_then(|last| {
                last.as_ref()
                    .map(|(at, answer)| answer.is_err() && at.elapsed() < SKIP_REFRESH)
            })
            .unwrap_or(false)
    }

    fn recent(&self) -> Option<Result<(), String>> {
        let last = self.last.lock().ok()?;
        let (at, answer) = last.as_ref()?;
        let keep = if answer.is_ok() { KEEP_UP } else { KEEP_DOWN };
        (at.elapsed() < keep).then(|| answer.clone())
    }

    fn set(&self, answer: Result<(), String>) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((Instant::now(), answer));
        }
    }
}

/// One GET of `url`; any answer but a 5xx means the provider is up. The client's own
/// connect and total timeouts bound it.
async fn probe(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let sent = http.get(url).send();
    match crate::metrics::provider_call(crate::metrics::Endpoint::Discovery, sent).await {
        Err(e) => Err(super::describe(&e)),
        Ok(r) if r.status().is_server_error() => Err(format!(
            "{} answered HTTP {}",
            r.url().host_str().unwrap_or(url),
            r.status().as_u16()
        )),
        Ok(_) => Ok(()),
    }
}
