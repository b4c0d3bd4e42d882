//! The app's HTTP surface: sign-in, the profile and data calls, the cart, logout, health and metrics.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::idp_client::{IdpClient, IdpError, TokenResponse};
use crate::metrics::Metrics;
use crate::session::{LoadedSession, PendingLogin, SessionData, Sessions, SignedIn};
use crate::store::encrypted::EncryptedStore;
use crate::store::{Record, StoreError};
use crate::tokencache::model::{Account, ScopeSet, TokenGrant};
use crate::tokencache::placement::{CacheAccess, CacheSnapshot};

pub const INSTANCE_HEADER: &str = "x-instance";
pub const VERSION_HEADER: &str = "x-session-version";

/// How long a request waits for another instance's refresh of its session.
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// How often it looks for that refresh's result meanwhile.
const LEASE_POLL: Duration = Duration::from_millis(25);

/// How many times a compare-and-set write is retried before giving up with 503.
const CAS_ATTEMPTS: usize = 16;

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
    pub cache: Arc<dyn CacheAccess>,
    pub idp: IdpClient,
    pub metrics: Arc<Metrics>,
    pub encrypted: Option<Arc<EncryptedStore>>,
    refresh_locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

/// Why a request failed, and how that is answered.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not signed in")]
    NotSignedIn,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Idp(#[from] IdpError),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AppError::NotSignedIn => (StatusCode::UNAUTHORIZED, "not_signed_in"),
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Store(StoreError::Conflict { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "write_contention")
            }
            AppError::Store(StoreError::Config(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "store_misconfigured")
            }
            AppError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            AppError::Idp(IdpError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "idp_unavailable")
            }
            AppError::Idp(IdpError::BadGateway(_)) => (StatusCode::BAD_GATEWAY, "idp_bad_answer"),
            AppError::Idp(IdpError::Refused(_)) => (StatusCode::UNAUTHORIZED, "signin_required"),
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        (
            status,
            Json(json!({ "error": code, "detail": self.to_string() })),
        )
            .into_response()
    }
}

/// A session found by the request's cookie, with the records prefetched beside it.
struct Current {
    session: LoadedSession,
    prefetched: Vec<Option<Record>>,
}

impl App {
    pub fn new(
        settings: WebSettings,
        sessions: Sessions,
        cache: Arc<dyn CacheAccess>,
        idp: IdpClient,
        metrics: Arc<Metrics>,
        encrypted: Option<Arc<EncryptedStore>>,
    ) -> Self {
        Self {
            settings,
            sessions,
            cache,
            idp,
            metrics,
            encrypted,
            refresh_locks: Mutex::new(HashMap::new()),
        }
    }

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
            .load_with(&id, &self.cache.prefetch_keys(&id))
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
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn refresh_lock(&self, session_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.refresh_locks.lock();
        if let Some(lock) = locks.get(session_id).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(session_id.to_owned(), Arc::downgrade(&lock));
        lock
    }

    /// Loads the session's cache view and, if it holds one, an access token
    /// for `wanted` that is not due for renewal.
    async fn cached_token(
        &self,
        session: &LoadedSession,
        account: &str,
        wanted: &ScopeSet,
        prefetched: Option<&[Option<Record>]>,
    ) -> Result<(CacheSnapshot, Option<String>), AppError> {
        let snapshot = self
            .cache
            .before_access(session, account, prefetched)
            .await?;
        let fresh = snapshot
            .cache
            .access_token(
                account,
                &self.idp.settings().client_id,
                wanted,
                self.sessions.clock().now(),
                self.settings.renewal_offset,
            )
            .map(|at| at.secret.clone());
        Ok((snapshot, fresh))
    }

    /// MSAL's acquire-silent: a cached access token for `scopes`, or a refresh.
    /// Returns the token and where it came from (`cache` or `refresh`).
    ///
    /// Where the placement asks for it, at most one refresh per session runs
    /// at a time: a lock within the instance and a lease in the store across
    /// instances; the others wait and then find the fresh token (a strict IdP
    /// would take a second use of one refresh token for theft).
    async fn acquire_silent(
        &self,
        current: &mut Current,
        scopes: &str,
    ) -> Result<(String, &'static str), AppError> {
        let user = current
            .session
            .data
            .user
            .clone()
            .ok_or(AppError::NotSignedIn)?;
        let account = user.home_account_id.as_str();
        let wanted = ScopeSet::parse(scopes);
        let prefetched = (!current.prefetched.is_empty()).then_some(current.prefetched.as_slice());
        let (mut snapshot, fresh) = self
            .cached_token(&current.session, account, &wanted, prefetched)
            .await?;
        if let Some(token) = fresh {
            return Ok((token, "cache"));
        }
        if !self.cache.single_flight() {
            return self
                .refresh_and_store(current, &user, scopes, snapshot)
                .await;
        }
        let lock = self.refresh_lock(&current.session.id);
        let _guard = lock.lock().await;
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        loop {
            let (reread, fresh) = self
                .cached_token(&current.session, account, &wanted, None)
                .await?;
            if let Some(token) = fresh {
                return Ok((token, "cache"));
            }
            snapshot = reread;
            if self
                .cache
                .lease_refresh(&current.session, &self.settings.instance_id)
                .await?
            {
                // Read again under the lease: the last holder may have just stored.
                let (reread, fresh) = self
                    .cached_token(&current.session, account, &wanted, None)
                    .await?;
                let result = match fresh {
                    Some(token) => Ok((token, "cache")),
                    None => self.refresh_and_store(current, &user, scopes, reread).await,
                };
                if let Err(e) = self.cache.release_refresh(&current.session).await {
                    tracing::debug!(error = %e, "releasing the refresh lease failed; it expires by itself");
                }
                return result;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("refresh lease still held elsewhere; refreshing without it");
                return self
                    .refresh_and_store(current, &user, scopes, snapshot)
                    .await;
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Redeems the cached refresh token and stores the answer (re-reading and
    /// re-applying on a compare-and-set conflict, so no token is lost).
    async fn refresh_and_store(
        &self,
        current: &mut Current,
        user: &SignedIn,
        scopes: &str,
        mut snapshot: CacheSnapshot,
    ) -> Result<(String, &'static str), AppError> {
        let account = user.home_account_id.as_str();
        let client_id = self.idp.settings().client_id.as_str();
        let refresh_token = snapshot
            .cache
            .refresh_token(account, client_id)
            .ok_or(AppError::Idp(IdpError::Refused(
                "no refresh token cached".into(),
            )))?
            .to_owned();
        let response = self
            .idp
            .refresh(
                &refresh_token,
                &format!("{scopes} openid profile offline_access"),
            )
            .await?;
        let account_entity = self.account(user, &response);
        for _ in 0..CAS_ATTEMPTS {
            snapshot.cache.add(
                self.grant(account_entity.clone(), client_id, &response),
                self.sessions.clock().now(),
            );
            match self
                .cache
                .after_access(&mut current.session, account, snapshot, &self.sessions)
                .await
            {
                Ok(()) => return Ok((response.access_token, "refresh")),
                Err(StoreError::Conflict { .. }) => {
                    self.metrics.write_conflict();
                    snapshot = self
                        .cache
                        .before_access(&current.session, account, None)
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict { current: None }.into())
    }

    fn account(&self, user: &SignedIn, response: &TokenResponse) -> Account {
        Account {
            home_account_id: user.home_account_id.clone(),
            environment: url::Url::parse(&self.idp.settings().authority)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default(),
            realm: response.utid.clone(),
            local_account_id: user.oid.clone(),
            username: user.username.clone(),
            name: user.username.clone(),
        }
    }

    fn grant<'a>(
        &self,
        account: Account,
        client_id: &'a str,
        response: &'a TokenResponse,
    ) -> TokenGrant<'a> {
        TokenGrant {
            account,
            client_id,
            access_token: &response.access_token,
            scope: &response.scope,
            expires_in: response.expires_in,
            ext_expires_in: response.ext_expires_in,
            id_token: response.id_token.as_deref(),
            refresh_token: response.refresh_token.as_deref(),
        }
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
        .route("/logout", get(logout))
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

fn with_version(mut response: Response, session: &LoadedSession) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(VERSION_HEADER),
        HeaderValue::from(session.version),
    );
    response
}

async fn home(State(app): Shared, headers: HeaderMap) -> Result<Response, AppError> {
    let current = app.current(&headers).await?;
    let user = current
        .as_ref()
        .and_then(|c| c.session.data.user.as_ref())
        .map(|u| u.username.clone());
    let body = Json(
        json!({ "instance": app.settings.instance_id, "signed_in": user.is_some(), "user": user }),
    );
    Ok(match &current {
        Some(c) => with_version(body.into_response(), &c.session),
        None => body.into_response(),
    })
}

#[derive(Deserialize)]
struct LoginQuery {
    login_hint: Option<String>,
}

/// Starts a sign-in in a fresh pre-login session (never one the browser brought).
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
    let session = app
        .sessions
        .create(SessionData {
            pending: Some(pending),
            ..SessionData::default()
        })
        .await?;
    let location = HeaderValue::from_str(&url)
        .map_err(|_| AppError::Idp(IdpError::BadGateway("authorization URL".into())))?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::SET_COOKIE, app.sessions.cookie(&session.id)),
        ],
    )
        .into_response())
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
        return Err(AppError::BadRequest(format!(
            "the IdP refused the sign-in: {error}"
        )));
    }
    let current = app
        .current(&headers)
        .await?
        .ok_or_else(|| AppError::BadRequest("no sign-in in progress".into()))?;
    let pending = current
        .session
        .data
        .pending
        .clone()
        .ok_or_else(|| AppError::BadRequest("no sign-in in progress".into()))?;
    if query.state.as_deref() != Some(pending.state.as_str()) {
        return Err(AppError::BadRequest(
            "state does not match the sign-in".into(),
        ));
    }
    let code = query
        .code
        .ok_or_else(|| AppError::BadRequest("no code".into()))?;
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
    let client_id = app.idp.settings().client_id.clone();
    let mut snapshot = app
        .cache
        .before_access(&session, &user.home_account_id, None)
        .await?;
    snapshot.cache.add(
        app.grant(app.account(&user, &tokens), &client_id, &tokens),
        app.sessions.clock().now(),
    );
    app.cache
        .after_access(&mut session, &user.home_account_id, snapshot, &app.sessions)
        .await?;
    app.sessions.delete(&current.session.id).await?;
    let response = (
        StatusCode::FOUND,
        [
            (header::LOCATION, HeaderValue::from_static("/")),
            (header::SET_COOKIE, app.sessions.cookie(&session.id)),
        ],
    )
        .into_response();
    Ok(with_version(response, &session))
}

/// Calls the protected API with a silently acquired token for `scopes`.
async fn call_api(
    app: &App,
    headers: &HeaderMap,
    scopes: &str,
    extra: Value,
) -> Result<Response, AppError> {
    let mut current = app.signed_in(headers).await?;
    let (token, source) = app.acquire_silent(&mut current, scopes).await?;
    app.metrics.token_source(source);
    let echo = app.idp.call_api(&token).await?;
    app.touch(&mut current.session).await?;
    let user = current
        .session
        .data
        .user
        .as_ref()
        .map(|u| u.username.clone());
    let mut body = json!({
        "instance": app.settings.instance_id,
        "source": source,
        "user": user,
        "api": echo,
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    Ok(with_version(Json(body).into_response(), &current.session))
}

async fn profile(State(app): Shared, headers: HeaderMap) -> Result<Response, AppError> {
    call_api(&app, &headers, &app.scope("api.read"), Value::Null).await
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
    call_api(
        &app,
        &headers,
        &scopes,
        json!({ "resource": resource, "scopes": scopes }),
    )
    .await
}

#[derive(Deserialize)]
struct CartItem {
    item: String,
}

async fn read_cart(State(app): Shared, headers: HeaderMap) -> Result<Response, AppError> {
    let current = app.signed_in(&headers).await?;
    let body =
        Json(json!({ "version": current.session.version, "items": current.session.data.cart }));
    Ok(with_version(body.into_response(), &current.session))
}

/// Appends an item. Under compare-and-set a conflict re-reads and re-applies,
/// so no acknowledged item is lost; last-writer-wins may drop another's item.
async fn add_to_cart(
    State(app): Shared,
    headers: HeaderMap,
    Json(item): Json<CartItem>,
) -> Result<Response, AppError> {
    if item.item.is_empty() || item.item.len() > 256 {
        return Err(AppError::BadRequest("item must be 1 to 256 bytes".into()));
    }
    let mut current = app.signed_in(&headers).await?;
    for _ in 0..CAS_ATTEMPTS {
        if !current.session.data.cart.contains(&item.item) {
            current.session.data.cart.push(item.item.clone());
        }
        match app.sessions.save(&mut current.session).await {
            Ok(()) => {
                let body = Json(
                    json!({ "version": current.session.version, "items": current.session.data.cart }),
                );
                return Ok(with_version(body.into_response(), &current.session));
            }
            Err(StoreError::Conflict { .. }) => {
                app.metrics.write_conflict();
                current.session = app
                    .sessions
                    .load(&current.session.id)
                    .await?
                    .ok_or(AppError::NotSignedIn)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict { current: None }.into())
}

/// Ends the session here (with the tokens its placement removes) and at the IdP.
async fn logout(State(app): Shared, headers: HeaderMap) -> Result<Response, AppError> {
    let mut idp_session_ended = false;
    if let Some(current) = app.current(&headers).await? {
        if let Some(user) = &current.session.data.user {
            app.cache
                .on_logout(&current.session, &user.home_account_id)
                .await?;
        }
        app.sessions.delete(&current.session.id).await?;
        if let Some(user) = &current.session.data.user {
            // The local session is gone either way; an IdP that is down only
            // means its session outlives this one, which the answer says.
            match app.idp.end_session(&user.id_token).await {
                Ok(()) => idp_session_ended = true,
                Err(e) => tracing::warn!(error = %e, "IdP end-session failed"),
            }
        }
    }
    Ok((
        [(header::SET_COOKIE, app.sessions.clear_cookie())],
        Json(json!({ "signed_out": true, "idp_session_ended": idp_session_ended })),
    )
        .into_response())
}

async fn metrics(State(app): Shared) -> Response {
    let store = app.sessions.store();
    let size = store.size().await.ok();
    let text = app.metrics.render(
        &app.settings.instance_id,
        &[(store.kind().as_str(), size)],
        app.cache.resident_entries(),
        app.encrypted.as_ref().map_or(0, |e| e.undecryptable()),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
