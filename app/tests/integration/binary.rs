//! The `app` binary as a process: it answers 503 while its store is down and
//! recovers by itself, and it logs nothing token-like at info level.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mock_idp::{Idp, IdpConfig, IdpServer, ServerOptions};

use crate::common::{Guard, free_port, redis_server, wait_for_port};

fn start_app(port: u16, authority: &str, extra: &[&str], output: Stdio, errors: Stdio) -> Guard {
    let child = Command::new(env!("CARGO_BIN_EXE_app"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--authority",
            authority,
            // No secret given: a local, throwaway instance.
            "--dev",
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(output)
        .stderr(errors)
        .spawn()
        .expect("spawn app");
    wait_for_port(port);
    Guard(child)
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_goes_down_gives_503_and_the_app_recovers_when_it_returns() {
    let idp = IdpServer::start(
        Idp::new(IdpConfig::default()).expect("idp"),
        ServerOptions::http_only(),
    )
    .await
    .expect("idp");
    let dir = tempfile::tempdir().expect("dir");
    let topology =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redis-only.toml");
    let redis_port = free_port();
    let mut redis = redis_server(redis_port, dir.path(), &[]);
    let app_port = free_port();
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let _app = start_app(
        app_port,
        &idp.http_url().expect("url"),
        &[
            "--topology-file",
            topology.to_str().expect("utf8"),
            "--redis-url",
            &redis_url,
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let base = format!("http://127.0.0.1:{app_port}");
    let user = browser();
    let home = user
        .get(format!("{base}/login?login_hint=alice"))
        .send()
        .await
        .expect("sign in");
    assert_eq!(home.status(), 200);
    assert_eq!(
        user.get(format!("{base}/profile"))
            .send()
            .await
            .expect("profile")
            .status(),
        200
    );

    drop(redis);
    let down = user
        .get(format!("{base}/profile"))
        .send()
        .await
        .expect("the app still answers");
    assert_eq!(down.status(), 503);
    let body: serde_json::Value = down.json().await.expect("json");
    assert_eq!(body["error"], "store_unavailable", "{body}");
    // A short reason of the app's own; the store's own words stay in its log.
    assert_eq!(
        body["detail"], "a store is unavailable; try again",
        "{body}"
    );

    redis = redis_server(redis_port, dir.path(), &[]);
    // The restarted Redis kept nothing (no persistence), so this browser is
    // signed out; the point is the app serves again without a restart.
    let deadline = Instant::now() + Duration::from_secs(15);
    let again = browser();
    loop {
        let response = again
            .get(format!("{base}/login?login_hint=alice"))
            .send()
            .await
            .expect("answers");
        if response.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not recover: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        again
            .get(format!("{base}/profile"))
            .send()
            .await
            .expect("profile")
            .status(),
        200
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_token_like_is_logged_at_info_level() {
    let idp = IdpServer::start(
        Idp::new(IdpConfig::default()).expect("idp"),
        ServerOptions::http_only(),
    )
    .await
    .expect("idp");
    let dir = tempfile::tempdir().expect("dir");
    let app_port = free_port();
    let sqlite = dir.path().join("store.db");
    let mut app = start_app(
        app_port,
        &idp.http_url().expect("url"),
        &[
            "--topology",
            "option3",
            "--sqlite-path",
            sqlite.to_str().expect("utf8"),
        ],
        Stdio::piped(),
        Stdio::piped(),
    );
    let base = format!("http://127.0.0.1:{app_port}");
    let user = browser();
    for path in [
        "/login?login_hint=alice",
        "/profile",
        "/data/photos",
        "/logout",
    ] {
        let response = user
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200, "{path}");
    }

    let pid = app.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = app.0.wait().expect("exit");
    assert!(status.success(), "graceful exit: {status}");
    let mut logs = String::new();
    for stream in [
        app.0.stdout.take().map(|s| Box::new(s) as Box<dyn Read>),
        app.0.stderr.take().map(|s| Box::new(s) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut stream = stream;
        stream.read_to_string(&mut logs).expect("read logs");
    }
    assert!(logs.contains("listening"), "the log was captured: {logs}");
    for needle in [
        "eyJ",
        "refresh_token",
        "access_token",
        "client_secret",
        "harness-secret",
        "code_verifier",
    ] {
        assert!(
            !logs.contains(needle),
            "{needle:?} appears in the log:\n{logs}"
        );
    }
}

/// The app's exit and what it said, started with `extra` and `env`, no secret given.
fn start_and_wait(extra: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_app"));
    command
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--topology",
            "option1",
        ])
        .args(extra)
        .env_remove("APP_ENCRYPTION_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("spawn app");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut said = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut said)
                .expect("stderr");
            return (status, said);
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let _ = child.kill();
            let status = child.wait().expect("exits");
            let mut said = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut said)
                .expect("stderr");
            return (status, said + "\n(listening)");
        }
        assert!(
            Instant::now() < deadline,
            "the app neither exited nor listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_built_in_default_secret_is_refused_unless_asked_for_by_name() {
    let (status, said) = start_and_wait(&[], &[]);
    assert!(!status.success(), "{said}");
    assert!(
        said.contains("refusing the built-in default secret") && said.contains("--dev"),
        "{said}"
    );
    // Given by hand, the default is still the default.
    let (status, said) = start_and_wait(
        &[],
        &[("APP_ENCRYPTION_SECRET", "dev-only-secret-change-me")],
    );
    assert!(!status.success(), "{said}");
    // Asked for by name: it starts, and says so at start.
    let (_, said) = start_and_wait(&["--dev"], &[]);
    assert!(said.contains("(listening)"), "{said}");
    assert!(said.contains("built-in default secret"), "{said}");
    // A secret of its own: it starts and says nothing of it.
    let (_, said) = start_and_wait(
        &["--encryption-secret", "a-real-secret-of-32-bytes-or-so"],
        &[],
    );
    assert!(
        said.contains("(listening)") && !said.contains("default secret"),
        "{said}"
    );
}
