//! Each fault control changes behaviour as configured; time is a paused tokio clock, never a sleep.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mock_idp::faults::{
    Endpoint, Endpoints, ErrorFault, FaultConfig, LatencyFault, OutageFault, RateLimitFault,
};
use mock_idp::{Idp, IdpConfig};
use serde_json::{Value, json};
use tokio::time::{Duration, Instant};
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        retry_after,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "127.0.0.1:9400")
        .body(Body::empty())
        .expect("request")
}

/// A client-credentials request: the cheapest call that reaches the token endpoint's logic.
fn token_as(client_id: &str) -> Request<Body> {
    Request::post("/token")
        .header("host", "127.0.0.1:9400")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "grant_type=client_credentials&client_id={client_id}&client_secret=harness-secret&scope=api.read"
        )))
        .expect("request")
}

fn put_faults(config: &Value) -> Request<Body> {
    Request::put("/admin/faults")
        .header("content-type", "application/json")
        .body(Body::from(config.to_string()))
        .expect("request")
}

fn idp_with(faults: FaultConfig) -> (Idp, Router) {
    let idp = Idp::new(IdpConfig {
        faults,
        ..IdpConfig::default()
    })
    .expect("idp");
    let router = idp.router();
    (idp, router)
}

fn only(endpoints: &[Endpoint]) -> Endpoints {
    Endpoints(endpoints.to_vec())
}

#[tokio::test(start_paused = true)]
async fn latency_delays_only_the_chosen_endpoints() {
    let (idp, router) = idp_with(FaultConfig {
        latency: Some(LatencyFault {
            fixed_ms: 250,
            jitter_ms: 50,
            endpoints: only(&[Endpoint::Token]),
        }),
        seed: Some(1),
        ..FaultConfig::default()
    });
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(
            send(&router, token_as("harness-app")).await.status,
            StatusCode::OK
        );
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(250)..=Duration::from_millis(300)).contains(&waited),
            "token waited {waited:?}"
        );
    }
    let started = Instant::now();
    assert_eq!(send(&router, get("/jwks")).await.status, StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::ZERO, "jwks is not delayed");
    assert_eq!(idp.stats().faults_injected.get(&["latency", "token"]), 20);
}

#[tokio::test]
async fn errors_use_the_configured_status_and_retry_after() {
    let (idp, router) = idp_with(FaultConfig::default());
    for (status, retry_after) in [(500, None), (503, Some("7")), (429, Some("7"))] {
        let config = json!({"errors": {"rate": 1.0, "status": status, "retry_after_secs": 7, "endpoints": ["api"]}});
        assert_eq!(
            send(&router, put_faults(&config)).await.status,
            StatusCode::OK
        );
        let answer = send(&router, get("/api/me")).await;
        assert_eq!(answer.status.as_u16(), status);
        assert_eq!(answer.retry_after.as_deref(), retry_after);
        assert!(
            answer.body["error"].is_string(),
            "an OAuth-style body: {}",
            answer.body
        );
        assert_eq!(
            send(&router, get("/jwks")).await.status,
            StatusCode::OK,
            "jwks untouched"
        );
    }
    assert_eq!(idp.stats().faults_injected.get(&["error", "api"]), 3);
}

#[tokio::test]
async fn an_error_rate_fails_about_that_share_and_counts_each_one() {
    let (idp, router) = idp_with(FaultConfig {
        errors: Some(ErrorFault {
            rate: 0.25,
            status: 503,
            retry_after_secs: 1,
            endpoints: only(&[Endpoint::Jwks]),
        }),
        seed: Some(42),
        ..FaultConfig::default()
    });
    let mut failed = 0;
    for _ in 0..2000 {
        if send(&router, get("/jwks")).await.status == StatusCode::SERVICE_UNAVAILABLE {
            failed += 1;
        }
    }
    assert!(
        (400..=600).contains(&failed),
        "{failed} of 2000 failed at rate 0.25"
    );
    assert_eq!(idp.stats().faults_injected.get(&["error", "jwks"]), failed);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_is_per_client_and_refills_with_time() {
    let mut config = IdpConfig::default();
    let mut second = config.clients[0].clone();
    second.client_id = "second-app".into();
    config.clients.push(second);
    config.faults.rate_limit = Some(RateLimitFault {
        per_second: 2.0,
        burst: Some(3),
        endpoints: only(&[Endpoint::Token]),
    });
    let idp = Idp::new(config).expect("idp");
    let router = idp.router();

    for _ in 0..3 {
        assert_eq!(
            send(&router, token_as("harness-app")).await.status,
            StatusCode::OK
        );
    }
    let limited = send(&router, token_as("harness-app")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.retry_after.as_deref(), Some("1"));
    assert_eq!(
        send(&router, token_as("second-app")).await.status,
        StatusCode::OK,
        "another client has its own bucket"
    );
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(
        send(&router, token_as("harness-app")).await.status,
        StatusCode::OK,
        "refilled one"
    );
    assert_eq!(
        send(&router, token_as("harness-app")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(idp.stats().faults_injected.get(&["rate_limit", "token"]), 2);
    assert_eq!(
        idp.stats().token_calls.get(&["client_credentials", "ok"]),
        5
    );
}

#[tokio::test]
async fn an_outage_answers_503_everywhere_until_cleared_at_run_time() {
    let (idp, router) = idp_with(FaultConfig::default());
    let outage = json!({"outage": {}});
    assert_eq!(
        send(&router, put_faults(&outage)).await.status,
        StatusCode::OK
    );
    for path in [
        "/.well-known/openid-configuration",
        "/jwks",
        "/authorize",
        "/userinfo",
        "/logout",
        "/api/me",
    ] {
        assert_eq!(
            send(&router, get(path)).await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
    }
    assert_eq!(
        send(&router, token_as("harness-app")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Observability and control stay up during an outage.
    assert_eq!(send(&router, get("/stats")).await.status, StatusCode::OK);
    let current = send(&router, get("/admin/faults")).await;
    assert!(current.body["outage"].is_object(), "{}", current.body);

    let clear = Request::delete("/admin/faults")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&router, clear).await.status, StatusCode::NO_CONTENT);
    assert_eq!(send(&router, get("/jwks")).await.status, StatusCode::OK);
    assert_eq!(
        send(&router, token_as("harness-app")).await.status,
        StatusCode::OK
    );
    assert_eq!(idp.stats().faults_injected.get(&["outage", "token"]), 1);
}

#[tokio::test]
async fn an_outage_can_cover_chosen_endpoints_only() {
    let (_, router) = idp_with(FaultConfig {
        outage: Some(OutageFault {
            endpoints: only(&[Endpoint::Token, Endpoint::Api]),
        }),
        ..FaultConfig::default()
    });
    assert_eq!(
        send(&router, token_as("harness-app")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        send(&router, get("/api/me")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(send(&router, get("/jwks")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn invalid_fault_settings_are_refused_and_change_nothing() {
    let (idp, router) = idp_with(FaultConfig::default());
    for bad in [
        json!({"errors": {"rate": 1.5, "status": 500}}),
        json!({"errors": {"rate": 0.5, "status": 418}}),
        json!({"rate_limit": {"per_second": 0}}),
        json!({"latency": {"fixed_ms": 5, "endpoints": ["nowhere"]}}),
        json!({"earthquake": {}}),
    ] {
        let status = send(&router, put_faults(&bad)).await.status;
        assert!(status.is_client_error(), "{bad} gave {status}");
    }
    assert_eq!(idp.faults().current(), FaultConfig::default());
}

#[tokio::test]
async fn faults_in_the_config_file_apply_from_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("idp.toml");
    std::fs::write(
        &path,
        "[faults.errors]\nrate = 1.0\nstatus = 429\nretry_after_secs = 3\nendpoints = [\"token\"]\n",
    )
    .expect("write");
    let idp = Idp::new(IdpConfig::from_file(&path).expect("config")).expect("idp");
    let answer = send(&idp.router(), token_as("harness-app")).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.retry_after.as_deref(), Some("3"));
}
