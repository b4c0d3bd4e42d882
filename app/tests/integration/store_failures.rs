//! What stores do when their server is down, or a ciphertext is tampered with
//! (the Redis + Postgres tier's failures are in `tiered.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::store::encrypted::{EncryptedStore, Keyring};
use app::store::memory::MemoryStore;
use app::store::redis::RedisStore;
use app::store::sql::PostgresStore;
use app::store::{Expect, Store, StoreError};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
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
