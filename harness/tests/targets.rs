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

mod common;
use common::assert_valid_results;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// Two instances, an instance restart at 4 s, and `extra` faults. Tokens
/// live an hour: MSAL Node renews any token within 5 minutes of expiry, so
/// shorter ones would never be served from its cache.
fn scenario(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"# A short run for the target tests.
instances = 2
seed = 5

[browsers]
people = 4
per_person = 1

[load]
duration = "8s"
ramp_up = "1s"
think_time = {{ min = "30ms", max = "80ms" }}

[mix]
profile = 30
data = 10
cart_write = 30
cart_read = 25
relogin = 2

[[faults]]
at = "4s"
action = "instance-restart"
instance = 1
{extra}"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write");
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
        .map(|r| r.ok)
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
        .map(|r| r.ok)
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
    assert!(results.requests.iter().map(|r| r.ok).sum::<u64>() > 0);
    for kind in Kind::ALL {
        assert_eq!(results.anomaly(kind), 0, "{kind:?}: {output:?}");
    }
    drop(stack);
}
