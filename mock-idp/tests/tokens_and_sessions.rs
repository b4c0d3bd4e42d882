//! Refresh rotation under both reuse policies, end-session revocation, and what `/api/me` rejects.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TestIdp, browser, claims_of, field};
use mock_idp::config::{EndedSessionPolicy, ReusePolicy};
use mock_idp::{Clock, IdpConfig};
use serde_json::{Value, json};

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("json body")
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body = json_of(response).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn allow_policy_rotates_and_still_accepts_an_old_token_counting_the_reuse() {
    let t = TestIdp::start(IdpConfig {
        refresh_reuse: ReusePolicy::Allow,
        ..IdpConfig::default()
    })
    .await;
    let first = t.sign_in("alice").await;
    let rt1 = field(&first, "refresh_token");
    let second = json_of(t.refresh(rt1).await).await;
    let rt2 = field(&second, "refresh_token");
    assert_ne!(rt1, rt2, "a refresh rotates the token");
    for key in [
        "access_token",
        "id_token",
        "client_info",
        "scope",
        "expires_in",
        "ext_expires_in",
    ] {
        assert!(
            second.get(key).is_some(),
            "refresh response has {key}: {second}"
        );
    }
    let reused = t.refresh(rt1).await;
    assert_eq!(
        reused.status(),
        200,
        "Entra-style: a rotated token stays valid"
    );
    assert_eq!(t.refresh(rt2).await.status(), 200);
    let stats = t.idp().stats();
    assert_eq!(stats.refresh_reuse.get(&["allowed"]), 1);
    assert_eq!(stats.token_calls.get(&["refresh_token", "ok"]), 3);
    // Which IdP session redeemed a token twice, so a client can tell its sessions apart.
    let sid = claims_of(field(&first, "access_token"))["sid"]
        .as_str()
        .expect("sid claim")
        .to_owned();
    assert_eq!(stats.refresh_reuse_by_session.get(&[&sid, "allowed"]), 1);
    assert_eq!(stats.refresh_reuse_by_session.total(), 1);
    assert_eq!(
        stats.to_json()["refresh_reuse_by_session"][&sid]["allowed"],
        1
    );
    t.stop().await;
}

#[tokio::test]
async fn revoke_family_policy_revokes_every_token_of_the_family_on_reuse() {
    let t = TestIdp::start(IdpConfig {
        refresh_reuse: ReusePolicy::RevokeFamily,
        ..IdpConfig::default()
    })
    .await;
    let first = t.sign_in("alice").await;
    let rt1 = field(&first, "refresh_token");
    let rt2 = field(&json_of(t.refresh(rt1).await).await, "refresh_token").to_owned();
    // Another sign-in is another family and must not be touched.
    let other = t.sign_in("alice").await;

    assert_eq!(
        error_of(t.refresh(rt1).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        error_of(t.refresh(&rt2).await).await,
        (400, "invalid_grant".into()),
        "the successor dies with its family"
    );
    assert_eq!(
        t.refresh(field(&other, "refresh_token")).await.status(),
        200
    );
    let stats = t.idp().stats();
    assert_eq!(stats.refresh_reuse.get(&["family_revoked"]), 1);
    let sid = claims_of(field(&first, "access_token"))["sid"]
        .as_str()
        .expect("sid claim")
        .to_owned();
    assert_eq!(
        stats
            .refresh_reuse_by_session
            .get(&[&sid, "family_revoked"]),
        1,
        "the revocation is counted under the session that reused"
    );
    assert_eq!(stats.refresh_reuse_by_session.total(), 1);
    t.stop().await;
}

#[tokio::test]
async fn refresh_tokens_expire_on_the_idp_clock() {
    let clock = Clock::system();
    let t = TestIdp::start_with_clock(
        IdpConfig {
            refresh_token_lifetime_secs: 600,
            ..IdpConfig::default()
        },
        clock.clone(),
    )
    .await;
    let tokens = t.sign_in("alice").await;
    clock.advance(601);
    let (status, error) = error_of(t.refresh(field(&tokens, "refresh_token")).await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_grant"));
    t.stop().await;
}

#[tokio::test]
async fn a_redeemed_code_cannot_be_redeemed_again_and_its_tokens_are_revoked() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let (code, verifier) = t.code_for("alice").await;
    let tokens = json_of(t.redeem(&code, &verifier).await).await;
    assert_eq!(
        error_of(t.redeem(&code, &verifier).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(
        t.refresh(field(&tokens, "refresh_token")).await.status(),
        400
    );
    t.stop().await;
}

#[tokio::test]
async fn end_session_revokes_refresh_tokens_and_counts_later_tokens() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let tokens = t.sign_in("alice").await;
    let id_token = field(&tokens, "id_token");
    let sid = claims_of(id_token)["sid"].clone();
    let response = t
        .http
        .get(t.url("/logout"))
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", "http://127.0.0.1:5555/"),
            ("state", "bye"),
        ])
        .send()
        .await
        .expect("logout answers");
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "http://127.0.0.1:5555/?state=bye"
    );

    let (status, error) = error_of(t.refresh(field(&tokens, "refresh_token")).await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_grant"));
    // Access tokens are self-contained and live on (as at Entra), but each use is counted.
    let echo = json_of(t.api_me(field(&tokens, "access_token")).await).await;
    assert_eq!(echo["sid"], sid);
    let stats = t.idp().stats();
    assert_eq!(stats.ended_session_tokens.get(&["refresh_token"]), 1);
    assert_eq!(stats.ended_session_tokens.get(&["access_token"]), 1);
    assert_eq!(stats.logout_calls.get(&["ended"]), 1);
    t.stop().await;
}

#[tokio::test]
async fn reject_policy_refuses_access_tokens_of_ended_sessions() {
    let t = TestIdp::start(IdpConfig {
        ended_session_tokens: EndedSessionPolicy::Reject,
        ..IdpConfig::default()
    })
    .await;
    let tokens = t.sign_in("alice").await;
    let logout = t
        .http
        .post(t.url("/logout"))
        .form(&[("id_token_hint", field(&tokens, "id_token"))])
        .send()
        .await
        .expect("logout");
    assert_eq!(json_of(logout).await["session_ended"], true);
    let (status, error) = error_of(t.api_me(field(&tokens, "access_token")).await).await;
    assert_eq!((status, error.as_str()), (401, "invalid_token"));
    t.stop().await;
}

#[tokio::test]
async fn a_browser_signing_in_twice_keeps_its_idp_session_until_logout() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let browser = browser();
    let sid = |tokens: &Value| claims_of(field(tokens, "id_token"))["sid"].clone();
    let first = t.sign_in_with(&browser, "alice", common::SCOPES).await;
    let second = t.sign_in_with(&browser, "alice", common::SCOPES).await;
    assert_eq!(sid(&first), sid(&second), "same browser, same IdP session");
    let elsewhere = t.sign_in("alice").await;
    assert_ne!(
        sid(&first),
        sid(&elsewhere),
        "another browser, another IdP session"
    );

    let logout = browser.get(&t.url("/logout")).await.expect("logout");
    assert_eq!(
        logout.json::<Value>().expect("json")["session_ended"],
        true,
        "the cookie names the session"
    );
    let third = t.sign_in_with(&browser, "alice", common::SCOPES).await;
    assert_ne!(sid(&first), sid(&third), "a new session after logout");
    t.stop().await;
}

#[tokio::test]
async fn tokens_carry_the_claims_msal_family_clients_need() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let tokens = t.sign_in("alice").await;
    let id = claims_of(field(&tokens, "id_token"));
    for claim in [
        "sub", "oid", "tid", "sid", "nonce", "aud", "iss", "iat", "exp",
    ] {
        assert!(id.get(claim).is_some(), "ID token has {claim}: {id}");
    }
    assert_eq!(id["aud"], "harness-app");
    let info: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(field(&tokens, "client_info"))
            .expect("base64url"),
    )
    .expect("json");
    assert_eq!(info["uid"], id["oid"]);
    assert_eq!(info["utid"], id["tid"]);
    let userinfo = json_of(
        t.http
            .get(t.url("/userinfo"))
            .bearer_auth(field(&tokens, "access_token"))
            .send()
            .await
            .expect("userinfo"),
    )
    .await;
    assert_eq!(userinfo["preferred_username"], "alice");
    assert_eq!(userinfo["sub"], id["sub"]);
    t.stop().await;
}

/// Signs claims like a real access token's, with `change` applied.
fn forged(t: &TestIdp, change: impl FnOnce(&mut Value)) -> String {
    let now = t.idp().clock().now();
    let mut claims = json!({
        "iss": t.base, "aud": "api://mock-api", "sub": "s", "oid": "s", "tid": "t", "sid": "x",
        "azp": "harness-app", "scp": "api.read", "jti": "j", "iat": now, "nbf": now,
        "exp": now + 600, "ver": "2.0",
    });
    change(&mut claims);
    t.idp().sign_claims(&claims).expect("sign")
}

#[tokio::test]
async fn the_api_rejects_expired_wrong_audience_wrong_scope_tampered_and_unsigned_tokens() {
    let clock = Clock::system();
    let t = TestIdp::start_with_clock(
        IdpConfig {
            access_token_lifetime_secs: 300,
            ..IdpConfig::default()
        },
        clock.clone(),
    )
    .await;
    let tokens = t.sign_in("alice").await;
    let access = field(&tokens, "access_token").to_owned();
    assert_eq!(
        t.api_me(&access).await.status(),
        200,
        "valid before anything else"
    );
    assert_eq!(
        t.api_me(&forged(&t, |_| {})).await.status(),
        200,
        "the forging helper is faithful"
    );

    let (header, payload, signature) = {
        let mut parts = access.split('.');
        (
            parts.next().expect("header").to_owned(),
            parts.next().expect("payload").to_owned(),
            parts.next().expect("signature").to_owned(),
        )
    };
    let mut claims = claims_of(&access);
    claims["sub"] = json!("mallory");
    let tampered = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let unsigned = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims_of(&access),
        &jsonwebtoken::EncodingKey::from_secret(b"guess").expect("hmac key"),
    )
    .expect("hs256");
    let other_idp = mock_idp::Idp::new(IdpConfig::default()).expect("idp");
    let foreign = other_idp.sign_claims(&claims_of(&access)).expect("sign");

    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("tampered payload", tampered, 401, "invalid_token"),
        ("alg none", unsigned, 401, "invalid_token"),
        ("HS256 with a guessed key", hs256, 401, "invalid_token"),
        ("signed by another provider", foreign, 401, "invalid_token"),
        (
            "wrong audience",
            forged(&t, |c| c["aud"] = json!("api://other")),
            401,
            "invalid_token",
        ),
        (
            "not yet valid",
            forged(&t, |c| {
                c["nbf"] = json!(c["iat"].as_u64().unwrap_or(0) + 60)
            }),
            401,
            "invalid_token",
        ),
        (
            "no API scope",
            forged(&t, |c| c["scp"] = json!("openid profile")),
            403,
            "insufficient_scope",
        ),
        (
            "truncated",
            access[..access.len() - 5].to_owned(),
            401,
            "invalid_token",
        ),
    ];
    for (name, token, status, error) in cases {
        assert_eq!(
            error_of(t.api_me(&token).await).await,
            (status, error.to_owned()),
            "{name}"
        );
    }

    // A real token granted only OpenID scopes is good for UserInfo, not the API.
    let oidc_only = t
        .sign_in_with(&browser(), "alice", "openid profile offline_access")
        .await;
    assert_eq!(
        error_of(t.api_me(field(&oidc_only, "access_token")).await).await,
        (403, "insufficient_scope".into())
    );

    // The same token that just verified expires when the clock passes `exp`,
    // even though its signature result is remembered.
    clock.advance(301);
    assert_eq!(
        error_of(t.api_me(&access).await).await,
        (401, "invalid_token".into())
    );
    let stats = t.idp().stats();
    assert!(stats.api_calls.get(&["invalid_token"]) >= 8);
    assert_eq!(stats.api_calls.get(&["insufficient_scope"]), 2);
    t.stop().await;
}

#[tokio::test]
async fn scopes_are_answered_in_the_form_the_client_asked_for_them() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let short = t
        .sign_in_with(&browser(), "alice", "openid offline_access api.read")
        .await;
    assert_eq!(short["scope"], "api.read offline_access openid");
    // A refresh without `scope` gets the grant's own form back.
    let again = json_of(t.refresh(field(&short, "refresh_token")).await).await;
    assert_eq!(again["scope"], "api.read offline_access openid");
    // A refresh that asks in full form (for one scope of two) is answered so.
    let mixed = json_of(
        t.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", field(&again, "refresh_token")),
            ("scope", "api://mock-api/api.read data.read openid"),
        ])
        .await,
    )
    .await;
    assert_eq!(mixed["scope"], "api://mock-api/api.read data.read openid");
    assert_eq!(
        claims_of(field(&mixed, "access_token"))["scp"],
        "api.read data.read",
        "the token itself names its scopes in short form, as Entra ID's do"
    );
    let full = t
        .sign_in_with(&browser(), "bob", "openid api://mock-api/api.write")
        .await;
    assert_eq!(full["scope"], "api://mock-api/api.write openid");
    t.stop().await;
}
