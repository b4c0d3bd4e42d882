//! How many browsers one harness holds: 2,000 and then 10,000 concurrent
//! browsers, each signed in with its own cookie jar, held for a minute, and
//! the harness's resident memory after each (targets: under 500 MiB for
//! 2,000, under 1 GiB for 10,000).
//!
//! `cargo build --release --bins && cargo bench -p harness --bench driver_scale`.
//! `BENCH_BROWSERS` (default `2000,10000`), `BENCH_HOLD_SECS` (default 60),
//! `BENCH_THINK_SECS` (default 5: each browser acts every 5 s or so, so the
//! app, on the same 2 cores, keeps up).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use app::topology::Topology;
use harness::history;
use harness::load::browser::{Shared, SharedSpec};
use harness::load::latency::Latencies;
use harness::model::app::AppUnderTest;
use harness::run_folder::RunFolder;
use harness::scenario::Scenario;
use harness::stage::stack::{Stack, StackSpec};

/// The harness binary's allocator (see its main.rs), so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// This process's resident and peak resident memory, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    service_kit::init_tracing();
    let hold: u64 = env_or("BENCH_HOLD_SECS", "60").parse().expect("seconds");
    let think: u64 = env_or("BENCH_THINK_SECS", "5").parse().expect("seconds");
    let sizes: Vec<usize> = env_or("BENCH_BROWSERS", "2000,10000")
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let folder = RunFolder::new(None).expect("run folder");
    let stack = Stack::up(&StackSpec {
        app: AppUnderTest::Reference(Topology::named("option1").expect("preset")),
        instances: NonZeroUsize::new(2).expect("2"),
        run_dir: folder.path().to_owned(),
        network_proxy: false,
        idp: Default::default(),
        session_idle_timeout: None,
        session_absolute_timeout: None,
    })
    .await
    .expect("stack up (cargo build --release --bins first)");
    let instances = harness::run::instance_urls(&stack);
    let (rss, _) = memory();
    println!("harness RSS before any browser: {rss:.0} MiB");
    for browsers in sizes {
        let ramp = (browsers / 400).max(5);
        let scenario = Scenario::parse(
            &format!(
                "[browsers]\npeople = {browsers}\n\n[load]\nramp_up = \"{ramp}s\"\nduration = \"{hold}s\"\n\
                 think_time = {{ mean = \"{think}s\", max = \"{}s\" }}\n\n[mix]\nprofile = 3\ncart_write = 1\ncart_read = 1\n",
                think * 4
            ),
            "driver-scale.toml",
        )
        .expect("scenario");
        let (recorder, mut collector) = history::channel();
        let latencies = Arc::new(Latencies::new(
            think * 1_000_000,
            instances.iter().map(|i| i.id.clone()).collect(),
        ));
        let shared = Arc::new(
            Shared::new(SharedSpec {
                instances: instances.clone(),
                idp_base: stack.idp_url(),
                session_cookie: "app_session".into(),
                recorder,
                latencies: latencies.clone(),
                workload: scenario.workload,
                seed: 0,
                start: tokio::time::Instant::now(),
            })
            .expect("shared"),
        );
        // The history is taken in as it grows and kept, as a real run keeps it.
        let watch = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                collector.drain();
            }
        });
        harness::load::drive_on_own_thread(shared)
            .await
            .expect("load");
        let (now, _) = memory();
        watch.abort();
        let (requests, errors, p99) = latencies.totals();
        println!(
            "{browsers:>6} browsers held {hold} s: {requests} requests ({errors} errors, p99 {:.1} ms); harness RSS at the end {now:.0} MiB, target {}: {}",
            p99 as f64 / 1e3,
            if browsers <= 2000 { "500 MiB" } else { "1 GiB" },
            if now < if browsers <= 2000 { 500.0 } else { 1024.0 } {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    let (_, peak) = memory();
    println!("harness peak RSS over the whole bench: {peak:.0} MiB");
}
