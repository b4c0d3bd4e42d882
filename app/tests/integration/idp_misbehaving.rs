//! The app's IdP client against a misbehaving IdP (wiremock): clear 502/503 answers,
//! retries only where safe, and never a bad token in the cache.

use std::time::Duration;

use app::idp_client::IdpSettings;
use app::topology::{Backends, Topology};
use app::web::WebSettings;
use app::{AppConfig, default_session_settings};
use mock_idp::keys::SigningKey;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLIENT_INFO: &str = "eyJ1aWQiOiJ1c2VyLTEiLCJ1dGlkIjoidGVuYW50LTEifQ"; // {"uid":"user-1","utid":"tenant-1"}

struct Fixture {
    idp: MockServer,
    base: String,
    /// A client carrying the signed-in session cookie.
    browser: reqwest::Client,
}

fn token_body(access: &str, refresh: &str, id_token: Option<&str>) -> Value {
    let mut body = json!({
        "token_type": "Bearer", "access_token": access, "refresh_token": refresh,
        "expires_in": 3600, "ext_expires_in": 3600, "client_info": CLIENT_INFO,
        "scope": "api://mock-api/api.read openid profile offline_access",
    });
    if let Some(id) = id_token {
        body["id_token"] = json!(id);
    }
    body
}

/// An app (option1: in memory, no servers needed) signed in against the wiremock IdP.
async fn signed_in(timeout: Duration) -> Fixture {
    let idp = MockServer::start().await;
    let issuer = idp.uri();
    let key = SigningKey::from_seed("wiremock").expect("key");
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "end_session_endpoint": format!("{issuer}/logout"),
        })))
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(key.jwks()))
        .mount(&idp)
        .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = AppConfig {
        topology: Topology::preset("option1").expect("preset"),
        backends: Backends {
            redis_url: None,
            redis_cluster_urls: Vec::new(),
            redis_ca_pem: None,
            database_url: None,
            sqlite_path: "unused.db".into(),
            namespace: "wiremock".into(),
            encryption_secret: Vec::new(),
            encryption_key_id: "k1".into(),
            previous_key_ids: Vec::new(),
            breaker: Default::default(),
            instance: "wiremock".into(),
            coherence: Default::default(),
        },
        sessions: default_session_settings(),
        idp: IdpSettings {
            api_url: format!("{issuer}/api/me"),
            authority: issuer.clone(),
            client_id: "harness-app".into(),
            client_secret: "harness-secret".into(),
            timeout,
            attempts: 3,
            max_retry_after: Duration::from_secs(2),
            ca_pem: None,
        },
        web: WebSettings {
            instance_id: "app-w".into(),
            public_url: format!("http://{addr}"),
            api_audience: "api://mock-api".into(),
            // Every profile call renews, so every call exercises the token endpoint.
            renewal_offset: 1_000_000,
        },
    };
    let app = app::build(config).expect("app");
    tokio::spawn(app::run(listener, app, std::future::pending()));
    let base = format!("http://{addr}");

    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = browser
        .get(format!("{base}/login?login_hint=alice"))
        .send()
        .await
        .expect("login");
    let authorize =
        url::Url::parse(login.headers()["location"].to_str().expect("ascii")).expect("url");
    let param = |name: &str| {
        authorize
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .expect(name)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let id_token = key
        .sign(&json!({
            "iss": issuer, "aud": "harness-app", "sub": "user-1", "oid": "user-1", "tid": "tenant-1",
            "sid": "idp-session-1", "nonce": param("nonce"), "iat": now, "nbf": now, "exp": now + 3600,
            "preferred_username": "alice",
        }))
        .expect("sign");
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "at-original",
            "rt-original",
            Some(&id_token),
        )))
        .expect(1)
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"sub": "user-1", "sid": "idp-session-1", "jti": "j-1", "iat": 1, "exp": 2}),
        ))
        .mount(&idp)
        .await;
    let callback = browser
        .get(format!(
            "{base}/auth/callback?code=the-code&state={}",
            param("state")
        ))
        .send()
        .await
        .expect("callback");
    assert_eq!(
        callback.status(),
        302,
        "signed in: {:?}",
        callback.text().await
    );
    Fixture { idp, base, browser }
}

impl Fixture {
    async fn profile(&self) -> (u16, Value) {
        let response = self
            .browser
            .get(format!("{}/profile", self.base))
            .send()
            .await
            .expect("answers");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn refresh_answers(&self, template: ResponseTemplate, times: Option<u64>) {
        let mock = Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .respond_with(template);
        let mock = match times {
            Some(n) => mock.up_to_n_times(n),
            None => mock,
        };
        mock.with_priority(1).mount(&self.idp).await;
    }

    /// Refresh requests received so far, and the refresh token each carried.
    async fn refreshes(&self) -> Vec<String> {
        self.idp
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == "/token")
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .filter(|b| b.contains("grant_type=refresh_token"))
            .collect()
    }

    async fn succeeds_with_the_original_refresh_token(&self) {
        self.idp.reset().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains("refresh_token=rt-original"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(token_body("at-2", "rt-2", None)),
            )
            .mount(&self.idp)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/me"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"sub": "user-1", "jti": "j-2", "iat": 1, "exp": 2})),
            )
            .mount(&self.idp)
            .await;
        let (status, body) = self.profile().await;
        assert_eq!(
            status, 200,
            "the cache still holds the original refresh token: {body}"
        );
    }
}

#[tokio::test]
async fn a_500_is_a_502_and_a_refresh_is_not_retried() {
    let f = signed_in(Duration::from_secs(2)).await;
    f.refresh_answers(ResponseTemplate::new(500), None).await;
    let (status, body) = f.profile().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("idp_error")),
        "{body}"
    );
    assert_eq!(
        f.refreshes().await.len(),
        1,
        "a refresh that may have happened is not repeated"
    );
    f.succeeds_with_the_original_refresh_token().await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_waiting() {
    let f = signed_in(Duration::from_secs(2)).await;
    f.refresh_answers(
        ResponseTemplate::new(429).insert_header("retry-after", "1"),
        Some(1),
    )
    .await;
    f.refresh_answers(
        ResponseTemplate::new(200).set_body_json(token_body("at-2", "rt-2", None)),
        None,
    )
    .await;
    let started = std::time::Instant::now();
    let (status, body) = f.profile().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_source"], "refresh");
    assert_eq!(f.refreshes().await.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
}

#[tokio::test]
async fn throttling_that_persists_or_asks_too_long_a_wait_is_a_503() {
    let f = signed_in(Duration::from_secs(2)).await;
    f.refresh_answers(
        ResponseTemplate::new(429).insert_header("retry-after", "30"),
        None,
    )
    .await;
    let (status, body) = f.profile().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("idp_unavailable")),
        "{body}"
    );
    assert_eq!(
        f.refreshes().await.len(),
        1,
        "a 30 s wait is not worth holding the request"
    );
    f.succeeds_with_the_original_refresh_token().await;
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_a_503_without_a_retry() {
    let f = signed_in(Duration::from_millis(300)).await;
    f.refresh_answers(
        ResponseTemplate::new(200)
            .set_body_json(token_body("at-late", "rt-late", None))
            .set_delay(Duration::from_secs(2)),
        None,
    )
    .await;
    let (status, body) = f.profile().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("idp_unavailable")),
        "{body}"
    );
    assert_eq!(
        f.refreshes().await.len(),
        1,
        "the late refresh may have happened: no second try"
    );
}

#[tokio::test]
async fn malformed_json_and_missing_fields_are_502s_and_nothing_is_cached() {
    let f = signed_in(Duration::from_secs(2)).await;
    f.refresh_answers(
        ResponseTemplate::new(200).set_body_string("{\"access_token\": "),
        Some(1),
    )
    .await;
    let (status, body) = f.profile().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (502, Some("idp_error")),
        "{body}"
    );
    let mut partial = token_body("at-bad", "rt-bad", None);
    partial
        .as_object_mut()
        .expect("object")
        .remove("client_info");
    f.refresh_answers(ResponseTemplate::new(200).set_body_json(partial), Some(1))
        .await;
    let (status, _) = f.profile().await;
    assert_eq!(status, 502);
    f.succeeds_with_the_original_refresh_token().await;
}

#[tokio::test]
async fn an_api_that_is_down_is_retried_as_a_get_then_a_503() {
    let f = signed_in(Duration::from_secs(2)).await;
    f.refresh_answers(
        ResponseTemplate::new(200).set_body_json(token_body("at-2", "rt-2", None)),
        None,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/api/me"))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&f.idp)
        .await;
    let (status, body) = f.profile().await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("idp_unavailable")),
        "{body}"
    );
    let api_calls = f
        .idp
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/api/me")
        .count();
    assert_eq!(api_calls, 3, "an idempotent GET gets all its attempts");
}
