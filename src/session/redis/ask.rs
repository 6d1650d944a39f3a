//! Keyed commands that keep working while a Redis Cluster slot moves (Redis Cluster
//! specification, "ASK redirection").
//!
//! fred 10.1 follows `MOVED`, but not `ASK`: it sends `ASKING` to the node the slot is
//! moving to, then routes the command by its slot again, that is back to the old owner,
//! which answers `ASK` again. Once the command's write attempts are spent, fred ends the
//! client's connection task, and every later call on that client times out until the
//! process restarts. So the client is built with one redirection per command (`client.rs`;
//! with its two write attempts, a command that meets `ASK` twice then fails with "Too
//! many redirections." and the client lives on), and here such a command is sent once
//! more inside MULTI/EXEC: fred's transaction path sends `ASKING` and the transaction to
//! the node `ASK` names. A standalone server or a Sentinel master never redirects, so
//! this costs them nothing.

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};

/// Runs `cmd args...` on the node serving `key` (the key the command touches), following
/// an `ASK` redirection.
pub async fn call<R: FromValue>(
    client: &Client,
    cmd: &'static str,
    key: &str,
    args: Vec<Value>,
) -> Result<R, Error> {
    let slot = fred::util::redis_keyslot(key.as_bytes());
    let command = CustomCommand::new_static(cmd, ClusterHash::Custom(slot), false);
    match client
        .custom::<Value, Value>(command.clone(), args.clone())
        .await
    {
        Err(e) if asked(&e) => in_transaction(client, command, args).await?.convert(),
        answer => answer?.convert(),
    }
}

/// The error fred returns for a command it was redirected for more than once.
fn asked(e: &Error) -> bool {
    *e.kind() == ErrorKind::Routing && e.details().starts_with("Too many redirections")
}

/// `MULTI`, the command, `EXEC`: the command's own answer.
async fn in_transaction(
    client: &Client,
    command: CustomCommand,
    args: Vec<Value>,
) -> Result<Value, Error> {
    let tx = client.multi();
    let _queued: Value = tx.custom(command, args).await?;
    match tx.exec::<Value>(true).await? {
        Value::Array(mut answers) if answers.len() == 1 => Ok(answers.remove(0)),
        other => Err(Error::new(
            ErrorKind::Protocol,
            format!("EXEC of one command answered {other:?}"),
        )),
    }
}
