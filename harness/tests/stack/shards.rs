//! Load from several machines (`bench --shard I/N --start-at`), on one
//! machine: two shard processes drive one running stack as a remote target,
//! as two machines would; their results merge and their histories are
//! judged together, and they add up to one run of the whole scenario (same
//! seed, same plan). Bad shards and start times are refused before anything
//! runs, and one shard only applies the faults.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::history::{History, Request};
use harness::history_file;
use harness::results::{Results, SourceShard};

/// The scenario the shards split: a short, busy mix.
fn busy() -> PathBuf {
    common::scenario_fixture("shards-busy.toml")
}

fn harness() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_harness"));
    command.env_remove("REDIS_URL").env_remove("DATABASE_URL");
    command
}

/// `harness bench --target TARGET --scenario SCENARIO --history --out OUT ARGS...`, started.
fn bench(target: &Path, scenario: &Path, out: &Path, args: &[&str]) -> std::process::Child {
    harness()
        .arg("bench")
        .arg("--target")
        .arg(target)
        .arg("--scenario")
        .arg(scenario)
        .arg("--history")
        .arg("--out")
        .arg(out)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("harness runs")
}

/// The one results file and history a bench wrote into `out`.
fn written(out: &Path, output: &Output) -> (PathBuf, PathBuf) {
    assert!(output.status.success(), "{output:?}");
    let files: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("out")
        .flatten()
        .map(|e| e.path())
        .collect();
    let results: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(results.len(), 1, "{files:?}");
    let history = history_file::beside(results[0]);
    assert!(history.exists(), "{}", history.display());
    (results[0].clone(), history)
}

/// Requests of each kind in a results file.
fn by_kind(results: &Results) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    for series in &results.requests {
        *kinds.entry(series.kind.clone()).or_insert(0) += series.count;
    }
    kinds
}

/// Each of the scenario's people's first browser (its first of the run: the
/// single run's slot 2p, generation 0) and the requests it made in order,
/// but for replays of logged-out cookies (their timing is drawn per run).
fn first_browsers(history: &History, people: usize) -> BTreeMap<String, Vec<Request>> {
    let by_browser = history.by_browser();
    let mut out = BTreeMap::new();
    for person in 0..people {
        let user = format!("person-{person}");
        let Some(id) = history.browsers.iter().position(|b| b.user == user) else {
            continue;
        };
        let requests = by_browser[id]
            .iter()
            .map(|&i| history.events[i].request.clone())
            .collect();
        out.insert(user, requests);
    }
    out
}

fn run_text(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("harness runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (output.status.success(), text)
}

fn utc_in(from_now: Duration) -> String {
    let at = SystemTime::now() + from_now;
    let ms = at
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    harness::scenario::time::rfc3339(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_on_one_remote_target_add_up_to_one_run_of_the_scenario() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = common::up("option4", 2, &dir, false).await;
    let target = dir.path().join("shared.toml");
    let urls: Vec<String> = stack
        .instances
        .iter()
        .map(|i| format!("\"{}\"", i.url()))
        .collect();
    std::fs::write(
        &target,
        format!(
            "name = \"shared\"\ninstances = [{}]\nidp = \"{}\"\n",
            urls.join(", "),
            stack.idp_url()
        ),
    )
    .expect("write target");
    let scenario = busy();
    let root = dir.path().to_owned();

    let (whole, shards) = tokio::task::spawn_blocking(move || {
        // The whole scenario, one process.
        let out = root.join("whole");
        let output = bench(&target, &scenario, &out, &[])
            .wait_with_output()
            .expect("waits");
        let whole = written(&out, &output);
        // Its two shards at once, starting together.
        let start = utc_in(Duration::from_secs(4));
        let children: Vec<(PathBuf, std::process::Child)> = ["1/2", "2/2"]
            .iter()
            .enumerate()
            .map(|(i, shard)| {
                let out = root.join(format!("shard{}", i + 1));
                let child = bench(
                    &target,
                    &scenario,
                    &out,
                    &["--shard", shard, "--start-at", &start],
                );
                (out, child)
            })
            .collect();
        let shards: Vec<(PathBuf, PathBuf)> = children
            .into_iter()
            .map(|(out, child)| written(&out, &child.wait_with_output().expect("waits")))
            .collect();
        (whole, shards)
    })
    .await
    .expect("benches");

    let read = |path: &Path| Results::read(path).expect("results read");
    let whole_results = read(&whole.0);
    let shard_results: Vec<Results> = shards.iter().map(|(r, _)| read(r)).collect();
    // Each shard's results say which shard it was, and that shard 1 had the faults.
    for (i, results) in shard_results.iter().enumerate() {
        assert_eq!(
            results.sources[0].shard,
            Some(SourceShard {
                index: i as u32 + 1,
                count: 2,
                fault_shard: 1
            })
        );
    }
    // They started together: within a second of each other.
    let starts: Vec<u64> = shard_results
        .iter()
        .map(|r| r.sources[0].started_unix_ms)
        .collect();
    assert!(starts[0].abs_diff(starts[1]) < 1000, "{starts:?}");

    // Each shard drove its own people only (every other person), both
    // browsers of each; together every person of the scenario.
    let whole_history = history_file::read(&whole.1).expect("history");
    let histories: Vec<History> = shards
        .iter()
        .map(|(_, h)| history_file::read(h).expect("history"))
        .collect();
    let mut everyone = BTreeSet::new();
    for (i, history) in histories.iter().enumerate() {
        let mut people: BTreeMap<u32, usize> = BTreeMap::new();
        for browser in history.browsers.iter().filter(|b| b.person < 6) {
            *people.entry(browser.person).or_default() += 1;
        }
        let expected: Vec<u32> = (0..6).filter(|p| p % 2 == i as u32).collect();
        assert_eq!(
            people.keys().copied().collect::<Vec<_>>(),
            expected,
            "shard {}",
            i + 1
        );
        assert!(people.values().all(|&n| n >= 2), "{people:?}");
        everyone.extend(people.into_keys());
    }
    assert_eq!(everyone.len(), 6);
    let users =
        |h: &History| -> BTreeSet<String> { h.browsers.iter().map(|b| b.user.clone()).collect() };
    assert!(
        users(&histories[0]).is_disjoint(&users(&histories[1])),
        "no user (newcomers included) in both shards"
    );

    // Same seed, same plan: each person's first browser made the same
    // requests (the same data resources, the same cart item numbers) in
    // the same order as in the whole run, as far as both got.
    let planned = first_browsers(&whole_history, 6);
    let mut sharded = first_browsers(&histories[0], 6);
    sharded.extend(first_browsers(&histories[1], 6));
    assert_eq!(planned.len(), 6);
    assert_eq!(sharded.len(), 6);
    let mut compared = 0;
    for (user, whole_requests) in &planned {
        let shard_requests = &sharded[user];
        // A browser's run ends early when it opens another or its person leaves.
        let n = whole_requests.len().min(shard_requests.len());
        assert!(n >= 1, "{user}: no request");
        compared += n;
        assert_eq!(
            whole_requests[..n],
            shard_requests[..n],
            "{user}: the shard's browser strayed from the single run's plan"
        );
    }
    assert!(compared >= 30, "only {compared} requests compared");

    // Merged, every browser's requests count once: the shards' sum.
    let merged_path = dir.path().join("merged.json");
    let (ok, text) = run_text(
        harness()
            .arg("merge")
            .arg(&shards[0].0)
            .arg(&shards[1].0)
            .arg("-o")
            .arg(&merged_path),
    );
    assert!(ok, "{text}");
    let merged = read(&merged_path);
    let (one, two) = (by_kind(&shard_results[0]), by_kind(&shard_results[1]));
    let sum: BTreeMap<String, u64> = one
        .keys()
        .chain(two.keys())
        .map(|k| {
            (
                k.clone(),
                one.get(k).copied().unwrap_or(0) + two.get(k).copied().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(by_kind(&merged), sum);
    assert_eq!(merged.sources.len(), 2);
    assert!(
        merged.sources[0].name.ends_with("-shard1of2")
            && merged.sources[1].name.ends_with("-shard2of2"),
        "two shards on one machine are two sources: {:?}",
        merged.sources
    );
    let events: u64 = histories.iter().map(|h| h.events.len() as u64).sum();
    assert_eq!(sum.values().sum::<u64>(), events);
    // ... and the IdP both read is counted once, not twice.
    assert_eq!(
        merged.idp.token_calls,
        shard_results
            .iter()
            .map(|r| r.idp.token_calls)
            .max()
            .unwrap_or(0)
    );

    // And it is one run's worth. How many requests fit in the duration
    // depends on how fast this machine answers at that moment (the suite
    // runs beside it), so the totals agree loosely; the mix of kinds, set
    // by the plan compared exactly above, agrees closely.
    let whole_kinds = by_kind(&whole_results);
    eprintln!("requests by kind: one run {whole_kinds:?}, shards together {sum:?}");
    let (whole_total, sharded_total) = (
        whole_kinds.values().sum::<u64>() as f64,
        sum.values().sum::<u64>() as f64,
    );
    assert!(
        (whole_total - sharded_total).abs() <= 0.35 * whole_total.max(sharded_total),
        "requests: {whole_total} in one run, {sharded_total} in the shards"
    );
    for (kind, &n) in &whole_kinds {
        let m = sum.get(kind).copied().unwrap_or(0);
        let (share_whole, share_sharded) = (n as f64 / whole_total, m as f64 / sharded_total);
        assert!(
            (share_whole - share_sharded).abs() <= 0.05,
            "{kind}: {n} of {whole_total} in one run, {m} of {sharded_total} in the shards: \
             {whole_kinds:?} against {sum:?}"
        );
    }

    // As many browsers (a person's new ones and newcomers included) for as
    // many requests: a browser opens on a drawn action, so the count
    // follows the requests made, which follow the machine's speed.
    let (one_run, sharded) = (
        whole_history.browsers.len() as f64,
        histories.iter().map(|h| h.browsers.len()).sum::<usize>() as f64,
    );
    let expected = one_run * sharded_total / whole_total;
    assert!(
        (sharded - expected).abs() <= (expected * 0.25).max(3.0),
        "browsers: {one_run} in one run ({whole_total} requests), {sharded} in the shards \
         ({sharded_total} requests)"
    );

    // The offline checker judges both histories together as one run.
    let analyzed = dir.path().join("analyzed.json");
    let (ok, text) = run_text(
        harness()
            .arg("analyze")
            .arg(&shards[1].1)
            .arg(&shards[0].1)
            .arg("-o")
            .arg(&analyzed),
    );
    assert!(ok, "{text}");
    let analyzed = read(&analyzed);
    assert_eq!(by_kind(&analyzed), sum, "{text}");
    assert_eq!(
        analyzed
            .sources
            .iter()
            .map(|s| s.shard.map(|s| s.index))
            .collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    for kind in harness::check::Kind::ALL {
        assert_eq!(analyzed.anomaly(kind), 0, "{kind:?}: {text}");
    }

    // What does not make one run is refused, naming the files.
    let cases: Vec<(Vec<&Path>, &str)> = vec![
        (vec![&shards[0].0, &shards[0].0], "both shard 1/2"),
        (vec![&shards[0].0, &whole.0], "a whole run"),
    ];
    for (files, says) in cases {
        let (ok, text) = run_text(
            harness()
                .arg("merge")
                .args(&files)
                .arg("-o")
                .arg(dir.path().join("refused.json")),
        );
        assert!(!ok && text.contains(says), "{says}: {text}");
        assert!(text.contains(&files[0].display().to_string()), "{text}");
    }
    let mut other = shard_results[1].clone();
    other.scenario.seed = 12;
    let other_path = dir.path().join("other-seed.json");
    other.write(&other_path).expect("write");
    let (ok, text) = run_text(
        harness()
            .arg("merge")
            .arg(&shards[0].0)
            .arg(&other_path)
            .arg("-o")
            .arg(dir.path().join("refused.json")),
    );
    assert!(
        !ok && text.contains("different scenarios") && text.contains("seed 11 against 12"),
        "{text}"
    );
    for (files, says) in [
        (vec![&shards[0].1, &shards[0].1], "both shard 1/2"),
        (vec![&shards[0].1, &whole.1], "a whole run's history"),
    ] {
        let (ok, text) = run_text(harness().arg("analyze").args(&files));
        assert!(!ok && text.contains(says), "{says}: {text}");
    }
    drop(stack);
}

#[test]
fn bad_shards_and_start_times_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("dir");
    let scenario = busy();
    let text = std::fs::read_to_string(&scenario).expect("read");
    let faulty = dir.path().join("faulty.toml");
    std::fs::write(
        &faulty,
        format!("fault_shard = 3\n{text}\n[[faults]]\nat = \"1s\"\naction = \"instance-restart\"\ninstance = 1\n"),
    )
    .expect("write");
    let past = utc_in(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(1100));
    let ahead = utc_in(Duration::from_secs(2 * 3600));
    let soon = utc_in(Duration::from_secs(60));
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (
            vec!["--shard".into(), "0/2".into()],
            &["--shard", "I counts from 1", "1 to 2"],
        ),
        (vec!["--shard".into(), "3/2".into()], &["--shard", "1 to 2"]),
        (
            vec!["--shard".into(), "1/0".into()],
            &["--shard", "at least 1"],
        ),
        (
            vec!["--shard".into(), "1/7".into()],
            &["--shard 1/7", "6 people", "at most 6 shards"],
        ),
        (
            vec!["--start-at".into(), past.clone()],
            &["--start-at", "in the past", "at most 1 h"],
        ),
        (
            vec!["--start-at".into(), ahead],
            &["--start-at", "ahead", "at most 1 h"],
        ),
        (
            vec!["--start-at".into(), "tomorrow".into()],
            &["--start-at", "YYYY-MM-DDTHH:MM:SSZ"],
        ),
        (
            vec!["all".into(), "--start-at".into(), soon],
            &["--start-at", "4 apps"],
        ),
    ];
    for (args, says) in cases {
        let output = harness()
            .arg("bench")
            .args(&args)
            .arg("--scenario")
            .arg(&scenario)
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .expect("harness runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for said in says {
            assert!(stderr.contains(said), "{args:?}: {said:?} in {stderr}");
        }
    }
    let output = harness()
        .args(["bench", "--shard", "1/2", "--scenario"])
        .arg(&faulty)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .expect("harness runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fault_shard is 3") && stderr.contains("faulty.toml:1:"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists(), "nothing ran");
}

#[test]
fn only_the_fault_shard_applies_the_faults_and_its_timeline_serves_both() {
    let dir = tempfile::tempdir().expect("dir");
    let scenario = common::scenario_fixture("shards-fault-shard.toml");
    let children: Vec<(PathBuf, std::process::Child)> = ["1/2", "2/2"]
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            let out = dir.path().join(format!("shard{}", i + 1));
            let child = harness()
                .args([
                    "bench",
                    "option4",
                    "--history",
                    "--shard",
                    shard,
                    "--scenario",
                ])
                .arg(&scenario)
                .arg("--out")
                .arg(&out)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("harness runs");
            (out, child)
        })
        .collect();
    let shards: Vec<(PathBuf, PathBuf)> = children
        .into_iter()
        .map(|(out, child)| written(&out, &child.wait_with_output().expect("waits")))
        .collect();
    let steps = |history: &Path| -> Vec<String> {
        history_file::read(history)
            .expect("history")
            .faults
            .iter()
            .filter(|s| s.unscheduled.is_none())
            .map(|s| s.action.clone())
            .collect()
    };
    assert_eq!(
        steps(&shards[0].1),
        Vec::<String>::new(),
        "shard 1 applied nothing"
    );
    assert_eq!(
        steps(&shards[1].1),
        ["instance-restart app-1"],
        "shard 2 restarted app-1"
    );
    let one = Results::read(&shards[0].0).expect("results");
    assert!(
        one.timelines.iter().all(|t| t.faults.is_empty()),
        "{:?}",
        one.timelines
    );
    assert_eq!(
        one.scenario.faults.len(),
        1,
        "its results still list the scenario's fault"
    );
    // Judged together, every browser is under shard 2's fault timeline.
    let out = dir.path().join("together.json");
    let (ok, text) = run_text(
        harness()
            .arg("analyze")
            .arg(&shards[0].1)
            .arg(&shards[1].1)
            .arg("-o")
            .arg(&out),
    );
    assert!(ok, "{text}");
    let together = Results::read(&out).expect("results");
    assert_eq!(together.timelines[0].faults.len(), 1, "{text}");
}
