//! Entra ID's URL shapes (`/{tenant}/v2.0/.well-known/openid-configuration`,
//! `/{tenant}/oauth2/v2.0/...`), so an MSAL app in its default (AAD) mode runs
//! unchanged but for the authority's host.
//!
//! The tenant segment may be `common`, `organizations`, `consumers` or the
//! IdP's tenant id. Tokens minted under any of them name the tenant issuer
//! `{listener}/{tenant id}/v2.0`, as Entra ID's do. Discovery for the
//! multi-tenant aliases `common` and `organizations` names the issuer
//! `{listener}/{tenantid}/v2.0` with the placeholder left in, as Entra ID's
//! does (MSAL Node checks only the issuer's scheme, host and port, and MSAL
//! Python does not check it in this mode); the endpoints keep the alias.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::discovery::{Endpoints, document};
use super::{authorize, discovery, logout, token};
use crate::Idp;
use crate::issuer::Issuer;
use crate::oauth_error::{ErrorCode, OAuthError};

/// The tenant an Entra-shaped path names, checked, with the URLs it implies.
pub struct Tenant {
    /// The segment as this IdP's endpoints repeat it: `common`,
    /// `organizations`, `consumers`, or the tenant id as configured.
    pub segment: String,
    /// The listener's base URL (`https://host:port`).
    pub base: String,
    /// The issuer of tokens minted under this path: `{base}/{tenant id}/v2.0`.
    pub token_issuer: String,
    /// The issuer discovery names for this path.
    pub discovery_issuer: String,
}

impl FromRequestParts<Idp> for Tenant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, idp: &Idp) -> Result<Self, Self::Rejection> {
        let Issuer(base) = Issuer::from_request_parts(parts, idp)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(asked) = Path::<String>::from_request_parts(parts, idp)
            .await
            .map_err(IntoResponse::into_response)?;
        let tenant_id = &idp.config().tenant_id;
        let token_issuer = format!("{base}/{tenant_id}/v2.0");
        let lower = asked.to_ascii_lowercase();
        let (segment, discovery_issuer) = match lower.as_str() {
            "common" | "organizations" => (lower, format!("{base}/{{tenantid}}/v2.0")),
            "consumers" => (lower, token_issuer.clone()),
            _ if asked.eq_ignore_ascii_case(tenant_id) => (tenant_id.clone(), token_issuer.clone()),
            _ => {
                return Err(OAuthError::no_redirect(
                    ErrorCode::InvalidTenant,
                    format!(
                        "tenant {asked:?} not found: this IdP serves common, organizations, \
                         consumers and its tenant id {tenant_id} (tenant_id in its config)"
                    ),
                )
                .into_response());
            }
        };
        Ok(Tenant {
            segment,
            base,
            token_issuer,
            discovery_issuer,
        })
    }
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`
pub async fn openid_configuration(State(idp): State<Idp>, tenant: Tenant) -> Json<Value> {
    let Tenant {
        segment,
        base,
        discovery_issuer,
        ..
    } = tenant;
    let oauth2 = format!("{base}/{segment}/oauth2/v2.0");
    Json(document(
        &idp,
        Endpoints {
            issuer: discovery_issuer,
            authorize: format!("{oauth2}/authorize"),
            token: format!("{oauth2}/token"),
            logout: format!("{oauth2}/logout"),
            jwks: format!("{base}/{segment}/discovery/v2.0/keys"),
            userinfo: format!("{base}/userinfo"),
        },
    ))
}

/// `GET /{tenant}/discovery/v2.0/keys`
pub async fn jwks(State(idp): State<Idp>, _tenant: Tenant) -> Json<Value> {
    discovery::jwks(State(idp)).await
}

/// `GET /{tenant}/oauth2/v2.0/authorize`
pub async fn authorize_get(
    State(idp): State<Idp>,
    _tenant: Tenant,
    headers: HeaderMap,
    query: RawQuery,
) -> Response {
    authorize::authorize_get(State(idp), headers, query).await
}

/// `POST /{tenant}/oauth2/v2.0/authorize`
pub async fn authorize_post(
    State(idp): State<Idp>,
    _tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    authorize::authorize_post(State(idp), headers, body).await
}

/// `POST /{tenant}/oauth2/v2.0/token`: tokens name the tenant issuer.
pub async fn token(
    State(idp): State<Idp>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token::respond(&idp, &tenant.token_issuer, &headers, &body)
}

/// `GET /{tenant}/oauth2/v2.0/logout`
pub async fn logout_get(
    State(idp): State<Idp>,
    _tenant: Tenant,
    headers: HeaderMap,
    query: RawQuery,
) -> Response {
    logout::logout_get(State(idp), headers, query).await
}

/// `POST /{tenant}/oauth2/v2.0/logout`
pub async fn logout_post(
    State(idp): State<Idp>,
    _tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    logout::logout_post(State(idp), headers, body).await
}
