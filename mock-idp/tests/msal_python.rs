//! MSAL Python (PyPI `msal`, a real MSAL-family client) against the IdP over
//! HTTPS, trusting the generated CA: in Entra ID's default mode (authority
//! `https://127.0.0.1:PORT/<tenant>`, for the tenant id and for `common`) and
//! in OIDC mode. `tests/msal/msal_flow.py` does the app's part and checks each
//! step; this test starts the IdP, moves its clock when the script asks, and
//! checks the IdP's counters afterwards.
//!
//! It needs `python3` with `msal` (`.ci/run` installs it) and fails, saying
//! what to install, when they are missing.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mock_idp::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use mock_idp::{Clock, Idp, IdpConfig, IdpServer, ServerOptions};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/msal/msal_flow.py");
const MSAL_VERSION: &str = "1.39.0";
const LIFETIME_SECS: u64 = 3600;

/// Fails with what to install when Python or msal is missing.
async fn require_msal() {
    let install = format!(
        "install Python 3 and MSAL Python: `python3 -m pip install msal=={MSAL_VERSION}` \
         (.ci/run does this)"
    );
    let probe = Command::new("python3")
        .args(["-c", "import msal, requests; print(msal.__version__)"])
        .output()
        .await;
    match probe {
        Err(e) => panic!("cannot run python3 ({e}): {install}"),
        Ok(out) if !out.status.success() => panic!(
            "python3 cannot import msal ({}): {install}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ),
        Ok(_) => {}
    }
}

/// Runs the script against a fresh IdP; returns its result and the IdP's stats.
async fn run_msal_flow(mode: &str, tenant: Option<&str>) -> (Value, Value) {
    require_msal().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Clock::system();
    let config = IdpConfig {
        access_token_lifetime_secs: LIFETIME_SECS,
        ..IdpConfig::default()
    };
    let tenant = tenant.unwrap_or(&config.tenant_id).to_owned();
    let idp = Idp::with_clock(config, clock.clone()).expect("idp");
    let server = IdpServer::start(idp, ServerOptions::loopback(dir.path().join("ca.pem")))
        .await
        .expect("listening");
    let ca = server.ca_file.clone().expect("CA written");
    let base = format!(
        "https://127.0.0.1:{}",
        server.https_addr.expect("https listener").port()
    );
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        drive(mode, &base, &tenant, &ca, &clock),
    )
    .await
    .expect("the MSAL script finished within 120 s");
    let stats = server.idp.stats().to_json();
    server.stop().await.expect("stops");
    (result, stats)
}

async fn drive(mode: &str, base: &str, tenant: &str, ca: &Path, clock: &Clock) -> Value {
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .args(["--mode", mode, "--base", base, "--tenant", tenant])
        .args(["--client-id", DEFAULT_CLIENT_ID])
        .args(["--client-secret", DEFAULT_CLIENT_SECRET])
        .args(["--lifetime", &LIFETIME_SECS.to_string()])
        .env("REQUESTS_CA_BUNDLE", ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut result = None;
    while let Some(line) = stdout.next_line().await.expect("script output") {
        if let Some(secs) = line.strip_prefix("ADVANCE ") {
            let secs: i64 = secs.trim().parse().expect("seconds");
            clock.advance(secs);
            stdin.write_all(b"ADVANCED\n").await.expect("answer");
            stdin.flush().await.expect("answer");
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<Value>(json).expect("result json"));
        }
    }
    let status = child.wait().await.expect("script exits");
    let log = log.await.unwrap_or_default();
    assert!(
        status.success(),
        "MSAL Python {mode} run failed ({status}):\n{log}"
    );
    result.unwrap_or_else(|| panic!("no RESULT line; the script said:\n{log}"))
}

/// What every run must have made the IdP count: one sign-in, one refresh
/// (after expiry; none for the cached silent acquisitions), the refused
/// refresh after sign-out, one expired token refused at the API.
fn assert_counted(stats: &Value) {
    let token = &stats["token_calls"];
    assert_eq!(token["authorization_code"]["ok"], 1, "{stats}");
    assert_eq!(token["refresh_token"]["ok"], 1, "{stats}");
    assert_eq!(token["refresh_token"]["invalid_grant"], 1, "{stats}");
    assert_eq!(stats["logout_calls"]["ended"], 1, "{stats}");
    assert_eq!(stats["api_calls"]["invalid_token"], 1, "{stats}");
    assert_eq!(stats["api_calls"]["ok"], 2, "{stats}");
}

fn assert_cache_then_refresh(result: &Value) {
    assert_eq!(
        result["token_sources"],
        serde_json::json!(["cache", "cache", "identity_provider", "cache"]),
        "{result}"
    );
    assert_eq!(
        result["signed_in_scope"], "api.read offline_access openid profile",
        "the scope is answered in the short form asked: {result}"
    );
}

#[tokio::test]
async fn msal_python_in_entra_mode_with_the_tenant_id() {
    let (result, stats) = run_msal_flow("entra", None).await;
    assert_cache_then_refresh(&result);
    let tenant = IdpConfig::default().tenant_id;
    let iss = result["id_token_iss"].as_str().unwrap_or_default();
    assert!(iss.ends_with(&format!("/{tenant}/v2.0")), "{result}");
    assert!(
        result["end_session_endpoint"]
            .as_str()
            .is_some_and(|e| e.ends_with(&format!("/{tenant}/oauth2/v2.0/logout"))),
        "{result}"
    );
    assert_counted(&stats);
}

#[tokio::test]
async fn msal_python_in_entra_mode_with_common() {
    let (result, stats) = run_msal_flow("entra", Some("common")).await;
    assert_cache_then_refresh(&result);
    let tenant = IdpConfig::default().tenant_id;
    let iss = result["id_token_iss"].as_str().unwrap_or_default();
    assert!(
        iss.ends_with(&format!("/{tenant}/v2.0")),
        "tokens name the real tenant, not common: {result}"
    );
    assert!(
        result["end_session_endpoint"]
            .as_str()
            .is_some_and(|e| e.ends_with("/common/oauth2/v2.0/logout")),
        "{result}"
    );
    assert_counted(&stats);
}

#[tokio::test]
async fn msal_python_in_oidc_mode() {
    let (result, stats) = run_msal_flow("oidc", None).await;
    assert_cache_then_refresh(&result);
    assert_eq!(
        result["id_token_iss"], result["authority"],
        "in OIDC mode the issuer is the authority MSAL was given: {result}"
    );
    assert_counted(&stats);
}
