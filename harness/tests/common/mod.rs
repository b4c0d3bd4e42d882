//! For the harness tests: a stack of real child processes, a browser signed in
//! to it, and a look at Postgres's System V shared memory.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use app::topology::Topology;
use contract::{Browser, HttpClient};
use harness::model::app::AppUnderTest;
use harness::model::ids::{InstanceId, StoreKind};
use harness::stage::stack::{Stack, StackSpec};

/// The Redis keys that match `pattern` (KEYS: a test's few keys, never a
/// production-sized keyspace).
pub async fn redis_keys(
    connection: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> redis::RedisResult<Vec<String>> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(connection)
        .await
}

/// Brings up the preset `topology` with its stores, the IdP and `instances`
/// app instances in `dir`, its store traffic through the fault proxy when `network_proxy`.
pub async fn up(
    topology: &str,
    instances: usize,
    dir: &tempfile::TempDir,
    network_proxy: bool,
) -> Stack {
    Stack::up(&StackSpec {
        app: AppUnderTest::Reference(Topology::named(topology).expect("preset")),
        instances: NonZeroUsize::new(instances).expect("at least one"),
        run_dir: dir.path().to_owned(),
        network_proxy,
        idp: Default::default(),
        session_idle_timeout: None,
        session_absolute_timeout: None,
    })
    .await
    .expect("stack up (app and mock-idp built beside the test: cargo nextest run --workspace)")
}

/// `harness up ARGS` started as a child with stores of its own (no
/// REDIS_URL, REDIS_CLUSTER_URLS or DATABASE_URL) and the app and mock-idp
/// built beside it; hands `line` the words of each line it prints until
/// `ready`, then returns the child, still up.
pub fn harness_up(args: &[&str], mut line: impl FnMut(&[&str])) -> std::process::Child {
    use std::io::BufRead;
    let exe = env!("CARGO_BIN_EXE_harness");
    let bin_dir = std::path::Path::new(exe).parent().expect("target dir");
    for needed in ["app", "mock-idp"] {
        assert!(
            bin_dir.join(needed).is_file(),
            "{needed} is not built beside the harness; run the workspace's tests (cargo nextest run --workspace)"
        );
    }
    let mut child = std::process::Command::new(exe)
        .arg("up")
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_URLS")
        .env_remove("DATABASE_URL")
        .env("HARNESS_BIN_DIR", bin_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn harness");
    let stdout = child.stdout.take().expect("stdout");
    for text in std::io::BufReader::new(stdout).lines() {
        let text = text.expect("line");
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.first() == Some(&"ready") {
            break;
        }
        line(&words);
    }
    child
}

/// Polls `ready` every 20 ms until it says yes; fails the test, saying
/// `what` did not happen, once `within` has passed.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !ready().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A scenario committed for the tests: `tests/fixtures/scenarios/NAME`.
pub fn scenario_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scenarios")
        .join(name)
}

/// A browser with its own cookie jar.
pub fn browser() -> Browser {
    Browser::new(&HttpClient::new(), Duration::from_secs(15))
}

/// Signs `browser` in as alice at the instance at `base`.
pub async fn sign_in(browser: &Browser, base: &str) {
    let home = browser.sign_in(base, "alice").await.expect("sign in");
    assert_eq!(home.status, 200);
    assert!(home.into_reply().expect("home").signed_in);
}

/// The status of a GET; like a browser, it repeats it once when a kept-alive
/// connection turns out to have been closed (as after an instance restart).
pub async fn status(browser: &Browser, url: &str) -> u16 {
    match browser.get(url).await {
        Ok(page) => page.status,
        Err(_) => browser.get(url).await.expect("answers").status,
    }
}

/// Chunks the proxy held back on the paths from `id` to `store` so far.
pub fn held(stack: &Stack, store: StoreKind, id: InstanceId) -> u64 {
    stack
        .links
        .all()
        .iter()
        .filter(|l| l.store == store && l.instance == id)
        .map(|l| l.link.stats().held.load(Ordering::Relaxed))
        .sum()
}

/// The System V segment id a postmaster of `data` recorded on line 7 of its
/// pid file. The postmaster rewrites the file as it starts, so a read may
/// catch it half written: read again until the line is there.
pub fn segment_of(data: &std::path::Path) -> String {
    for _ in 0..500 {
        let line = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|text| {
                text.lines()
                    .nth(6)
                    .and_then(|line| line.split_whitespace().nth(1))
                    .map(str::to_owned)
            });
        if let Some(shmid) = line {
            return shmid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "no shmem key and id on line 7 of {}/postmaster.pid",
        data.display()
    );
}

/// Whether a System V shared-memory segment with this id exists.
pub fn segment_exists(shmid: &str) -> bool {
    std::fs::read_to_string("/proc/sysvipc/shm")
        .expect("/proc/sysvipc/shm")
        .lines()
        .skip(1)
        .any(|line| line.split_whitespace().nth(1) == Some(shmid))
}

/// Checks a results file against `reports/schema.json`; panics with every violation.
pub fn assert_valid_results(path: &std::path::Path) {
    let schema_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&schema_path).expect("reports/schema.json"))
            .expect("schema is JSON");
    let instance: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("results file"))
            .expect("results are JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{}: {}",
        path.display(),
        errors.join("\n")
    );
}
