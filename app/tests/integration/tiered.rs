//! The Redis + Postgres tier (option4's store) across instances, on the real
//! servers: reads served by Redis alone in the normal state, and never a
//! stale one when an instance loses Redis or Postgres, a copy is tampered
//! with, or a late copy races a delete.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::{
    Cuttable, closed_redis, database_url, host_port, redis_url, tiered, unique, via,
};
use app::store::encrypted::{EncryptedStore, Keyring};
use app::store::tiered::TieredStore;
use app::store::tiered::copies::{Copies, CopyWrite};
use app::store::{Expect, Store, StoreError};

const TTL: Option<Duration> = Some(Duration::from_secs(60));

/// Waits until the instance's view of the coherence record trusts Redis.
async fn trusted(store: &TieredStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.coherence().snapshot().trusted {
        assert!(Instant::now() < deadline, "never trusted Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn postgres_trips(store: &TieredStore) -> u64 {
    store.breakers()[1]
        .stats()
        .round_trips
        .load(Ordering::Relaxed)
}

fn redis_trips(store: &TieredStore) -> u64 {
    store.breakers()[0]
        .stats()
        .round_trips
        .load(Ordering::Relaxed)
}

async fn raw_redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_the_normal_state_is_one_redis_round_trip_and_no_postgres_query() {
    let ns = unique("normal");
    let store = tiered(&ns, "app-1", &redis_url(), &database_url());
    store
        .save("sess:a", b"a", Expect::Absent, TTL)
        .await
        .expect("save");
    store
        .save("tc:a", b"tokens", Expect::Absent, TTL)
        .await
        .expect("save");
    trusted(&store).await;
    // The first read after trust may copy records made under the
    // generation the first poll replaced; after it, copies are current.
    store
        .load_many(&["sess:a", "tc:a"])
        .await
        .expect("first read");
    let (postgres, redis) = (postgres_trips(&store), redis_trips(&store));
    for _ in 0..20 {
        let records = store.load_many(&["sess:a", "tc:a"]).await.expect("load");
        assert_eq!(records[0].as_ref().expect("session").data, b"a");
        assert_eq!(records[1].as_ref().expect("partition").data, b"tokens");
    }
    assert_eq!(postgres_trips(&store) - postgres, 0, "no Postgres query");
    assert_eq!(redis_trips(&store) - redis, 20, "one Redis round trip each");
    assert!(
        store
            .coherence()
            .stats()
            .trusted_reads
            .load(Ordering::Relaxed)
            >= 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_copy_is_read_from_postgres_and_copied_back() {
    let ns = unique("flush");
    let store = tiered(&ns, "app-1", &redis_url(), &database_url());
    trusted(&store).await;
    store
        .save("sess:1", b"cart", Expect::Absent, TTL)
        .await
        .expect("save");
    let mut raw = raw_redis().await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{ns}:sess:1"))
        .query_async(&mut raw)
        .await
        .expect("what FLUSHALL does to this key");
    let record = store.load("sess:1").await.expect("load").expect("survives");
    assert_eq!((record.data.as_slice(), record.version), (&b"cart"[..], 1));
    let copied: Option<String> = redis::cmd("HGET")
        .arg(format!("{ns}:sess:1"))
        .arg("v")
        .query_async(&mut raw)
        .await
        .expect("hget");
    assert_eq!(copied.as_deref(), Some("1"), "copied back");
}

/// The case that lost writes before: an instance cut off from Redis
/// acknowledges a write whose copy it cannot make; another instance that
/// reads afterwards, through Redis, must see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_acknowledged_by_an_instance_cut_off_from_redis_is_never_read_stale_elsewhere() {
    let ns = unique("cutoff");
    let proxy = Cuttable::to(&host_port(&redis_url())).await;
    let a = tiered(&ns, "app-1", &redis_url(), &database_url());
    let b = tiered(
        &ns,
        "app-2",
        &via(&redis_url(), proxy.addr),
        &database_url(),
    );
    trusted(&a).await;
    trusted(&b).await;
    a.save("sess:x", b"v1", Expect::Absent, TTL)
        .await
        .expect("v1");
    assert_eq!(
        a.load("sess:x").await.expect("load").expect("v1").data,
        b"v1"
    );

    proxy.cut();
    let started = Instant::now();
    let version = b
        .save("sess:x", b"v2", Expect::Version(1), TTL)
        .await
        .expect("a write needs Postgres only");
    assert_eq!(version, 2);
    // Covered: registered as degraded, then waited out every trusted view.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "acknowledged after {:?}",
        started.elapsed()
    );
    assert_eq!(
        b.coherence().stats().registrations.load(Ordering::Relaxed),
        1
    );
    // Redis still holds v1; a's reads now check Postgres.
    let read = a.load("sess:x").await.expect("load").expect("present");
    assert_eq!((read.data.as_slice(), read.version), (&b"v2"[..], 2));
    assert!(!a.coherence().snapshot().trusted, "the fleet is degraded");

    // b reaches Redis again: it leaves degraded mode and the generation
    // moves on; every copy from before is read from Postgres once.
    proxy.restore();
    let before = a.coherence().snapshot().generation;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.coherence().snapshot().trusted && a.coherence().snapshot().generation > before) {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let read = a.load("sess:x").await.expect("load").expect("present");
    assert_eq!(read.version, 2);
    assert_eq!(b.coherence().stats().recoveries.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_reads_and_writes_use_postgres() {
    let ns = unique("redisdown");
    let up = tiered(&ns, "app-1", &redis_url(), &database_url());
    up.save("k", b"kept", Expect::Absent, TTL)
        .await
        .expect("seed");
    let down = tiered(&ns, "app-2", &closed_redis(), &database_url());
    assert_eq!(
        down.load("k").await.expect("read").expect("present").data,
        b"kept"
    );
    assert_eq!(
        down.save("k", b"new", Expect::Version(1), TTL)
            .await
            .expect("write"),
        2
    );
    assert!(down.delete("k").await.expect("delete too"));
    assert_eq!(up.load("k").await.expect("read"), None, "deleted for all");
}

/// An instance cut off from Postgres stops serving Redis copies once its
/// view is older than `trust_for`: it cannot know whether another instance,
/// which still reaches Postgres, acknowledged a write meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_from_postgres_fails_its_reads_within_trust_for() {
    let ns = unique("pgcut");
    let proxy = Cuttable::to(&host_port(&database_url())).await;
    let store = tiered(
        &ns,
        "app-1",
        &redis_url(),
        &via(&database_url(), proxy.addr),
    );
    store
        .save("k", b"v", Expect::Absent, TTL)
        .await
        .expect("seed");
    trusted(&store).await;
    store.load("k").await.expect("read").expect("present");
    proxy.cut();
    let cut_at = Instant::now();
    loop {
        match store.load("k").await {
            Ok(_) => assert!(
                cut_at.elapsed() < Duration::from_millis(1500),
                "still served {:?} after the cut",
                cut_at.elapsed()
            ),
            Err(StoreError::Unavailable(_)) => break,
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        store.save("k", b"w", Expect::Version(1), TTL).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// A Redis copy whose data is an older ciphertext of the same record, given
/// the current version: it does not decrypt (the version is bound), so it
/// is read from Postgres instead, and the copy is repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_ciphertext_under_the_current_version_is_not_served() {
    let ns = unique("replay");
    let keys = Keyring::new(&[("k1", Keyring::derive_key(b"replay", "k1"))], "k1").expect("keys");
    let tier = Arc::new(tiered(&ns, "app-1", &redis_url(), &database_url()));
    trusted(&tier).await;
    let store = EncryptedStore::new(tier.clone(), keys);
    store
        .save("sess:r", b"cart: one item", Expect::Absent, TTL)
        .await
        .expect("v1");
    let mut raw = raw_redis().await;
    let key = format!("{ns}:sess:r");
    let old: Vec<u8> = redis::cmd("HGET")
        .arg(&key)
        .arg("d")
        .query_async(&mut raw)
        .await
        .expect("v1 ciphertext");
    store
        .save("sess:r", b"cart: two items", Expect::Version(1), TTL)
        .await
        .expect("v2");
    let _: i64 = redis::cmd("HSET")
        .arg(&key)
        .arg("d")
        .arg(&old)
        .query_async(&mut raw)
        .await
        .expect("replace the copy's data, keeping v and g");
    let read = store.load("sess:r").await.expect("load").expect("present");
    assert_eq!(
        (read.data.as_slice(), read.version),
        (&b"cart: two items"[..], 2)
    );
    assert_eq!(store.undecryptable(), 0, "the truth decrypted");
    let repaired: Vec<u8> = redis::cmd("HGET")
        .arg(&key)
        .arg("d")
        .query_async(&mut raw)
        .await
        .expect("hget");
    assert_ne!(repaired, old, "the copy was replaced");
}

/// A copy made from a read that began before a delete lands after the
/// delete's tombstone: it is refused, and the record stays deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_copy_cannot_bring_a_deleted_record_back() {
    let ns = unique("late");
    let store = tiered(&ns, "app-1", &redis_url(), &database_url());
    trusted(&store).await;
    store
        .save("sess:d", b"alive", Expect::Absent, TTL)
        .await
        .expect("v1");
    assert!(store.delete("sess:d").await.expect("delete"));
    let generation = store.coherence().snapshot().generation;
    let link = Arc::new(app::store::redis::RedisStore::link(&redis_url(), None).expect("link"));
    let copies = Copies::new(link, &format!("{ns}:"), Duration::from_secs(60));
    copies
        .write(&[CopyWrite::Live {
            key: "sess:d",
            data: b"alive",
            version: 1,
            ttl: TTL,
            generation,
            replace_same: false,
        }])
        .await
        .expect("the late copy's write");
    assert_eq!(store.load("sess:d").await.expect("load"), None);
    // Versions go on past the tombstone: a create continues the numbering.
    let again = store
        .save("sess:d", b"again", Expect::Absent, TTL)
        .await
        .expect("create");
    assert_eq!(again, 3);
}

/// A delete made while its instance is cut off from Redis leaves the copy
/// in Redis (never served: the instance covers); once Redis answers again
/// the missed tombstone is written, so an ended session's data does not
/// stay in Redis until its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_missed_while_cut_off_from_redis_is_written_once_redis_answers() {
    let ns = unique("missed");
    let proxy = Cuttable::to(&host_port(&redis_url())).await;
    let store = tiered(
        &ns,
        "app-1",
        &via(&redis_url(), proxy.addr),
        &database_url(),
    );
    trusted(&store).await;
    store
        .save("sess:m", b"alive", Expect::Absent, TTL)
        .await
        .expect("v1");
    let mut raw = raw_redis().await;
    let key = format!("{ns}:sess:m");
    let fields = |mut raw: redis::aio::MultiplexedConnection, key: String| async move {
        redis::cmd("HMGET")
            .arg(&key)
            .arg("v")
            .arg("d")
            .arg("t")
            .query_async::<(Option<u64>, Option<Vec<u8>>, Option<String>)>(&mut raw)
            .await
            .expect("HMGET")
    };
    assert_eq!(
        fields(raw.clone(), key.clone()).await,
        (Some(1), Some(b"alive".to_vec()), None),
        "the copy"
    );

    proxy.cut();
    assert!(
        store
            .delete("sess:m")
            .await
            .expect("a delete needs Postgres only")
    );
    assert_eq!(
        fields(raw.clone(), key.clone()).await,
        (Some(1), Some(b"alive".to_vec()), None),
        "Redis still holds the copy while the instance is cut off"
    );
    assert_eq!(store.missed_deletes(), (1, 0));
    let stats = store.coherence().stats();
    assert_eq!(stats.missed_deletes_waiting.load(Ordering::Relaxed), 1);

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Counted once Redis took it.
    while stats.missed_deletes_written.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the tombstone was never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fields(raw.clone(), key.clone()).await,
        (Some(2), None, Some("1".into())),
        "the tombstone, at the delete's version"
    );
    assert_eq!(store.missed_deletes(), (0, 0));
    assert_eq!(
        (
            stats.missed_deletes_waiting.load(Ordering::Relaxed),
            stats.missed_deletes_written.load(Ordering::Relaxed),
            stats.missed_deletes_dropped.load(Ordering::Relaxed),
        ),
        (0, 1, 0),
        "shown in the tier's metrics"
    );
    assert_eq!(store.load("sess:m").await.expect("load"), None);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .expect("PTTL");
    assert!(ttl > 0, "a tombstone expires: {ttl}");
}
