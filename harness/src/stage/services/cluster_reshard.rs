//! Moving hash slots from one Redis Cluster master to another while the
//! cluster serves, with the steps `redis-cli --cluster reshard` takes for
//! each slot: the target marks it `IMPORTING`, the source `MIGRATING` (from then
//! on a key not yet moved is answered by the source and a key already moved
//! gets an `ASK` redirection to the target), the source `MIGRATE`s its keys
//! over in batches, and last every master learns the slot's new owner
//! (`SETSLOT NODE`, target first, then source, then the rest, the order the
//! Redis Cluster specification gives so no node ever answers for a slot
//! it no longer has).
//!
//! Each node is spoken to over one connection for the whole move, and the
//! slots go in batches: each step for a batch is one pipelined round trip
//! (the steps' order holds per slot: every slot of a batch is `MIGRATING`
//! before its keys are listed, and owned by the target on the target
//! before the source and the rest are told).

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

/// How long any other command (or one batch's pipeline) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Slots moved together: each step of a move is sent for all of them in
/// one round trip (a quarter of a master's slots is over a thousand; one
/// at a time, under load, the move took 11 to 21 s here, mostly waiting on
/// round trips).
const SLOTS_AT_ONCE: usize = 64;

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
/// saying which slots and command; the slots moved before it stay moved.
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
    for batch in slots.chunks(SLOTS_AT_ONCE) {
        let (first, last) = (batch[0], batch[batch.len() - 1]);
        let fail = |what: &str, e: String| format!("slots {first}-{last}: {what}: {e}");
        setslots(&mut to, batch, "IMPORTING", &source.id)
            .await
            .map_err(|e| fail("SETSLOT IMPORTING on the target", e))?;
        setslots(&mut from, batch, "MIGRATING", &target.id)
            .await
            .map_err(|e| fail("SETSLOT MIGRATING on the source", e))?;
        moved.keys += migrate_keys(&mut from, target, batch)
            .await
            .map_err(|e| fail("moving the keys", e))?;
        setslots(&mut to, batch, "NODE", &target.id)
            .await
            .map_err(|e| fail("SETSLOT NODE on the target", e))?;
        setslots(&mut from, batch, "NODE", &target.id)
            .await
            .map_err(|e| fail("SETSLOT NODE on the source", e))?;
        for connection in &mut rest {
            setslots(connection, batch, "NODE", &target.id)
                .await
                .map_err(|e| fail("SETSLOT NODE on another master", e))?;
        }
        moved.slots += batch.len();
    }
    Ok(moved)
}

/// Moves every key of `slots` (already `MIGRATING` on the source) to the
/// target: their keys listed in one round trip, each slot's moved by
/// `MIGRATE`, again until none is left. Returns how many moved.
async fn migrate_keys(
    from: &mut MultiplexedConnection,
    target: &Master,
    slots: &[u16],
) -> Result<usize, String> {
    let mut pending = slots.to_vec();
    let mut moved = 0;
    while !pending.is_empty() {
        let mut list = redis::pipe();
        for &slot in &pending {
            list.cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(BATCH);
        }
        let found: Vec<Vec<String>> = run_pipe(from, &list).await?;
        let mut still = Vec::new();
        for (&slot, keys) in pending.iter().zip(found) {
            if keys.is_empty() {
                continue;
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
            run::<String>(from, &migrate)
                .await
                .map_err(|e| format!("MIGRATE of slot {slot}: {e}"))?;
            moved += keys.len();
            still.push(slot);
        }
        pending = still;
    }
    Ok(moved)
}

/// `CLUSTER SETSLOT` for each of `slots`, in one round trip.
async fn setslots(
    connection: &mut MultiplexedConnection,
    slots: &[u16],
    state: &str,
    node: &str,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for &slot in slots {
        pipe.cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(state)
            .arg(node)
            .ignore();
    }
    run_pipe::<()>(connection, &pipe).await
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

async fn run_pipe<T: redis::FromRedisValue>(
    connection: &mut MultiplexedConnection,
    pipe: &redis::Pipeline,
) -> Result<T, String> {
    tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<T>(connection))
        .await
        .map_err(|_| format!("no answer within {} s", COMMAND_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())
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
