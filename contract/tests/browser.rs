//! The browser against small loopback servers: redirects across ports with
//! cookies kept per host (not per port), typed answers, and failures told
//! apart by whether the request may have been carried out.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Redirect;
use axum::routing::{get, post};
use contract::{Browser, BrowserError, CartReply, HttpClient, Outcome};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn cookies(headers: &HeaderMap) -> String {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// An "IdP" that sets its own cookie and sends the browser back to the app,
/// and an "app" whose callback sets the session cookie and redirects home.
async fn sign_in_pair() -> (String, String) {
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app_base = format!("http://{}", app_listener.local_addr().expect("addr"));
    let back = format!("{app_base}/auth/callback?code=c1");
    let idp = serve(Router::new().route(
        "/authorize",
        get(move || {
            let back = back.clone();
            async move {
                (
                    [(header::SET_COOKIE, "idp_session=i1; Path=/; HttpOnly")],
                    Redirect::to(&back),
                )
            }
        }),
    ))
    .await;
    let login_target = format!("{idp}/authorize");
    let app = Router::new()
        .route(
            "/login",
            get(move || {
                let to = login_target.clone();
                async move { Redirect::to(&to) }
            }),
        )
        .route(
            "/auth/callback",
            get(|| async {
                (
                    [(
                        header::SET_COOKIE,
                        "app_session=s1; Path=/; HttpOnly; SameSite=Lax",
                    )],
                    Redirect::to("/"),
                )
            }),
        )
        .route(
            "/",
            get(|headers: HeaderMap| async move {
                (
                    [("x-instance", "app-1"), ("x-session-version", "3")],
                    axum::Json(serde_json::json!({
                        "instance": "app-1", "signed_in": true, "user": cookies(&headers)
                    })),
                )
            }),
        )
        .route(
            "/cart",
            post(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({"error": "store_unavailable", "detail": "down"})),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(app_listener, app).await });
    (idp, app_base)
}

#[tokio::test]
async fn signs_in_through_redirects_and_keeps_cookies_per_host_not_port() {
    let (idp, app) = sign_in_pair().await;
    let http = HttpClient::new();
    let browser = Browser::new(&http, Duration::from_secs(5));
    let home = browser.sign_in(&app, "alice").await.expect("answers");
    assert_eq!(home.status, 200);
    assert_eq!(home.instance.as_deref(), Some("app-1"));
    assert_eq!(home.session_version, Some(3));
    let seen = home
        .into_reply()
        .expect("home reply")
        .user
        .unwrap_or_default();
    // 127.0.0.1 cookies go to every port, as in a real browser.
    assert!(
        seen.contains("app_session=s1") && seen.contains("idp_session=i1"),
        "{seen}"
    );
    assert_eq!(browser.cookie(&idp, "app_session").as_deref(), Some("s1"));

    // Another browser on the same pool has its own, empty jar.
    let other = Browser::new(&http, Duration::from_secs(5));
    let page = other.get(&format!("{app}/")).await.expect("answers");
    let reply: serde_json::Value = page.json().expect("json");
    assert_eq!(reply["user"], "");

    // A clone shares the jar (tabs of one browser).
    let tab = browser.clone();
    tab.clear_cookies();
    assert_eq!(browser.cookie(&app, "app_session"), None);
}

#[tokio::test]
async fn redirects_are_left_alone_when_asked_and_errors_read_as_contract_errors() {
    let (_, app) = sign_in_pair().await;
    let browser = Browser::new(&HttpClient::new(), Duration::from_secs(5));
    let first = browser
        .get_once(&format!("{app}/login?login_hint=bob"))
        .await
        .expect("answers");
    assert_eq!(first.status, 303);
    assert!(first.location.is_some_and(|l| l.ends_with("/authorize")));

    let answer = browser.add_to_cart(&app, "i-1").await.expect("answers");
    assert_eq!(answer.status, 503);
    match &answer.outcome {
        Outcome::<CartReply>::Error(e) => {
            assert_eq!(e.error, contract::ErrorCode::StoreUnavailable)
        }
        other => panic!("{other:?}"),
    }
    let unreadable = browser.cart(&app).await.expect("answers");
    assert!(
        matches!(unreadable.outcome, Outcome::Unreadable(_)),
        "a 405 without a contract body: {:?}",
        unreadable.outcome
    );
}

#[tokio::test]
async fn failures_say_whether_the_request_may_have_happened() {
    let browser = Browser::new(&HttpClient::new(), Duration::from_millis(300));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let refused = browser
        .get(&format!("http://127.0.0.1:{port}/"))
        .await
        .expect_err("nothing listens");
    assert!(matches!(refused, BrowserError::Connect { .. }), "{refused}");
    assert!(!refused.is_indeterminate());

    let slow = serve(Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    ))
    .await;
    let timed_out = browser.get(&slow).await.expect_err("too slow");
    assert!(
        matches!(timed_out, BrowserError::Timeout { .. }),
        "{timed_out}"
    );
    assert!(timed_out.is_indeterminate());

    // A server that reads the request and closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::AsyncReadExt;
            let mut buf = [0; 1024];
            let _ = stream.read(&mut buf).await;
            drop(stream);
        }
    });
    let dropped = browser
        .get(&format!("http://{addr}/"))
        .await
        .expect_err("closed");
    assert!(dropped.is_indeterminate(), "{dropped}");

    let bad = browser
        .get("https://example.invalid/")
        .await
        .expect_err("https");
    assert!(matches!(bad, BrowserError::BadUrl { .. }));
}
