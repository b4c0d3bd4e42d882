//! The reference web app under test: an OAuth confidential client whose session
//! store and token-cache placement form the topology being measured.
//!
//! # Layout
//! A request goes down this list, never back up: `GET /profile` is
//! [`web`] (find the session) -> [`tokencache::acquire`] (a cached token or
//! one refresh) -> [`tokencache::placement`] (where the cache lives) ->
//! [`store`] (Redis/Postgres/...), and [`idp_client`] for the refresh and the
//! API call; the reply is a [`contract`] type.
//! - [`web`]: the HTTP surface (the observable contract, docs/architecture.md), thin handlers.
//! - [`tokencache`]: acquisition (acquire-silent, single-flight refresh) and
//!   the four placements behind MSAL's cache-access hooks.
//! - [`msal_model`]: MSAL's cache model (accounts, ID, access and refresh
//!   tokens); plain data, which a session can hold (option3).
//! - [`session`]: session ids, cookie, timeouts, versioned session records
//!   (stored under a keyed hash of the id), the signed sign-in cookie.
//! - [`topology`]: the four options and custom combinations, built into stores;
//!   which servers a topology needs.
//! - [`store`]: the one store trait, its backends (memory, SQLite, Postgres,
//!   Redis), wrappers (tiered, encrypted, the circuit breaker) and the
//!   HMAC store keys.
//! - [`idp_client`]: discovery, code exchange, refresh, ID-token checks, the API.
//! - [`metrics`]: counters and gauges for `/metrics`.
//! - [`Clock`] (from `service-kit`): the time timeouts and expiry read, movable in tests.

pub mod idp_client;
pub mod metrics;
pub mod msal_model;
pub mod session;
pub mod store;
pub mod tokencache;
pub mod topology;
pub mod web;

use std::sync::Arc;

use crate::idp_client::{IdpClient, IdpSettings};
use crate::metrics::Metrics;
use crate::session::{SessionSettings, Sessions};
use crate::store::keys::StoreKeys;
use crate::tokencache::acquire::TokenAcquirer;
use crate::tokencache::placement::partition_key;
use crate::topology::{Backends, TokenPlacement, Topology};
use crate::web::{App, WebSettings};
pub use service_kit::Clock;

/// Everything an app instance is configured with.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub topology: Topology,
    pub backends: Backends,
    pub sessions: SessionSettings,
    pub idp: IdpSettings,
    pub web: WebSettings,
}

/// Why an instance could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Idp(#[from] idp_client::IdpCallError),
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Builds an instance's state: stores for the topology, the IdP client, metrics.
pub fn build(config: AppConfig) -> Result<Arc<App>, SetupError> {
    build_with_clock(config, Clock::system())
}

/// As [`build`], on the given clock (tests move it to pass timeouts and expiry).
pub fn build_with_clock(config: AppConfig, clock: Clock) -> Result<Arc<App>, SetupError> {
    let name = &config.sessions.cookie_name;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(SetupError::Invalid(format!(
            "cookie name {name:?} must be letters, digits, '-', '_' or '.'"
        )));
    }
    if config.sessions.idle_timeout.is_zero()
        || config.sessions.absolute_timeout < config.sessions.idle_timeout
    {
        return Err(SetupError::Invalid(
            "the absolute timeout must be at least the (non-zero) idle timeout".into(),
        ));
    }
    let built = config
        .topology
        .build(&config.backends, config.sessions.absolute_timeout)?;
    let metrics = Arc::new(Metrics::default());
    let idp = Arc::new(IdpClient::new(config.idp, metrics.clone())?);
    let keys = StoreKeys::derive(
        &config.backends.encryption_secret,
        &config.backends.encryption_key_id,
        &config.backends.previous_key_ids,
    );
    let mut sessions = Sessions::new(
        built.sessions,
        config.sessions,
        config.topology.concurrency,
        clock,
    )
    .with_keys(keys);
    if config.topology.token_cache == TokenPlacement::Partitioned {
        sessions = sessions.with_companion(partition_key);
    }
    let tokens = TokenAcquirer::new(
        built.cache,
        idp.clone(),
        metrics.clone(),
        config.web.instance_id.clone(),
        config.web.renewal_offset,
    );
    Ok(Arc::new(App {
        settings: config.web,
        sessions,
        tokens,
        idp,
        metrics,
        encrypted: built.encrypted,
        breakers: built.breakers,
        coherence: built.coherence,
    }))
}

/// Serves `app` on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Touch the store once at start, so SQL migrations run now rather than on
    // the first request; a store that is down is only logged (requests get 503
    // until it is back, and the first one that reaches it migrates).
    let store = app.sessions.store().clone();
    tokio::spawn(async move {
        if let Err(e) = store.size().await {
            tracing::warn!(error = %e, "store not ready at start");
        }
    });
    axum::serve(listener, web::router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Defaults that make sense for a local run against the mock IdP.
pub fn default_session_settings() -> SessionSettings {
    SessionSettings {
        cookie_name: "app_session".into(),
        cookie_secure: false,
        idle_timeout: session::DEFAULT_IDLE_TIMEOUT,
        absolute_timeout: session::DEFAULT_ABSOLUTE_TIMEOUT,
    }
}
