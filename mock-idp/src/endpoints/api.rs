//! `/api/me`: the protected API, which echoes who a valid bearer token belongs to.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::bearer_token;
use crate::Idp;
use crate::config::EndedSessionPolicy;
use crate::issuer::{Issuer, serves_issuer};
use crate::oauth_error::{ErrorCode, OAuthError};
use crate::tokens::AccessClaims;

/// `GET /api/me`
pub async fn me(State(idp): State<Idp>, Issuer(listener): Issuer, headers: HeaderMap) -> Response {
    let result = authorize_call(&idp, &listener, &headers);
    idp.stats()
        .api_calls
        .inc(&[result.as_ref().map_or_else(OAuthError::label, |_| "ok")]);
    match result {
        Ok(claims) => Json(json!({
            "sub": &claims.sub,
            "oid": &claims.oid,
            "sid": &claims.sid,
            "jti": &claims.jti,
            "scp": &claims.scp,
            "roles": &claims.roles,
            "azp": &claims.azp,
            "iat": claims.iat,
            "exp": claims.exp,
        }))
        .into_response(),
        Err(error) => error.into_response(),
    }
}

fn authorize_call(
    idp: &Idp,
    listener: &str,
    headers: &HeaderMap,
) -> Result<Arc<AccessClaims>, OAuthError> {
    let token = bearer_token(headers)?;
    let claims = verified_live_token(idp, listener, token)?;
    let api_scopes = &idp.config().api_scopes;
    let delegated = claims
        .scp
        .as_deref()
        .is_some_and(|scp| scp.split(' ').any(|s| api_scopes.iter().any(|a| a == s)));
    let app_only = claims
        .roles
        .as_ref()
        .is_some_and(|roles| roles.iter().any(|r| api_scopes.contains(r)));
    if !delegated && !app_only {
        return Err(OAuthError::bearer(
            ErrorCode::InsufficientScope,
            "token carries no scope of this API",
        ));
    }
    Ok(claims)
}

/// Verifies an access token presented at the listener whose issuer is
/// `listener` (its issuer must be one of that listener's) and applies the
/// ended-session policy; shared with UserInfo.
pub fn verified_live_token(
    idp: &Idp,
    listener: &str,
    token: &str,
) -> Result<Arc<AccessClaims>, OAuthError> {
    let inner = &idp.inner;
    let claims = inner.verified.verify(
        &inner.keys,
        token,
        &inner.config.api_audience,
        inner.clock.now(),
    )?;
    if !serves_issuer(listener, &inner.config.tenant_id, &claims.iss) {
        return Err(OAuthError::bearer(
            ErrorCode::InvalidToken,
            "token was issued through another listener of this provider",
        ));
    }
    if let Some(sid) = &claims.sid {
        let ended = inner.grants.lock().session(sid).is_some_and(|s| s.ended);
        if ended {
            idp.stats().ended_session_tokens.inc(&["access_token"]);
            if inner.config.ended_session_tokens == EndedSessionPolicy::Reject {
                return Err(OAuthError::bearer(
                    ErrorCode::InvalidToken,
                    "the IdP session of this token has ended",
                ));
            }
        }
    }
    Ok(claims)
}
