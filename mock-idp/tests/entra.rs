//! Entra ID's URL shapes: discovery per tenant segment, and a sign-in through
//! `/{tenant}/oauth2/v2.0/...` whose tokens name the tenant issuer.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{REDIRECT, SCOPES, TestIdp, claims_of, field, location_params, pkce};
use mock_idp::IdpConfig;
use mock_idp::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use serde_json::Value;

async fn get_json(t: &TestIdp, path: &str) -> (u16, Value) {
    let response = t.http.get(t.url(path)).send().await.expect("answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn discovery_answers_for_each_tenant_segment_as_entra_id_does() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let tid = t.idp().config().tenant_id.clone();
    let base = t.base.clone();
    let cases = [
        ("common", "{tenantid}", "common"),
        ("organizations", "{tenantid}", "organizations"),
        ("Common", "{tenantid}", "common"),
        ("consumers", tid.as_str(), "consumers"),
        (tid.as_str(), tid.as_str(), tid.as_str()),
    ];
    let upper = tid.to_ascii_uppercase();
    let cases = cases
        .into_iter()
        .chain([(upper.as_str(), tid.as_str(), tid.as_str())]);
    for (asked, issuer_tenant, endpoint_tenant) in cases {
        let (status, doc) = get_json(
            &t,
            &format!("/{asked}/v2.0/.well-known/openid-configuration"),
        )
        .await;
        assert_eq!(status, 200, "{asked}: {doc}");
        assert_eq!(
            doc["issuer"],
            format!("{base}/{issuer_tenant}/v2.0"),
            "{asked}"
        );
        let oauth2 = format!("{base}/{endpoint_tenant}/oauth2/v2.0");
        assert_eq!(doc["authorization_endpoint"], format!("{oauth2}/authorize"));
        assert_eq!(doc["token_endpoint"], format!("{oauth2}/token"));
        assert_eq!(doc["end_session_endpoint"], format!("{oauth2}/logout"));
        assert_eq!(
            doc["jwks_uri"],
            format!("{base}/{endpoint_tenant}/discovery/v2.0/keys")
        );
    }
    let (_, keys) = get_json(&t, "/common/discovery/v2.0/keys").await;
    assert_eq!(keys, get_json(&t, "/jwks").await.1, "the same signing key");

    let (status, error) =
        get_json(&t, "/contoso.example/v2.0/.well-known/openid-configuration").await;
    assert_eq!(status, 400);
    assert_eq!(error["error"], "invalid_tenant", "{error}");
    // Today's OIDC shapes are still there.
    let (status, doc) = get_json(&t, "/.well-known/openid-configuration").await;
    assert_eq!((status, doc["issuer"].as_str()), (200, Some(base.as_str())));
    t.stop().await;
}

#[tokio::test]
async fn a_sign_in_through_the_common_endpoints_gets_tenant_issued_tokens() {
    let t = TestIdp::start(IdpConfig::default()).await;
    let tid = t.idp().config().tenant_id.clone();
    let (verifier, challenge) = pkce();
    // As MSAL asks: `client_info=1` on the authorization request.
    let authorize = t
        .http
        .get(t.url("/common/oauth2/v2.0/authorize"))
        .query(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPES),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("login_hint", "alice"),
            ("client_info", "1"),
            ("state", "s1"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(authorize.status(), 302);
    let params = location_params(common::location(&authorize));
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {params:?}"))
    };
    let tokens: Value = t
        .http
        .post(t.url("/common/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &param("code")),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("client_info", "1"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let issuer = format!("{}/{tid}/v2.0", t.base);
    let id = claims_of(field(&tokens, "id_token"));
    let access = claims_of(field(&tokens, "access_token"));
    assert_eq!(id["iss"], issuer);
    assert_eq!(access["iss"], issuer);
    assert_eq!(id["tid"], tid.as_str());
    assert_eq!(access["tid"], tid.as_str());
    let decode = |b64: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).expect("base64url")).expect("json")
    };
    for info in [
        decode(field(&tokens, "client_info")),
        decode(&param("client_info")),
    ] {
        assert_eq!(info["uid"], id["oid"], "{info}");
        assert_eq!(info["utid"], id["tid"], "{info}");
    }
    // The API takes the tenant-issued token on the listener that issued it.
    assert_eq!(t.api_me(field(&tokens, "access_token")).await.status(), 200);
    // Refresh at the tenant id's endpoint; sign out at common's.
    let refreshed = t
        .http
        .post(t.url(&format!("/{tid}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", field(&tokens, "refresh_token")),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ])
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), 200);
    let logout: Value = t
        .http
        .get(t.url("/common/oauth2/v2.0/logout"))
        .query(&[("id_token_hint", field(&tokens, "id_token"))])
        .send()
        .await
        .expect("logout")
        .json()
        .await
        .expect("json");
    assert_eq!(logout["session_ended"], true);
    let unknown = t
        .http
        .post(t.url("/contoso.example/oauth2/v2.0/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("answer");
    assert_eq!(unknown.status(), 400);
    t.stop().await;
}

#[tokio::test]
async fn a_logout_with_only_a_redirect_uri_is_checked_against_the_browsers_session() {
    let t = TestIdp::start(IdpConfig::default()).await;
    // MSAL Node's samples sign out with `{authority}/oauth2/v2.0/logout?post_logout_redirect_uri=...`
    // and nothing else; the browser's IdP session says which client it was.
    let tokens = t.sign_in("alice").await;
    let logout = |uri: &str| {
        let mut url = url::Url::parse(&t.url("/common/oauth2/v2.0/logout")).expect("url");
        url.query_pairs_mut()
            .append_pair("post_logout_redirect_uri", uri);
        url.to_string()
    };
    let evil = t
        .browser
        .get_once(&logout("http://evil.example/"))
        .await
        .expect("answer");
    assert_eq!(evil.status, 400, "an unregistered URI is still refused");
    let page = t
        .browser
        .get_once(&logout("http://127.0.0.1:3000/"))
        .await
        .expect("answer");
    assert_eq!(page.status, 302);
    assert_eq!(page.location.as_deref(), Some("http://127.0.0.1:3000/"));
    let refresh = t.refresh(field(&tokens, "refresh_token")).await;
    assert_eq!(refresh.status(), 400, "the session ended with its tokens");
    // Without a session, nothing vouches for the URI.
    let stranger = common::browser()
        .get_once(&logout("http://127.0.0.1:3000/"))
        .await
        .expect("answer");
    assert_eq!(stranger.status, 400);
    t.stop().await;
}
