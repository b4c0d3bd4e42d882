//! A stack of real child processes and a browser signed in to it, for the fault tests.
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
