//! Latency and throughput of `GET /profile` with a cached token, per option, on loopback
//! Redis and Postgres, beside a Redis GET round trip measured in the same run.
//!
//! `cargo bench -p e2e-tests --bench profile_latency`. `BENCH_REQUESTS` sets
//! the sequential requests per option (default 2000), `BENCH_SECS` the
//! seconds of the concurrent phase (default 3), `BENCH_CONCURRENCY` its
//! browsers (default 16). The target: option4's p50 exceeds option1's by at
//! most two Redis round trips.

use std::time::{Duration, Instant};

use contract::{Browser, TokenSource};
use e2e_tests::{InProcessStack, redis_url, sign_in};
use hdrhistogram::Histogram;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// One option's stack with signed-in browsers.
struct Subject {
    option: &'static str,
    _stack: InProcessStack,
    /// The instance's base URL.
    url: String,
    browsers: Vec<Browser>,
    latency: Histogram<u64>,
}

async fn subject(option: &'static str, browsers: usize) -> Subject {
    let stack = InProcessStack::start(option, 1).await;
    let url = stack.base(0);
    let mut signed_in = Vec::new();
    for i in 0..browsers {
        let browser = sign_in(&stack, 0, &format!("bench-{i}")).await;
        let answer = browser.profile(&url).await.expect("answers");
        assert_eq!(answer.status, 200, "{option}: {:?}", answer.outcome);
        signed_in.push(browser);
    }
    Subject {
        option,
        _stack: stack,
        url,
        browsers: signed_in,
        latency: histogram(),
    }
}

async fn timed_profile(subject: &Subject) -> u64 {
    let started = Instant::now();
    let answer = subject.browsers[0]
        .profile(&subject.url)
        .await
        .expect("answers");
    let elapsed = started.elapsed().as_micros() as u64;
    assert_eq!(
        answer.reply().map(|p| p.token_source),
        Some(TokenSource::Cache),
        "{}",
        subject.option
    );
    elapsed
}

/// Every browser of one option in a closed loop: requests per second.
async fn throughput(subject: &Subject, secs: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for browser in &subject.browsers {
        let browser = browser.clone();
        let url = format!("{}/profile", subject.url);
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let page = browser.get(&url).await.expect("answers");
                assert_eq!(page.status, 200);
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("browser");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn redis_get(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let started = Instant::now();
    let _: Option<String> = redis::cmd("GET")
        .arg("bench:absent")
        .query_async(connection)
        .await
        .expect("GET");
    started.elapsed().as_micros() as u64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests = env_or("BENCH_REQUESTS", 2000);
    let secs = env_or("BENCH_SECS", 3);
    let concurrency = env_or("BENCH_CONCURRENCY", 16) as usize;
    println!(
        "GET /profile with a cached token: {requests} rounds of one sequential request per option \
         and one Redis GET, interleaved so machine noise hits all alike; then {concurrency} browsers \
         per option for {secs} s"
    );
    let mut subjects = Vec::new();
    for option in ["option1", "option2", "option3", "option4"] {
        subjects.push(subject(option, concurrency).await);
    }
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut redis_latency = histogram();
    for _ in 0..requests {
        redis_latency
            .record(redis_get(&mut redis).await)
            .expect("in range");
        for subject in &mut subjects {
            let micros = timed_profile(subject).await;
            subject.latency.record(micros).expect("in range");
        }
    }
    let redis_p50 = redis_latency.value_at_quantile(0.50);
    println!(
        "Redis GET round trip  p50 {redis_p50:>6} us  p99 {:>6} us",
        redis_latency.value_at_quantile(0.99)
    );
    for subject in &subjects {
        let rate = throughput(subject, secs).await;
        println!(
            "{}               p50 {:>6} us  p99 {:>6} us  throughput {rate:>7.0} req/s",
            subject.option,
            subject.latency.value_at_quantile(0.50),
            subject.latency.value_at_quantile(0.99),
        );
    }
    let overhead = subjects[3].latency.value_at_quantile(0.50) as i64
        - subjects[0].latency.value_at_quantile(0.50) as i64;
    let budget = 2 * redis_p50 as i64;
    println!(
        "option4 p50 overhead over option1: {overhead} us; budget (two Redis round trips): {budget} us: {}",
        if overhead <= budget { "met" } else { "NOT met" }
    );
}
