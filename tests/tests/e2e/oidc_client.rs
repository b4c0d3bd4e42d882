//! A standard OpenID Connect client (the `openidconnect` crate) against the mock IdP, over HTTP and HTTPS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use mock_idp::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use mock_idp::{Idp, IdpConfig, IdpServer, ServerOptions};
use openidconnect::core::{
    CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse, reqwest,
};

type Captured = Arc<Mutex<Option<HashMap<String, String>>>>;

/// A stand-in for the app's callback: records the query the IdP redirected with.
async fn start_callback_server() -> Result<(String, Captured)> {
    async fn callback(
        State(captured): State<Captured>,
        Query(q): Query<HashMap<String, String>>,
    ) -> &'static str {
        *captured.lock().expect("lock") = Some(q);
        "signed in"
    }
    let captured: Captured = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!(
        "http://127.0.0.1:{}/auth/callback",
        listener.local_addr()?.port()
    );
    let app = Router::new()
        .route("/auth/callback", get(callback))
        .with_state(captured.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, captured))
}

/// Discovery, code + PKCE, ID token validation against the JWKS, refresh, and `/api/me`.
async fn full_flow(issuer: &str, http: &reqwest::Client, ca: &reqwest::Certificate) -> Result<()> {
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.to_owned())?, http)
        .await
        .map_err(|e| anyhow!("discovery at {issuer} failed: {e:?}"))?;
    assert_eq!(metadata.issuer().as_str(), issuer);
    let (redirect, captured) = start_callback_server().await?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(DEFAULT_CLIENT_ID.into()),
        Some(ClientSecret::new(DEFAULT_CLIENT_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect)?);

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, csrf, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .add_scope(Scope::new("api://mock-api/api.read".into()))
        .add_extra_param("login_hint", "alice")
        .set_pkce_challenge(challenge)
        .url();

    // A plain client that follows redirects completes sign-in: no form, no clicks.
    let browser = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca.clone())
        .build()?;
    let landed = browser.get(authorize_url).send().await?;
    assert_eq!(landed.status(), 200, "the callback answered");
    let query = captured
        .lock()
        .expect("lock")
        .take()
        .context("callback was not called")?;
    assert_eq!(query.get("state"), Some(csrf.secret()));
    let code = query.get("code").context("no code")?;

    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))?
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .map_err(|e| anyhow!("code exchange failed: {e:?}"))?;
    let id_token = tokens.id_token().context("no id_token")?;
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = id_token.claims(&verifier, &nonce)?;
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );
    assert_eq!(claims.issuer().as_str(), issuer);

    let first = call_api(http, issuer, tokens.access_token().secret()).await?;
    assert_eq!(first["sub"], claims.subject().as_str());
    assert!(first["scp"].as_str().unwrap_or("").contains("api.read"));

    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().context("no refresh_token")?)?
        .request_async(http)
        .await
        .map_err(|e| anyhow!("refresh failed: {e:?}"))?;
    assert_ne!(
        refreshed.refresh_token().map(|t| t.secret()),
        tokens.refresh_token().map(|t| t.secret()),
        "rotated"
    );
    let second = call_api(http, issuer, refreshed.access_token().secret()).await?;
    assert_eq!(second["sub"], first["sub"]);
    assert_eq!(second["sid"], first["sid"]);
    assert_ne!(second["jti"], first["jti"]);
    Ok(())
}

async fn call_api(http: &reqwest::Client, issuer: &str, token: &str) -> Result<serde_json::Value> {
    let response = http
        .get(format!("{issuer}/api/me"))
        .bearer_auth(token)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(response.json().await?)
}

/// A provider on loopback HTTP and HTTPS, and the CA certificate it wrote.
async fn start_idp(dir: &tempfile::TempDir) -> Result<(IdpServer, reqwest::Certificate)> {
    let idp = Idp::new(IdpConfig::default())?;
    let server = IdpServer::start(idp, ServerOptions::loopback(dir.path().join("ca.pem"))).await?;
    let pem = std::fs::read(server.ca_file.as_ref().context("CA file written")?)?;
    Ok((server, reqwest::Certificate::from_pem(&pem)?))
}

/// The client OpenID Connect calls go through: trusts only the written CA and,
/// as OAuth clients must, does not follow redirects.
fn oidc_http_client(ca: &reqwest::Certificate) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca.clone())
        .build()?)
}

#[tokio::test]
async fn openidconnect_client_completes_the_flow_over_http_and_https() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, ca) = start_idp(&dir).await?;
    let http = oidc_http_client(&ca)?;
    full_flow(&server.http_url().context("http")?, &http, &ca).await?;
    full_flow(&server.https_url().context("https")?, &http, &ca).await?;
    let stats = server.idp.stats();
    assert_eq!(stats.token_calls.get(&["authorization_code", "ok"]), 2);
    assert_eq!(stats.token_calls.get(&["refresh_token", "ok"]), 2);
    assert_eq!(stats.api_calls.get(&["ok"]), 4);
    server.stop().await?;
    Ok(())
}

#[tokio::test]
async fn each_listener_reports_its_own_issuer() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, ca) = start_idp(&dir).await?;
    let http = oidc_http_client(&ca)?;
    for base in [
        server.http_url().context("http")?,
        server.https_url().context("https")?,
    ] {
        let doc: serde_json::Value = http
            .get(format!("{base}/.well-known/openid-configuration"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(doc["issuer"], base.as_str());
        assert_eq!(doc["token_endpoint"], format!("{base}/token"));
    }
    // An HTTPS client that does not trust the written CA is refused.
    let untrusting = reqwest::Client::builder().build()?;
    let refused = untrusting
        .get(format!("{}/jwks", server.https_url().context("https")?))
        .send()
        .await;
    assert!(refused.is_err(), "TLS must fail without the CA");
    server.stop().await?;
    Ok(())
}
