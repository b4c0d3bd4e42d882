//! `harness bench` end to end on real services: the driver, the checker and
//! the results file, as a user runs them. Every results file written here
//! is validated against `reports/schema.json`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::check::Kind;
use harness::history_file;
use harness::results::{self, Results};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common;
use crate::common::assert_valid_results;

/// `fixtures/scenarios/bench-restart.toml` (two instances, an instance restart at 3 s)
/// with `extra` faults after it, as `dir/NAME.toml`: the run's files take the name.
fn scenario(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let base =
        std::fs::read_to_string(common::scenario_fixture("bench-restart.toml")).expect("fixture");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, base + extra).expect("write");
    path
}

fn bench(option: &str, scenario: &Path, out: &Path) -> (std::process::Output, Vec<PathBuf>) {
    bench_with(option, scenario, out, &[])
}

fn bench_with(
    option: &str,
    scenario: &Path,
    out: &Path,
    extra: &[&str],
) -> (std::process::Output, Vec<PathBuf>) {
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["bench", option, "--scenario"])
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("harness runs");
    (output, json_files(out))
}

/// The results files in `out` (the report is written beside them).
fn json_files(out: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(out)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn option1_loses_sessions_at_an_instance_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let file = scenario(dir.path(), "restart", "");
    let out = dir.path().join("out");
    let (output, files) = bench_with("option1", &file, &out, &["--history"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        files.len(),
        1,
        "one results file (the history is not *.json): {files:?}"
    );
    assert_valid_results(&files[0]);
    let results = Results::read(&files[0]).expect("reads");
    assert!(results.complete);
    assert_eq!(results.topology.name, "option1");
    let losses = results
        .anomalies
        .iter()
        .find(|a| a.kind == Kind::SessionLoss)
        .expect("reported");
    assert!(losses.count > 0, "{stdout}");
    // Each example shows the events that prove it: the sign-in, and the 401.
    let example = &losses.examples[0];
    assert!(example.events.len() >= 2, "{example:?}");
    assert!(
        example
            .events
            .last()
            .is_some_and(|e| e.outcome.status() == Some(401))
    );
    assert!(
        stdout.contains("option1") && stdout.contains("loss"),
        "{stdout}"
    );
    // The report of the run, beside the results, and its path said last.
    let report = files[0].with_extension("html");
    assert!(
        stdout.contains(&format!("report: {}", report.display())),
        "{stdout}"
    );
    let page = std::fs::read_to_string(&report).expect("report written");
    assert!(page.contains("data-chart=\"latency-distribution\""));
    // The reference round trips were measured beside the load.
    let healthz = results.reference("healthz").expect("healthz measured");
    assert!(healthz.count > 20, "{healthz:?}");

    // --history: every request behind the counts, beside the results.
    let history_path = history_file::beside(&files[0]);
    assert!(
        stdout.contains(&format!("history: {}", history_path.display())),
        "{stdout}"
    );
    let history = history_file::read(&history_path).expect("history reads");
    let requests: u64 = results.requests.iter().map(|r| r.count).sum();
    assert_eq!(
        history.events.len() as u64,
        requests,
        "one event per request counted"
    );
    assert_eq!(history.faults.len(), 1, "the restart: {:?}", history.faults);

    // `harness analyze` judges the saved history again: the very same
    // results document, byte for byte.
    let again = out.join("again.json");
    let analyzed = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("analyze")
        .arg(&history_path)
        .arg("-o")
        .arg(&again)
        .output()
        .expect("harness analyze runs");
    assert!(analyzed.status.success(), "{analyzed:?}");
    let printed = String::from_utf8_lossy(&analyzed.stdout);
    assert!(
        printed.contains("session-loss: ") && printed.contains("option1"),
        "{printed}"
    );
    assert_eq!(
        std::fs::read_to_string(&again).expect("analyze wrote results"),
        std::fs::read_to_string(&files[0]).expect("the run's results"),
        "the offline verdict is the run's"
    );
    for anomaly in &results.anomalies {
        for example in &anomaly.examples {
            for event in &example.events {
                assert!(
                    history.events.contains(event),
                    "{:?} example event not in the history: {event:?}",
                    anomaly.kind
                );
            }
        }
    }
}

#[test]
fn option4_shows_no_anomaly_through_an_instance_restart_and_a_redis_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let file = scenario(
        dir.path(),
        "storm",
        "\n[[faults]]\nat = \"4s\"\naction = \"redis-restart\"\n",
    );
    let out = dir.path().join("out");
    let (output, files) = bench("option4", &file, &out);
    assert!(output.status.success(), "{output:?}");
    assert_valid_results(&files[0]);
    let results = Results::read(&files[0]).expect("reads");
    for kind in Kind::ALL {
        assert_eq!(
            results.anomaly(kind),
            0,
            "{kind}: {:?}",
            results.anomalies.iter().find(|a| a.kind == kind)
        );
    }
    let steps: Vec<&str> = results.timelines[0]
        .faults
        .iter()
        .map(|s| s.action.as_str())
        .collect();
    assert_eq!(steps, ["instance-restart app-1", "redis-restart"]);
    assert!(results.idp.minimum > 0 && results.idp.token_calls > 0);
    let (requests, _, _) = results.overall().expect("histograms decode");
    assert!(requests > 100, "{requests} requests");
    cpu_adds_up(&results, requests);

    // Merging a run with itself doubles every count and every histogram.
    let merged = results::merge(vec![results.clone(), results.clone()]).expect("merges");
    let merged_path = out.join("merged.json");
    merged.write(&merged_path).expect("writes");
    assert_valid_results(&merged_path);
    let (merged_requests, _, histogram) = merged.overall().expect("decodes");
    assert_eq!(merged_requests, 2 * requests);
    assert_eq!(
        histogram.len(),
        2 * results.overall().expect("decodes").2.len()
    );
    assert_eq!(merged.idp.token_calls, 2 * results.idp.token_calls);
    assert_eq!(merged.timelines.len(), 2, "timelines kept apart per source");
    for (one, two) in results.requests.iter().zip(&merged.requests) {
        assert_eq!(
            (two.kind.as_str(), two.count),
            (one.kind.as_str(), 2 * one.count)
        );
    }
    // CPU seconds add; per 1,000 requests stays (twice the CPU, twice the requests).
    let (one, two) = (
        results.cpu.as_ref().expect("measured"),
        merged.cpu.as_ref().expect("merged"),
    );
    assert_eq!(two.requests, 2 * one.requests);
    for (a, b) in one.components.iter().zip(&two.components) {
        let (sa, sb) = (a.seconds.expect("known"), b.seconds.expect("known"));
        assert!((sb - 2.0 * sa).abs() < 1e-9, "{a:?} {b:?}");
        let (pa, pb) = (a.ms_per_1k_requests.unwrap(), b.ms_per_1k_requests.unwrap());
        assert!((pa - pb).abs() < 1e-6, "{a:?} {b:?}");
    }
}

/// A run's CPU: every instance, Redis and Postgres spent some; the figures
/// per 1,000 requests are the seconds over the requests; instances add up to
/// `app`; and no figure in the timeline goes backwards, across the restart
/// of `app-1` and of Redis.
fn cpu_adds_up(results: &Results, requests: u64) {
    let cpu = results.cpu.as_ref().expect("CPU measured");
    assert_eq!(cpu.requests, requests);
    let names: Vec<&str> = cpu.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["app-1", "app-2", "app", "redis", "postgres", "harness"]
    );
    for component in &cpu.components {
        let seconds = component
            .seconds
            .expect("known: every part is the harness's");
        assert!(seconds > 0.0, "{component:?}");
        let per_1k = component.ms_per_1k_requests.expect("per 1k");
        assert!(
            (per_1k - seconds * 1e6 / requests as f64).abs() < 1e-6,
            "{component:?}"
        );
    }
    let seconds = |name: &str| cpu.component(name).and_then(|c| c.seconds).unwrap();
    assert!((seconds("app") - seconds("app-1") - seconds("app-2")).abs() < 1e-9);
    let samples = &results.timelines[0].samples;
    let read: Vec<_> = samples.iter().filter_map(|s| s.cpu.as_ref()).collect();
    assert!(read.len() >= 5, "a reading per sample: {}", read.len());
    for pair in read.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        for (id, spent) in &a.instances {
            assert!(b.instances[id] >= *spent, "{id}: {a:?} then {b:?}");
        }
        assert!(
            b.redis >= a.redis && b.postgres >= a.postgres,
            "{a:?} then {b:?}"
        );
    }
}

#[test]
fn ctrl_c_mid_run_still_writes_the_results_marked_incomplete() {
    let dir = tempfile::tempdir().expect("dir");
    let file = scenario(dir.path(), "long", "");
    let text = std::fs::read_to_string(&file)
        .expect("read")
        .replace("duration = \"6s\"", "duration = \"60s\"");
    std::fs::write(&file, text).expect("write");
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["bench", "option2", "--scenario"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the fault at 3 s: the load is well under way. The rest of
    // stderr is read on, as a terminal would.
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    for line in lines.by_ref() {
        if line.expect("line").contains("fault +") {
            break;
        }
    }
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT");
    let status = child.wait().expect("exits");
    let said = drain.join().expect("stderr").join("\n");
    assert!(!status.success(), "an interrupted bench says so: {status}");
    assert!(said.contains("cut short"), "{said}");
    let files = json_files(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_valid_results(&files[0]);
    let results = Results::read(&files[0]).expect("reads");
    assert!(!results.complete);
    assert!(results.stopped_because.is_some());
    assert!(results.sources[0].duration_secs < 30.0);
    assert!(
        results.overall().expect("decodes").0 > 0,
        "what ran is kept"
    );
}

/// People who leave without logging out, and sessions that end 2 s after
/// their last use: option1 keeps the tokens of people who left in its
/// instances' memory (the seed's "memory leakage"); option4's stores let
/// them go with the session.
#[test]
fn people_who_leave_stay_in_option1_memory_and_option2_blob_and_not_in_option4_stores() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("leave.toml");
    std::fs::copy(common::scenario_fixture("bench-leave.toml"), &file).expect("copy");
    for option in ["option1", "option2", "option4"] {
        let out = dir.path().join(option);
        let (output, files) = bench(option, &file, &out);
        assert!(output.status.success(), "{output:?}");
        assert_valid_results(&files[0]);
        let results = Results::read(&files[0]).expect("reads");
        assert!(
            results.leaks.sessions_expired > 0,
            "{option}: some left and their sessions expired: {:?}",
            results.leaks
        );
        let orphans = results
            .anomalies
            .iter()
            .find(|a| a.kind == Kind::Orphan)
            .expect("reported");
        let memory =
            harness::report::matrix::cell(&results, harness::report::matrix::Claim::MemoryGrowth);
        if option == "option1" {
            let kept = orphans
                .facets
                .get(harness::check::resident::TOKEN_CACHE)
                .copied()
                .unwrap_or(0);
            assert!(
                kept > 0,
                "option1 keeps the tokens of people who left: {orphans:?}"
            );
            assert_eq!(
                memory.seen,
                harness::report::matrix::Seen::Observed,
                "{memory:?}"
            );
            assert!(
                results.unchecked.iter().all(|u| u.kind != Kind::Orphan),
                "counted from /metrics, so checked: {:?}",
                results.unchecked
            );
        } else if option == "option2" {
            // The app-wide blob in Postgres, read raw, keeps the refresh
            // tokens of people who left.
            assert!(
                orphans.facets.get("blob").copied().unwrap_or(0) > 0,
                "option2's blob keeps the tokens of people who left: {orphans:?} {:?}",
                results.unchecked
            );
            assert!(
                orphans
                    .examples
                    .iter()
                    .any(|e| e.summary.contains("(in Postgres)")),
                "{orphans:?}"
            );
        } else {
            for kind in Kind::ALL {
                assert_eq!(
                    results.anomaly(kind),
                    0,
                    "{option} {kind}: {:?}",
                    results.anomalies
                );
            }
            assert_eq!(
                memory.seen,
                harness::report::matrix::Seen::NotObserved,
                "{memory:?}"
            );
        }
    }
}
