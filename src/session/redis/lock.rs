//! The refresh lock: one refresh per session across every replica. `SET NX PX` takes a
//! lease; while the token call runs, the holder renews it (a third of the lease at a time,
//! only while it still holds it), so a slow provider never lets a second replica in; a
//! crashed holder's lease simply runs out. Release deletes the lock only if it is still
//! ours. The session is written (`SET XX`) before the release, so the next holder reads
//! the refreshed tokens and never spends a used refresh token.

use super::link::{CallError, Redis};
use std::time::Duration;

/// How long a lease lasts without renewal: a crashed holder blocks refreshes this long.
pub const LEASE: Duration = Duration::from_secs(5);

const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// A held refresh lock; renewed in the background until released or dropped.
pub struct Lease {
    redis: Redis,
    key: String,
    owner: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Tries to take the lock `key`; `Ok(None)` when another holder has it.
    pub async fn try_take(redis: &Redis, key: String) -> Result<Option<Lease>, CallError> {
        let owner = crate::util::random_token(18);
        let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(5000);
        let taken: Option<String> = redis
            .call(
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&owner)
                    .arg("PX")
                    .arg(lease_ms)
                    .arg("NX"),
            )
            .await?;
        if taken.is_none() {
            return Ok(None);
        }
        let renewer = {
            let (redis, key, owner) = (redis.clone(), key.clone(), owner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE / 3).await;
                    let renewed =
                        script(&redis, RENEW, &key, &[&owner, &lease_ms.to_string()]).await;
                    match renewed {
                        Ok(1) => {}
                        Ok(_) => {
                            tracing::warn!("the refresh lock was lost while the token call ran (Redis failed over or was restarted)");
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not renew the refresh lock"),
                    }
                }
            })
        };
        Ok(Some(Lease {
            redis: redis.clone(),
            key,
            owner,
            renewer,
        }))
    }

    /// Frees the lock if it is still ours.
    pub async fn release(self) {
        self.renewer.abort();
        let freed = script(&self.redis, RELEASE, &self.key, &[&self.owner]).await;
        if let Err(e) = freed {
            tracing::warn!(error = %e, "could not free the refresh lock; it runs out by itself");
        }
    }
}

/// `EVAL script 1 key args...` (in a Cluster, on the node serving `key`).
async fn script(redis: &Redis, script: &str, key: &str, args: &[&str]) -> Result<i64, CallError> {
    let mut eval = redis::cmd("EVAL");
    eval.arg(script).arg(1).arg(key).arg(args);
    redis.call(&eval).await
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
