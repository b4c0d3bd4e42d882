//! What the store wrappers do when a tier is flushed or down, or a ciphertext is tampered with.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::store::encrypted::{EncryptedStore, Keyring};
use app::store::memory::MemoryStore;
use app::store::redis::RedisStore;
use app::store::sql::PostgresStore;
use app::store::tiered::TieredStore;
use app::store::{Expect, Store, StoreError};
use common::{database_url, redis_url, unique};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn a_flushed_cache_reads_through_and_is_repopulated() {
    let prefix = format!("{}:", unique("flush"));
    let cache = Arc::new(RedisStore::connect(&redis_url(), &prefix).expect("redis"));
    let durable =
        Arc::new(PostgresStore::connect(&database_url(), &unique("ns")).expect("postgres"));
    let tiered = TieredStore::new(cache.clone(), durable.clone());
    tiered
        .save(
            "sess:1",
            b"cart",
            Expect::Absent,
            Some(Duration::from_secs(60)),
        )
        .await
        .expect("save");
    assert!(
        cache.load("sess:1").await.expect("cache").is_some(),
        "written through to the cache"
    );

    // What FLUSHALL does to our keys, without touching other tests' keys.
    let client = redis::Client::open(redis_url()).expect("client");
    let mut raw = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{prefix}sess:1"))
        .query_async(&mut raw)
        .await
        .expect("del");

    let record = tiered
        .load("sess:1")
        .await
        .expect("load")
        .expect("survives the flush");
    assert_eq!((record.data.as_slice(), record.version), (&b"cart"[..], 1));
    let recached = cache
        .load("sess:1")
        .await
        .expect("cache")
        .expect("repopulated");
    assert_eq!(recached.version, 1);
    assert!(
        recached.ttl.is_some_and(|t| t <= Duration::from_secs(60)),
        "TTL carried over"
    );
}

#[tokio::test]
async fn a_cached_copy_older_than_the_durable_tier_is_never_served() {
    let cache: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let durable: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let tiered = TieredStore::new(cache.clone(), durable.clone());
    tiered
        .save("k", b"v1", Expect::Absent, None)
        .await
        .expect("v1");
    // Another writer got v2 into the durable tier (the cache was out of its
    // reach); this cache still says v1.
    durable
        .save("k", b"v2", Expect::Version(1), None)
        .await
        .expect("v2");
    let fresh = tiered.load("k").await.expect("load").expect("present");
    assert_eq!(
        (fresh.data.as_slice(), fresh.version),
        (&b"v2"[..], 2),
        "no stale hit"
    );
    assert_eq!(
        cache
            .load("k")
            .await
            .expect("cache")
            .expect("repaired")
            .version,
        2,
        "the copy was repaired"
    );
    assert!(matches!(
        tiered.save("k", b"v2'", Expect::Version(1), None).await,
        Err(StoreError::Conflict { current: Some(2) })
    ));
    // Deleted in the durable tier only: the leftover copy reads as absent.
    durable.delete("k").await.expect("delete");
    assert_eq!(tiered.load("k").await.expect("load"), None);
}

#[tokio::test]
async fn with_the_cache_down_reads_and_writes_use_the_durable_tier() {
    let durable: Arc<dyn Store> =
        Arc::new(PostgresStore::connect(&database_url(), &unique("ns")).expect("postgres"));
    durable
        .save("k", b"kept", Expect::Any, None)
        .await
        .expect("seed");
    let down = Arc::new(
        RedisStore::connect(&format!("redis://127.0.0.1:{}", closed_port()), "x:").expect("lazy"),
    );
    let tiered = TieredStore::new(down, durable.clone());
    assert_eq!(
        tiered
            .load("k")
            .await
            .expect("degraded read")
            .expect("present")
            .data,
        b"kept"
    );
    let version = tiered
        .save("k", b"new", Expect::Version(1), None)
        .await
        .expect("a write needs only the durable tier");
    assert_eq!(version, 2);
    assert_eq!(
        durable
            .load("k")
            .await
            .expect("load")
            .expect("present")
            .data,
        b"new"
    );
    assert!(tiered.delete("k").await.expect("delete too"));
}

#[tokio::test]
async fn a_database_that_is_down_is_an_error_not_a_hang_or_a_panic() {
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    let store = PostgresStore::connect(&url, "ns").expect("lazy connect succeeds");
    let started = Instant::now();
    let result = store.load("k").await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let redis =
        RedisStore::connect(&format!("redis://127.0.0.1:{}", closed_port()), "x:").expect("lazy");
    assert!(matches!(
        redis.load("k").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        PostgresStore::connect("mysql://nope", "ns"),
        Err(StoreError::Config(_))
    ));
}

#[tokio::test]
async fn tampered_or_foreign_ciphertexts_read_as_counted_misses() {
    let inner = Arc::new(MemoryStore::new());
    let keys = |secret: &[u8]| {
        Keyring::new(&[("k1", Keyring::derive_key(secret, "k1"))], "k1").expect("keyring")
    };
    let store = EncryptedStore::new(inner.clone(), keys(b"right"));
    store
        .save("tc:a", b"refresh-token-xyz", Expect::Any, None)
        .await
        .expect("save");
    let sealed = inner.load("tc:a").await.expect("load").expect("present");
    assert!(
        !sealed.data.windows(5).any(|w| w == b"token"),
        "nothing readable at rest"
    );

    let mut tampered = sealed.data.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x40;
    inner
        .save("tc:a", &tampered, Expect::Any, None)
        .await
        .expect("tamper");
    assert_eq!(store.load("tc:a").await.expect("no error, a miss"), None);
    inner
        .save("tc:b", &sealed.data, Expect::Any, None)
        .await
        .expect("move");
    assert_eq!(
        store.load("tc:b").await.expect("no error"),
        None,
        "bound to its key"
    );
    inner
        .save("tc:c", b"", Expect::Any, None)
        .await
        .expect("empty");
    assert_eq!(store.load("tc:c").await.expect("no error"), None);
    assert_eq!(store.undecryptable(), 3);

    let other = EncryptedStore::new(inner.clone(), keys(b"wrong"));
    store
        .save("tc:d", b"x", Expect::Any, None)
        .await
        .expect("save");
    assert_eq!(other.load("tc:d").await.expect("no error"), None);
    assert_eq!(other.undecryptable(), 1);
}

#[tokio::test]
async fn with_the_durable_tier_down_writes_fail_and_leave_the_cached_copy_readable() {
    let prefix = format!("{}:", unique("pgdown"));
    let cache: Arc<dyn Store> =
        Arc::new(RedisStore::connect(&redis_url(), &prefix).expect("redis"));
    let down: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(
            &format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port()),
            "ns",
        )
        .expect("lazy"),
    );
    // What an earlier write through both tiers left in the cache.
    cache
        .save_if_newer("k", b"cached", 3, Some(Duration::from_secs(60)))
        .await
        .expect("seed");
    let tiered = TieredStore::new(cache.clone(), down);
    for (what, write) in [
        (
            "save",
            tiered
                .save("k", b"new", Expect::Version(3), None)
                .await
                .map(drop),
        ),
        ("delete", tiered.delete("k").await.map(drop)),
    ] {
        assert!(
            matches!(write, Err(StoreError::Unavailable(_))),
            "{what}: {write:?}"
        );
    }
    let record = tiered
        .load("k")
        .await
        .expect("served from the cache")
        .expect("kept");
    assert_eq!(
        (record.data.as_slice(), record.version),
        (&b"cached"[..], 3)
    );
}
