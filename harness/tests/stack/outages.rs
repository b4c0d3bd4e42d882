//! Option4 through store outages under load, on a real stack (private Redis
//! and Postgres, two app instances as child processes), driven by the
//! harness's browsers, judged by its checker, the outages counted with the
//! app's own metrics.
//!
//! Each run: 2 s of normal load, the outage, load to the end (10 s in all),
//! browsers hopping round-robin between the instances, so a write made on
//! one instance is read on the other.
//!
//! In the normal state option4 serves reads from Redis alone; these runs are
//! where a copy could be stale (a write acknowledged by an instance cut off
//! from Redis, a Redis that came back with older contents), and the checker
//! must find no stale read, lost update or session loss in any of them.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use app::topology::Topology;
use harness::check::{self, Kind, Settings};
use harness::history::{self, Event, History, Request};
use harness::load::browser::{Shared, SharedSpec};
use harness::load::latency::Latencies;
use harness::model::app::AppUnderTest;
use harness::model::ids::{InstanceId, StoreKind};
use harness::model::network::NetworkFaults;
use harness::scenario::Scenario;
use harness::scenario::faults::FaultAction;
use harness::stage::stack::{Stack, StackSpec};
use tokio::time::Instant;

const APP_1: InstanceId = InstanceId::from_index(0);

#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGSTOP for 5 s.
    RedisPaused,
    /// SIGKILL, down 5 s, started again empty.
    RedisKilled,
    /// app-1's path to Redis swallows everything for 5 s; app-2's is fine.
    RedisBlackholedFromApp1,
    /// SIGKILL mid-write, down 3 s, started again on its data.
    PostgresCrashed,
    /// Snapshot (SAVE) at 2 s, writes go on for 2 s, then a restart that
    /// loads the snapshot: every copy written since is back at an older
    /// version, under the generation readers trusted.
    RedisRolledBack,
    /// app-1's path to Postgres swallows everything for 5 s, while app-2
    /// goes on writing.
    PostgresCutOffFromApp1,
}

struct Run {
    history: History,
    /// When the outage began and ended, in the history's microseconds.
    window: (u64, u64),
    /// Each instance's `/metrics` after the run.
    metrics: Vec<(String, String)>,
}

fn scenario(relogin: u32) -> Scenario {
    Scenario::parse(
        &format!(
            r#"
seed = 4
[browsers]
people = 4
per_person = 2

[load]
duration = "10s"
ramp_up = "0s"
think_time = {{ min = "20ms", max = "60ms" }}
hopping = "round-robin"

[mix]
profile = 30
cart_write = 35
cart_read = 30
relogin = {relogin}
"#
        ),
        "outage.toml",
    )
    .expect("scenario")
}

async fn apply(stack: &mut Stack, action: FaultAction) {
    harness::faults::apply(stack, &action)
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
}

async fn inject(stack: &mut Stack, outage: Outage, start: Instant) -> (u64, u64) {
    tokio::time::sleep_until(start + Duration::from_secs(2)).await;
    let blackhole = NetworkFaults {
        blackhole: true,
        ..NetworkFaults::default()
    };
    match outage {
        Outage::RedisPaused => apply(stack, FaultAction::RedisPause).await,
        Outage::RedisKilled => stack.redis().expect("redis").kill().await.expect("kill"),
        Outage::RedisBlackholedFromApp1 => {
            apply(
                stack,
                FaultAction::Network {
                    store: StoreKind::Redis,
                    instances: vec![APP_1],
                    node: None,
                    set: blackhole,
                },
            )
            .await;
        }
        Outage::PostgresCrashed => {
            apply(stack, FaultAction::PostgresCrash { stay_down: true }).await;
        }
        Outage::RedisRolledBack => {
            apply(stack, FaultAction::RedisSnapshot).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            apply(stack, FaultAction::RedisRestart).await;
        }
        Outage::PostgresCutOffFromApp1 => {
            apply(
                stack,
                FaultAction::Network {
                    store: StoreKind::Postgres,
                    instances: vec![APP_1],
                    node: None,
                    set: blackhole,
                },
            )
            .await;
        }
    }
    // Counted from when the fault is in place.
    let began = start.elapsed().as_micros() as u64;
    let lasts = match outage {
        Outage::PostgresCrashed => Duration::from_secs(3),
        // The restart is the outage; the load goes on after it.
        Outage::RedisRolledBack => Duration::ZERO,
        _ => Duration::from_secs(5),
    };
    tokio::time::sleep(lasts).await;
    let ended = start.elapsed().as_micros() as u64;
    match outage {
        Outage::RedisPaused => apply(stack, FaultAction::RedisResume).await,
        Outage::RedisKilled => stack
            .redis()
            .expect("redis")
            .start_again()
            .await
            .expect("started again, empty"),
        Outage::RedisBlackholedFromApp1 => {
            apply(
                stack,
                FaultAction::NetworkClear {
                    store: StoreKind::Redis,
                    instances: vec![APP_1],
                    node: None,
                },
            )
            .await;
        }
        Outage::PostgresCrashed => apply(stack, FaultAction::PostgresStart).await,
        Outage::RedisRolledBack => {}
        Outage::PostgresCutOffFromApp1 => {
            apply(
                stack,
                FaultAction::NetworkClear {
                    store: StoreKind::Postgres,
                    instances: vec![APP_1],
                    node: None,
                },
            )
            .await;
        }
    }
    (began, ended)
}

async fn run(outage: Outage, relogin: u32) -> Run {
    let dir = tempfile::tempdir().expect("dir");
    let scenario = scenario(relogin);
    let mut stack = Stack::up(&StackSpec {
        app: AppUnderTest::Reference(Topology::named("option4").expect("preset")),
        instances: NonZeroUsize::new(2).expect("two"),
        run_dir: dir.path().to_owned(),
        network_proxy: matches!(
            outage,
            Outage::RedisBlackholedFromApp1 | Outage::PostgresCutOffFromApp1
        ),
        idp: scenario.workload.idp.clone(),
        session_idle_timeout: scenario.workload.session_idle_timeout,
        session_absolute_timeout: scenario.workload.session_absolute_timeout,
    })
    .await
    .expect("stack up (app and mock-idp built beside the test)");
    let instances = harness::run::instance_urls(&stack);
    let (recorder, collector) = history::channel();
    let start = Instant::now();
    let shared = Arc::new(
        Shared::new(SharedSpec {
            instances: instances.clone(),
            idp_base: stack.idp_url(),
            session_cookie: "app_session".into(),
            recorder,
            latencies: Arc::new(Latencies::new(
                40_000,
                instances.iter().map(|i| i.id.clone()).collect(),
            )),
            workload: scenario.workload.clone(),
            seed: scenario.seed,
            start,
        })
        .expect("shared"),
    );
    let faults = tokio::spawn(async move {
        let window = inject(&mut stack, outage, start).await;
        (stack, window)
    });
    harness::load::drive(shared).await.expect("load runs");
    let (stack, window) = faults.await.expect("faults ran");
    let client = reqwest::Client::new();
    let mut metrics = Vec::new();
    for instance in harness::run::instance_urls(&stack) {
        let text = client
            .get(format!("{}/metrics", instance.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metrics.push((instance.id.clone(), text));
    }
    drop(stack);
    Run {
        history: collector.finish(),
        window,
        metrics,
    }
}

/// A counter of `/metrics` for one store (`redis`, `postgres`).
fn counter(metrics: &str, name: &str, store: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("store=\"{store}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

impl Run {
    fn findings(&self) -> check::Findings {
        check::check(
            &self.history,
            &Settings {
                idle_timeout: Duration::from_secs(1800),
                absolute_timeout: None,
                renewal_offset: Duration::from_secs(300),
                started_unix_ms: 0,
                subjects: harness::run::subjects(4),
            },
        )
    }

    /// The browsers' own requests made wholly inside the outage (a replay
    /// of a logged-out cookie is refused by design: no part of a session).
    fn during(&self) -> impl Iterator<Item = &Event> {
        let (began, ended) = self.window;
        self.history
            .events
            .iter()
            .filter(move |e| e.request.in_session() && e.invoked >= began && e.completed <= ended)
    }

    fn assert_consistent(&self) {
        let findings = self.findings();
        for kind in [
            Kind::StaleRead,
            Kind::LostUpdate,
            Kind::SessionLoss,
            Kind::CrossSessionToken,
            Kind::CrossUserToken,
        ] {
            let found = findings.anomalies.get(&kind).map_or(0, Vec::len);
            assert_eq!(
                found,
                0,
                "{kind}: {:?}",
                findings.anomalies.get(&kind).and_then(|a| a.first())
            );
        }
        assert!(
            self.history.events.len() > 100,
            "{} requests",
            self.history.events.len()
        );
    }

    fn print_breakers(&self) {
        for (instance, metrics) in &self.metrics {
            for store in ["redis", "postgres"] {
                println!(
                    "{instance} {store}: outages {} timeouts {} fast failures {} cut short {}",
                    counter(metrics, "app_store_outages_total", store),
                    counter(metrics, "app_store_timeouts_total", store),
                    counter(metrics, "app_store_fast_failures_total", store),
                    counter(metrics, "app_store_cut_short_total", store),
                );
            }
        }
    }
}

/// Redis outages: every request is answered and none fails (reads from
/// Postgres, writes and sign-ins to Postgres), nothing stale or lost after.
fn assert_redis_outage_survived(run: &Run, noticed_by: &[&str], frozen: bool) {
    run.print_breakers();
    run.assert_consistent();
    let failed: Vec<&Event> = run
        .history
        .events
        .iter()
        .filter(|e| e.request.in_session() && !e.outcome.ok() && e.outcome.status() != Some(302))
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed, first {:?}",
        failed.len(),
        failed.first()
    );
    let during: Vec<&Event> = run.during().collect();
    let count = |what: fn(&Request) -> bool| {
        during
            .iter()
            .filter(|e| what(&e.request) && e.outcome.ok())
            .count()
    };
    // Enough happened during the outage to mean something (a loaded
    // machine makes fewer requests; none of them may fail).
    let (reads, writes) = (
        count(|r| matches!(r, Request::CartRead | Request::Profile)),
        count(|r| matches!(r, Request::CartWrite { .. })),
    );
    println!("during the outage: {reads} reads, {writes} cart writes, all answered");
    assert!(reads >= 3, "{reads} reads during the outage");
    assert!(writes >= 3, "{writes} cart writes during the outage");
    assert!(
        count(|r| matches!(r, Request::SignIn)) > 0,
        "sign-ins during the outage"
    );
    for (instance, metrics) in &run.metrics {
        let outages = counter(metrics, "app_store_outages_total", "redis");
        let timeouts = counter(metrics, "app_store_timeouts_total", "redis");
        if noticed_by.contains(&instance.as_str()) {
            assert_eq!(outages, 1, "{instance}: one outage noticed");
            // Only requests in flight when Redis went quiet wait for the
            // timeout (together, once); every later one fails over at once.
            assert!(
                timeouts <= 8,
                "{instance}: {timeouts} timeouts, at most one per browser in flight"
            );
            if frozen {
                assert!(
                    timeouts >= 1,
                    "{instance}: a frozen store is noticed by a timeout"
                );
            } else {
                assert_eq!(
                    timeouts, 0,
                    "{instance}: a refused connection costs no timeout"
                );
            }
            assert!(counter(metrics, "app_store_fast_failures_total", "redis") > 20);
        } else {
            assert_eq!((outages, timeouts), (0, 0), "{instance} never lost Redis");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_rides_out_a_paused_redis() {
    let run = run(Outage::RedisPaused, 4).await;
    assert_redis_outage_survived(&run, &["app-1", "app-2"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_rides_out_a_redis_killed_and_restarted_empty() {
    let run = run(Outage::RedisKilled, 4).await;
    assert_redis_outage_survived(&run, &["app-1", "app-2"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_rides_out_redis_cut_off_from_one_instance_only() {
    let run = run(Outage::RedisBlackholedFromApp1, 4).await;
    assert_redis_outage_survived(&run, &["app-1"], true);
}

/// Postgres crashed under load: writes fail cleanly (503) while it is down;
/// reads are served from Redis only while an instance's view of the
/// coherence record is younger than `trust_for` (1 s), then fail cleanly
/// too (no instance can know what another acknowledged meanwhile); after
/// the restart no write acknowledged before, during or after is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_survives_a_postgres_crash_without_losing_an_acknowledged_write() {
    let run = run(Outage::PostgresCrashed, 0).await;
    run.print_breakers();
    run.assert_consistent();
    let during: Vec<&Event> = run.during().collect();
    let writes: Vec<&Event> = during
        .iter()
        .copied()
        .filter(|e| matches!(e.request, Request::CartWrite { .. }))
        .collect();
    assert!(
        writes.len() > 10,
        "{} writes during the outage",
        writes.len()
    );
    for write in &writes {
        assert_eq!(write.outcome.status(), Some(503), "{write:?}");
        assert_eq!(
            write.outcome.error(),
            Some("store_unavailable"),
            "{write:?}"
        );
    }
    let reads: Vec<&Event> = during
        .iter()
        .copied()
        .filter(|e| matches!(e.request, Request::CartRead | Request::Profile))
        .collect();
    assert!(reads.len() > 10, "{} reads during the outage", reads.len());
    for read in &reads {
        assert!(
            read.outcome.ok() || read.outcome.error() == Some("store_unavailable"),
            "{read:?}"
        );
    }
    // A read is served unchecked only within trust_for of the last
    // successful poll (polls every 100 ms), so none that started well after
    // the crash; the first moments' reads may be.
    let (crashed, _) = run.window;
    let late_served: Vec<&&Event> = reads
        .iter()
        .filter(|e| e.outcome.ok() && e.invoked > crashed + 1_500_000)
        .collect();
    assert!(
        late_served.is_empty(),
        "{} reads served more than 1.5 s into the outage, first {:?}",
        late_served.len(),
        late_served.first()
    );
    let acknowledged_after = run
        .history
        .events
        .iter()
        .filter(|e| {
            e.invoked > run.window.1
                && matches!(e.request, Request::CartWrite { .. })
                && e.outcome.ok()
        })
        .count();
    assert!(
        acknowledged_after > 10,
        "writes work again after the restart"
    );
}

/// Redis restarted from a snapshot of its own taken two seconds earlier:
/// its copies are older than Postgres, under a generation readers trusted.
/// The new server process (another run_id) is not trusted until adopted,
/// which moves the generation on: nothing stale is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_rides_out_a_redis_restarted_from_an_older_snapshot() {
    let run = run(Outage::RedisRolledBack, 4).await;
    run.print_breakers();
    run.assert_consistent();
    for (instance, metrics) in &run.metrics {
        assert!(
            counter_of(metrics, "app_coherence_events_total", "event=\"adopted\"") >= 1
                || counter_of(metrics, "app_coherence_generation", "") > 2,
            "{instance}: the restarted server was adopted"
        );
    }
}

/// app-1 cannot reach Postgres for 5 s while app-2 goes on writing: app-1's
/// requests fail cleanly (its reads within a second: its view ages out),
/// app-2's are served, and nothing app-2 acknowledged is read stale anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_rides_out_postgres_cut_off_from_one_instance() {
    let run = run(Outage::PostgresCutOffFromApp1, 0).await;
    run.print_breakers();
    run.assert_consistent();
    let during: Vec<&Event> = run.during().collect();
    let answered_by = |id: &str, ok: bool| {
        during
            .iter()
            .filter(|e| e.outcome.ok() == ok && e.sent_to == id)
            .count()
    };
    assert!(answered_by("app-2", true) > 10, "app-2 served");
    assert_eq!(answered_by("app-2", false), 0, "app-2 failed nothing");
    assert!(answered_by("app-1", false) > 0, "app-1 failed its requests");
    let (began, _) = run.window;
    let late_app1_reads = during
        .iter()
        .filter(|e| {
            e.outcome.ok()
                && e.sent_to == "app-1"
                && matches!(e.request, Request::CartRead | Request::Profile)
                && e.invoked > began + 1_500_000
        })
        .count();
    assert_eq!(
        late_app1_reads, 0,
        "app-1 served no unchecked read after its view aged"
    );
}

/// A `/metrics` value whose labels contain `label`.
fn counter_of(metrics: &str, name: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `scenarios/option4-overlaps.toml` as a user runs it (`harness bench
/// option4 --scenario ...`): 40 browsers hopping at random over three
/// instances through overlapping faults (app-1 cut off from Redis then a
/// Postgres crash, Redis restarted empty then a Postgres crash, app-2 cut off
/// from Postgres, Redis restarted from its own older snapshot). Zero
/// anomalies of every kind, and every fault applied.
#[test]
fn option4_overlapping_faults_scenario_shows_no_anomaly() {
    let out = tempfile::tempdir().expect("out dir");
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/option4-overlaps.toml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["bench", "option4", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(out.path())
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("harness runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "{output:?}");
    let file = std::fs::read_dir(out.path())
        .expect("out")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a results file");
    let results = harness::results::Results::read(&file).expect("results read");
    assert!(results.complete, "{:?}", results.stopped_because);
    let faults = &results.timelines[0].faults;
    let scheduled = faults.iter().filter(|f| f.unscheduled.is_none()).count();
    assert!(scheduled >= 7, "every fault ran: {faults:#?}");
    assert!(
        faults
            .iter()
            .all(|f| f.error.is_none() && f.unscheduled.is_none()),
        "a fault failed to apply, or an instance exited: {faults:#?}"
    );
    // A refresh whose rotated tokens could not be written to Postgres
    // (a crash, a partition) is handed to the next lease holder through
    // Redis: no refresh token is presented twice either.
    let found: Vec<String> = results
        .anomalies
        .iter()
        .filter(|r| r.count > 0)
        .map(|r| format!("{}: {} {:?}", r.kind, r.count, r.facets))
        .collect();
    assert!(
        found.is_empty(),
        "anomalies under overlapping faults: {found:?}"
    );
    let (requests, _, _) = results.overall().expect("histograms decode");
    assert!(requests > 1_000, "the load ran: {requests} requests");
}
