//! Time from `harness up --topology option4 --instances 3` starting to every
//! component ready (its "ready" line), and to everything torn down after Ctrl-C.
//! Target: at most 3 s once the Postgres template exists.
//!
//! Needs release builds of `app` and `mock-idp` beside it:
//! `cargo build --release --bins && cargo bench -p harness --bench bring_up`
//! (or `just bench-up`). `BENCH_RUNS` sets the number of measured runs (default 5).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const TARGET: Duration = Duration::from_secs(3);

struct Run {
    ready: Duration,
    reported: String,
    teardown: Duration,
}

fn bring_up_once() -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["up", "--topology", "option4", "--instances", "3"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("harness starts");
    let stdout = child.stdout.take().expect("piped");
    let mut reported = String::new();
    let mut ready = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout");
        if line.starts_with("topology ") {
            reported = line.clone();
        }
        if line.starts_with("ready") {
            ready = Some(started.elapsed());
            break;
        }
    }
    let Some(ready) = ready else {
        let status = child.wait().expect("exits");
        panic!(
            "harness exited ({status}) before it was ready; release builds of app and \
             mock-idp are needed beside it: cargo build --release --bins"
        );
    };
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let stopping = Instant::now();
    kill(pid, Signal::SIGINT).expect("SIGINT");
    let status = child.wait().expect("exits");
    assert!(status.success(), "clean exit after Ctrl-C: {status}");
    Run {
        ready,
        reported,
        teardown: stopping.elapsed(),
    }
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    // The first run may build the Postgres template (initdb); it is reported, not counted.
    let first = bring_up_once();
    println!(
        "warm-up: ready in {} ms ({}), torn down in {} ms",
        first.ready.as_millis(),
        first.reported,
        first.teardown.as_millis()
    );
    let mut ready = Vec::with_capacity(runs);
    for i in 1..=runs {
        let run = bring_up_once();
        println!(
            "run {i}: command start to every component ready {} ms ({}); torn down in {} ms",
            run.ready.as_millis(),
            run.reported,
            run.teardown.as_millis()
        );
        ready.push(run.ready);
    }
    ready.sort();
    let median = ready[ready.len() / 2];
    let worst = ready[ready.len() - 1];
    println!(
        "bring-up option4 x 3: min {} ms, median {} ms, max {} ms over {runs} runs; target {} ms: {}",
        ready[0].as_millis(),
        median.as_millis(),
        worst.as_millis(),
        TARGET.as_millis(),
        if worst <= TARGET { "met" } else { "MISSED" }
    );
}
