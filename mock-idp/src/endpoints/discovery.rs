//! Discovery document and JWKS.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::Idp;
use crate::issuer::Issuer;
use crate::scope::OIDC_SCOPES;

/// What a discovery document names: the issuer and where each endpoint is.
pub struct Endpoints {
    pub issuer: String,
    pub authorize: String,
    pub token: String,
    pub jwks: String,
    pub logout: String,
    pub userinfo: String,
}

/// `GET /.well-known/openid-configuration`
pub async fn openid_configuration(State(idp): State<Idp>, Issuer(issuer): Issuer) -> Json<Value> {
    let mut doc = document(
        &idp,
        Endpoints {
            authorize: format!("{issuer}/authorize"),
            token: format!("{issuer}/token"),
            jwks: format!("{issuer}/jwks"),
            logout: format!("{issuer}/logout"),
            userinfo: format!("{issuer}/userinfo"),
            issuer,
        },
    );
    doc["tenant_id"] = Value::from(idp.config().tenant_id.as_str());
    Json(doc)
}

/// A discovery document for these endpoints.
pub fn document(idp: &Idp, endpoints: Endpoints) -> Value {
    let config = idp.config();
    let scopes: Vec<String> = OIDC_SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(
            config
                .api_scopes
                .iter()
                .map(|s| format!("{}/{s}", config.api_audience)),
        )
        .collect();
    json!({
        "issuer": endpoints.issuer,
        "authorization_endpoint": endpoints.authorize,
        "token_endpoint": endpoints.token,
        "userinfo_endpoint": endpoints.userinfo,
        "jwks_uri": endpoints.jwks,
        "end_session_endpoint": endpoints.logout,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "claims_supported": [
            "sub", "oid", "tid", "sid", "iss", "aud", "exp", "iat", "nbf", "nonce",
            "auth_time", "name", "preferred_username", "email"
        ],
    })
}

/// `GET /jwks`
pub async fn jwks(State(idp): State<Idp>) -> Json<Value> {
    Json(idp.inner.keys.jwks())
}
