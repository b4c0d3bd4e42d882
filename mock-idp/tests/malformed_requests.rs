//! A table of malformed requests across the endpoints, each answered with the RFC 6749/6750 error and status.

mod common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{REDIRECT, SCOPES, TestIdp, field, location, location_params, pkce};
use mock_idp::IdpConfig;
use mock_idp::config::{ClientConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, GrantType};
use rand::{Rng, SeedableRng};
use reqwest::RequestBuilder;

fn config() -> IdpConfig {
    let mut config = IdpConfig::default();
    let base = config.clients[0].clone();
    config.clients.push(ClientConfig {
        client_id: "other-app".into(),
        client_secret: Some("other-secret".into()),
        ..base.clone()
    });
    config.clients.push(ClientConfig {
        client_id: "code-only-app".into(),
        client_secret: Some("code-only-secret".into()),
        grant_types: vec![GrantType::AuthorizationCode],
        ..base
    });
    config
}

struct Case {
    name: &'static str,
    request: RequestBuilder,
    status: u16,
    /// The `error` expected, in the body or (for a 302) in the redirect; `None`: no error code.
    error: Option<&'static str>,
}

fn case(
    name: &'static str,
    request: RequestBuilder,
    status: u16,
    error: Option<&'static str>,
) -> Case {
    Case {
        name,
        request,
        status,
        error,
    }
}

/// Authorization request parameters that are all valid; cases change one thing.
fn authorize_params() -> Vec<(&'static str, String)> {
    let (_, challenge) = pkce();
    vec![
        ("client_id", DEFAULT_CLIENT_ID.into()),
        ("response_type", "code".into()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", SCOPES.into()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".into()),
        ("login_hint", "alice".into()),
        ("state", "xyz".into()),
    ]
}

fn without(name: &str) -> Vec<(&'static str, String)> {
    authorize_params()
        .into_iter()
        .filter(|(k, _)| *k != name)
        .collect()
}

fn with(name: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut params = without(name);
    params.push((name, value.into()));
    params
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[tokio::test]
async fn every_malformed_request_gets_the_right_error_and_status() {
    let t = TestIdp::start(config()).await;
    let http = &t.http;
    let authorize =
        |params: Vec<(&'static str, String)>| http.get(t.url("/authorize")).query(&params);
    let token = |form: Vec<(&str, &str)>| http.post(t.url("/token")).form(&form);
    let client_auth = [
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ];
    let with_auth = |mut form: Vec<(&'static str, &'static str)>| {
        form.extend(client_auth);
        form
    };

    // Codes and tokens some cases need, each used by one case only.
    let (code_a, _) = t.code_for("alice").await;
    let (code_b, verifier_b) = t.code_for("alice").await;
    let (code_c, verifier_c) = t.code_for("alice").await;
    let signed_in = t.sign_in("bob").await;
    let refresh_token = field(&signed_in, "refresh_token").to_owned();
    let id_token = field(&signed_in, "id_token").to_owned();
    let app_token = {
        let response = t
            .token(&[
                ("grant_type", "client_credentials"),
                ("scope", "api://mock-api/.default"),
            ])
            .await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        field(&body, "access_token").to_owned()
    };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let (code_a, code_b, code_c) = (leak(code_a), leak(code_b), leak(code_c));
    let (verifier_b, verifier_c) = (leak(verifier_b), leak(verifier_c));
    let refresh_token = leak(refresh_token);

    let cases = vec![
        // /authorize: the client or redirect URI cannot be trusted, so no redirect.
        case("authorize without client_id", authorize(without("client_id")), 400, Some("invalid_request")),
        case("authorize with unknown client", authorize(with("client_id", "nobody")), 400, Some("unauthorized_client")),
        case("authorize without redirect_uri", authorize(without("redirect_uri")), 400, Some("invalid_request")),
        case("authorize with unregistered redirect_uri", authorize(with("redirect_uri", "http://evil.example/cb")), 400, Some("invalid_request")),
        case("authorize with redirect_uri fragment", authorize(with("redirect_uri", "http://127.0.0.1:5555/auth/callback#f")), 400, Some("invalid_request")),
        case("authorize with repeated client_id", http.get(format!("{}&client_id=x", t.url("/authorize?client_id=harness-app"))), 400, Some("invalid_request")),
        // /authorize: errors returned to the client by redirect.
        case("authorize without response_type", authorize(without("response_type")), 302, Some("invalid_request")),
        case("authorize with response_type=token", authorize(with("response_type", "token")), 302, Some("unsupported_response_type")),
        case("authorize without scope", authorize(without("scope")), 302, Some("invalid_scope")),
        case("authorize with unknown scope", authorize(with("scope", "openid admin.everything")), 302, Some("invalid_scope")),
        case("authorize without PKCE", authorize(without("code_challenge")), 302, Some("invalid_request")),
        case("authorize with PKCE plain", authorize(with("code_challenge_method", "plain")), 302, Some("invalid_request")),
        case("authorize with short code_challenge", authorize(with("code_challenge", "abc")), 302, Some("invalid_request")),
        case("authorize with response_mode=form_post", authorize(with("response_mode", "form_post")), 302, Some("invalid_request")),
        case("authorize with unknown prompt", authorize(with("prompt", "maybe")), 302, Some("invalid_request")),
        case("authorize prompt=none without session", authorize(with("prompt", "none")), 302, Some("login_required")),
        // /token: request shape and client authentication.
        case("token with JSON body", http.post(t.url("/token")).json(&serde_json::json!({"grant_type": "client_credentials"})), 400, Some("invalid_request")),
        case("token without grant_type", token(with_auth(vec![])), 400, Some("invalid_request")),
        case("token with password grant", token(with_auth(vec![("grant_type", "password")])), 400, Some("unsupported_grant_type")),
        case("token without client authentication", token(vec![("grant_type", "client_credentials")]), 401, Some("invalid_client")),
        case("token with unknown client", token(vec![("grant_type", "client_credentials"), ("client_id", "nobody"), ("client_secret", "x")]), 401, Some("invalid_client")),
        case("token with wrong secret (post)", token(vec![("grant_type", "client_credentials"), ("client_id", DEFAULT_CLIENT_ID), ("client_secret", "wrong")]), 401, Some("invalid_client")),
        case("token with wrong secret (basic)", token(vec![("grant_type", "client_credentials")]).header("authorization", basic(DEFAULT_CLIENT_ID, "wrong")), 401, Some("invalid_client")),
        case("token with malformed basic", token(vec![("grant_type", "client_credentials")]).header("authorization", "Basic %%%"), 401, Some("invalid_client")),
        case("token with basic and client_secret", token(vec![("grant_type", "client_credentials"), ("client_secret", DEFAULT_CLIENT_SECRET)]).header("authorization", basic(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)), 400, Some("invalid_request")),
        case("token with client assertion", token(vec![("grant_type", "client_credentials"), ("client_id", DEFAULT_CLIENT_ID), ("client_assertion", "x.y.z"), ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")]), 401, Some("invalid_client")),
        case("token with repeated parameter", http.post(t.url("/token")).header("content-type", "application/x-www-form-urlencoded").body("grant_type=refresh_token&grant_type=client_credentials&client_id=harness-app&client_secret=harness-secret"), 400, Some("invalid_request")),
        case("token grant not allowed for client", token(vec![("grant_type", "client_credentials"), ("scope", "api.read"), ("client_id", "code-only-app"), ("client_secret", "code-only-secret")]), 400, Some("unauthorized_client")),
        // /token: authorization_code grant.
        case("code grant without code", token(with_auth(vec![("grant_type", "authorization_code"), ("redirect_uri", REDIRECT), ("code_verifier", verifier_b)])), 400, Some("invalid_request")),
        case("code grant without code_verifier", token(with_auth(vec![("grant_type", "authorization_code"), ("code", code_a), ("redirect_uri", REDIRECT)])), 400, Some("invalid_request")),
        case("code grant without redirect_uri", token(with_auth(vec![("grant_type", "authorization_code"), ("code", code_a), ("code_verifier", verifier_b)])), 400, Some("invalid_request")),
        case("code grant with unknown code", token(with_auth(vec![("grant_type", "authorization_code"), ("code", "no-such-code"), ("redirect_uri", REDIRECT), ("code_verifier", verifier_b)])), 400, Some("invalid_grant")),
        case("code grant with wrong verifier", token(with_auth(vec![("grant_type", "authorization_code"), ("code", code_a), ("redirect_uri", REDIRECT), ("code_verifier", verifier_b)])), 400, Some("invalid_grant")),
        case("code grant with other redirect_uri", token(with_auth(vec![("grant_type", "authorization_code"), ("code", code_b), ("redirect_uri", "http://127.0.0.1:6666/auth/callback"), ("code_verifier", verifier_b)])), 400, Some("invalid_grant")),
        case("code grant by another client", token(vec![("grant_type", "authorization_code"), ("code", code_c), ("redirect_uri", REDIRECT), ("code_verifier", verifier_c), ("client_id", "other-app"), ("client_secret", "other-secret")]), 400, Some("invalid_grant")),
        // /token: refresh_token and client_credentials grants.
        case("refresh without refresh_token", token(with_auth(vec![("grant_type", "refresh_token")])), 400, Some("invalid_request")),
        case("refresh with unknown token", token(with_auth(vec![("grant_type", "refresh_token"), ("refresh_token", "forged")])), 400, Some("invalid_grant")),
        case("refresh with unknown scope", token(with_auth(vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("scope", "openid admin.everything")])), 400, Some("invalid_scope")),
        case("refresh by another client", token(vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", "other-app"), ("client_secret", "other-secret")]), 400, Some("invalid_grant")),
        case("client credentials without scope", token(with_auth(vec![("grant_type", "client_credentials")])), 400, Some("invalid_scope")),
        case("client credentials with openid", token(with_auth(vec![("grant_type", "client_credentials"), ("scope", "openid")])), 400, Some("invalid_scope")),
        // /api/me and /userinfo (RFC 6750).
        case("api without credentials", http.get(t.url("/api/me")), 401, None),
        case("api with Basic credentials", http.get(t.url("/api/me")).header("authorization", basic("a", "b")), 401, None),
        case("api with Bearer and no token", http.get(t.url("/api/me")).header("authorization", "Bearer"), 400, Some("invalid_request")),
        case("api with two Authorization headers", http.get(t.url("/api/me")).header("authorization", "Bearer a").header("authorization", "Bearer b"), 400, Some("invalid_request")),
        case("api with garbage token", http.get(t.url("/api/me")).bearer_auth("not-a-jwt"), 401, Some("invalid_token")),
        case("api with an ID token", http.get(t.url("/api/me")).bearer_auth(&id_token), 401, Some("invalid_token")),
        case("userinfo with garbage token", http.get(t.url("/userinfo")).bearer_auth("x.y.z"), 401, Some("invalid_token")),
        case("userinfo with app-only token", http.get(t.url("/userinfo")).bearer_auth(&app_token), 401, Some("invalid_token")),
        // /logout
        case("logout with forged id_token_hint", http.get(t.url("/logout")).query(&[("id_token_hint", format!("{}x", &id_token[..id_token.len() - 1]))]), 400, Some("invalid_request")),
        case("logout to unregistered redirect", http.get(t.url("/logout")).query(&[("id_token_hint", id_token.as_str()), ("post_logout_redirect_uri", "http://evil.example/")]), 400, Some("invalid_request")),
        case("logout redirect without client", http.get(t.url("/logout")).query(&[("post_logout_redirect_uri", "http://127.0.0.1:5555/")]), 400, Some("invalid_request")),
    ];
    assert!(cases.len() >= 30, "the table covers at least 30 requests");

    let mut failures = Vec::new();
    for case in cases {
        let response = case.request.send().await.expect("the IdP answers");
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let error = if status == 302 {
            location_params(location(&response))
                .into_iter()
                .find(|(k, _)| k == "error")
                .map(|(_, v)| v)
        } else {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            body["error"].as_str().map(str::to_owned)
        };
        if status != case.status || error.as_deref() != case.error {
            failures.push(format!(
                "{}: got {status} {error:?}, want {} {:?}",
                case.name, case.status, case.error
            ));
        }
        if status == 401 && challenge.is_none() {
            failures.push(format!("{}: 401 without WWW-Authenticate", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "wrong answers:\n{}",
        failures.join("\n")
    );

    // Nothing above left the provider in a bad state: a normal sign-in still works.
    let tokens = t.sign_in("carol").await;
    assert_eq!(t.api_me(field(&tokens, "access_token")).await.status(), 200);
    t.stop().await;
}

#[tokio::test]
async fn random_bytes_never_crash_any_endpoint() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alphabet = b"abc=&%+;:/?#[]@!$'()*,.-_~ \t\x00\xff";
    for round in 0..300 {
        let len = rng.random_range(0..200);
        let junk: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        let text = URL_SAFE_NO_PAD.encode(&junk);
        let requests = [
            t.http
                .post(t.url("/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(junk.clone()),
            t.http
                .post(t.url("/authorize"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(junk.clone()),
            t.http
                .get(t.url("/api/me"))
                .bearer_auth(format!("{text}.{text}.{text}")),
            t.http.post(t.url("/logout")).body(junk.clone()),
        ];
        for request in requests {
            let status = request.send().await.expect("the IdP answers").status();
            assert!(status.as_u16() < 500, "round {round}: {status}");
        }
    }
    let tokens = t.sign_in("alice").await;
    assert_eq!(t.api_me(field(&tokens, "access_token")).await.status(), 200);
    t.stop().await;
}
