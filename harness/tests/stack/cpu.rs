//! CPU figures from `/proc` on real processes: a busy child's grow, a
//! restarted one's add up instead of starting again, several processes of
//! one component (a cluster's nodes) are summed and a killed one's seconds
//! stay in the sum, reaped children count, and a Redis the harness does
//! not run is unknown, from the meter to the summary table.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::cpu::{CpuMeter, CpuSource, ProcStat, ProcessTable};
use harness::results::Results;
use harness::stage::process::{ChildSpec, Supervised};
use harness::stage::services::redis::Redis;

use crate::common::assert_valid_results;

/// A shell spinning on a core until killed.
fn busy(dir: &Path) -> Supervised {
    let spec = ChildSpec::new("spin", "/bin/sh", dir).args(["-c", "while :; do :; done"]);
    Supervised::spawn(spec).expect("sh starts")
}

/// Waits until the component has spent `seconds` of CPU more than `from`
/// (bounded: a shared machine may give it less than a core).
async fn spend(meter: &CpuMeter, from: f64, seconds: f64) -> f64 {
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = meter.read().instances["app-1"];
        if now >= from + seconds {
            return now;
        }
    }
    panic!("the busy child did not spend {seconds} s of CPU in 5 s");
}

#[tokio::test]
async fn a_busy_child_cpu_grows_in_proc() {
    let dir = tempfile::tempdir().expect("dir");
    let child = busy(dir.path());
    let first = ProcStat::read(child.pid()).expect("its stat reads");
    assert_eq!(first.ppid, std::process::id());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = ProcStat::read(child.pid()).expect("still there");
    assert!(
        later.own > first.own,
        "{first:?} then {later:?}: a spinning process spends CPU"
    );
    assert_eq!(later.start_time, first.start_time, "the same process");
    let (_, tree) = ProcessTable::scan().tree(child.pid()).expect("in /proc");
    assert!(tree >= later.own);
}

#[tokio::test]
async fn a_restarted_instance_cpu_adds_up_and_never_goes_back() {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = busy(dir.path());
    let meter = CpuMeter::new(
        vec![("app-1".into(), CpuSource::Process(child.pid_watch()))],
        None,
        None,
    );
    let before = spend(&meter, 0.0, 0.6).await;
    child.kill().await.expect("killed");
    assert_eq!(child.pid_watch().get(), None, "down: no pid");
    let down = meter.read().instances["app-1"];
    assert_eq!(down, before, "while down, what it had spent");
    child.respawn().expect("started again");
    // Less than before: a figure that started again from the new process
    // would now read lower than `before`.
    let after = spend(&meter, before, 0.2).await;
    assert!(after >= before + 0.2, "{before} then {after}");
    assert!(
        ProcStat::read(child.pid()).expect("runs").own as f64 / harness::cpu::ticks_per_second()
            < before,
        "the new process alone has spent less than the first"
    );
}

/// Waits until the meter's Redis has spent `seconds` more than `from`.
async fn spend_redis(meter: &CpuMeter, from: f64, seconds: f64) -> f64 {
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = meter.read().redis.expect("the nodes run");
        if now >= from + seconds {
            return now;
        }
    }
    panic!("the busy nodes did not spend {seconds} s of CPU in 5 s");
}

#[tokio::test]
async fn a_component_of_several_processes_sums_them_and_keeps_a_killed_ones() {
    let dir = tempfile::tempdir().expect("dir");
    // Two spinning shells stand for two nodes of a cluster: one component.
    let mut first = busy(dir.path());
    let second = busy(dir.path());
    let meter = CpuMeter::new(
        Vec::new(),
        Some(CpuSource::Processes(vec![
            first.pid_watch(),
            second.pid_watch(),
        ])),
        None,
    );
    spend_redis(&meter, 0.0, 0.6).await;
    let tick = 1.0 / harness::cpu::ticks_per_second();
    let each = |pid: u32| ProcStat::read(pid).expect("runs").own as f64 * tick;
    // Read just before the meter's reading, each process's own figure: the
    // meter's is at least their sum (one of them alone would be less).
    let (a, b) = (each(first.pid()), each(second.pid()));
    let both = meter.read().redis.expect("the nodes run");
    assert!(a > 0.0 && b > 0.0, "both spun: {a} and {b}");
    assert!(both >= a + b, "{both} sums {a} and {b}");
    first.kill().await.expect("killed");
    let after_kill = meter.read().redis.expect("one node still runs");
    assert!(
        after_kill >= both,
        "the killed node's seconds stay: {both} then {after_kill}"
    );
    // The survivor alone now adds to the total, past what the killed one had.
    let later = spend_redis(&meter, after_kill, 0.2).await;
    assert!(later >= after_kill + 0.2, "{after_kill} then {later}");
    assert!(
        each(second.pid()) < later,
        "the survivor alone has spent less than the sum: {later}"
    );
    assert!(meter.unknown().is_empty(), "nothing unknown");
}

#[tokio::test]
async fn children_reaped_by_the_root_count_in_its_tree() {
    let dir = tempfile::tempdir().expect("dir");
    // A child counts to 400,000 (about 0.4 s of CPU, however busy the
    // machine) then ends and is reaped; the root itself idles, as a
    // postmaster does while its backends work and end.
    let spec = ChildSpec::new("reaper", "/bin/sh", dir.path()).args([
        "-c",
        "sh -c 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done'; sleep 60",
    ]);
    let root = Supervised::spawn(spec).expect("sh starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let own = loop {
        let own = ProcStat::read(root.pid()).expect("runs");
        if own.reaped > 0 || std::time::Instant::now() > deadline {
            break own;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, tree) = ProcessTable::scan().tree(root.pid()).expect("in /proc");
    let seconds = tree as f64 / harness::cpu::ticks_per_second();
    assert!(own.own <= 2, "the root idled: {own:?}");
    assert!(
        seconds >= 0.2,
        "the reaped child's count is in the tree: {seconds} s ({own:?})"
    );
}

#[tokio::test]
async fn an_external_redis_cpu_is_unknown() {
    let dir = tempfile::tempdir().expect("dir");
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = Redis::provide_from(Some(url), dir.path())
        .await
        .expect("the machine's Redis answers");
    let meter = CpuMeter::new(
        Vec::new(),
        Some(CpuSource::of_server(&redis, "Redis")),
        None,
    );
    assert_eq!(meter.read().redis, None, "never guessed");
    let why = &meter.unknown()["redis"];
    assert!(
        why.contains("unknown") && why.contains("external server"),
        "{why}"
    );
}

/// A 3-second run of option4 on the machine's Redis (and a private Postgres).
#[test]
fn a_run_on_an_external_redis_reports_its_cpu_unknown() {
    let dir = tempfile::tempdir().expect("dir");
    let scenario = dir.path().join("short.toml");
    std::fs::write(
        &scenario,
        "# A short run on an external Redis, for the CPU test.\ninstances = 2\nseed = 3\n\n\
         [browsers]\npeople = 3\nper_person = 1\n\n[load]\nduration = \"3s\"\nramp_up = \"1s\"\n\
         think_time = { min = \"20ms\", max = \"50ms\" }\n",
    )
    .expect("write");
    let out = dir.path().join("out");
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["bench", "option4", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .env("REDIS_URL", redis_url)
        .env_remove("DATABASE_URL")
        .output()
        .expect("harness runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let file = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a results file");
    assert_valid_results(&file);
    let results = Results::read(&file).expect("reads");
    let cpu = results.cpu.expect("measured");
    let redis = cpu.component("redis").expect("the run had a Redis");
    assert_eq!(redis.seconds, None);
    assert!(
        redis
            .unknown
            .as_deref()
            .is_some_and(|w| w.contains("external server")),
        "{redis:?}"
    );
    let postgres = cpu.component("postgres").expect("and a Postgres");
    assert!(postgres.seconds.is_some_and(|s| s > 0.0), "{postgres:?}");
    // The summary's row: app, then redis unknown, then postgres.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("option4"))
        .expect("a summary row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[cells.len() - 2], "unknown", "{stdout}");
    assert!(
        cells[cells.len() - 1]
            .parse::<f64>()
            .is_ok_and(|ms| ms > 0.0),
        "{stdout}"
    );
}
