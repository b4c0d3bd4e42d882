//! The app's HTTP surface: sign-in, the profile and data calls, the cart, logout, health and metrics.
//!
//! Handlers only translate: the session layer finds and writes sessions, the
//! token acquirer gets tokens, the IdP client calls the IdP, and replies are
//! the contract's types.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contract::{
    CART_ITEM_MAX_BYTES, CART_MAX_BYTES, CART_MAX_ITEMS, CartItem, CartReply, ErrorCode,
    ErrorReply, HomeReply, INSTANCE_HEADER, LogoutReply, ProfileReply, SESSION_VERSION_HEADER,
};
use serde::{Deserialize, Serialize};

use crate::idp_client::{IdpCallError, IdpClient};
use crate::metrics::Metrics;
use crate::session::{LoadedSession, PendingLogin, SessionData, Sessions, SignedIn};
use crate::store::breaker::Breaker;
use crate::store::encrypted::EncryptedStore;
use crate::store::tiered::coherence::Coherence;
use crate::store::{Record, StoreError};
use crate::tokencache::acquire::{AcquireError, TokenAcquirer};

/// Settings of the web layer.
#[derive(Clone, Debug)]
pub struct WebSettings {
    pub instance_id: String,
    /// This instance's base URL; its callback is `{public_url}/auth/callback`.
    pub public_url: String,
    /// The protected API's audience, prefixing its scopes (`api://mock-api`).
    pub api_audience: String,
    /// Seconds before expiry at which a cached access token is renewed.
    pub renewal_offset: u64,
}

/// Everything a request needs.
pub struct App {
    pub settings: WebSettings,
    pub sessions: Sessions,
    pub tokens: TokenAcquirer,
    pub idp: Arc<IdpClient>,
    pub metrics: Arc<Metrics>,
    pub encrypted: Option<Arc<EncryptedStore>>,
    /// The breakers in front of Redis and Postgres.
    pub breakers: Vec<Arc<Breaker>>,
    /// The cache tier's coherence protocol, where there is one (option4).
    pub coherence: Option<Arc<Coherence>>,
}

/// Why a request failed, and how that is answered: a stable code and a
/// short reason of our own ([`AppError::reason`]); the internal text (a
/// store's or the IdP's own words) goes to the log, never to the client.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not signed in")]
    NotSignedIn,
    /// A mistake in the request; the text is ours, never the client's echoed.
    #[error("{0}")]
    BadRequest(&'static str),
    /// The cart holds as many items, or bytes, as it may.
    #[error("the cart is full")]
    CartFull,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Idp(#[from] IdpCallError),
    #[error(transparent)]
    Acquire(#[from] AcquireError),
}

impl AppError {
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            AppError::NotSignedIn => (StatusCode::UNAUTHORIZED, ErrorCode::NotSignedIn),
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            AppError::CartFull => (StatusCode::CONFLICT, ErrorCode::CartFull),
            AppError::Store(e) | AppError::Acquire(AcquireError::Store(e)) => match e {
                StoreError::Conflict { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::WriteContention)
                }
                StoreError::Config(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::StoreMisconfigured,
                ),
                _ => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StoreUnavailable),
            },
            AppError::Idp(e) | AppError::Acquire(AcquireError::Idp(e)) => match e {
                IdpCallError::Unavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::IdpUnavailable)
                }
                IdpCallError::BadGateway(_) => (StatusCode::BAD_GATEWAY, ErrorCode::IdpError),
                IdpCallError::Refused(_) => (StatusCode::UNAUTHORIZED, ErrorCode::SigninRequired),
            },
            AppError::Acquire(AcquireError::NoRefreshToken) => {
                (StatusCode::UNAUTHORIZED, ErrorCode::SigninRequired)
            }
            AppError::Acquire(AcquireError::RefreshElsewhere) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::IdpUnavailable)
            }
            AppError::Acquire(AcquireError::LeaseLost) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::WriteContention)
            }
        }
    }

    /// What the client is told: short, fixed, nothing internal.
    fn reason(&self) -> String {
        match self {
            AppError::NotSignedIn => "not signed in".into(),
            AppError::BadRequest(why) => (*why).into(),
            AppError::CartFull => {
                format!("the cart holds its most: {CART_MAX_ITEMS} items or {CART_MAX_BYTES} bytes")
            }
            _ => match self.status_and_code().1 {
                ErrorCode::WriteContention => "concurrent writes kept conflicting; try again",
                ErrorCode::StoreMisconfigured => "the store is misconfigured",
                ErrorCode::StoreUnavailable => "a store is unavailable; try again",
                ErrorCode::IdpUnavailable => "the identity provider is unavailable; try again",
                ErrorCode::IdpError => "the identity provider answered with something unusable",
                ErrorCode::SigninRequired => "sign in again",
                _ => "the request failed",
            }
            .into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, error) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let body = ErrorReply {
            error,
            detail: self.reason(),
        };
        (status, Json(body)).into_response()
    }
}

/// A session found by the request's cookie, with the records prefetched beside it.
struct Current {
    session: LoadedSession,
    prefetched: Vec<Option<Record>>,
}

impl Current {
    fn user(&self) -> Result<SignedIn, AppError> {
        self.session.data.user.clone().ok_or(AppError::NotSignedIn)
    }
}

impl App {
    fn callback_url(&self) -> String {
        format!(
            "{}/auth/callback",
            self.settings.public_url.trim_end_matches('/')
        )
    }

    fn scope(&self, short: &str) -> String {
        format!("{}/{short}", self.settings.api_audience)
    }

    async fn current(&self, headers: &HeaderMap) -> Result<Option<Current>, AppError> {
        let Some(id) = self.sessions.cookie_id(headers) else {
            return Ok(None);
        };
        let (session, prefetched) = self
            .sessions
            .load_with(&id, |store_id| self.tokens.cache().prefetch_keys(store_id))
            .await?;
        Ok(session.map(|session| Current {
            session,
            prefetched,
        }))
    }

    async fn signed_in(&self, headers: &HeaderMap) -> Result<Current, AppError> {
        match self.current(headers).await? {
            Some(current) if current.session.data.user.is_some() => Ok(current),
            _ => Err(AppError::NotSignedIn),
        }
    }

    /// Keeps an active session alive without writing on every read.
    async fn touch(&self, session: &mut LoadedSession) -> Result<(), AppError> {
        if self.sessions.needs_touch(session) {
            match self.sessions.save(session).await {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                // A read the store could serve still answers when the
                // keep-alive write cannot be made (Postgres down): the
                // session lives on until its TTL, and the next read retries.
                Err(StoreError::Unavailable(reason)) => {
                    tracing::debug!(%reason, "session not touched; store unavailable");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

type Shared = State<Arc<App>>;

/// The router; every response carries `x-instance`.
pub fn router(app: Arc<App>) -> Router {
    let instance = HeaderValue::from_str(&app.settings.instance_id)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/profile", get(profile))
        .route("/data/{resource}", get(data))
        .route("/cart", get(read_cart).post(add_to_cart))
        .route("/logout", get(logout).post(logout_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(middleware::map_response(move |mut response: Response| {
            let instance = instance.clone();
            async move {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(INSTANCE_HEADER), instance);
                response
            }
        }))
        .with_state(app)
}

/// A response of a request with a session carries its version, as the contract asks.
fn with_version(mut response: Response, session: &LoadedSession) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(SESSION_VERSION_HEADER),
        HeaderValue::from(session.version),
    );
    response
}

fn versioned(reply: impl Serialize, session: &LoadedSession) -> Response {
    with_version(Json(reply).into_response(), session)
}

fn redirect(location: HeaderValue, cookie: HeaderValue) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, location), (header::SET_COOKIE, cookie)],
    )
        .into_response()
}

async fn home(State(app): Shared, headers: HeaderMap) -> Result<Response, AppError> {
    let current = app.current(&headers).await?;
    let user = current
        .as_ref()
        .and_then(|c| c.session.data.user.as_ref())
        .map(|u| u.username.clone());
    let reply = HomeReply {
        instance: app.settings.instance_id.clone(),
        signed_in: user.is_some(),
        user,
    };
    Ok(match &current {
        Some(c) => versioned(reply, &c.session),
        None => Json(reply).into_response(),
    })
}

#[derive(Deserialize)]
struct LoginQuery {
    login_hint: Option<String>,
}

/// Starts a sign-in. What the callback must see again (state, nonce, PKCE
/// verifier) travels in a signed cookie that lives ten minutes, not in the
/// stores: anonymous `/login` calls write nothing, however many there are.
async fn login(State(app): Shared, Query(query): Query<LoginQuery>) -> Result<Response, AppError> {
    let random = || URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let pending = PendingLogin {
        state: random(),
        nonce: random(),
        verifier: random(),
    };
    let scope = format!("openid profile offline_access {}", app.scope("api.read"));
    let url = app
        .idp
        .authorize_url(
            &app.callback_url(),
            &scope,
            &pending.state,
            &pending.nonce,
            &pending.verifier,
            query.login_hint.as_deref(),
        )
        .await?;
    let location = HeaderValue::from_str(&url)
        .map_err(|_| IdpCallError::BadGateway("authorization URL".into()))?;
    Ok(redirect(location, app.sessions.pending_cookie(&pending)?))
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Completes the code exchange in a new session (the id rotates at sign-in).
async fn callback(
    State(app): Shared,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    if let Some(error) = query.error {
        tracing::info!(%error, "the IdP refused a sign-in");
        return Err(AppError::BadRequest("the IdP refused the sign-in"));
    }
    let pending = app
        .sessions
        .pending_login(&headers)
        .ok_or(AppError::BadRequest("no sign-in in progress"))?;
    if query.state.as_deref() != Some(pending.state.as_str()) {
        return Err(AppError::BadRequest("state does not match the sign-in"));
    }
    let code = query.code.ok_or(AppError::BadRequest("no code"))?;
    // Lifetimes count from when the request went out (as MSAL counts them):
    // never later than the IdP's own clock started them.
    let requested_at = app.sessions.clock().now();
    let tokens = app
        .idp
        .redeem_code(&code, &app.callback_url(), &pending.verifier)
        .await?;
    let id_token = tokens.id_token.clone().unwrap_or_default();
    let claims = app.idp.verify_id_token(&id_token, &pending.nonce).await?;
    let user = SignedIn {
        home_account_id: format!("{}.{}", tokens.uid, tokens.utid),
        username: claims
            .preferred_username
            .clone()
            .unwrap_or_else(|| claims.sub.clone()),
        oid: claims.oid.clone(),
        idp_sid: claims.sid.clone(),
        id_token,
    };
    let mut session = app
        .sessions
        .create(SessionData {
            user: Some(user.clone()),
            ..SessionData::default()
        })
        .await?;
    app.tokens
        .store_sign_in(&app.sessions, &mut session, &user, &tokens, requested_at)
        .await?;
    let mut home = redirect(
        HeaderValue::from_static("/"),
        app.sessions.cookie(&session.id),
    );
    home.headers_mut()
        .append(header::SET_COOKIE, app.sessions.clear_pending_cookie());
    Ok(with_version(home, &session))
}

/// Calls the protected API with a silently acquired token for `scopes`.
async fn call_api(
    app: &App,
    headers: &HeaderMap,
    scopes: String,
    resource: Option<String>,
) -> Result<Response, AppError> {
    let mut current = app.signed_in(headers).await?;
    let user = current.user()?;
    let (token, source) = app
        .tokens
        .acquire_silent(
            &app.sessions,
            &mut current.session,
            &user,
            &current.prefetched,
            &scopes,
        )
        .await?;
    app.metrics.token_source(source.as_str());
    let api = app.idp.call_api(&token).await?;
    app.touch(&mut current.session).await?;
    let reply = ProfileReply {
        user: user.username,
        token_source: source,
        api,
        scopes: resource.is_some().then_some(scopes),
        resource,
    };
    Ok(versioned(reply, &current.session))
}

async fn profile(State(app): Shared, headers: HeaderMap) -> Result<Response, AppError> {
    call_api(&app, &headers, app.scope("api.read"), None).await
}

/// Scope sets `/data/{resource}` spreads resources over: each is another
/// cache entry per account.
const DATA_SCOPES: [&[&str]; 4] = [
    &["data.read"],
    &["data.write"],
    &["api.write"],
    &["data.read", "data.write"],
];

async fn data(
    State(app): Shared,
    headers: HeaderMap,
    Path(resource): Path<String>,
) -> Result<Response, AppError> {
    let index = resource.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    }) % DATA_SCOPES.len();
    let scopes = DATA_SCOPES[index]
        .iter()
        .map(|s| app.scope(s))
        .collect::<Vec<_>>()
        .join(" ");
    call_api(&app, &headers, scopes, Some(resource)).await
}

async fn read_cart(State(app): Shared, headers: HeaderMap) -> Result<Response, AppError> {
    let mut current = app.signed_in(&headers).await?;
    // A read is use: without the keep-alive, a browser that only reads its
    // cart would be signed out an idle timeout after its last write.
    app.touch(&mut current.session).await?;
    let reply = CartReply {
        version: current.session.version,
        items: current.session.data.cart.clone(),
    };
    Ok(versioned(reply, &current.session))
}

/// Whether `item` fits in `cart`: at most [`CART_MAX_ITEMS`] items and
/// [`CART_MAX_BYTES`] bytes once it is in.
fn fits(cart: &[String], item: &str) -> bool {
    let bytes: usize = cart.iter().map(String::len).sum();
    cart.len() < CART_MAX_ITEMS && bytes + item.len() <= CART_MAX_BYTES
}

/// Appends an item. Under compare-and-set a conflict re-reads and re-applies,
/// so no acknowledged item is lost; last-writer-wins may drop another's item.
/// A full cart refuses the item (409 `cart_full`): every write rewrites the
/// whole record, so an unbounded cart would make every write dearer.
async fn add_to_cart(
    State(app): Shared,
    headers: HeaderMap,
    body: Result<Json<CartItem>, JsonRejection>,
) -> Result<Response, AppError> {
    // axum's own rejection text names serde's internals: ours instead.
    let Ok(Json(item)) = body else {
        return Err(AppError::BadRequest(
            "the body must be JSON {\"item\": ID} with a content-type of application/json",
        ));
    };
    if item.item.is_empty() || item.item.len() > CART_ITEM_MAX_BYTES {
        return Err(AppError::BadRequest("item must be 1 to 256 bytes"));
    }
    let mut current = app.signed_in(&headers).await?;
    let already = |data: &SessionData| data.cart.contains(&item.item);
    if !already(&current.session.data) && !fits(&current.session.data.cart, &item.item) {
        return Err(AppError::CartFull);
    }
    let mut full = false;
    let added = |data: &mut SessionData| {
        // Checked again on every attempt: a conflict re-reads the session.
        full = !already(data) && !fits(&data.cart, &item.item);
        if !already(data) && !full {
            data.cart.push(item.item.clone());
        }
    };
    let still_signed_in = app
        .sessions
        .update(&mut current.session, added, || app.metrics.write_conflict())
        .await?;
    if !still_signed_in {
        return Err(AppError::NotSignedIn);
    }
    if full {
        return Err(AppError::CartFull);
    }
    let reply = CartReply {
        version: current.session.version,
        items: current.session.data.cart.clone(),
    };
    Ok(versioned(reply, &current.session))
}

/// Ends the session here (with the tokens its placement removes) and at the IdP.
async fn logout(State(app): Shared, headers: HeaderMap) -> Result<Response, AppError> {
    let mut idp_session_ended = false;
    if let Some(current) = app.current(&headers).await? {
        if let Some(user) = &current.session.data.user {
            app.tokens.sign_out(&current.session, user).await?;
        }
        app.sessions.delete(&current.session).await?;
        if let Some(user) = &current.session.data.user {
            // The local session is gone either way; an IdP that is down only
            // means its session outlives this one, which the answer says.
            match app.idp.end_session(&user.id_token).await {
                Ok(()) => idp_session_ended = true,
                Err(e) => tracing::warn!(error = %e, "IdP end-session failed"),
            }
        }
    }
    let reply = LogoutReply {
        signed_out: true,
        idp_session_ended,
    };
    Ok((
        [(header::SET_COOKIE, app.sessions.clear_cookie())],
        Json(reply),
    )
        .into_response())
}

/// `POST /logout`, for pages that should not let a cross-site link or image
/// end the session (`GET /logout` stays, as the contract has it). A request
/// a browser marks as cross-site, or whose `Origin` is not this app, is refused.
async fn logout_post(State(app): Shared, headers: HeaderMap) -> Result<Response, AppError> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "cross-site");
    let foreign_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| {
            origin.trim_end_matches('/') != app.settings.public_url.trim_end_matches('/')
        });
    if cross_site || foreign_origin {
        return Ok((
            StatusCode::FORBIDDEN,
            Json(ErrorReply {
                error: ErrorCode::BadRequest,
                detail: format!("{} /logout from another site", Method::POST),
            }),
        )
            .into_response());
    }
    logout(State(app), headers).await
}

async fn metrics(State(app): Shared) -> Response {
    let store = app.sessions.store();
    let size = store.size().await.ok();
    let text = app.metrics.render(
        &app.settings.instance_id,
        &[(store.kind().as_str(), size)],
        app.tokens.cache().resident(),
        app.encrypted.as_ref().map_or(0, |e| e.undecryptable()),
        &app.breakers,
        app.coherence.as_ref().map(|c| c.stats()),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cart_holds_at_most_its_items_and_its_bytes() {
        let almost: Vec<String> = (0..CART_MAX_ITEMS - 1).map(|n| n.to_string()).collect();
        assert!(fits(&almost, "x"), "one more fits");
        let full: Vec<String> = (0..CART_MAX_ITEMS).map(|n| n.to_string()).collect();
        assert!(!fits(&full, "x"), "{CART_MAX_ITEMS} items is full");
        let heavy = vec!["z".repeat(CART_MAX_BYTES - 3)];
        assert!(fits(&heavy, "abc"), "exactly the most bytes fits");
        assert!(!fits(&heavy, "abcd"), "a byte more does not");
    }
}
