//! `/userinfo`: the signed-in user's claims, for a valid access token.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::api::verified_live_token;
use super::bearer_token;
use crate::Idp;
use crate::issuer::Issuer;
use crate::oauth_error::{ErrorCode, OAuthError};

/// `GET` or `POST /userinfo`
pub async fn userinfo(
    State(idp): State<Idp>,
    Issuer(listener): Issuer,
    headers: HeaderMap,
) -> Response {
    let result = bearer_token(&headers).and_then(|token| {
        let claims = verified_live_token(&idp, &listener, token)?;
        let (Some(oid), Some(sid)) = (claims.oid.clone(), claims.sid.clone()) else {
            return Err(OAuthError::bearer(
                ErrorCode::InvalidToken,
                "an app-only token has no user",
            ));
        };
        let user = idp
            .inner
            .grants
            .lock()
            .session(&sid)
            .map(|s| s.user.clone())
            .ok_or_else(|| {
                OAuthError::bearer(
                    ErrorCode::InvalidToken,
                    "the token's IdP session is unknown",
                )
            })?;
        Ok(json!({
            "sub": &claims.sub,
            "oid": oid,
            "tid": &claims.tid,
            "name": user.name,
            "preferred_username": user.username,
            "email": user.email,
        }))
    });
    idp.stats()
        .userinfo_calls
        .inc(&[result.as_ref().map_or_else(OAuthError::label, |_| "ok")]);
    match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}
