//! The orphan check's store probe on option4's real stores (Redis in front
//! of Postgres, child processes of the harness): a session whose Redis copy
//! outlived its logout is found in Redis and not in Postgres, a session that
//! ended cleanly (tombstones in both tiers) and one still signed in are not
//! found, and the probe leaves both stores exactly as they were.
//!
//! The surviving copy is made from outside the app: the copy is dumped from
//! Redis before the logout and restored after it (a delete that never
//! reached the cache tier). A read through the app's own store layer shows a
//! copy only when it trusts it, and repairs one it does not (a tombstone
//! over it); the probe reads raw. Also: SQLite (a persisted topology without
//! Postgres) read raw, read-only, its tombstones and expired rows left out.

use std::collections::{BTreeMap, HashMap, HashSet};

use harness::check::orphans::{EndedSession, Tier};
use harness::cpu::CpuMeter;
use harness::run::instance_urls;
use harness::sample::{Place, Sampler};
use harness::stage::stack::Stack;
use harness::store_probe::StoreProbe;
use sqlx::Connection;

use crate::common;
use crate::common::browser;

const COOKIE: &str = "app_session";

/// Everything under the run's namespace in Redis: each key's DUMP.
async fn redis_contents(url: &str, namespace: &str) -> BTreeMap<String, Vec<u8>> {
    let client = redis::Client::open(url).expect("redis url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys = common::redis_keys(&mut c, &format!("{namespace}:*"))
        .await
        .expect("keys");
    let mut out = BTreeMap::new();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut c)
            .await
            .expect("dump");
        out.insert(key, dump);
    }
    out
}

/// Every row of the app's tables, as text, in order.
async fn postgres_contents(url: &str) -> Vec<String> {
    let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
    let mut out = Vec::new();
    for (table, sql) in [
        ("kv_store", "SELECT t::text FROM kv_store t ORDER BY 1"),
        (
            "tier_coherence",
            "SELECT t::text FROM tier_coherence t ORDER BY 1",
        ),
        (
            "tier_degraded",
            "SELECT t::text FROM tier_degraded t ORDER BY 1",
        ),
        (
            "refresh_lease",
            "SELECT t::text FROM refresh_lease t ORDER BY 1",
        ),
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(&mut c)
            .await
            .expect("select");
        out.extend(rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    out
}

fn cookie(b: &contract::Browser, base: &str) -> String {
    b.cookie(base, COOKIE).expect("a session cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_copy_that_outlived_its_logout_is_found_in_redis_alone_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("dir");
    let stack: Stack = common::up("option4", 1, &dir, false).await;
    let base = stack.instances[0].url();
    let redis_url = stack.redis.as_ref().expect("redis").url();
    let database_url = stack.postgres.as_ref().expect("postgres").url();
    let ns = stack.namespace.clone();
    let keys = app::store::keys::StoreKeys::derive(stack.encryption_secret.as_bytes(), "k1", &[]);

    // Three browsers signed in, each with a token partition (a profile call).
    let (leaky, clean, staying) = (browser(), browser(), browser());
    for b in [&leaky, &clean, &staying] {
        b.sign_in(&base, "alice").await.expect("sign in");
        assert_eq!(b.profile(&base).await.expect("profile").status, 200);
    }
    let (leaky_sid, clean_sid, staying_sid) = (
        cookie(&leaky, &base),
        cookie(&clean, &base),
        cookie(&staying, &base),
    );

    // The leaky one's Redis copy, kept from before its logout and put back after.
    let redis = redis::Client::open(redis_url.as_str()).expect("redis url");
    let mut r = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let record_key = format!(
        "{ns}:{}",
        app::session::session_key(&keys.digest(&leaky_sid))
    );
    let dump: Vec<u8> = redis::cmd("DUMP")
        .arg(&record_key)
        .query_async(&mut r)
        .await
        .expect("dump");
    assert!(!dump.is_empty(), "option4 copies the session to Redis");
    for b in [&leaky, &clean] {
        assert_eq!(b.logout(&base).await.expect("logout").status, 200);
    }
    let _: () = redis::cmd("RESTORE")
        .arg(&record_key)
        .arg(0)
        .arg(&dump)
        .arg("REPLACE")
        .query_async(&mut r)
        .await
        .expect("restore");

    let before = (
        redis_contents(&redis_url, &ns).await,
        postgres_contents(&database_url).await,
    );
    // The logouts left tombstones in both tiers: the probe must tell them apart.
    assert!(
        before.1.iter().any(|row| row.contains(",t)")),
        "tombstone rows: {:?}",
        before.1
    );

    // The probe alone: Redis holds the leaky session's record; Postgres does not.
    let probe = StoreProbe {
        namespace: ns.clone(),
        redis_url: Some(redis_url.clone()),
        database_url: Some(database_url.clone()),
        sqlite_path: dir.path().join("none.db"),
    };
    let record_of = |sid: &str| app::session::session_key(&keys.digest(sid));
    let in_redis = probe
        .live_keys(Tier::Redis, &["sess:", "tc:"])
        .await
        .expect("redis read");
    let in_postgres = probe
        .live_keys(Tier::Postgres, &["sess:", "tc:"])
        .await
        .expect("postgres read");
    assert!(in_redis.contains(&record_of(&leaky_sid)), "{in_redis:?}");
    assert!(!in_postgres.contains(&record_of(&leaky_sid)));
    assert!(!in_redis.contains(&record_of(&clean_sid)));
    assert!(!in_postgres.contains(&record_of(&clean_sid)));
    assert!(in_redis.contains(&record_of(&staying_sid)));
    assert!(in_postgres.contains(&record_of(&staying_sid)));

    // The sampler's look after a run, as the harness makes it.
    let sampler = Sampler::new(Place {
        instances: instance_urls(&stack),
        redis_url: Some(redis_url.clone()),
        redis_cluster_url: None,
        database_url: Some(database_url.clone()),
        namespace: ns.clone(),
        topology: stack.app.topology().cloned(),
        pids: stack.instance_pids(),
        encryption_secret: stack.encryption_secret.clone().into_bytes(),
        sqlite_path: dir.path().join("none.db"),
        cpu: CpuMeter::of(&stack),
    });
    let ended: Vec<EndedSession> = [&leaky_sid, &clean_sid]
        .iter()
        .enumerate()
        .map(|(i, sid)| EndedSession {
            session: (*sid).clone(),
            sign_in: i,
            logout: i + 10,
        })
        .collect();
    let signed_in: HashSet<String> = ["alice".to_owned()].into();
    let leftovers = sampler
        .leftovers(&ended, &signed_in, &HashMap::new(), false)
        .await;
    assert_eq!(leftovers.unchecked, None);
    assert_eq!(leftovers.sessions.len(), 1, "{leftovers:?}");
    let left = &leftovers.sessions[0];
    assert_eq!(left.session, leaky_sid);
    assert_eq!(left.tiers.len(), 1, "{left:?}");
    assert_eq!(left.tiers[0].tier, Tier::Redis);
    assert!(left.tiers[0].session_record);
    assert!(
        !left.tiers[0].token_partition,
        "its token partition's copy was deleted and not put back"
    );

    let after = (
        redis_contents(&redis_url, &ns).await,
        postgres_contents(&database_url).await,
    );
    assert_eq!(before.0, after.0, "Redis unchanged by the probe");
    assert_eq!(before.1, after.1, "Postgres unchanged by the probe");
    drop(stack);
}

#[tokio::test]
async fn sqlite_is_read_raw_and_read_only_its_tombstones_and_expired_rows_left_out() {
    use app::store::sql::SqliteStore;
    use app::store::{Expect, Store};
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("app-store.db");
    let probe = StoreProbe {
        namespace: "run1".into(),
        redis_url: None,
        database_url: None,
        sqlite_path: path.clone(),
    };
    // No file yet: the app stored nothing.
    assert!(
        probe
            .live_keys(Tier::Sqlite, &["sess:"])
            .await
            .expect("no file")
            .is_empty()
    );
    assert!(!path.exists(), "the probe creates no file");

    let store = SqliteStore::open(&path, "run1").expect("sqlite");
    for key in [
        "sess:live",
        "sess:ended",
        "sess:expiring",
        "tc:live",
        "other:x",
    ] {
        let ttl = (key == "sess:expiring").then_some(Duration::from_millis(50));
        store
            .save(key, b"{}", Expect::Any, ttl)
            .await
            .expect("save");
    }
    assert!(store.delete("sess:ended").await.expect("delete"));
    let other = SqliteStore::open(&path, "run2").expect("sqlite");
    other
        .save("sess:elsewhere", b"{}", Expect::Any, None)
        .await
        .expect("save");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The file and its write-ahead log, as the app left them.
    let files = || {
        ["app-store.db", "app-store.db-wal"]
            .map(|f| std::fs::read(dir.path().join(f)).unwrap_or_default())
    };
    let before = files();
    let keys = probe
        .live_keys(Tier::Sqlite, &["sess:", "tc:"])
        .await
        .expect("read");
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        ["sess:live", "tc:live"],
        "tombstone, expired row, other prefix and other namespace left out"
    );
    let record = probe
        .live_record(Tier::Sqlite, "tc:live")
        .await
        .expect("read")
        .expect("live");
    assert_eq!((record.version, record.data.as_slice()), (1, &b"{}"[..]));
    assert_eq!(
        probe
            .live_record(Tier::Sqlite, "sess:ended")
            .await
            .expect("read"),
        None
    );
    assert!(files() == before, "the file and its log unchanged");
}
