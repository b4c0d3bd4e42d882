//! Apps the harness did not build, driven and checked through the same
//! code path as the reference app: the seed's own stack (Express +
//! express-session + MSAL Node, `targets/express-msal`) started from its
//! target files, and instances given only as URLs.
//!
//! The Express tests need Node 20 and the app's packages (`npm ci` in
//! targets/express-msal, which `.ci/run` does); they fail, not skip, without.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::check::Kind;
use harness::results::{AppKind, Results};

use crate::common;
use crate::common::assert_valid_results;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// `fixtures/scenarios/targets-restart.toml` (two instances, an instance restart at 4 s)
/// with `extra` faults after it, as `dir/NAME.toml`: the run's files take the name.
fn scenario(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let base =
        std::fs::read_to_string(common::scenario_fixture("targets-restart.toml")).expect("fixture");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, base + extra).expect("write");
    path
}

/// `harness bench --target TARGET --scenario SCENARIO`: its output and the results.
fn bench_target(target: &Path, scenario: &Path, out: &Path) -> (std::process::Output, Results) {
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("bench")
        .arg("--target")
        .arg(target)
        .arg("--scenario")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("harness runs");
    let written: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let of = |ext: &str| -> Vec<&PathBuf> {
        written
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect()
    };
    let (files, reports) = (of("json"), of("html"));
    assert_eq!(files.len(), 1, "one results file: {output:?}");
    assert_eq!(reports.len(), 1, "and its report: {output:?}");
    assert_valid_results(files[0]);
    (output, Results::read(files[0]).expect("reads"))
}

fn express(option: &str) -> PathBuf {
    let target = workspace().join(format!("targets/express-msal/{option}.toml"));
    assert!(
        workspace()
            .join("targets/express-msal/node_modules")
            .is_dir(),
        "targets/express-msal needs its packages: (cd targets/express-msal && npm ci)"
    );
    target
}

#[test]
fn express_option1_loses_sessions_at_an_instance_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let file = scenario(dir.path(), "restart", "");
    let (output, results) = bench_target(&express("option1"), &file, &dir.path().join("out"));
    assert!(output.status.success(), "{output:?}");
    assert!(results.complete);
    assert_eq!(results.topology.name, "express-msal-option1");
    assert_eq!(results.topology.app, AppKind::Launched);
    let signed_in = results
        .requests
        .iter()
        .filter(|r| r.kind == "sign_in")
        .map(|r| r.outcomes.ok)
        .sum::<u64>();
    assert!(
        signed_in > 0,
        "browsers signed in through MSAL Node: {output:?}"
    );
    let losses = results
        .anomalies
        .iter()
        .find(|a| a.kind == Kind::SessionLoss)
        .expect("reported");
    assert!(
        losses.count > 0,
        "MemoryStore sessions die with the process: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    // The orphan check needs the reference app's store layout: said, not guessed.
    assert!(
        results.unchecked.iter().any(|u| u.kind == Kind::Orphan),
        "{:?}",
        results.unchecked
    );
    // Its memory comes from the process, as it has no RSS in /metrics.
    let last = results.timelines[0].samples.last().expect("sampled");
    assert!(
        last.instances.iter().all(|i| i.rss_bytes.is_some()),
        "{last:?}"
    );
}

/// The seed's option4 (connect-redis sessions with Postgres behind them, token
/// partitions in Redis and Postgres) keeps every session through an instance
/// restart and a Redis restart, as the reference app's option4 does.
#[test]
fn express_option4_keeps_sessions_through_an_instance_restart_and_a_redis_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let file = scenario(
        dir.path(),
        "storm",
        "\n[[faults]]\nat = \"6s\"\naction = \"redis-restart\"\n",
    );
    let (output, results) = bench_target(&express("option4"), &file, &dir.path().join("out"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(results.complete);
    assert_eq!(results.topology.name, "express-msal-option4");
    let steps = &results.timelines[0].faults;
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(steps.iter().all(|s| s.error.is_none()), "{steps:?}");
    let reads = results
        .requests
        .iter()
        .filter(|r| r.kind == "profile" || r.kind == "cart_read")
        .map(|r| r.outcomes.ok)
        .sum::<u64>();
    assert!(
        reads > 0,
        "the browsers were signed in and reading: {stdout}"
    );
    for kind in [
        Kind::SessionLoss,
        Kind::LostUpdate,
        Kind::StaleRead,
        Kind::CrossUserToken,
        Kind::CrossSessionToken,
        Kind::TokenAfterLogout,
    ] {
        assert_eq!(results.anomaly(kind), 0, "{kind:?}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_given_as_urls_are_driven_and_checked_and_their_faults_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = common::up("option4", 2, &dir, false).await;
    let target = dir.path().join("remote.toml");
    let urls: Vec<String> = stack
        .instances
        .iter()
        .map(|i| format!("\"{}\"", i.url()))
        .collect();
    std::fs::write(
        &target,
        format!(
            "name = \"elsewhere\"\ninstances = [{}]\nidp = \"{}\"\n",
            urls.join(", "),
            stack.idp_url()
        ),
    )
    .expect("write");

    // An instance fault is refused before anything runs, with its reason.
    let with_restart = scenario(dir.path(), "restart", "");
    let refused = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("bench")
        .arg("--target")
        .arg(&target)
        .arg("--scenario")
        .arg(&with_restart)
        .arg("--out")
        .arg(dir.path().join("refused"))
        .output()
        .expect("harness runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("restart.toml:")
            && stderr.contains("runs its instances elsewhere")
            && stderr.contains("elsewhere"),
        "{stderr}"
    );

    // Without it, the browsers run and the history is checked.
    let plain = dir.path().join("plain.toml");
    let text = std::fs::read_to_string(&with_restart).expect("read");
    let cut = text.find("[[faults]]").expect("has faults");
    std::fs::write(&plain, &text[..cut]).expect("write");
    let target_clone = target.clone();
    let out = dir.path().join("out");
    let (output, results) =
        tokio::task::spawn_blocking(move || bench_target(&target_clone, &plain, &out))
            .await
            .expect("bench");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(results.topology.app, AppKind::Remote);
    assert!(results.requests.iter().map(|r| r.outcomes.ok).sum::<u64>() > 0);
    for kind in Kind::ALL {
        assert_eq!(results.anomaly(kind), 0, "{kind:?}: {output:?}");
    }
    drop(stack);
}

/// `harness bench ARGS... --scenario SCENARIO --out OUT`: its output and
/// every results file it wrote.
fn bench_all(args: &[&std::ffi::OsStr], scenario: &Path, out: &Path) -> Vec<PathBuf> {
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("bench")
        .args(args)
        .arg("--scenario")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("harness runs");
    assert!(output.status.success(), "{output:?}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("out")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in &files {
        assert_valid_results(file);
    }
    files
}

/// The text of the claims matrix's row `title` (the first table).
fn matrix_row<'p>(page: &'p str, title: &str) -> &'p str {
    let matrix = &page[page.find("<table class=\"matrix\">").expect("matrix")..];
    let start = matrix
        .find(&format!("<tr><th>{title}"))
        .unwrap_or_else(|| panic!("row {title}"));
    let rest = &matrix[start..];
    &rest[..rest.find("</tr>").expect("row ends")]
}

/// The issue-23 report: the reference app's option4, the seed's Express
/// stack for option4, and the reference app with sessions in Redis alone,
/// all through one Redis restart. The third loses its sessions there, and
/// the matrix says so in the row for a store's loss, with the count and an
/// example of that loss; every loss of every run is in one cell.
#[test]
fn a_three_app_report_shows_sessions_lost_to_a_redis_restart_in_their_own_cell() {
    use harness::report::matrix::{Claim, Seen, cell};
    use harness::report::parts::{LossPart, Losses};
    let dir = tempfile::tempdir().expect("dir");
    let fixtures = workspace().join("harness/tests/fixtures");
    let scenario = fixtures.join("redis-restart.toml");
    let express = express("option4");
    let mut files = bench_all(
        &["option4".as_ref(), "--target".as_ref(), express.as_os_str()],
        &scenario,
        &dir.path().join("first"),
    );
    let topology = fixtures.join("redis-only.toml");
    files.extend(bench_all(
        &["--topology-file".as_ref(), topology.as_os_str()],
        &scenario,
        &dir.path().join("second"),
    ));
    let runs: Vec<Results> = files
        .iter()
        .map(|f| Results::read(f).expect("reads"))
        .collect();
    let by_name = |name: &str| {
        runs.iter()
            .find(|r| r.topology.name == name)
            .unwrap_or_else(|| panic!("{name} in {files:?}"))
    };
    let (option4, target, redis_only) = (
        by_name("option4"),
        by_name("express-msal-option4"),
        by_name("redis-only"),
    );
    for run in [option4, target, redis_only] {
        let steps = &run.timelines[0].faults;
        assert!(
            steps
                .iter()
                .any(|s| s.action == "redis-restart" && s.error.is_none()),
            "{}: {steps:?}",
            run.topology.name
        );
    }

    // Redis alone: the sessions went with it, and every loss is in a cell.
    let lost = redis_only.anomaly(Kind::SessionLoss);
    assert!(
        lost > 0,
        "redis-only loses sessions: {:?}",
        redis_only.anomalies
    );
    let store = cell(redis_only, Claim::LossOnStoreLoss);
    let losses = Losses::of(redis_only);
    let in_store = losses.part(LossPart::StoreLost);
    assert!(
        in_store > 0 && in_store * 2 > lost,
        "most losses are the restart's: {losses:?}"
    );
    assert_eq!(store.seen, Seen::Observed);
    assert!(
        store
            .number
            .starts_with(&format!("{in_store} sessions lost across redis-restart")),
        "{store:?}"
    );
    let parts: u64 = losses.parts.values().sum();
    assert_eq!(parts, lost, "{losses:?}");
    // Its example is one of those losses.
    let (kind, index) = store.example.expect("an example");
    let family = redis_only
        .anomalies
        .iter()
        .find(|a| a.kind == kind)
        .expect("family");
    let example = &family.examples[index];
    assert!(
        example.between == Some(harness::results::LossCause::StoreLost)
            || example.fault_window.as_deref() == Some("redis-restart"),
        "{example:?}"
    );
    // The two with Postgres behind Redis lose nothing there.
    for run in [option4, target] {
        let kept = cell(run, Claim::LossOnStoreLoss);
        assert_eq!(
            kept.seen,
            Seen::NotObserved,
            "{}: {kept:?}",
            run.topology.name
        );
        assert_eq!(run.anomaly(Kind::SessionLoss), 0, "{}", run.topology.name);
    }

    // One report of the three, in that order.
    let page_file = dir.path().join("three.html");
    harness::report::write(
        &files_in_order(
            &files,
            &runs,
            &["option4", "express-msal-option4", "redis-only"],
        ),
        &page_file,
    )
    .expect("the report renders: every anomaly is in one cell");
    let page = std::fs::read_to_string(&page_file).expect("written");
    let row = matrix_row(&page, "loss when a store restarts or loses its data");
    assert_eq!(row.matches("<td class=").count(), 3, "{row}");
    let cells: Vec<&str> = row.split("<td class=").skip(1).collect();
    assert!(
        cells[0].starts_with("\"clear\"")
            && cells[0].contains("0 sessions lost across redis-restart"),
        "{row}"
    );
    assert!(cells[1].starts_with("\"clear\""), "{row}");
    assert!(
        cells[2].starts_with("\"observed\"")
            && cells[2].contains(&format!("{in_store} sessions lost across redis-restart"))
            && cells[2].contains(&format!("href=\"#ex-o2-session-loss-{index}\"")),
        "{row}"
    );
    assert!(page.contains(&format!("id=\"ex-o2-session-loss-{index}\"")));
    // The target is named as its file names it, beside the option it models.
    let verdict = &page[page.find("id=\"verdict-o1\"").expect("verdict")..];
    let verdict = &verdict[..verdict.find("</p>").expect("ends")];
    assert!(
        verdict.contains("targets/express-msal/option4.toml")
            && verdict.contains("models option4")
            && verdict.contains("What this target is: the seed&#39;s stack, option4"),
        "{verdict}"
    );
    assert!(page.contains("id=\"side-by-side\""));
    // For the lead's report: the row as the page has it.
    println!("{row}");
}

/// `files` reordered so that their runs' names follow `names`.
fn files_in_order(files: &[PathBuf], runs: &[Results], names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .filter_map(|name| {
            runs.iter()
                .position(|r| r.topology.name == *name)
                .map(|i| files[i].clone())
        })
        .collect()
}
