//! Discovery document and JWKS.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::Idp;
use crate::scope::OIDC_SCOPES;
use crate::server::Issuer;

/// `GET /.well-known/openid-configuration`
pub async fn openid_configuration(State(idp): State<Idp>, Issuer(issuer): Issuer) -> Json<Value> {
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
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
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
        "tenant_id": config.tenant_id,
    }))
}

/// `GET /jwks`
pub async fn jwks(State(idp): State<Idp>) -> Json<Value> {
    Json(idp.inner.keys.jwks())
}
