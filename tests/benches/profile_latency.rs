//! Latency and throughput of `GET /profile` with a cached token and of
//! `POST /cart`, per option, on loopback Redis and Postgres, beside a Redis
//! GET round trip measured in the same run; each option's store round trips
//! per request kind, counted by its breakers; and each option's sign-in p50.
//!
//! `cargo bench -p e2e-tests --bench profile_latency`. `BENCH_CLUSTER=1`
//! adds option4 on a private Redis Cluster (`option4-cluster`, three
//! masters and three replicas from the installed `redis-server`) as a fifth
//! column. `BENCH_REQUESTS` sets
//! the sequential requests per option (default 2000), `BENCH_SECS` the
//! seconds of the concurrent phase per option (default 3, taken as
//! one-second slices with the options in turn, as the sequential phase
//! interleaves its requests), `BENCH_CONCURRENCY` its browsers (default
//! 16), `BENCH_SIGN_INS` the sign-ins per option (default 200). The
//! targets: option4's `/profile` p50 exceeds option1's by at most one Redis
//! round trip, and its throughput is at least option3's and at least 0.6 of
//! option1's.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use app::topology::Topology;
use contract::{Browser, TokenSource};
use e2e_tests::{InProcessStack, redis_url, sign_in};
use harness::stage::services::redis_cluster::RedisCluster;
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
    stack: InProcessStack,
    /// The instance's base URL.
    url: String,
    browsers: Vec<Browser>,
    latency: Histogram<u64>,
    /// Each sequential `/profile`'s microseconds, in order (for the run's
    /// slices: see [`slice_overheads`]).
    samples: Vec<u64>,
    cart_latency: Histogram<u64>,
    /// Redis and Postgres round trips per request kind, in that order.
    trips: Vec<(&'static str, (f64, f64))>,
    /// The private cluster (and its folder) an `option4-cluster` subject runs on.
    _cluster: Option<(RedisCluster, tempfile::TempDir)>,
}

async fn subject(option: &'static str, browsers: usize) -> Subject {
    let (stack, cluster) = if option == Topology::CLUSTER_PRESET {
        let dir = tempfile::tempdir().expect("dir");
        let cluster = RedisCluster::start_private(dir.path())
            .await
            .expect("a private Redis Cluster");
        let stack = InProcessStack::start_on(
            Topology::preset(option).expect("preset"),
            mock_idp::IdpConfig::default(),
            1,
            app::default_session_settings(),
            cluster.url(),
        )
        .await;
        (stack, Some((cluster, dir)))
    } else {
        (InProcessStack::start(option, 1).await, None)
    };
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
        stack,
        url,
        browsers: signed_in,
        latency: histogram(),
        samples: Vec::new(),
        cart_latency: histogram(),
        trips: Vec::new(),
        _cluster: cluster,
    }
}

/// Redis and Postgres round trips the subject's instance has made so far
/// (every Redis pipeline and every Postgres query passes a breaker).
fn round_trips(subject: &Subject) -> (u64, u64) {
    let instance = &subject.stack.instances[0];
    let count = |kind: &str| {
        instance
            .app
            .breakers
            .iter()
            .filter(|b| b.store_kind() == kind)
            .map(|b| b.stats().round_trips.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    (count("redis"), count("postgres"))
}

/// One `POST /cart`, spread over the subject's browsers so no cart grows
/// past `requests / browsers` items (a write rewrites the whole cart).
async fn timed_cart_write(subject: &Subject, round: u64) -> u64 {
    let browser = &subject.browsers[round as usize % subject.browsers.len()];
    let started = Instant::now();
    let answer = browser
        .add_to_cart(&subject.url, &format!("i{round}"))
        .await
        .expect("answers");
    let elapsed = started.elapsed().as_micros() as u64;
    assert_eq!(
        answer.status, 200,
        "{}: {:?}",
        subject.option, answer.outcome
    );
    elapsed
}

/// Round trips per request of `n` sequential requests of each kind.
async fn trips_per_kind(subject: &mut Subject, n: u64) {
    let mut trips = Vec::new();
    for kind in ["GET /profile", "GET /cart", "POST /cart", "sign-in"] {
        let before = round_trips(subject);
        for i in 0..n {
            match kind {
                "GET /profile" => {
                    timed_profile(subject).await;
                }
                "GET /cart" => {
                    let page = subject.browsers[0].cart(&subject.url).await.expect("cart");
                    assert_eq!(page.status, 200);
                }
                "sign-in" => {
                    sign_in(&subject.stack, 0, &format!("trips-{i}")).await;
                }
                _ => {
                    timed_cart_write(subject, 1_000_000 + i).await;
                }
            }
        }
        let after = round_trips(subject);
        let per = |a: u64, b: u64| (a - b) as f64 / n as f64;
        trips.push((kind, (per(after.0, before.0), per(after.1, before.1))));
    }
    subject.trips = trips;
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

/// Every browser of one option in a closed loop for `slice`: the requests
/// done and the time they took.
async fn closed_loop(subject: &Subject, slice: Duration) -> (u64, Duration) {
    let started = Instant::now();
    let deadline = started + slice;
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
    (total, started.elapsed())
}

/// Each option's requests per second with every browser in a closed loop,
/// taken in one-second slices, the options in turn, so machine noise
/// (another tenant's burst) hits all alike rather than one option's phase.
async fn throughputs(subjects: &[Subject], secs: u64) -> Vec<f64> {
    let mut done = vec![(0u64, Duration::ZERO); subjects.len()];
    for _ in 0..secs.max(1) {
        for (subject, done) in subjects.iter().zip(&mut done) {
            let (requests, took) = closed_loop(subject, Duration::from_secs(1)).await;
            done.0 += requests;
            done.1 += took;
        }
    }
    done.iter()
        .map(|(requests, took)| *requests as f64 / took.as_secs_f64())
        .collect()
}

/// Each option's sign-in latency over `n` sign-ins of new users, the options
/// in turn.
async fn sign_in_latencies(subjects: &[Subject], n: u64) -> Vec<Histogram<u64>> {
    let mut latencies: Vec<Histogram<u64>> = subjects.iter().map(|_| histogram()).collect();
    for i in 0..n {
        for (subject, latency) in subjects.iter().zip(&mut latencies) {
            let started = Instant::now();
            sign_in(&subject.stack, 0, &format!("sign-in-{i}")).await;
            latency
                .record(started.elapsed().as_micros() as u64)
                .expect("in range");
        }
    }
    latencies
}

/// Option4's overhead over option1 in Redis round trips, computed in each
/// tenth of the sequential rounds from that tenth's own p50s, sorted: how
/// far the verdict moves within one run (this machine's noise, or a phase
/// of it), which one p50 over the whole run hides.
fn slice_overheads(option1: &[u64], option4: &[u64], redis: &[u64]) -> Vec<f64> {
    fn p50(samples: &[u64]) -> f64 {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied().unwrap_or(0) as f64
    }
    let size = (redis.len() / 10).max(1);
    let mut overheads: Vec<f64> = option1
        .chunks(size)
        .zip(option4.chunks(size))
        .zip(redis.chunks(size))
        .filter(|((one, _), _)| one.len() == size)
        .map(|((one, four), get)| (p50(four) - p50(one)) / p50(get).max(1.0))
        .collect();
    overheads.sort_by(f64::total_cmp);
    overheads
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
         per option for {secs} s, in one-second slices taken in turn"
    );
    let mut subjects = Vec::new();
    let cluster = std::env::var("BENCH_CLUSTER").is_ok_and(|v| v == "1");
    let cluster = cluster.then_some(Topology::CLUSTER_PRESET);
    for option in ["option1", "option2", "option3", "option4"]
        .into_iter()
        .chain(cluster)
    {
        subjects.push(subject(option, concurrency).await);
    }
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut redis_latency = histogram();
    let mut redis_samples = Vec::new();
    for _ in 0..requests {
        let micros = redis_get(&mut redis).await;
        redis_latency.record(micros).expect("in range");
        redis_samples.push(micros);
        for subject in &mut subjects {
            let micros = timed_profile(subject).await;
            subject.latency.record(micros).expect("in range");
            subject.samples.push(micros);
        }
    }
    for round in 0..requests {
        for subject in &mut subjects {
            let micros = timed_cart_write(subject, round).await;
            subject.cart_latency.record(micros).expect("in range");
        }
    }
    let redis_p50 = redis_latency.value_at_quantile(0.50);
    println!(
        "Redis GET round trip  p50 {redis_p50:>6} us  p99 {:>6} us",
        redis_latency.value_at_quantile(0.99)
    );
    let rates = throughputs(&subjects, secs).await;
    // After the timed phases: each sign-in adds a user (to option2's one
    // blob, read by every request).
    for subject in &mut subjects {
        trips_per_kind(subject, 50).await;
    }
    let sign_ins = sign_in_latencies(&subjects, env_or("BENCH_SIGN_INS", 200)).await;
    for (subject, rate) in subjects.iter().zip(&rates) {
        println!(
            "{}  /profile p50 {:>6} us  p99 {:>6} us  throughput {rate:>7.0} req/s;  POST /cart p50 {:>6} us  p99 {:>6} us",
            subject.option,
            subject.latency.value_at_quantile(0.50),
            subject.latency.value_at_quantile(0.99),
            subject.cart_latency.value_at_quantile(0.50),
            subject.cart_latency.value_at_quantile(0.99),
        );
    }
    println!(
        "sign-in (the whole flow to the home page, IdP included) p50, sequential, interleaved: {}",
        subjects
            .iter()
            .zip(&sign_ins)
            .map(|(subject, h)| format!("{} {} us", subject.option, h.value_at_quantile(0.50)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "store round trips per request (Redis, Postgres), 50 sequential requests of each kind:"
    );
    for subject in &subjects {
        let kinds: Vec<String> = subject
            .trips
            .iter()
            .map(|(kind, (redis, postgres))| format!("{kind} ({redis:.2}, {postgres:.2})"))
            .collect();
        println!("  {}: {}", subject.option, kinds.join("; "));
    }
    // Overheads in Redis round trips: what a request costs beyond option1's.
    let in_trips = |us: i64| us as f64 / redis_p50.max(1) as f64;
    let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.50) as i64;
    for subject in &subjects[1..] {
        println!(
            "{} overhead over option1: /profile {:+} us ({:+.2} Redis round trips), POST /cart {:+} us ({:+.2})",
            subject.option,
            p50(&subject.latency) - p50(&subjects[0].latency),
            in_trips(p50(&subject.latency) - p50(&subjects[0].latency)),
            p50(&subject.cart_latency) - p50(&subjects[0].cart_latency),
            in_trips(p50(&subject.cart_latency) - p50(&subjects[0].cart_latency)),
        );
    }
    let overhead = in_trips(p50(&subjects[3].latency) - p50(&subjects[0].latency));
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "option4 /profile overhead {overhead:.2} Redis round trips; budget 1.0: {}",
        met(overhead <= 1.0)
    );
    let slices = slice_overheads(&subjects[0].samples, &subjects[3].samples, &redis_samples);
    if let (Some(low), Some(high)) = (slices.first(), slices.last()) {
        println!(
            "  the same overhead in each tenth of the sequential rounds (its own p50s): \
             lowest {low:.2}, median {:.2}, highest {high:.2} Redis round trips",
            slices[slices.len() / 2]
        );
    }
    println!(
        "option4 throughput {:.0} req/s: at least option3's ({:.0}): {}; at least 0.6 of option1's ({:.0}): {}",
        rates[3],
        rates[2],
        met(rates[3] >= rates[2]),
        0.6 * rates[0],
        met(rates[3] >= 0.6 * rates[0]),
    );
}
