//! The harness's driver and checker catch a broken app: the real app on
//! real stores (child processes), broken from outside by a saboteur task
//! that writes to a store behind the app's back while the load runs. No
//! switch in the app binary; the driver, history and checker are the ones
//! `harness bench` runs.
//!
//! - A Redis that loses deletes (a replica that missed the `DEL`, a
//!   failover to one that lags): each logged-out session's Redis copy is
//!   put back right after the logout. option4 trusts a copy of its current
//!   generation, so the old cookie, replayed, is answered as signed in:
//!   session-resurrected.
//! - A store that mixes records up: one session's row is written over
//!   another's in Postgres (option2 stores it in the clear, so the copy is
//!   readable as the other's). The victim's cart then shows another
//!   browser's items: cross-session-data.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use harness::check::{self, Findings, Kind, Settings};
use harness::history::{self, History};
use harness::load::browser::{Shared, SharedSpec};
use harness::load::latency::Latencies;
use harness::run::instance_urls;
use harness::scenario::Scenario;
use harness::stage::stack::Stack;

use crate::common;

/// The load on `stack`, with `mix`, through the harness's driver.
async fn drive(stack: &Stack, people: usize, mix: &str) -> (History, Findings) {
    let scenario = Scenario::parse(
        &format!(
            r#"
[browsers]
people = {people}

[load]
duration = "4s"
think_time = {{ min = "10ms", max = "40ms" }}

[mix]
{mix}
"#
        ),
        "broken.toml",
    )
    .expect("scenario");
    let (recorder, collector) = history::channel();
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let instances = instance_urls(stack);
    let shared = Arc::new(
        Shared::new(SharedSpec {
            instances: instances.clone(),
            idp_base: stack.idp_url(),
            session_cookie: "app_session".into(),
            recorder,
            latencies: Arc::new(Latencies::new(
                25_000,
                instances.iter().map(|i| i.id.clone()).collect(),
            )),
            workload: scenario.workload.clone(),
            seed: scenario.seed,
            start: tokio::time::Instant::now(),
        })
        .expect("shared"),
    );
    harness::load::drive(shared).await.expect("load runs");
    let history = collector.finish();
    let findings = check::check(
        &history,
        &Settings {
            idle_timeout: Duration::from_secs(1800),
            absolute_timeout: None,
            renewal_offset: Duration::from_secs(300),
            started_unix_ms,
            subjects: harness::run::subjects(people),
        },
    );
    (history, findings)
}

fn count(findings: &Findings, kind: Kind) -> usize {
    findings.anomalies.get(&kind).map_or(0, Vec::len)
}

/// Puts each session copy back after its delete: remembers every live copy
/// under `{ns}:sess:` (a hash with data `d`) and, when it turns into a
/// tombstone (`t`), restores it. Counts the copies put back.
async fn lose_deletes(url: String, ns: String, stop: Arc<AtomicBool>, restored: Arc<AtomicU64>) {
    let client = redis::Client::open(url).expect("redis url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut live: HashMap<String, Vec<u8>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let keys = common::redis_keys(&mut c, &format!("{ns}:sess:*"))
            .await
            .unwrap_or_default();
        for key in keys {
            let tombstone: bool = redis::cmd("HEXISTS")
                .arg(&key)
                .arg("t")
                .query_async(&mut c)
                .await
                .unwrap_or(false);
            if tombstone {
                if let Some(dump) = live.remove(&key) {
                    let put: redis::RedisResult<()> = redis::cmd("RESTORE")
                        .arg(&key)
                        .arg(0)
                        .arg(&dump)
                        .arg("REPLACE")
                        .query_async(&mut c)
                        .await;
                    if put.is_ok() {
                        restored.fetch_add(1, Ordering::Relaxed);
                    }
                }
            } else if let Ok(Some(dump)) = redis::cmd("DUMP")
                .arg(&key)
                .query_async::<Option<Vec<u8>>>(&mut c)
                .await
            {
                live.insert(key, dump);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_loses_deletes_is_caught_as_session_resurrected() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = common::up("option4", 1, &dir, false).await;
    let stop = Arc::new(AtomicBool::new(false));
    let restored = Arc::new(AtomicU64::new(0));
    let saboteur = tokio::spawn(lose_deletes(
        stack.redis.as_ref().expect("redis").url(),
        stack.namespace.clone(),
        stop.clone(),
        restored.clone(),
    ));
    // Relogins log out (and replay the old cookie 0.1 to 5 s later).
    let (history, findings) = drive(&stack, 6, "relogin = 4\ncart_write = 3\ncart_read = 3").await;
    stop.store(true, Ordering::Relaxed);
    saboteur.await.expect("saboteur");
    let restored = restored.load(Ordering::Relaxed);
    let replays = history
        .events
        .iter()
        .filter(|e| e.request == history::Request::Replay)
        .count();
    assert!(
        restored > 0 && replays > 0,
        "{restored} restored, {replays} replays"
    );
    let resurrected = count(&findings, Kind::SessionResurrected);
    assert!(
        resurrected > 0,
        "{restored} copies put back, {replays} replays: {:#?}",
        findings.anomalies
    );
    // Every finding is a replay answered 2xx after its logout.
    for anomaly in &findings.anomalies[&Kind::SessionResurrected] {
        let last = &history.events[*anomaly.evidence.last().expect("evidence")];
        assert_eq!(last.request, history::Request::Replay);
        assert!(last.outcome.ok(), "{anomaly:?}");
    }
    // The rest of option4 is untouched by a lost delete: nothing else.
    for kind in Kind::ALL {
        if kind != Kind::SessionResurrected {
            assert_eq!(
                count(&findings, kind),
                0,
                "{kind}: {:#?}",
                findings.anomalies.get(&kind)
            );
        }
    }
}

/// Now and then writes the session row with the most data (the fullest
/// cart) over another live session's row. Counts the rows overwritten.
async fn mix_up_records(url: String, ns: String, stop: Arc<AtomicBool>, mixed: Arc<AtomicU64>) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&url).await.expect("postgres");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while !stop.load(Ordering::Relaxed) {
        let done = sqlx::query(
            "WITH live AS (
                 SELECT key, data FROM kv_store
                 WHERE ns = $1 AND key LIKE 'sess:%' AND NOT deleted
             ), source AS (SELECT key, data FROM live ORDER BY length(data) DESC LIMIT 1),
             victim AS (
                 SELECT key FROM live WHERE key <> (SELECT key FROM source)
                 ORDER BY random() LIMIT 1
             )
             UPDATE kv_store SET data = (SELECT data FROM source)
             WHERE ns = $1 AND key = (SELECT key FROM victim)",
        )
        .bind(&ns)
        .execute(&mut c)
        .await;
        if let Ok(done) = done {
            mixed.fetch_add(done.rows_affected(), Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_mixes_records_up_is_caught_as_cross_session_data() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = common::up("option2", 1, &dir, false).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mixed = Arc::new(AtomicU64::new(0));
    let saboteur = tokio::spawn(mix_up_records(
        stack.postgres.as_ref().expect("postgres").url(),
        stack.namespace.clone(),
        stop.clone(),
        mixed.clone(),
    ));
    let (_history, findings) = drive(&stack, 6, "cart_write = 5\ncart_read = 5").await;
    stop.store(true, Ordering::Relaxed);
    saboteur.await.expect("saboteur");
    let mixed = mixed.load(Ordering::Relaxed);
    assert!(mixed > 0, "no row overwritten");
    let crossed = count(&findings, Kind::CrossSessionData);
    assert!(
        crossed > 0,
        "{mixed} rows overwritten: {:#?}",
        findings.anomalies
    );
    // Another browser's items: named as another user's (each browser is a
    // person of its own), and past the first eight a read names, unnamed.
    let facets: Vec<&str> = findings.anomalies[&Kind::CrossSessionData]
        .iter()
        .filter_map(|a| a.facet.as_deref())
        .collect();
    assert!(facets.contains(&check::foreign::OTHER_USER), "{facets:?}");
    assert!(
        facets
            .iter()
            .all(|f| [check::foreign::OTHER_USER, check::foreign::UNNAMED].contains(f)),
        "{facets:?}"
    );
    // Without the saboteur option2 shows none (race.rs and bench.rs run it
    // clean); resurrected sessions would be a different fault.
    assert_eq!(count(&findings, Kind::SessionResurrected), 0);
}
