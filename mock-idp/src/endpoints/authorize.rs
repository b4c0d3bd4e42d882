//! `/authorize`: authorization code with PKCE, signed in without a form via `login_hint`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Params, redirect_uri_matches};
use crate::Idp;
use crate::config::{ClientConfig, GrantType};
use crate::grants::{AuthCode, random_token};
use crate::oauth_error::{ErrorCode, OAuthError};
use crate::scope::Scopes;
use crate::tokens::client_info;
use crate::users::User;

/// The IdP's own browser-session cookie, so a second sign-in from the same
/// browser joins its IdP session (`sid`) as it would at a real provider.
pub const SESSION_COOKIE: &str = "mock_idp_session";

/// `GET /authorize`
pub async fn authorize_get(
    State(idp): State<Idp>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(&idp, &headers, query.unwrap_or_default().as_bytes())
}

/// `POST /authorize` (form-encoded, as OpenID Connect allows)
pub async fn authorize_post(State(idp): State<Idp>, headers: HeaderMap, body: Bytes) -> Response {
    authorize(&idp, &headers, &body)
}

fn authorize(idp: &Idp, headers: &HeaderMap, form: &[u8]) -> Response {
    let result = match Params::parse(form) {
        Ok(params) => sign_in(idp, headers, &params),
        Err(name) => Err(Refusal::Direct(OAuthError::no_redirect(
            ErrorCode::InvalidRequest,
            format!("parameter {name} is repeated"),
        ))),
    };
    let (outcome, response) = match result {
        Ok(response) => ("ok", response),
        Err(Refusal::Direct(error)) => (error.label(), error.into_response()),
        Err(Refusal::Redirect {
            to,
            state,
            code,
            description,
        }) => (
            code.as_str(),
            redirect_with(
                &to,
                &[
                    ("error", code.as_str()),
                    ("error_description", &description),
                ],
                state.as_deref(),
            ),
        ),
    };
    idp.stats().authorize_calls.inc(&[outcome]);
    response
}

enum Refusal {
    /// The client or redirect URI cannot be trusted: answer the browser directly.
    Direct(OAuthError),
    /// Tell the client, through its redirect URI.
    Redirect {
        to: String,
        state: Option<String>,
        code: ErrorCode,
        description: String,
    },
}

fn sign_in(idp: &Idp, headers: &HeaderMap, params: &Params) -> Result<Response, Refusal> {
    let config = idp.config();
    let direct = |code, d: &str| Refusal::Direct(OAuthError::no_redirect(code, d));
    let client_id = params
        .get("client_id")
        .ok_or_else(|| direct(ErrorCode::InvalidRequest, "client_id is required"))?;
    let client = config
        .clients
        .iter()
        .find(|c| c.client_id == client_id)
        .ok_or_else(|| direct(ErrorCode::UnauthorizedClient, "unknown client_id"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| direct(ErrorCode::InvalidRequest, "redirect_uri is required"))?;
    if !client
        .redirect_uris
        .iter()
        .any(|r| redirect_uri_matches(r, redirect_uri))
    {
        return Err(direct(
            ErrorCode::InvalidRequest,
            "redirect_uri is not registered for this client",
        ));
    }
    let state = params.get("state").map(str::to_owned);
    let refuse = |code, description: &str| Refusal::Redirect {
        to: redirect_uri.to_owned(),
        state: state.clone(),
        code,
        description: description.to_owned(),
    };
    let checked = check_request(idp, client, params).map_err(|(c, d)| refuse(c, &d))?;
    let now = idp.clock().now();
    let cookie_session = session_from_cookie(idp, headers);
    let prompt = params.get("prompt").unwrap_or("");
    let user =
        match params.get("login_hint") {
            Some(hint) => idp
                .inner
                .users
                .find(hint)
                .ok_or_else(|| refuse(ErrorCode::AccessDenied, "no such user"))?,
            None => match (&cookie_session, prompt) {
                (Some((_, user)), p) if p != "login" => user.clone(),
                (_, "none") => return Err(refuse(ErrorCode::LoginRequired, "no IdP session")),
                _ => idp.inner.users.default_user().ok_or_else(|| {
                    refuse(ErrorCode::AccessDenied, "no default user is configured")
                })?,
            },
        };
    let joined = cookie_session
        .filter(|(_, u)| u.oid == user.oid && prompt != "login")
        .map(|(sid, _)| sid);
    if prompt == "none" && joined.is_none() {
        return Err(refuse(
            ErrorCode::LoginRequired,
            "no IdP session for this user",
        ));
    }
    let code = random_token();
    let mut grants = idp.inner.grants.lock();
    let sid = match joined {
        Some(sid) => sid,
        None => {
            let sid = uuid::Uuid::new_v4().to_string();
            grants.start_session(sid.clone(), user.clone());
            sid
        }
    };
    let user_oid = user.oid.clone();
    grants.insert_code(
        code.clone(),
        AuthCode {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            code_challenge: checked.code_challenge,
            nonce: params.get("nonce").map(str::to_owned),
            scopes: checked.scopes,
            user,
            sid: sid.clone(),
            auth_time: now,
            expires_at: now + config.auth_code_lifetime_secs,
        },
        now,
    );
    drop(grants);
    // Entra ID adds `client_info` when asked (MSAL asks, for request routing).
    let client_info =
        (params.get("client_info") == Some("1")).then(|| client_info(&user_oid, &config.tenant_id));
    let mut answer = vec![("code", code.as_str()), ("session_state", sid.as_str())];
    if let Some(info) = &client_info {
        answer.push(("client_info", info));
    }
    let mut response = redirect_with(redirect_uri, &answer, state.as_deref());
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

struct Checked {
    scopes: Scopes,
    code_challenge: String,
}

/// The checks whose failures go back to the client by redirect.
fn check_request(
    idp: &Idp,
    client: &ClientConfig,
    params: &Params,
) -> Result<Checked, (ErrorCode, String)> {
    let fail = |code, d: &str| Err((code, d.to_owned()));
    match params.get("response_type") {
        None => return fail(ErrorCode::InvalidRequest, "response_type is required"),
        Some("code") => {}
        Some(_) => {
            return fail(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            );
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return fail(
            ErrorCode::InvalidRequest,
            "only response_mode=query is supported",
        );
    }
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return fail(
            ErrorCode::UnauthorizedClient,
            "client may not use the authorization code grant",
        );
    }
    if params
        .get("prompt")
        .is_some_and(|p| !["none", "login", "consent", "select_account"].contains(&p))
    {
        return fail(ErrorCode::InvalidRequest, "unsupported prompt value");
    }
    let Some(requested) = params.get("scope") else {
        return fail(ErrorCode::InvalidScope, "scope is required");
    };
    let scopes = Scopes::parse(requested, idp.config(), client).map_err(|s| {
        (
            ErrorCode::InvalidScope,
            format!("scope {s} is not available to this client"),
        )
    })?;
    let Some(challenge) = params.get("code_challenge") else {
        return fail(
            ErrorCode::InvalidRequest,
            "PKCE is required: code_challenge is missing",
        );
    };
    if params.get("code_challenge_method") != Some("S256") {
        return fail(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256",
        );
    }
    // A SHA-256 digest in base64url without padding is always 43 characters.
    let well_formed = challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return fail(
            ErrorCode::InvalidRequest,
            "code_challenge is not a base64url SHA-256 digest",
        );
    }
    Ok(Checked {
        scopes,
        code_challenge: challenge.to_owned(),
    })
}

/// The live IdP session named by the browser's cookie, and its user.
fn session_from_cookie(idp: &Idp, headers: &HeaderMap) -> Option<(String, Arc<User>)> {
    let sid = session_cookie(headers)?;
    let grants = idp.inner.grants.lock();
    let session = grants.session(sid).filter(|s| !s.ended)?;
    Some((sid.to_owned(), session.user.clone()))
}

/// The IdP session id the browser's cookie names, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

/// A 302 to `to` with parameters appended to its query, and `state` when given.
pub fn redirect_with(to: &str, params: &[(&str, &str)], state: Option<&str>) -> Response {
    let Ok(mut url) = url::Url::parse(to) else {
        return OAuthError::no_redirect(ErrorCode::InvalidRequest, "redirect URI is not a URL")
            .into_response();
    };
    // Only when there is something to add: otherwise `url` would gain a bare `?`.
    if !params.is_empty() || state.is_some() {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => OAuthError::no_redirect(
            ErrorCode::InvalidRequest,
            "redirect URI is not a valid header",
        )
        .into_response(),
    }
}
