//! `harness up` as a process: no child survives it, whether it is interrupted or killed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::stage::process::alive;
use harness::stage::services::postgres::{Postgres, data_parent};

use crate::common::{self, segment_exists, segment_of};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What `harness up` printed before "ready".
struct Up {
    child: std::process::Child,
    pids: Vec<(String, u32)>,
    urls: Vec<String>,
    run_dir: String,
}

fn harness_up(topology: &str, instances: usize) -> Up {
    let count = instances.to_string();
    let (mut pids, mut urls, mut run_dir) = (Vec::new(), Vec::new(), String::new());
    let child =
        common::harness_up(
            &["--topology", topology, "--instances", &count],
            |words| match words {
                ["pid", name, pid] => pids.push(((*name).to_owned(), pid.parse().expect("pid"))),
                [name, url] if name.starts_with("app-") => urls.push((*url).to_owned()),
                ["logs", dir] => run_dir = (*dir).to_owned(),
                _ => {}
            },
        );
    let up = Up {
        child,
        pids,
        urls,
        run_dir,
    };
    assert_eq!(up.urls.len(), instances, "instances printed");
    up
}

/// The private Postgres home of the harness with this pid, while it exists.
fn postgres_home(harness_pid: u32, run_dir: &str) -> Option<PathBuf> {
    let parent = data_parent(Path::new(run_dir));
    let prefix = format!("harness-pg-{harness_pid}-");
    std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
}

fn all_gone(pids: &[(String, u32)], within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let survivors: Vec<_> = pids.iter().filter(|(_, pid)| alive(*pid)).collect();
        if survivors.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("survivors: {survivors:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_of_the_harness_mid_run_leaves_no_child() {
    let mut up = harness_up("option4", 2);
    assert_eq!(
        up.pids.len(),
        5,
        "idp, two apps, redis, postgres: {:?}",
        up.pids
    );
    let health = reqwest::blocking::get(format!("{}/healthz", up.urls[0])).expect("app answers");
    assert!(health.status().is_success());
    let home = postgres_home(up.child.id(), &up.run_dir).expect("private postgres home");
    let shmid = segment_of(&home.join("data"));
    kill(Pid::from_raw(up.child.id() as i32), Signal::SIGKILL).expect("kill harness");
    up.child.wait().expect("reaped");
    all_gone(&up.pids, Duration::from_secs(10)).expect("every child dies with the harness");

    // What a SIGKILL cannot clean (the Postgres data dir, its System V segment)
    // the next private Postgres sweeps, when data lives outside the run folder.
    // (A private Postgres that another test starts meanwhile may have swept
    // them already; what matters is that they do not stay.)
    if !home.starts_with(&up.run_dir) {
        let next = tempfile::tempdir().expect("dir");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let postgres = runtime
            .block_on(Postgres::start_private(next.path()))
            .expect("next private postgres");
        assert!(!home.exists(), "swept: {}", home.display());
        assert!(!segment_exists(&shmid), "segment {shmid} swept");
        drop(postgres);
    }

    // Its run folder too, by the next `harness up`. (Any harness that starts
    // meanwhile sweeps it, and other tests start harnesses in parallel, so
    // the folder may be gone already; what matters is that it does not stay.)
    let mut next = harness_up("option1", 1);
    assert!(
        !Path::new(&up.run_dir).exists(),
        "swept by the next harness up: {}",
        up.run_dir
    );
    kill(Pid::from_raw(next.child.id() as i32), Signal::SIGINT).expect("interrupt");
    assert!(next.child.wait().expect("exit").success());
}

#[test]
fn children_live_as_long_as_the_harness_and_sigint_tears_them_down() {
    let mut up = harness_up("option2", 1);
    assert!(Path::new(&up.run_dir).is_dir());
    let home = postgres_home(up.child.id(), &up.run_dir).expect("private postgres home");
    let shmid = segment_of(&home.join("data"));
    // The parent-death signal fires when the spawning *thread* exits, and
    // tokio retires idle blocking threads after 10 s: nothing may have been
    // spawned from one.
    std::thread::sleep(Duration::from_secs(11));
    let early: Vec<_> = up.pids.iter().filter(|(_, pid)| !alive(*pid)).collect();
    assert!(
        early.is_empty(),
        "children died while the harness ran: {early:?}"
    );
    kill(Pid::from_raw(up.child.id() as i32), Signal::SIGINT).expect("interrupt harness");
    let status = up.child.wait().expect("exit");
    assert!(status.success(), "a clean exit: {status}");
    all_gone(&up.pids, Duration::from_secs(10)).expect("nothing left running");
    assert!(
        !Path::new(&up.run_dir).exists(),
        "run folder removed without --keep"
    );
    assert!(!home.exists(), "postgres data removed: {}", home.display());
    assert!(!segment_exists(&shmid), "segment {shmid} removed");
}

/// A SIGKILLed harness whose Postgres data lived inside its run folder (as
/// when /dev/shm has no room): the sweep of dead run folders removes the
/// killed server's System V segment before the folder, whose pid file names it.
#[test]
fn a_dead_run_folder_with_postgres_data_inside_is_swept_segment_first() {
    let parent = tempfile::tempdir().expect("dir");
    let dead_pid = {
        let mut gone = Command::new("true").spawn().expect("spawn");
        gone.wait().expect("reaped");
        gone.id()
    };
    let run = parent.path().join(format!("harness-run-{dead_pid}-x"));
    std::fs::create_dir_all(&run).expect("run folder");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let home = runtime.block_on(async {
        // Data in the run folder, as data_parent chooses when memory is short.
        let mut postgres = Postgres::start_private_in(&run, &run)
            .await
            .expect("private postgres");
        postgres.kill().await.expect("kill");
        // The harness that owned it is gone: none of its own cleanup runs.
        std::mem::forget(postgres);
        std::fs::read_dir(&run)
            .expect("run folder")
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("harness-pg-"))
            })
            .expect("its data dir in the run folder")
    });
    let shmid = segment_of(&home.join("data"));
    assert!(
        segment_exists(&shmid),
        "a killed postmaster leaves its segment"
    );
    let owned_by_the_dead = run.join(home.file_name().expect("name").to_string_lossy().replacen(
        &std::process::id().to_string(),
        &dead_pid.to_string(),
        1,
    ));
    std::fs::rename(&home, &owned_by_the_dead).expect("rename");

    harness::run_folder::sweep_abandoned(parent.path());
    assert!(!run.exists(), "the dead run folder is gone");
    assert!(!segment_exists(&shmid), "and its segment {shmid} with it");
}
