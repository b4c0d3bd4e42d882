//! Shared helpers for the IdP's integration tests: a provider on loopback,
//! the browser steps of a sign-in (the contract's browser, as the harness
//! uses it), and the calls of an OAuth client.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::{Browser, HttpClient};
use mock_idp::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use mock_idp::{Clock, Idp, IdpConfig, IdpServer, ServerOptions};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const REDIRECT: &str = "http://127.0.0.1:5555/auth/callback";
pub const SCOPES: &str = "openid profile offline_access api.read";

/// A provider on a loopback HTTP port, a browser for the sign-in steps, and
/// a plain client (no cookies, no redirects) for what an OAuth client sends.
pub struct TestIdp {
    pub server: IdpServer,
    pub base: String,
    pub browser: Browser,
    pub http: reqwest::Client,
}

impl TestIdp {
    pub async fn start(config: IdpConfig) -> Self {
        Self::start_with_clock(config, Clock::system()).await
    }

    pub async fn start_with_clock(config: IdpConfig, clock: Clock) -> Self {
        let idp = Idp::with_clock(config, clock).expect("valid config");
        let server = IdpServer::start(idp, ServerOptions::http_only())
            .await
            .expect("listening");
        let base = server.http_url().expect("http url");
        Self {
            server,
            base,
            browser: browser(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    pub fn idp(&self) -> &Idp {
        &self.server.idp
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An authorization code for `user`, with the PKCE verifier that redeems it.
    pub async fn code_for(&self, user: &str) -> (String, String) {
        self.code_with(&self.browser, user, SCOPES).await
    }

    pub async fn code_with(&self, browser: &Browser, user: &str, scope: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let mut url = url::Url::parse(&self.url("/authorize")).expect("url");
        url.query_pairs_mut().extend_pairs([
            ("client_id", DEFAULT_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", scope),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("login_hint", user),
            ("nonce", "n-0S6_WzA2Mj"),
            ("state", "af0ifjsldkj"),
        ]);
        let page = browser
            .get_once(url.as_str())
            .await
            .expect("authorize answers");
        assert_eq!(page.status, 302, "authorize redirects");
        let params = location_params(page.location.as_deref().unwrap_or_default());
        let code = params
            .iter()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no code in redirect: {params:?}"));
        (code, verifier)
    }

    /// Signs `user` in and redeems the code: the token response.
    pub async fn sign_in(&self, user: &str) -> Value {
        self.sign_in_with(&self.browser, user, SCOPES).await
    }

    pub async fn sign_in_with(&self, browser: &Browser, user: &str, scope: &str) -> Value {
        let (code, verifier) = self.code_with(browser, user, scope).await;
        let response = self.redeem(&code, &verifier).await;
        assert_eq!(response.status(), 200, "code redeems");
        response.json().await.expect("token json")
    }

    pub async fn redeem(&self, code: &str, verifier: &str) -> reqwest::Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// A token request authenticated as the default client with `client_secret_post`.
    pub async fn token(&self, params: &[(&str, &str)]) -> reqwest::Response {
        let mut form = params.to_vec();
        form.push(("client_id", DEFAULT_CLIENT_ID));
        form.push(("client_secret", DEFAULT_CLIENT_SECRET));
        self.http
            .post(self.url("/token"))
            .form(&form)
            .send()
            .await
            .expect("token endpoint answers")
    }

    pub async fn api_me(&self, access_token: &str) -> reqwest::Response {
        self.http
            .get(self.url("/api/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("api answers")
    }

    pub async fn stop(self) {
        self.server.stop().await.expect("stops cleanly");
    }
}

/// A browser of its own: it keeps the IdP's session cookie.
pub fn browser() -> Browser {
    Browser::new(&HttpClient::new(), Duration::from_secs(10))
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The `Location` of a redirect a client received.
pub fn location(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The query parameters of a redirect's `Location`.
pub fn location_params(location: &str) -> Vec<(String, String)> {
    url::Url::parse(location)
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The claims of a JWT, unverified, for assertions.
pub fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("json")
}

/// A string field of a JSON value.
pub fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {value}"))
}
