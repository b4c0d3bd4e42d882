//! For the harness tests: a stack of real child processes, a browser signed in
//! to it, and a look at Postgres's System V shared memory.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use harness::stack::{Stack, StackSpec};

/// Brings up `topology` with its stores, the IdP and `instances` app instances
/// in `dir`, its store traffic through the fault proxy when `network_proxy`.
pub async fn up(
    topology: &str,
    instances: usize,
    dir: &tempfile::TempDir,
    network_proxy: bool,
) -> Stack {
    Stack::up(&StackSpec {
        topology: topology.into(),
        instances,
        run_dir: dir.path().to_owned(),
        network_proxy,
    })
    .await
    .expect("stack up (app and mock-idp built beside the test: cargo nextest run --workspace)")
}

/// A client with its own cookie jar, as one browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// Signs `browser` in as alice at the instance at `base`.
pub async fn sign_in(browser: &reqwest::Client, base: &str) {
    let home = browser
        .get(format!("{base}/login?login_hint=alice"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(home.status(), 200);
}

/// The System V segment id a postmaster of `data` recorded on line 7 of its pid file.
pub fn segment_of(data: &std::path::Path) -> String {
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).expect("pid file");
    pid_file
        .lines()
        .nth(6)
        .and_then(|line| line.split_whitespace().nth(1))
        .expect("shmem key and id on line 7")
        .to_owned()
}

/// Whether a System V shared-memory segment with this id exists.
pub fn segment_exists(shmid: &str) -> bool {
    std::fs::read_to_string("/proc/sysvipc/shm")
        .expect("/proc/sysvipc/shm")
        .lines()
        .skip(1)
        .any(|line| line.split_whitespace().nth(1) == Some(shmid))
}
