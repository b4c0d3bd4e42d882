//! `/logout`: OpenID Connect RP-initiated logout; ends the IdP session and revokes its refresh tokens.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::authorize::{redirect_with, session_cookie};
use super::{Params, redirect_uri_matches};
use crate::Idp;
use crate::oauth_error::{ErrorCode, OAuthError};
use crate::tokens::verify_id_token_hint;

/// `GET /logout`
pub async fn logout_get(
    State(idp): State<Idp>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    logout(&idp, &headers, query.unwrap_or_default().as_bytes())
}

/// `POST /logout` (form-encoded)
pub async fn logout_post(State(idp): State<Idp>, headers: HeaderMap, body: Bytes) -> Response {
    logout(&idp, &headers, &body)
}

fn logout(idp: &Idp, headers: &HeaderMap, form: &[u8]) -> Response {
    let result = Params::parse(form)
        .map_err(|name| {
            OAuthError::no_redirect(
                ErrorCode::InvalidRequest,
                format!("parameter {name} is repeated"),
            )
        })
        .and_then(|params| end_session(idp, headers, &params));
    let (outcome, response) = match result {
        Ok((ended, response)) => (if ended { "ended" } else { "no_session" }, response),
        Err(error) => (error.label(), error.into_response()),
    };
    idp.stats().logout_calls.inc(&[outcome]);
    response
}

fn end_session(
    idp: &Idp,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(bool, Response), OAuthError> {
    let bad = |d: &str| OAuthError::no_redirect(ErrorCode::InvalidRequest, d);
    let hint = match params.get("id_token_hint") {
        Some(token) => Some(
            verify_id_token_hint(&idp.inner.keys, token)
                .ok_or_else(|| bad("id_token_hint is not an ID token of this provider"))?,
        ),
        None => None,
    };
    let client_id = match (params.get("client_id"), &hint) {
        (Some(id), Some(h)) if id != h.aud => {
            return Err(bad("client_id differs from the id_token_hint audience"));
        }
        (Some(id), _) => Some(id.to_owned()),
        (None, Some(h)) => Some(h.aud.clone()),
        (None, None) => None,
    };
    let cookie_sid = session_cookie(headers);
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            // The client named, or else (as MSAL's samples log out, with no
            // hint) the clients that signed in under the browser's IdP session.
            let candidates = match &client_id {
                Some(id) => vec![id.clone()],
                None => cookie_sid
                    .and_then(|sid| {
                        idp.inner
                            .grants
                            .lock()
                            .session(sid)
                            .map(|s| s.clients.clone())
                    })
                    .unwrap_or_default(),
            };
            if candidates.is_empty() {
                return Err(bad(
                    "post_logout_redirect_uri needs a known client_id, an id_token_hint or an IdP session",
                ));
            }
            let registered = idp
                .config()
                .clients
                .iter()
                .filter(|c| candidates.contains(&c.client_id))
                .flat_map(|c| &c.post_logout_redirect_uris)
                .any(|r| redirect_uri_matches(r, uri));
            if !registered {
                return Err(bad(
                    "post_logout_redirect_uri is not registered for this client",
                ));
            }
            Some(uri)
        }
    };
    let sid = hint
        .map(|h| h.sid)
        .or_else(|| cookie_sid.map(str::to_owned));
    let ended = sid
        .as_deref()
        .is_some_and(|sid| idp.inner.grants.lock().end_session(sid));
    let mut response = match redirect {
        Some(uri) => redirect_with(uri, &[], params.get("state")),
        None => Json(json!({ "signed_out": true, "session_ended": ended })).into_response(),
    };
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("mock_idp_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
    Ok((ended, response))
}
