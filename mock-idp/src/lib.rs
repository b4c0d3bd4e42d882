//! A mock OpenID Connect provider with a protected echo API, for load tests of OAuth clients.
//!
//! It speaks enough of OAuth 2.0 and OpenID Connect for MSAL-family and
//! standard clients (discovery, JWKS, authorization code with PKCE, refresh
//! with rotation, client credentials, UserInfo, end-session), signs ES256 JWTs,
//! counts what it is asked, and injects faults on demand.
//!
//! # Layout
//! - [`config`]: clients, users, lifetimes and policies (TOML, with defaults).
//! - [`server`]: the router, the HTTP and HTTPS listeners.
//! - [`issuer`]: the issuer each listener reports, and which issuers it serves.
//! - [`endpoints`]: one module per endpoint; [`endpoints::entra`] serves them in Entra ID's URL shapes.
//! - [`grants`]: codes, refresh-token families, IdP sessions (in memory).
//! - [`tokens`], [`keys`]: token claims, signing and verification.
//! - [`scope`], [`users`]: scope parsing, the user directory.
//! - [`faults`], [`stats`]: fault injection and counters.
//! - [`limits`]: header and body read timeouts, body size and connection caps.
//! - [`tls`]: the generated CA and server certificate.
//! - [`oauth_error`]: RFC 6749/6750 errors; [`Clock`] (from `service-kit`): time, movable in tests.

pub mod config;
pub mod endpoints;
pub mod faults;
pub mod grants;
pub mod issuer;
pub mod keys;
pub mod limits;
pub mod oauth_error;
pub mod scope;
pub mod server;
pub mod stats;
pub mod tls;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use parking_lot::Mutex;

pub use config::IdpConfig;
pub use server::{IdpServer, ServerOptions};
pub use service_kit::Clock;

use crate::faults::FaultController;
use crate::grants::Grants;
use crate::keys::{KeyError, SigningKey};
use crate::stats::Stats;
use crate::tokens::VerifiedTokens;
use crate::users::Directory;

/// Why the IdP could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// The provider's state; cheap to clone, shared by every listener.
#[derive(Clone)]
pub struct Idp {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: IdpConfig,
    pub(crate) keys: SigningKey,
    pub(crate) clock: Clock,
    pub(crate) stats: Stats,
    pub(crate) faults: FaultController,
    pub(crate) users: Directory,
    pub(crate) grants: Mutex<Grants>,
    pub(crate) verified: VerifiedTokens,
}

impl Idp {
    /// A provider on the system clock.
    pub fn new(config: IdpConfig) -> Result<Self, StartError> {
        Self::with_clock(config, Clock::system())
    }

    /// A provider on the given clock, so tests can move time.
    pub fn with_clock(config: IdpConfig, clock: Clock) -> Result<Self, StartError> {
        config.validate()?;
        let keys = match &config.key_seed {
            Some(seed) => SigningKey::from_seed(seed)?,
            None => SigningKey::generate()?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                users: Directory::new(&config),
                faults: FaultController::new(config.faults.clone()),
                keys,
                clock,
                stats: Stats::default(),
                grants: Mutex::new(Grants::default()),
                verified: VerifiedTokens::new(config.verified_token_cache),
                config,
            }),
        })
    }

    pub fn config(&self) -> &IdpConfig {
        &self.inner.config
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn faults(&self) -> &FaultController {
        &self.inner.faults
    }

    /// Key id of the signing key.
    pub fn kid(&self) -> &str {
        self.inner.keys.kid()
    }

    /// Signs arbitrary claims with the provider's key. For tests and tools
    /// that need a token the flows would never issue (a wrong audience, say).
    pub fn sign_claims<T: serde::Serialize>(
        &self,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.inner.keys.sign(claims)
    }

    /// Live grant state: (codes, refresh tokens, families, sessions).
    pub fn grant_sizes(&self) -> (usize, usize, usize, usize) {
        self.inner.grants.lock().sizes()
    }
}
