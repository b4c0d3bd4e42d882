//! The driver's own cost: requests per second against the app's cheapest
//! endpoint (`GET /healthz`) on one instance, side by side with `wrk` at the
//! same number of connections, and the driver's CPU seconds per 10,000
//! requests (on 2 cores the driver takes CPU from the app it measures).
//!
//! `cargo build --release --bins && cargo bench -p harness --bench driver_overhead`
//! (needs `wrk`: `apt-get install wrk`). `BENCH_SECS` (default 10) per run,
//! `BENCH_ROUNDS` (default 3) alternating rounds, `BENCH_CONNECTIONS` (default 16).
//! The floor: the driver reaches half of wrk's rate; the goal is 0.8.

mod common;
use common::{cpu_seconds, env_or};

use std::num::NonZeroUsize;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use app::topology::Topology;
use harness::history;
use harness::load::browser::{InstanceUrl, Shared, SharedSpec};
use harness::load::latency::Latencies;
use harness::model::app::AppUnderTest;
use harness::run_folder::RunFolder;
use harness::scenario::Scenario;
use harness::stage::stack::{Stack, StackSpec};

/// mimalloc: the driver allocates on every request (URLs, headers, history
/// events), and glibc's `malloc` took a tenth of its thread's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `wrk` against `url`: requests per second.
fn wrk(url: &str, connections: u64, secs: u64) -> f64 {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            url,
        ])
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output: {text}"))
}

/// The driver with `connections` browsers doing nothing but `/healthz`:
/// requests per second, CPU seconds per 10,000 requests, p99 in micros.
async fn driver(base: &str, idp: &str, connections: u64, secs: u64) -> (f64, f64, u64) {
    let scenario = Scenario::parse(
        &format!(
            "[browsers]\npeople = {connections}\n\n[load]\nduration = \"{secs}s\"\nthink_time = \"0ms\"\n\n[mix]\nhealth = 1\n"
        ),
        "driver-overhead.toml",
    )
    .expect("scenario");
    let (recorder, collector) = history::channel();
    let latencies = Arc::new(Latencies::new(0, vec!["app-1".into()]));
    let shared = Arc::new(
        Shared::new(SharedSpec {
            instances: vec![InstanceUrl {
                id: "app-1".into(),
                base: base.to_owned(),
            }],
            idp_base: idp.to_owned(),
            session_cookie: "app_session".into(),
            recorder,
            latencies: latencies.clone(),
            workload: scenario.workload,
            seed: 0,
            start: tokio::time::Instant::now(),
        })
        .expect("shared"),
    );
    let cpu_before = cpu_seconds();
    let before = latencies.snapshot();
    common::drive_and_collect(shared, collector, Duration::from_millis(250)).await;
    let cpu = cpu_seconds() - cpu_before;
    let after = latencies.snapshot();
    let count = |snapshot: &std::collections::BTreeMap<
        (String, String),
        harness::load::latency::Series,
    >| {
        snapshot
            .iter()
            .filter(|((kind, _), _)| kind == "health")
            .map(|(_, s)| s.raw.len())
            .sum::<u64>()
    };
    let health = count(&after) - count(&before);
    let p99 = after
        .iter()
        .find(|((kind, _), _)| kind == "health")
        .map_or(0, |(_, s)| s.raw.value_at_quantile(0.99));
    (
        health as f64 / secs as f64,
        cpu / (health.max(1) as f64 / 10_000.0),
        p99,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    service_kit::init_tracing();
    let secs = env_or("BENCH_SECS", 10);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let connections = env_or("BENCH_CONNECTIONS", 16);
    let folder = RunFolder::new(None).expect("run folder");
    let stack = Stack::up(&StackSpec {
        app: AppUnderTest::Reference(Topology::named("option1").expect("preset")),
        instances: NonZeroUsize::MIN,
        run_dir: folder.path().to_owned(),
        network_proxy: false,
        idp: Default::default(),
        session_idle_timeout: None,
        session_absolute_timeout: None,
    })
    .await
    .expect("stack up (cargo build --release --bins first)");
    let base = stack.instances[0].url();
    let url = format!("{base}/healthz");
    println!(
        "GET /healthz on one option1 instance, {connections} connections, {secs} s a run, {rounds} alternating rounds"
    );
    let (mut wrks, mut drivers) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let by_wrk = tokio::task::spawn_blocking({
            let url = url.clone();
            move || wrk(&url, connections, secs)
        })
        .await
        .expect("wrk");
        let (by_driver, cpu_per_10k, p99) =
            driver(&base, &stack.idp_url(), connections, secs).await;
        println!(
            "round {round}: wrk {by_wrk:>8.0} req/s   driver {by_driver:>8.0} req/s ({:.2} of wrk), {cpu_per_10k:.3} CPU s per 10,000 requests, p99 {:.2} ms",
            by_driver / by_wrk,
            p99 as f64 / 1e3
        );
        wrks.push(by_wrk);
        drivers.push(by_driver);
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(|a, b| a.total_cmp(b));
        values[values.len() / 2]
    };
    let (wrk_median, driver_median) = (median(&mut wrks), median(&mut drivers));
    let ratio = driver_median / wrk_median;
    println!(
        "median: wrk {wrk_median:.0} req/s, driver {driver_median:.0} req/s: {ratio:.2} of wrk (floor 0.5: {}; goal 0.8: {})",
        if ratio >= 0.5 { "met" } else { "NOT met" },
        if ratio >= 0.8 { "met" } else { "not met" }
    );
}
