//! The `postgres-crash` fault on a real private Postgres: SIGKILL in the
//! middle of acknowledged writes, reaped, started again on the same port and
//! data dir; every write it acknowledged is still there (synchronous commit).

use std::sync::Arc;
use std::time::Duration;

use app::store::sql::PostgresStore;
use app::store::{Expect, Store};
use harness::stage::services::postgres::Postgres;
use parking_lot::Mutex;

use crate::common;

async fn show(url: &str, sql: &'static str) -> String {
    use sqlx::{Connection, Row};
    let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
    let row = sqlx::query(sql)
        .fetch_one(&mut connection)
        .await
        .expect("show");
    row.try_get::<String, _>(0).expect("text")
}

/// Zombie processes whose parent is this test: a killed child not reaped.
fn my_zombies() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|stat| {
                    let Some((_, rest)) = stat.rsplit_once(") ") else {
                        return false;
                    };
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str())
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_postgres_is_reaped_restarted_on_its_data_and_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("dir");
    let mut postgres = Postgres::start_private(dir.path())
        .await
        .expect("private postgres");
    let url = postgres.url();
    assert_eq!(show(&url, "SHOW synchronous_commit").await, "on");
    let store = Arc::new(PostgresStore::connect(&url, "crash").expect("store"));
    store.ping().await.expect("up");

    for round in 0..2 {
        // Four writers write unique keys as fast as they can; the crash comes
        // while they are at it. A write counts only once acknowledged.
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..4 {
            let (store, acknowledged, stop) = (store.clone(), acknowledged.clone(), stop.clone());
            writers.spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("r{round}-w{writer}-{n}");
                    n += 1;
                    if store.save(&key, b"x", Expect::Absent, None).await.is_ok() {
                        acknowledged.lock().push(key);
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = postgres.process().expect("private").pid();
        postgres.kill_and_reap().await.expect("kill");
        assert!(postgres.has_exited());
        assert_eq!(my_zombies(), 0, "the killed postmaster was reaped");
        assert!(store.ping().await.is_err(), "down after the kill");
        postgres
            .start_again()
            .await
            .expect("starts on the same data dir");
        assert_eq!(postgres.url(), url, "same port");
        assert_ne!(postgres.process().expect("private").pid(), before);
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writers.join_all().await;

        let acknowledged = acknowledged.lock().clone();
        assert!(acknowledged.len() > 20, "{} writes", acknowledged.len());
        let mut lost = Vec::new();
        for key in &acknowledged {
            if store.load(key).await.expect("up again").is_none() {
                lost.push(key.clone());
            }
        }
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged writes lost: {lost:?}",
            lost.len(),
            acknowledged.len()
        );
    }
}

/// The same fault from a scenario's `[[faults]]`, against option4: while
/// Postgres is down a cart write is refused (503), the cart still reads
/// (from Redis); after the scheduled start every acknowledged item is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_postgres_crash_refuses_writes_keeps_reads_and_loses_nothing() {
    let scenario =
        harness::scenario::Scenario::from_file(&common::scenario_fixture("postgres-crash.toml"))
            .expect("parses");
    let option4 = app::topology::Topology::named("option4").expect("preset");
    scenario
        .check(&option4, std::num::NonZeroUsize::MIN)
        .expect("fits option4");
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = common::up("option4", 1, &dir, false).await;
    let base = stack.instances[0].url();
    let user = common::browser();
    common::sign_in(&user, &base).await;
    for i in 0..5 {
        let added = user
            .add_to_cart(&base, &format!("before-{i}"))
            .await
            .expect("answers");
        assert_eq!(added.status, 200);
    }
    let (crashed, step) = tokio::sync::oneshot::channel::<()>();
    let during = async {
        let _ = step.await;
        let write = user.add_to_cart(&base, "during").await.expect("answers");
        let read = user.cart(&base).await.expect("answers");
        (write.status, write.into_reply().err(), read)
    };
    let mut crashed = Some(crashed);
    let (timeline, (write_status, write_error, read)) = tokio::join!(
        harness::faults::run(
            &scenario.faults,
            &mut stack,
            tokio::time::Instant::now(),
            |_| {
                if let Some(crashed) = crashed.take() {
                    let _ = crashed.send(());
                }
            }
        ),
        during
    );
    let steps: Vec<(&str, Option<&String>)> = timeline
        .iter()
        .map(|s| (s.action.as_str(), s.error.as_ref()))
        .collect();
    assert_eq!(
        steps,
        [
            ("postgres-crash (down until started)", None),
            ("postgres-start", None)
        ]
    );
    assert_eq!(write_status, 503, "{write_error:?}");
    assert!(
        write_error.is_some_and(|e| e.contains("store_unavailable")),
        "a clean refusal"
    );
    assert_eq!(read.status, 200, "the cart reads from Redis");
    // Writes fail fast until the breaker's probe (every 250 ms) finds Postgres back.
    let mut after = user.add_to_cart(&base, "after").await.expect("answers");
    for _ in 0..40 {
        if after.status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = user.add_to_cart(&base, "after").await.expect("answers");
    }
    assert_eq!(after.status, 200, "writes work again");
    let items = after.into_reply().expect("cart").items;
    for i in 0..5 {
        assert!(items.contains(&format!("before-{i}")), "{items:?}");
    }
    assert!(
        !items.contains(&"during".to_owned()),
        "the refused write did not happen"
    );
}
