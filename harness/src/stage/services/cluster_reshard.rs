//! Moving hash slots from one Redis Cluster master to another while the
//! cluster serves, as `redis-cli --cluster reshard` does, one slot at a
//! time: the target marks it `IMPORTING`, the source `MIGRATING` (from then
//! on a key not yet moved is answered by the source and a key already moved
//! gets an `ASK` redirection to the target), the source `MIGRATE`s its keys
//! over in batches, and last every master learns the slot's new owner
//! (`SETSLOT NODE`, target first, then source, then the rest, the order the
//! Redis Cluster specification gives so no node ever answers for a slot
//! it no longer has).
//!
//! Each node is spoken to over one connection for the whole move: a
//! quarter of a master's slots is over a thousand slots, a handful of
//! commands each.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// One master, as a move needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Master {
    pub id: String,
    pub host: String,
    pub port: u16,
}

/// What a move did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub slots: usize,
    pub keys: usize,
}

/// Keys a `MIGRATE` carries at once (redis-cli's default pipeline is 10;
/// more keys a round trip shortens the move, and a batch stays small).
const BATCH: usize = 100;

/// How long one `MIGRATE` may take, in milliseconds (the source waits this
/// long for the target's answer).
const MIGRATE_TIMEOUT_MS: u64 = 5000;

/// How long any other one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How many slots to move: `share` of `owned`, rounded, at least one when
/// the source owns any (a share that rounds to none would be no fault).
pub fn slots_to_move(owned: usize, share: f64) -> usize {
    if owned == 0 {
        return 0;
    }
    ((owned as f64 * share).round() as usize).clamp(1, owned)
}

/// Moves `slots` from `source` to `target`; every other master in `others`
/// is told the new owner of each. Stops at the first command that fails,
/// saying which slot and command; the slots moved before it stay moved.
pub async fn move_slots(
    source: &Master,
    target: &Master,
    others: &[Master],
    slots: &[u16],
) -> Result<Moved, String> {
    let mut from = connect(source).await?;
    let mut to = connect(target).await?;
    let mut rest = Vec::with_capacity(others.len());
    for other in others {
        rest.push(connect(other).await?);
    }
    let mut moved = Moved::default();
    for &slot in slots {
        let fail = |what: &str, e: String| format!("slot {slot}: {what}: {e}");
        setslot(&mut to, slot, "IMPORTING", &source.id)
            .await
            .map_err(|e| fail("SETSLOT IMPORTING on the target", e))?;
        setslot(&mut from, slot, "MIGRATING", &target.id)
            .await
            .map_err(|e| fail("SETSLOT MIGRATING on the source", e))?;
        loop {
            let keys: Vec<String> = run(
                &mut from,
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(BATCH),
            )
            .await
            .map_err(|e| fail("GETKEYSINSLOT", e))?;
            if keys.is_empty() {
                break;
            }
            // An empty key and the KEYS form: several keys in one call.
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg(&target.host)
                .arg(target.port)
                .arg("")
                .arg(0)
                .arg(MIGRATE_TIMEOUT_MS)
                .arg("KEYS")
                .arg(&keys);
            run::<String>(&mut from, &migrate)
                .await
                .map_err(|e| fail("MIGRATE", e))?;
            moved.keys += keys.len();
        }
        setslot(&mut to, slot, "NODE", &target.id)
            .await
            .map_err(|e| fail("SETSLOT NODE on the target", e))?;
        setslot(&mut from, slot, "NODE", &target.id)
            .await
            .map_err(|e| fail("SETSLOT NODE on the source", e))?;
        for connection in &mut rest {
            setslot(connection, slot, "NODE", &target.id)
                .await
                .map_err(|e| fail("SETSLOT NODE on another master", e))?;
        }
        moved.slots += 1;
    }
    Ok(moved)
}

async fn setslot(
    connection: &mut MultiplexedConnection,
    slot: u16,
    state: &str,
    node: &str,
) -> Result<(), String> {
    run::<String>(
        connection,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(state)
            .arg(node),
    )
    .await
    .map(drop)
}

async fn connect(master: &Master) -> Result<MultiplexedConnection, String> {
    let url = format!("redis://{}:{}", master.host, master.port);
    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
    tokio::time::timeout(COMMAND_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| {
            format!(
                "{url} did not answer within {} s",
                COMMAND_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("{url}: {e}"))
}

async fn run<T: redis::FromRedisValue>(
    connection: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
) -> Result<T, String> {
    tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<T>(connection))
        .await
        .map_err(|_| format!("no answer within {} s", COMMAND_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_the_slots_rounds_and_is_never_none_or_more_than_all() {
        assert_eq!(slots_to_move(5461, 0.25), 1365);
        assert_eq!(slots_to_move(5461, 1.0), 5461);
        assert_eq!(slots_to_move(10, 0.01), 1, "at least one");
        assert_eq!(slots_to_move(10, 0.15), 2);
        assert_eq!(
            slots_to_move(0, 0.5),
            0,
            "a master without slots moves none"
        );
    }
}
