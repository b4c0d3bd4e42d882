//! The mock IdP's token settings for a run, as a scenario's `[idp]` sets
//! them and the stage hands them to the IdP.

use std::time::Duration;

use mock_idp::config::ReusePolicy;
use serde::{Deserialize, Serialize};

/// The IdP's token settings for a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IdpOptions {
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub access_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub refresh_token_lifetime: Duration,
    /// `allow` (as Entra ID) or `revoke-family` (a reused refresh token revokes its family).
    #[schemars(with = "String")]
    pub refresh_reuse: ReusePolicy,
}

impl Default for IdpOptions {
    fn default() -> Self {
        Self {
            access_token_lifetime: Duration::from_secs(3600),
            refresh_token_lifetime: Duration::from_secs(24 * 3600),
            refresh_reuse: ReusePolicy::Allow,
        }
    }
}

impl IdpOptions {
    /// When the app renews a cached token: 300 s before expiry (MSAL's
    /// default), or at half the lifetime of shorter-lived tokens, so short
    /// test lifetimes still leave most of each token's life to the cache.
    pub fn renewal_offset(&self) -> Duration {
        Duration::from_secs(300).min(self.access_token_lifetime / 2)
    }
}
