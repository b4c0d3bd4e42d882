//! The stage's own events: an app instance that exits with no fault asking
//! is put on the run's record (when, its exit status, the last lines of its
//! log), and started again only when the scenario says so. The app here is
//! a target whose command serves HTTP for a moment, writes an error as an
//! app with an unhandled client error would, and exits with status 3; the
//! bench test kills a reference instance from outside the harness.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use harness::faults::{self, Watch};
use harness::history::FaultStep;
use harness::results::Results;
use harness::scenario::faults::FaultSchedule;
use harness::stage::stack::{Stack, StackSpec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use parking_lot::Mutex;

use crate::common;

/// A target that answers HTTP (python's http.server) for 1.5 s, then says
/// why it dies on stderr and exits with status 3.
const DIES: &str = r#"
name = "dies"
command = ["sh", "-c", "python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 & server=$!; sleep 1.5; echo 'starting up done' >&2; echo 'Error: unhandled redis client error: connection refused' >&2; kill $server; exit 3"]
ready = "/"
"#;

/// The steps recorded while watching the target's one instance for `watch_for`.
async fn watched(watch: Watch, watch_for: Duration) -> Vec<FaultStep> {
    let dir = tempfile::tempdir().expect("dir");
    let app = harness::scenario::target::parse(DIES, "dies.toml", dir.path()).expect("target");
    let mut stack = Stack::up(&StackSpec {
        app,
        instances: NonZeroUsize::MIN,
        run_dir: dir.path().to_owned(),
        network_proxy: false,
        idp: Default::default(),
        session_idle_timeout: None,
        session_absolute_timeout: None,
    })
    .await
    .expect("stack up");
    let steps = Mutex::new(Vec::new());
    let start = tokio::time::Instant::now();
    let (schedule, applying) = (FaultSchedule::default(), AtomicBool::new(false));
    let running = faults::run_watched(&schedule, &mut stack, start, &applying, watch, |step| {
        steps.lock().push(step.clone())
    });
    let _ = tokio::time::timeout(watch_for, running).await;
    steps.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_exits_by_itself_is_recorded_with_its_status_and_last_output() {
    let steps = watched(Watch::Record, Duration::from_secs(4)).await;
    assert_eq!(steps.len(), 1, "{steps:#?}");
    let exit = &steps[0];
    assert_eq!(exit.action, "instance-exit app-1");
    assert!(exit.at > 0 && exit.error.is_none());
    let unscheduled = exit.unscheduled.as_ref().expect("the stage's own event");
    assert_eq!(unscheduled.status, "exit status: 3");
    assert_eq!(
        unscheduled.last_output.last().map(String::as_str),
        Some("Error: unhandled redis client error: connection refused"),
        "{unscheduled:?}"
    );
    // A window like a fault's: down from then to the end of the run.
    let windows = harness::check::windows::windows(&steps, exit.at + 60_000_000);
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0].to, exit.at + 60_000_000, "{windows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_scenario_says_so_an_exited_instance_is_started_again() {
    let steps = watched(Watch::Restart, Duration::from_secs(5)).await;
    let actions: Vec<&str> = steps.iter().map(|s| s.action.as_str()).collect();
    assert!(
        actions.starts_with(&["instance-exit app-1", "instance-start app-1"]),
        "{steps:#?}"
    );
    let start = &steps[1];
    assert_eq!(start.ends, Some(0), "the start ends the exit's window");
    assert!(start.error.is_none(), "{start:?}");
    // Started again, it serves a while and dies again: recorded each time.
    assert!(
        actions.len() >= 3 && actions[2] == "instance-exit app-1",
        "{actions:?}"
    );
}

/// The pid of the reference app instance `instance` running with `run_dir`
/// in its arguments (unique to this test).
fn app_pid(run_dir: &Path, instance: &str) -> Option<i32> {
    let run_dir = run_dir.to_string_lossy();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_app = args
                .windows(2)
                .any(|w| w[0] == "--instance-id" && w[1] == instance)
                && args.iter().any(|a| a.contains(run_dir.as_ref()));
            is_app.then_some(pid)
        })
}

#[test]
fn a_run_names_an_instance_that_died_in_its_verdict_and_report() {
    let dir = tempfile::tempdir().expect("dir");
    let scenario = dir.path().join("quiet.toml");
    std::fs::write(
        &scenario,
        "# No faults: whatever goes down does so by itself.\ninstances = 2\nseed = 3\n\n[browsers]\npeople = 4\n\n[load]\nduration = \"6s\"\nthink_time = { min = \"20ms\", max = \"60ms\" }\nhopping = \"round-robin\"\n\n[mix]\nprofile = 10\ncart_write = 10\ncart_read = 10\n",
    )
    .expect("scenario");
    let run_dir: PathBuf = dir.path().join("run");
    let out = dir.path().join("out");
    let harness = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["bench", "option4", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .arg("--run-dir")
        .arg(&run_dir)
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("harness runs");
    // Once the load runs, app-2 dies by a hand outside the harness.
    let mut pid = None;
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        pid = app_pid(&run_dir, "app-2");
        if pid.is_some() {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    kill(Pid::from_raw(pid.expect("app-2 runs")), Signal::SIGKILL).expect("kill app-2");
    let output = harness.wait_with_output().expect("harness ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("option4: app-2 EXITED by itself at")
            && stdout.contains("signal: 9 (SIGKILL)"),
        "{stdout}"
    );
    let file = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("results");
    common::assert_valid_results(&file);
    let results = Results::read(&file).expect("results");
    let exits = results.exits();
    assert_eq!(exits.len(), 1, "{exits:?}");
    // The refused requests after it fall in its window.
    let requests = results
        .requests
        .iter()
        .filter(|r| r.instance == "app-2")
        .map(|r| r.outcomes.refused)
        .sum::<u64>();
    assert!(requests > 0, "browsers found app-2 down");
    let report = std::fs::read_to_string(file.with_extension("html")).expect("report");
    assert!(
        report.contains("The app under test crashed") && report.contains("app-2 EXITED by itself"),
        "the report's verdict says it"
    );
}
