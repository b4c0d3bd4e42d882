//! One conformance suite, run against every store backend and wrapper on real servers.
//!
//! Postgres and Redis come from `DATABASE_URL` / `REDIS_URL`, or the local
//! defaults (`postgres://postgres@127.0.0.1:5432/postgres`, `redis://127.0.0.1:6379`).
//! Each test uses its own namespace, so tests run in parallel on one server.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{database_url, redis_url, unique};
use app::store::encrypted::{EncryptedStore, Keyring};
use app::store::memory::MemoryStore;
use app::store::redis::RedisStore;
use app::store::sql::{PostgresStore, SqliteStore};
use app::store::{Expect, Store, StoreError};

fn keyring() -> Keyring {
    Keyring::new(&[("k1", Keyring::derive_key(b"conformance", "k1"))], "k1").expect("keyring")
}

/// Every backend and composition the app can be configured with.
mod backends {
    use super::*;

    pub fn memory() -> Arc<dyn Store> {
        Arc::new(MemoryStore::new())
    }

    pub fn sqlite() -> Arc<dyn Store> {
        // The directory lives as long as the test process; each store has its own file.
        let dir = Box::leak(Box::new(tempfile::tempdir().expect("temp dir")));
        Arc::new(SqliteStore::open(&dir.path().join("store.db"), &unique("ns")).expect("sqlite"))
    }

    pub fn postgres() -> Arc<dyn Store> {
        Arc::new(PostgresStore::connect(&database_url(), &unique("ns")).expect("postgres"))
    }

    pub fn redis() -> Arc<dyn Store> {
        Arc::new(RedisStore::connect(&redis_url(), &format!("{}:", unique("conf"))).expect("redis"))
    }

    pub fn redis_postgres() -> Arc<dyn Store> {
        Arc::new(crate::common::tiered(
            &unique("tier"),
            "app-1",
            &redis_url(),
            &database_url(),
        ))
    }

    pub fn encrypted_memory() -> Arc<dyn Store> {
        Arc::new(EncryptedStore::new(memory(), keyring()))
    }

    pub fn encrypted_redis_postgres() -> Arc<dyn Store> {
        Arc::new(EncryptedStore::new(redis_postgres(), keyring()))
    }
}

/// The checks, each a function of a fresh store.
mod checks {
    use super::*;

    pub async fn load_save_delete(store: Arc<dyn Store>) {
        assert_eq!(store.load("a").await.expect("load"), None);
        assert_eq!(
            store
                .save("a", b"one", Expect::Any, None)
                .await
                .expect("save"),
            1
        );
        let record = store.load("a").await.expect("load").expect("present");
        assert_eq!(
            (record.data.as_slice(), record.version, record.ttl),
            (&b"one"[..], 1, None)
        );
        assert_eq!(
            store
                .save("a", b"two", Expect::Any, None)
                .await
                .expect("save"),
            2
        );
        assert_eq!(
            store.load("a").await.expect("load").expect("present").data,
            b"two"
        );
        assert!(store.delete("a").await.expect("delete"));
        assert!(!store.delete("a").await.expect("delete again"));
        assert_eq!(store.load("a").await.expect("load"), None);
    }

    pub async fn load_many_keeps_order_and_gaps(store: Arc<dyn Store>) {
        store
            .save("x", b"1", Expect::Any, None)
            .await
            .expect("save");
        store
            .save("z", b"3", Expect::Any, None)
            .await
            .expect("save");
        let loaded = store.load_many(&["z", "y", "x"]).await.expect("load_many");
        let data: Vec<Option<Vec<u8>>> = loaded.into_iter().map(|r| r.map(|r| r.data)).collect();
        assert_eq!(data, vec![Some(b"3".to_vec()), None, Some(b"1".to_vec())]);
    }

    pub async fn expiry(store: Arc<dyn Store>) {
        store
            .save(
                "short",
                b"s",
                Expect::Any,
                Some(Duration::from_millis(1500)),
            )
            .await
            .expect("save");
        store
            .save("long", b"l", Expect::Any, Some(Duration::from_secs(60)))
            .await
            .expect("save");
        let ttl = store
            .load("long")
            .await
            .expect("load")
            .expect("present")
            .ttl
            .expect("ttl");
        assert!(
            ttl > Duration::from_secs(50) && ttl <= Duration::from_secs(60),
            "{ttl:?}"
        );
        assert!(store.load("short").await.expect("load").is_some());
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert_eq!(store.load("short").await.expect("load"), None, "expired");
        assert!(store.load("long").await.expect("load").is_some());
        // An expired key counts as absent for a create.
        store
            .save("short", b"again", Expect::Absent, None)
            .await
            .expect("re-create after expiry");
        assert_eq!(store.size().await.expect("size").entries, 2);
    }

    /// A new TTL without a write: the version stays, the key lives on past
    /// its old expiry; absent keys are not created; versions agree with loads.
    pub async fn expire_renews_without_a_write(store: Arc<dyn Store>) {
        let version = store
            .save(
                "renewed",
                b"r",
                Expect::Any,
                // Long enough that a loaded machine still reaches `expire` in time.
                Some(Duration::from_millis(1500)),
            )
            .await
            .expect("save");
        assert!(
            store
                .expire("renewed", Duration::from_secs(60))
                .await
                .expect("expire")
        );
        assert!(
            !store
                .expire("never", Duration::from_secs(60))
                .await
                .expect("expire")
        );
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let record = store.load("renewed").await.expect("load").expect("renewed");
        assert_eq!(record.version, version, "no version bump");
        assert!(
            record.ttl.is_some_and(|t| t > Duration::from_secs(50)),
            "{record:?}"
        );
        assert_eq!(store.load("never").await.expect("load"), None);
        assert_eq!(
            store
                .versions(&["renewed", "never"])
                .await
                .expect("versions"),
            vec![Some(version), None]
        );
    }

    pub async fn version_conflicts(store: Arc<dyn Store>) {
        assert_eq!(
            store
                .save("k", b"1", Expect::Absent, None)
                .await
                .expect("create"),
            1
        );
        assert!(matches!(
            store.save("k", b"x", Expect::Absent, None).await,
            Err(StoreError::Conflict { current: Some(1) })
        ));
        assert!(matches!(
            store.save("k", b"x", Expect::Version(7), None).await,
            Err(StoreError::Conflict { current: Some(1) })
        ));
        assert!(matches!(
            store.save("missing", b"x", Expect::Version(1), None).await,
            Err(StoreError::Conflict { current: None })
        ));
        assert_eq!(
            store
                .save("k", b"2", Expect::Version(1), None)
                .await
                .expect("cas"),
            2
        );
        assert_eq!(
            store.load("k").await.expect("load").expect("present").data,
            b"2",
            "conflicts wrote nothing"
        );
    }

    pub async fn replication_writes_only_newer_versions(store: Arc<dyn Store>) {
        assert!(
            store
                .save_if_newer("r", b"v5", 5, None)
                .await
                .expect("first")
        );
        assert!(
            !store
                .save_if_newer("r", b"v4", 4, None)
                .await
                .expect("older")
        );
        assert!(
            !store
                .save_if_newer("r", b"v5 again", 5, None)
                .await
                .expect("same")
        );
        let record = store.load("r").await.expect("load").expect("present");
        assert_eq!((record.data, record.version), (b"v5".to_vec(), 5));
        assert!(
            store
                .save_if_newer("r", b"v9", 9, None)
                .await
                .expect("newer")
        );
        assert_eq!(
            store
                .save("r", b"v10", Expect::Version(9), None)
                .await
                .expect("cas on replicated"),
            10
        );
    }

    pub async fn large_records(store: Arc<dyn Store>) {
        let big: Vec<u8> = (0..1_048_576u32).map(|i| (i * 31 % 251) as u8).collect();
        store
            .save("big", &big, Expect::Any, None)
            .await
            .expect("save 1 MiB");
        assert_eq!(
            store
                .load("big")
                .await
                .expect("load")
                .expect("present")
                .data,
            big
        );
        let size = store.size().await.expect("size");
        assert_eq!(size.entries, 1);
        assert!(size.bytes >= big.len() as u64, "{size:?}");
    }

    /// Writers that read, modify and compare-and-set, retrying on conflict,
    /// never lose an acknowledged write.
    pub async fn concurrent_writers(store: Arc<dyn Store>) {
        store
            .save("counter", b"", Expect::Absent, None)
            .await
            .expect("create");
        let (writers, per_writer) = (8, 10);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..per_writer {
                    loop {
                        let current = store.load("counter").await.expect("load").expect("present");
                        let mut items = current.data.clone();
                        items.extend_from_slice(format!("{w}.{i};").as_bytes());
                        match store
                            .save("counter", &items, Expect::Version(current.version), None)
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer");
        }
        let record = store.load("counter").await.expect("load").expect("present");
        let text = String::from_utf8(record.data).expect("utf8");
        assert_eq!(
            text.split(';').filter(|s| !s.is_empty()).count(),
            writers * per_writer
        );
        assert_eq!(record.version, 1 + (writers * per_writer) as u64);
    }
}

/// Generates one test per check for a backend.
macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn load_save_delete() {
                checks::load_save_delete(backends::$backend()).await;
            }
            #[tokio::test]
            async fn load_many_keeps_order_and_gaps() {
                checks::load_many_keeps_order_and_gaps(backends::$backend()).await;
            }
            #[tokio::test]
            async fn expiry() {
                checks::expiry(backends::$backend()).await;
            }
            #[tokio::test]
            async fn expire_renews_without_a_write() {
                checks::expire_renews_without_a_write(backends::$backend()).await;
            }
            #[tokio::test]
            async fn version_conflicts() {
                checks::version_conflicts(backends::$backend()).await;
            }
            #[tokio::test]
            async fn replication_writes_only_newer_versions() {
                checks::replication_writes_only_newer_versions(backends::$backend()).await;
            }
            #[tokio::test]
            async fn large_records() {
                checks::large_records(backends::$backend()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers() {
                checks::concurrent_writers(backends::$backend()).await;
            }
        }
    };
}

conformance!(memory);
conformance!(sqlite);
conformance!(postgres);
conformance!(redis);
conformance!(redis_postgres);
conformance!(encrypted_memory);
conformance!(encrypted_redis_postgres);
