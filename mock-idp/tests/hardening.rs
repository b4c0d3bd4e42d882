//! Limits against slow and greedy clients, and the checks that compare raw
//! text or issuers: each refusal is an OAuth JSON error, and the IdP keeps
//! serving everyone else.
//!
//! Timeouts run on paused tokio time: the runtime jumps to the next timer
//! whenever every task waits, so a 30 s timeout costs no real time and the
//! elapsed times asserted are the virtual clock's.

mod common;

use std::time::Duration;

use common::{REDIRECT, SCOPES, TestIdp, field, pkce};
use mock_idp::config::DEFAULT_CLIENT_ID;
use mock_idp::limits::Limits;
use mock_idp::{Idp, IdpConfig, IdpServer, ServerOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn with_limits(limits: Limits) -> IdpConfig {
    IdpConfig {
        limits,
        ..IdpConfig::default()
    }
}

/// Everything the server sends until it closes the connection; a failure
/// rather than a hang when it never does.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    // A reset also ends the connection; what was read before it is the answer.
    let read = tokio::time::timeout(Duration::from_secs(600), stream.read_to_end(&mut answer));
    assert!(read.await.is_ok(), "the IdP held the connection for 600 s");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn healthz(t: &TestIdp) -> u16 {
    t.http
        .get(t.url("/healthz"))
        .send()
        .await
        .expect("healthz answers")
        .status()
        .as_u16()
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_cut_off_and_others_are_served() {
    let t = TestIdp::start(with_limits(Limits {
        header_read_timeout_secs: 5,
        ..Limits::default()
    }))
    .await;
    let addr = t.server.http_addr.expect("http listener");
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        .await
        .expect("partial headers");
    assert_eq!(healthz(&t).await, 200, "others are served meanwhile");

    let answer = read_to_close(&mut slow).await;
    let held = started.elapsed();
    assert!(
        answer.is_empty(),
        "cut off without an answer, got {answer:?}"
    );
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(6)).contains(&held),
        "cut off at the 5 s header timeout, not after {held:?}"
    );
    // A client that sends its first request and then dawdles over the next
    // one's headers is cut off the same way.
    let mut dawdler = TcpStream::connect(addr).await.expect("connect");
    dawdler
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\n")
        .await
        .expect("one request and a half");
    let answer = read_to_close(&mut dawdler).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 1, "{answer}");
    assert_eq!(healthz(&t).await, 200, "still serving");
    t.stop().await;
}

#[tokio::test(start_paused = true)]
async fn at_the_connection_cap_a_new_client_waits_for_a_free_slot() {
    let t = TestIdp::start(with_limits(Limits {
        max_connections: 1,
        header_read_timeout_secs: 10,
        ..Limits::default()
    }))
    .await;
    let addr = t.server.http_addr.expect("http listener");
    let started = Instant::now();
    let _idle = TcpStream::connect(addr).await.expect("connect");
    // The one slot is taken until the idle connection's header timeout frees it.
    assert_eq!(healthz(&t).await, 200, "served once a slot is free");
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "the second client waited for the first to go, {:?}",
        started.elapsed()
    );
    t.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_comes_gets_408_as_an_oauth_error() {
    let t = TestIdp::start(with_limits(Limits {
        body_read_timeout_secs: 7,
        ..Limits::default()
    }))
    .await;
    let addr = t.server.http_addr.expect("http listener");
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(
        b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n\
          grant_type=client_",
    )
    .await
    .expect("headers and a little body");
    let answer = read_to_close(&mut slow).await;
    let held = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
    assert!(
        (Duration::from_secs(7)..Duration::from_secs(8)).contains(&held),
        "answered at the 7 s body timeout, not after {held:?}"
    );
    assert_eq!(t.idp().stats().refused_requests.get(&["body_timeout"]), 1);
    assert_eq!(healthz(&t).await, 200, "still serving");
    t.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_as_an_oauth_error() {
    let t = TestIdp::start(with_limits(Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    }))
    .await;
    let big = format!("grant_type=client_credentials&scope={}", "x".repeat(2000));
    let declared = t
        .http
        .post(t.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(declared.status(), 413);
    assert_eq!(declared.headers()["content-type"], "application/json");
    let body: Value = declared.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request", "{body}");

    // Without a length up front (chunked), the limit is met while reading.
    let mut chunked = TcpStream::connect(t.server.http_addr.expect("http listener"))
        .await
        .expect("connect");
    let mut request = b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for chunk in big.as_bytes().chunks(100) {
        request.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    // The IdP may answer and close before it has read everything we send.
    let _ = chunked.write_all(&request).await;
    let answer = read_to_close(&mut chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("content-type: application/json"),
        "{answer}"
    );
    assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");

    assert_eq!(t.idp().stats().refused_requests.get(&["body_too_large"]), 2);
    // A body under the limit is untouched.
    let response = t
        .token(&[("grant_type", "client_credentials"), ("scope", "api.read")])
        .await;
    assert_eq!(response.status(), 200);
    t.stop().await;
}

#[tokio::test]
async fn a_redirect_uri_with_cr_or_lf_inside_is_refused() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let (_, challenge) = pkce();
    for sneaky in [
        "http://127.0.0.1:5555/auth/call\r\nback",
        "http://127.0.0.1:5555/auth/callback\r\nSet-Cookie: x=1",
        "http://127.0.0.1:5555/auth/\tcallback",
    ] {
        let response = t
            .http
            .get(t.url("/authorize"))
            .query(&[
                ("client_id", DEFAULT_CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", sneaky),
                ("scope", SCOPES),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("login_hint", "alice"),
            ])
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 400, "{sneaky:?}: no redirect at all");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "invalid_request", "{sneaky:?}");
    }
    let tokens = t.sign_in("alice").await;
    let logout = t
        .http
        .get(t.url("/logout"))
        .query(&[
            ("id_token_hint", field(&tokens, "id_token")),
            ("post_logout_redirect_uri", "http://127.0.0.1:5555/\r\n"),
        ])
        .send()
        .await
        .expect("answer");
    assert_eq!(logout.status(), 400, "logout compares raw text too");
    // The registered URI, on any loopback port, still works.
    assert!(REDIRECT.starts_with("http://127.0.0.1:"));
    t.stop().await;
}

#[tokio::test]
async fn the_api_accepts_only_the_issuers_of_the_listener_it_is_called_on() {
    let dir = tempfile::tempdir().expect("dir");
    let server = IdpServer::start(
        Idp::new(IdpConfig::default()).expect("idp"),
        ServerOptions::loopback(dir.path().join("ca.pem")),
    )
    .await
    .expect("listening");
    let ca = reqwest::Certificate::from_pem(
        &std::fs::read(server.ca_file.as_ref().expect("CA written")).expect("CA"),
    )
    .expect("pem");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let http = server.http_url().expect("http");
    let https = server.https_url().expect("https");
    let tenant = server.idp.config().tenant_id.clone();
    let idp = &server.idp;
    let now = idp.clock().now();
    let token_from = |iss: &str| {
        let claims = serde_json::json!({
            "iss": iss, "aud": "api://mock-api", "sub": "s", "oid": "s", "tid": tenant,
            "sid": "x", "azp": "harness-app", "scp": "api.read", "jti": "j",
            "iat": now, "nbf": now, "exp": now + 600, "ver": "2.0",
        });
        idp.sign_claims(&claims).expect("sign")
    };
    let https_port = server.https_addr.expect("https").port();
    let cases = [
        (&https, format!("https://127.0.0.1:{https_port}"), 200),
        (&https, format!("{https}/{tenant}/v2.0"), 200),
        (&https, http.clone(), 401),
        (&https, format!("{http}/{tenant}/v2.0"), 401),
        (&https, format!("{https}/other-tenant/v2.0"), 401),
        (&https, "https://evil.example".to_owned(), 401),
        (&http, http.clone(), 200),
        (&http, https.clone(), 401),
    ];
    for (api, iss, status) in cases {
        let response = client
            .get(format!("{api}/api/me"))
            .bearer_auth(token_from(&iss))
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), status, "iss {iss} at {api}");
        if status == 401 {
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["error"], "invalid_token", "iss {iss} at {api}");
        }
    }
    server.stop().await.expect("stops");
}
