//! The harness's own cost when it drives the seed's Node app
//! (`targets/express-msal`, option1, one instance), so a reader knows the
//! latencies it reports belong to the app:
//!
//! - **CPU share**: browsers run a mix of profile, data and cart requests
//!   for `BENCH_SECS` (default 20); the CPU seconds of the harness (this
//!   process: browsers, history, histograms), the Node instance and the
//!   mock IdP, and the harness's share of them all.
//! - **Latency added**: one signed-in browser's sequential `GET /profile`,
//!   timed as the driver times every request (goose user, contract browser
//!   with its cookie jar, whole body, history event, histogram), alternated
//!   with the same request sent by a bare hyper connection with the session
//!   cookie copied in by hand, timed around the call alone. The difference
//!   of the medians is what the driver adds to each latency it reports.
//!
//! `cargo build --release --bins && cargo bench -p harness --bench driver_cost_node`
//! (needs Node 20 and `npm ci` in targets/express-msal). `BENCH_ROUNDS`
//! (default 3) alternating rounds of `BENCH_LATENCY_SECS` (default 5) each.

mod common;
use common::{cpu_seconds, env_or};

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::history;
use harness::load::browser::{InstanceUrl, Shared, SharedSpec};
use harness::load::latency::Latencies;
use harness::model::latency::histogram;
use harness::run_folder::RunFolder;
use harness::scenario::{Scenario, target};
use harness::stage::stack::{Stack, StackSpec};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// The harness binary's allocator (see its main.rs), so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A child's user + system CPU seconds so far (`/proc/PID/stat`, all threads).
fn child_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: state is field 3,
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    (ticks(11) + ticks(12)) / per_second
}

/// Shared state of a load against the one instance.
fn shared(
    stack: &Stack,
    session_cookie: &str,
    scenario: &str,
) -> (Arc<Shared>, Arc<Latencies>, history::Collector) {
    let scenario = Scenario::parse(scenario, "driver-cost-node.toml").expect("scenario");
    let (recorder, collector) = history::channel();
    let latencies = Arc::new(Latencies::new(0, vec!["app-1".into()]));
    let mut shared = Shared::new(SharedSpec {
        instances: vec![InstanceUrl {
            id: "app-1".into(),
            base: stack.instances[0].url(),
        }],
        idp_base: stack.idp_browser_url(),
        session_cookie: session_cookie.to_owned(),
        recorder,
        latencies: latencies.clone(),
        workload: scenario.workload,
        seed: 1,
        start: tokio::time::Instant::now(),
    })
    .expect("shared");
    let ca = stack
        .idp_listeners
        .as_ref()
        .and_then(|l| l.ca_file())
        .expect("a launched target's IdP has a CA");
    shared.http = contract::HttpClient::trusting(ca).expect("trusts the IdP's CA");
    (Arc::new(shared), latencies, collector)
}

/// Requests of `kind` so far and their raw latency histogram.
fn series(latencies: &Latencies, kind: &str) -> hdrhistogram::Histogram<u64> {
    let mut all = histogram();
    for ((k, _), s) in latencies.snapshot() {
        if k == kind {
            let _ = all.add(&s.raw);
        }
    }
    all
}

/// [`bare_client`] on a single-threaded runtime of its own thread, as the
/// driver's load runs, so the two differ only in the code on the path.
fn bare(base: &str, cookie: &str, secs: u64) -> hdrhistogram::Histogram<u64> {
    let (base, cookie) = (base.to_owned(), cookie.to_owned());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(bare_client(&base, &cookie, secs))
    })
    .join()
    .expect("the bare client's thread")
}

/// `GET /profile` with `cookie`, sequentially for `secs` over one bare
/// hyper connection: the latency histogram, timed around each call only.
async fn bare_client(base: &str, cookie: &str, secs: u64) -> hdrhistogram::Histogram<u64> {
    let url = url::Url::parse(base).expect("base");
    let address = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    );
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut latencies = histogram();
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let request = Request::get(format!("{base}/profile"))
            .header("host", &address)
            .header("cookie", cookie)
            .body(Empty::<Bytes>::new())
            .expect("request");
        sender
            .ready()
            .await
            .expect("the connection takes a request");
        let sent = Instant::now();
        let response = sender.send_request(request).await.expect("answer");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let took = sent.elapsed().as_micros() as u64;
        assert!(
            status.is_success(),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        let _ = latencies.record(took.max(1));
    }
    latencies
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1e3)
}

/// `a - b` in milliseconds, signed.
fn diff_ms(a: u64, b: u64) -> String {
    format!("{:+.3} ms", (a as f64 - b as f64) / 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    service_kit::init_tracing();
    let secs = env_or("BENCH_SECS", 20);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let latency_secs = env_or("BENCH_LATENCY_SECS", 5);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../targets/express-msal/option1.toml");
    let app = target::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let session_cookie = app.contract().expect("a target").session_cookie.clone();
    let folder = RunFolder::new(None).expect("run folder");
    let stack = Stack::up(&StackSpec {
        app,
        instances: NonZeroUsize::MIN,
        run_dir: folder.path().to_owned(),
        network_proxy: false,
        idp: Default::default(),
        session_idle_timeout: None,
        session_absolute_timeout: None,
    })
    .await
    .expect("stack up (cargo build --release --bins; npm ci in targets/express-msal)");
    let processes: Vec<(String, u32)> = stack
        .processes()
        .into_iter()
        .map(|(name, pid)| (name.to_owned(), pid))
        .collect();
    let pid_of = |prefix: &str| {
        processes
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, pid)| *pid)
            .unwrap_or_else(|| panic!("no {prefix} among {processes:?}"))
    };
    let (node, idp) = (pid_of("app"), pid_of("mock-idp"));

    // CPU share under a mix of the app's requests.
    let people = 20;
    let mix = format!(
        "[browsers]\npeople = {people}\n\n[load]\nduration = \"{secs}s\"\nramp_up = \"1s\"\n\
         think_time = {{ min = \"5ms\", max = \"25ms\" }}\n\n[mix]\nprofile = 30\ndata = 20\ncart_write = 20\ncart_read = 15\n"
    );
    let (load, latencies, collector) = shared(&stack, &session_cookie, &mix);
    let before = (cpu_seconds(), child_cpu(node), child_cpu(idp));
    let started = Instant::now();
    common::drive_and_collect(load, collector, Duration::from_millis(250)).await;
    let wall = started.elapsed().as_secs_f64();
    let (harness_cpu, node_cpu, idp_cpu) = (
        cpu_seconds() - before.0,
        child_cpu(node) - before.1,
        child_cpu(idp) - before.2,
    );
    let (requests, errors, p99) = latencies.totals();
    let all = harness_cpu + node_cpu + idp_cpu;
    println!(
        "Express + MSAL Node option1, one instance, {people} browsers, {secs} s: {:.0} req/s, {errors} errors, p99 {}",
        requests as f64 / wall,
        ms(p99)
    );
    println!(
        "CPU: harness {harness_cpu:.2} s, node {node_cpu:.2} s, IdP {idp_cpu:.2} s: the harness used {:.0}% of the CPU the run took \
         ({:.3} CPU s per 10,000 requests; node {:.3})",
        100.0 * harness_cpu / all.max(f64::EPSILON),
        harness_cpu / (requests.max(1) as f64 / 10_000.0),
        node_cpu / (requests.max(1) as f64 / 10_000.0),
    );

    // Latency added: the driver's timing of /profile against a bare client's.
    let one = format!(
        "[browsers]\npeople = 1\n\n[load]\nduration = \"{latency_secs}s\"\nthink_time = \"0ms\"\n\n[mix]\nprofile = 1\n"
    );
    let signer = contract::Browser::new(
        &contract::HttpClient::trusting(
            stack
                .idp_listeners
                .as_ref()
                .and_then(|l| l.ca_file())
                .expect("CA"),
        )
        .expect("trusts"),
        Duration::from_secs(10),
    );
    let base = stack.instances[0].url();
    signer
        .sign_in(&base, "bare-client")
        .await
        .expect("signs in")
        .into_reply()
        .expect("signed in");
    let cookie = format!(
        "{session_cookie}={}",
        signer
            .cookie(&base, &session_cookie)
            .expect("a session cookie")
    );
    let (mut by_driver, mut by_bare) = (histogram(), histogram());
    for round in 1..=rounds {
        let (load, latencies, collector) = shared(&stack, &session_cookie, &one);
        common::drive_and_collect(load, collector, Duration::from_millis(250)).await;
        let driver = series(&latencies, "profile");
        let bare = tokio::task::block_in_place(|| bare(&base, &cookie, latency_secs));
        println!(
            "round {round}: /profile p50 driver {} ({} requests), bare client {} ({} requests): added {}",
            ms(driver.value_at_quantile(0.5)),
            driver.len(),
            ms(bare.value_at_quantile(0.5)),
            bare.len(),
            diff_ms(driver.value_at_quantile(0.5), bare.value_at_quantile(0.5))
        );
        let _ = by_driver.add(&driver);
        let _ = by_bare.add(&bare);
    }
    let (d50, b50) = (
        by_driver.value_at_quantile(0.5),
        by_bare.value_at_quantile(0.5),
    );
    println!(
        "all rounds: /profile p50 driver {} / bare {}, p99 driver {} / bare {}: the driver adds {} at the median ({:+.0}% of what it reports)",
        ms(d50),
        ms(b50),
        ms(by_driver.value_at_quantile(0.99)),
        ms(by_bare.value_at_quantile(0.99)),
        diff_ms(d50, b50),
        100.0 * (d50 as f64 - b50 as f64) / d50.max(1) as f64
    );
    // The stack's children go when it is dropped.
    drop(stack);
}
