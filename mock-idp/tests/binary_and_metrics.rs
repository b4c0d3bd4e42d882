//! The `mock-idp` binary with no configuration, its counters over HTTP, and TLS from PEM files.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{TestIdp, field};
use mock_idp::IdpConfig;
use mock_idp::tls::TlsMaterial;

#[tokio::test]
async fn stats_and_metrics_report_what_happened() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let tokens = t.sign_in("alice").await;
    assert_eq!(
        t.refresh(field(&tokens, "refresh_token")).await.status(),
        200
    );
    assert_eq!(t.api_me(field(&tokens, "access_token")).await.status(), 200);
    assert_eq!(t.api_me("junk").await.status(), 401);

    let stats: serde_json::Value = t
        .http
        .get(t.url("/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["authorize_calls"]["ok"], 1);
    assert_eq!(stats["token_calls"]["authorization_code"]["ok"], 1);
    assert_eq!(stats["token_calls"]["refresh_token"]["ok"], 1);
    assert_eq!(stats["api_calls"]["ok"], 1);
    assert_eq!(stats["api_calls"]["invalid_token"], 1);

    let metrics = t
        .http
        .get(t.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        r#"mock_idp_token_calls_total{grant="refresh_token",outcome="ok"} 1"#,
        r#"mock_idp_api_calls_total{outcome="invalid_token"} 1"#,
        "# TYPE mock_idp_refresh_reuse_total counter",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    t.stop().await;
}

/// Kills the child if the test fails before it does.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_both_listeners_takes_flags_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_mock-idp"))
            .args([
                "--http",
                "127.0.0.1:0",
                "--https",
                "127.0.0.1:0",
                "--ca-file",
            ])
            .arg(&ca)
            .args([
                "--client",
                "cli-app:cli-secret",
                "--user",
                "dave",
                "--no-auto-users",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn mock-idp"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(3)
        .collect::<Result<_, _>>()
        .expect("startup lines");
    let url_after = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|u| u.trim().to_owned())
            .unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"))
    };
    let http = url_after("mock-idp issuer (http):");
    let https = url_after("mock-idp issuer (https):");

    let cert =
        reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("CA written")).expect("pem");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(cert)
        .build()
        .expect("client");
    for base in [&http, &https] {
        let doc: serde_json::Value = client
            .get(format!("{base}/.well-known/openid-configuration"))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("json");
        assert_eq!(doc["issuer"], base.as_str());
    }

    // Flags added a client and a user, and turned off users on demand.
    let token = client
        .post(format!("{http}/token"))
        .basic_auth("cli-app", Some("cli-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "api://mock-api/.default"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(token.status(), 200, "{:?}", token.text().await);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for (hint, expected) in [("dave", "code"), ("zed", "error")] {
        let response = no_redirects
            .get(format!("{http}/authorize"))
            .query(&[
                ("client_id", "cli-app"),
                ("response_type", "code"),
                ("redirect_uri", "http://127.0.0.1:1/auth/callback"),
                ("scope", "openid"),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ),
                ("code_challenge_method", "S256"),
                ("login_hint", hint),
            ])
            .send()
            .await
            .expect("authorize");
        let location = common::location_params(common::location(&response));
        assert!(
            location.iter().any(|(k, _)| k == expected),
            "{hint}: {location:?}"
        );
    }

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.0.wait().expect("exit");
    assert!(status.success(), "graceful exit on SIGTERM, got {status}");
}

#[test]
fn tls_material_loads_from_pem_files_and_names_bad_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let material = TlsMaterial::from_pem_files(&cert_path, &key_path).expect("loads");
    assert!(material.server_config().is_ok());
    assert!(
        material.ca_pem().is_none(),
        "the CA of loaded files is the caller's"
    );

    let missing = dir.path().join("missing.pem");
    let error = TlsMaterial::from_pem_files(&missing, &key_path)
        .err()
        .expect("missing file is an error")
        .to_string();
    assert!(error.contains("missing.pem"), "{error}");
    let error = TlsMaterial::from_pem_files(&key_path, &key_path)
        .err()
        .expect("a key is not a certificate")
        .to_string();
    assert!(error.contains("key.pem"), "{error}");
}
