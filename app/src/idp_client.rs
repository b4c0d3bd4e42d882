//! The app's side of OAuth: discovery, code exchange, refresh, ID-token checks, the protected API, end-session.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::ApiEcho;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

/// Why a call to the identity provider failed, and what the app answers.
#[derive(Debug, thiserror::Error)]
pub enum IdpCallError {
    /// Not reachable, timed out, throttled, or down: 503.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// It answered with something unusable (500, malformed JSON, missing fields, a bad ID token): 502.
    #[error("identity provider answered badly: {0}")]
    BadGateway(String),
    /// It refused the grant (`invalid_grant`, ...): the user must sign in again.
    #[error("identity provider refused: {0}")]
    Refused(String),
}

/// Endpoints from discovery.
#[derive(Clone, Debug, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: Option<String>,
}

/// A validated token response.
#[derive(Clone, Debug, serde::Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
    pub ext_expires_in: u64,
    pub scope: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    /// `uid` and `utid` from `client_info`.
    pub uid: String,
    pub utid: String,
}

/// The claims of an ID token the app relies on.
#[derive(Clone, Debug, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    pub oid: String,
    pub tid: String,
    pub sid: String,
    pub nonce: Option<String>,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct IdpSettings {
    /// The authority: the IdP's issuer URL.
    pub authority: String,
    pub client_id: String,
    pub client_secret: String,
    /// The protected API the app calls (`{authority}/api/me` by default).
    pub api_url: String,
    /// How long one call may take.
    pub timeout: Duration,
    /// Attempts for calls that are safe to repeat.
    pub attempts: u32,
    /// Longest `Retry-After` the client honours by waiting.
    pub max_retry_after: Duration,
    /// A PEM CA certificate to trust for an https authority.
    pub ca_pem: Option<Vec<u8>>,
}

/// Talks to the identity provider; caches discovery and keys.
pub struct IdpClient {
    settings: IdpSettings,
    http: reqwest::Client,
    discovery: tokio::sync::OnceCell<Discovery>,
    keys: RwLock<Option<JwkSet>>,
    metrics: std::sync::Arc<Metrics>,
}

/// Whether a failed attempt may be repeated.
enum Retry {
    /// The request never reached the server, or the server said it did not process it.
    Safe(Option<Duration>),
    No,
}

impl IdpClient {
    pub fn new(
        settings: IdpSettings,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Self, IdpCallError> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &settings.ca_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| IdpCallError::BadGateway(format!("IdP CA certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| IdpCallError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Self {
            settings,
            http,
            discovery: tokio::sync::OnceCell::new(),
            keys: RwLock::new(None),
            metrics,
        })
    }

    pub fn settings(&self) -> &IdpSettings {
        &self.settings
    }

    /// Discovery, fetched once (and again after a failure).
    pub async fn discovery(&self) -> Result<&Discovery, IdpCallError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.settings.authority.trim_end_matches('/')
                );
                let doc: Discovery = self.get_json(&url, "discovery").await?;
                if doc.issuer.trim_end_matches('/') != self.settings.authority.trim_end_matches('/')
                {
                    return Err(IdpCallError::BadGateway(format!(
                        "issuer {} differs from the authority {}",
                        doc.issuer, self.settings.authority
                    )));
                }
                Ok(doc)
            })
            .await
    }

    /// The authorization URL for a sign-in, with PKCE S256, `state`, `nonce` and the hint.
    pub async fn authorize_url(
        &self,
        redirect_uri: &str,
        scope: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
        login_hint: Option<&str>,
    ) -> Result<String, IdpCallError> {
        let discovery = self.discovery().await?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = url::Url::parse(&discovery.authorization_endpoint)
            .map_err(|e| IdpCallError::BadGateway(format!("authorization endpoint: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", scope)
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("client_info", "1");
            if let Some(hint) = login_hint {
                query.append_pair("login_hint", hint);
            }
        }
        Ok(url.into())
    }

    /// Redeems an authorization code. Never retried once sent: a code is single-use.
    pub async fn redeem_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenResponse, IdpCallError> {
        let response = self
            .token_request(
                "authorization_code",
                &[
                    ("code", code),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", verifier),
                ],
            )
            .await?;
        if response.id_token.is_none() {
            return Err(IdpCallError::BadGateway(
                "token response has no id_token".into(),
            ));
        }
        Ok(response)
    }

    /// Redeems a refresh token for `scope`.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        scope: &str,
    ) -> Result<TokenResponse, IdpCallError> {
        self.token_request(
            "refresh_token",
            &[("refresh_token", refresh_token), ("scope", scope)],
        )
        .await
    }

    async fn token_request(
        &self,
        grant: &'static str,
        params: &[(&str, &str)],
    ) -> Result<TokenResponse, IdpCallError> {
        let endpoint = self.discovery().await?.token_endpoint.clone();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", grant),
            ("client_id", &self.settings.client_id),
            ("client_secret", &self.settings.client_secret),
            ("client_info", "1"),
        ];
        form.extend_from_slice(params);
        let result = self
            .with_retries(grant, || self.http.post(&endpoint).form(&form), false)
            .await
            .and_then(|body| parse_token_response(&body));
        self.metrics
            .idp_call(grant, result.as_ref().map(|_| "ok").unwrap_or_else(outcome));
        result
    }

    /// Checks an ID token: signature against the IdP's keys, issuer, audience, expiry, nonce.
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        nonce: &str,
    ) -> Result<IdClaims, IdpCallError> {
        let discovery = self.discovery().await?;
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| IdpCallError::BadGateway(format!("id_token is not a JWT: {e}")))?;
        let kid = header.kid.unwrap_or_default();
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.fetch_keys(&discovery.jwks_uri).await?;
                self.key(&kid).ok_or_else(|| {
                    IdpCallError::BadGateway(format!("id_token key {kid:?} is not in the JWKS"))
                })?
            }
        };
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[&self.settings.client_id]);
        validation.set_issuer(&[&discovery.issuer]);
        let claims = jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation)
            .map_err(|e| IdpCallError::BadGateway(format!("id_token rejected: {e}")))?
            .claims;
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(IdpCallError::BadGateway(
                "id_token nonce does not match the sign-in".into(),
            ));
        }
        Ok(claims)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        let keys = self.keys.read();
        let jwk = keys.as_ref()?.find(kid)?;
        DecodingKey::from_jwk(jwk).ok()
    }

    async fn fetch_keys(&self, jwks_uri: &str) -> Result<(), IdpCallError> {
        let set: JwkSet = self.get_json(jwks_uri, "jwks").await?;
        *self.keys.write() = Some(set);
        Ok(())
    }

    /// Calls the protected API with an access token; a GET, so safe to retry.
    pub async fn call_api(&self, access_token: &str) -> Result<ApiEcho, IdpCallError> {
        let url = self.settings.api_url.clone();
        let result = self
            .with_retries(
                "api",
                || self.http.get(&url).bearer_auth(access_token),
                true,
            )
            .await
            .and_then(|body| {
                serde_json::from_slice::<ApiEcho>(&body).map_err(|e| {
                    IdpCallError::BadGateway(format!("API answered without its echo: {e}"))
                })
            });
        self.metrics
            .idp_call("api", result.as_ref().map(|_| "ok").unwrap_or_else(outcome));
        result
    }

    /// Ends the IdP session this ID token belongs to (server-side end-session).
    pub async fn end_session(&self, id_token: &str) -> Result<(), IdpCallError> {
        let Some(endpoint) = self.discovery().await?.end_session_endpoint.clone() else {
            return Ok(());
        };
        let result = self
            .with_retries(
                "logout",
                || {
                    self.http
                        .get(&endpoint)
                        .query(&[("id_token_hint", id_token)])
                },
                true,
            )
            .await
            .map(|_| ());
        self.metrics.idp_call(
            "logout",
            result.as_ref().map(|_| "ok").unwrap_or_else(outcome),
        );
        result
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &'static str,
    ) -> Result<T, IdpCallError> {
        let body = self.with_retries(what, || self.http.get(url), true).await;
        self.metrics
            .idp_call(what, body.as_ref().map(|_| "ok").unwrap_or_else(outcome));
        serde_json::from_slice(&body?)
            .map_err(|e| IdpCallError::BadGateway(format!("{what} answered malformed JSON: {e}")))
    }

    /// Sends a request, repeating it only when that is safe: for idempotent
    /// requests after any transient failure; for others only when the request
    /// never left or the server said (429/503 with `Retry-After`) it did not process it.
    async fn with_retries(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
        idempotent: bool,
    ) -> Result<Vec<u8>, IdpCallError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (error, retry) = match build().send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = response.bytes().await.map_err(|e| {
                        IdpCallError::Unavailable(format!("{what}: reading the answer: {e}"))
                    });
                    if status.is_success() {
                        return body.map(|b| b.to_vec());
                    }
                    let body = body.unwrap_or_default();
                    let code = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    classify(what, status, &code, retry_after, idempotent)
                }
                Err(e) if e.is_connect() => (
                    IdpCallError::Unavailable(format!("{what}: cannot connect: {e}")),
                    Retry::Safe(None),
                ),
                Err(e) if e.is_timeout() => (
                    IdpCallError::Unavailable(format!(
                        "{what}: no answer within {:?}",
                        self.settings.timeout
                    )),
                    if idempotent {
                        Retry::Safe(None)
                    } else {
                        Retry::No
                    },
                ),
                Err(e) => (
                    IdpCallError::Unavailable(format!("{what}: {e}")),
                    if idempotent {
                        Retry::Safe(None)
                    } else {
                        Retry::No
                    },
                ),
            };
            match retry {
                Retry::Safe(wait) if attempt < self.settings.attempts => {
                    let wait = wait.unwrap_or(Duration::from_millis(50 * u64::from(attempt)));
                    if wait > self.settings.max_retry_after {
                        return Err(error);
                    }
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(error),
            }
        }
    }
}

fn classify(
    what: &str,
    status: reqwest::StatusCode,
    code: &str,
    retry_after: Option<Duration>,
    idempotent: bool,
) -> (IdpCallError, Retry) {
    use reqwest::StatusCode;
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => (
            IdpCallError::Unavailable(format!("{what}: {status}")),
            if idempotent || retry_after.is_some() {
                Retry::Safe(retry_after)
            } else {
                Retry::No
            },
        ),
        s if s.is_server_error() => (
            IdpCallError::BadGateway(format!("{what}: {status}")),
            if idempotent {
                Retry::Safe(retry_after)
            } else {
                Retry::No
            },
        ),
        StatusCode::BAD_REQUEST if code == "invalid_grant" => (
            IdpCallError::Refused(format!("{what}: invalid_grant")),
            Retry::No,
        ),
        StatusCode::UNAUTHORIZED if what == "api" => (
            IdpCallError::Refused(format!("{what}: token rejected ({code})")),
            Retry::No,
        ),
        _ => (
            IdpCallError::BadGateway(format!("{what}: {status} {code}")),
            Retry::No,
        ),
    }
}

fn outcome(error: &IdpCallError) -> &'static str {
    match error {
        IdpCallError::Unavailable(_) => "unavailable",
        IdpCallError::BadGateway(_) => "bad_answer",
        IdpCallError::Refused(_) => "refused",
    }
}

/// Checks a token response has what the cache needs before anything is cached.
fn parse_token_response(body: &[u8]) -> Result<TokenResponse, IdpCallError> {
    let bad = |m: &str| IdpCallError::BadGateway(format!("token response {m}"));
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(&format!("is not JSON: {e}")))?;
    let text = |name: &str| {
        value[name]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let access_token = text("access_token").ok_or_else(|| bad("has no access_token"))?;
    if !text("token_type").is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
        return Err(bad("token_type is not Bearer"));
    }
    let expires_in = value["expires_in"]
        .as_u64()
        .ok_or_else(|| bad("has no numeric expires_in"))?;
    let client_info = text("client_info").ok_or_else(|| bad("has no client_info"))?;
    let info: Value = URL_SAFE_NO_PAD
        .decode(client_info.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad("client_info is not base64url JSON"))?;
    let (Some(uid), Some(utid)) = (info["uid"].as_str(), info["utid"].as_str()) else {
        return Err(bad("client_info lacks uid or utid"));
    };
    Ok(TokenResponse {
        access_token,
        expires_in,
        ext_expires_in: value["ext_expires_in"].as_u64().unwrap_or(expires_in),
        scope: text("scope").ok_or_else(|| bad("has no scope"))?,
        refresh_token: text("refresh_token"),
        id_token: text("id_token"),
        uid: uid.to_owned(),
        utid: utid.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_missing_what_the_cache_needs_are_refused() {
        let good = serde_json::json!({
            "access_token": "at", "token_type": "Bearer", "expires_in": 60, "scope": "api://x/a",
            "client_info": URL_SAFE_NO_PAD.encode(r#"{"uid":"u","utid":"t"}"#),
        });
        assert!(parse_token_response(good.to_string().as_bytes()).is_ok());
        for missing in [
            "access_token",
            "token_type",
            "expires_in",
            "scope",
            "client_info",
        ] {
            let mut partial = good.clone();
            partial.as_object_mut().expect("object").remove(missing);
            assert!(
                parse_token_response(partial.to_string().as_bytes()).is_err(),
                "{missing}"
            );
        }
        assert!(parse_token_response(b"{not json").is_err());
    }
}
