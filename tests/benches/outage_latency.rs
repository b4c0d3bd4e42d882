//! Option4's `GET /profile` with Redis up, then frozen (SIGSTOP), on a
//! private Redis and the local Postgres: p50 and p99 of each phase.
//!
//! `cargo bench -p e2e-tests --bench outage_latency`; `BENCH_REQUESTS` sets
//! the sequential requests per phase (default 2000). The first request of
//! the outage waits out the store timeout (2 s) once; the rest fail over at
//! once, so the outage's p99 stays in the milliseconds.

use std::time::{Duration, Instant};

use app::topology::Topology;
use contract::TokenSource;
use e2e_tests::{InProcessStack, browser};
use harness::stage::services::redis::Redis;
use hdrhistogram::Histogram;
use mock_idp::IdpConfig;

async fn phase(browser: &contract::Browser, url: &str, requests: u64) -> Histogram<u64> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    for _ in 0..requests {
        let started = Instant::now();
        let answer = browser.profile(url).await.expect("answers");
        latency
            .record(started.elapsed().as_micros() as u64)
            .expect("in range");
        assert_eq!(
            answer.reply().map(|p| p.token_source),
            Some(TokenSource::Cache)
        );
    }
    latency
}

fn line(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<22} p50 {:>6} us  p99 {:>6} us  max {:>8} us  ({} requests)",
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.max(),
        h.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("dir");
    let mut redis = Redis::start_private(dir.path())
        .await
        .expect("private redis");
    let stack = InProcessStack::start_on(
        Topology::preset("option4").expect("preset"),
        IdpConfig::default(),
        1,
        app::default_session_settings(),
        redis.url(),
    )
    .await;
    let user = browser();
    user.sign_in(&stack.base(0), "bench")
        .await
        .expect("signs in");
    let url = stack.base(0);
    // Warm up (token cached, connections open).
    phase(&user, &url, 50).await;
    let normal = phase(&user, &url, requests).await;
    redis.pause().expect("pause");
    let outage = phase(&user, &url, requests).await;
    redis.resume().expect("resume");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = phase(&user, &url, requests).await;
    println!("option4 GET /profile, cached token, one browser, sequential:");
    line("Redis up", &normal);
    line("Redis paused", &outage);
    line("Redis back", &after);
}
