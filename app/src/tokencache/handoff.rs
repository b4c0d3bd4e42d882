//! Rotated tokens handed to the next refresh-lease holder, for when their
//! own holder could not write them.
//!
//! When the IdP rotates a refresh token, the one stored is spent: a second
//! use is taken for theft by a strict IdP. If the holder then cannot write
//! the new tokens to Postgres (it crashed, Postgres is down, or it is cut off
//! from Postgres while its lease expires and another instance takes it), the
//! next holder would read the spent token from Postgres and present it again.
//! So before writing to Postgres a holder leaves what it got here (Redis,
//! sealed like every record), and the next holder, having read the truth,
//! takes it: it applies the handoff instead of refreshing, when the spent
//! token it names is the one Postgres still holds. A handoff whose token is
//! no longer the stored one is stale (its holder's write landed) and is
//! removed. What is not covered: a holder that reaches neither Redis nor
//! Postgres after the IdP answered, or a Redis that loses the handoff (a
//! restart or a failover) before the next holder reads it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::idp_client::TokenResponse;
use crate::store::{Expect, Store, StoreError};

/// A holder's rotated tokens, waiting for the next holder.
#[derive(Serialize, Deserialize)]
struct Rotation {
    /// SHA-256 of the refresh token the IdP spent for it (hex): which stored
    /// cache it follows.
    spent: String,
    /// Unix seconds when its request went out: its lifetimes count from then.
    requested_at: u64,
    response: TokenResponse,
}

/// Handoffs of one fleet, in a store the instances share beside Postgres.
pub struct Handoff {
    store: Arc<dyn Store>,
    /// How long a handoff waits: as long as a session's tokens may live.
    ttl: Duration,
}

impl Handoff {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    fn key(store_id: &str) -> String {
        format!("rot:{store_id}")
    }

    /// Leaves `response`, which spent `spent_refresh_token`, for the next holder.
    pub async fn leave(
        &self,
        store_id: &str,
        spent_refresh_token: &str,
        requested_at: u64,
        response: &TokenResponse,
    ) -> Result<(), StoreError> {
        let rotation = Rotation {
            spent: digest(spent_refresh_token),
            requested_at,
            response: response.clone(),
        };
        let data = serde_json::to_vec(&rotation)
            .map_err(|e| StoreError::Corrupt(format!("a handoff does not encode: {e}")))?;
        self.store
            .save(&Self::key(store_id), &data, Expect::Any, Some(self.ttl))
            .await
            .map(drop)
    }

    /// The handoff that follows the cache whose refresh token is `stored`,
    /// with its lifetimes shortened by the time it waited (`now`, Unix
    /// seconds); a stale one is removed.
    pub async fn take(
        &self,
        store_id: &str,
        stored: Option<&str>,
        now: u64,
    ) -> Result<Option<TokenResponse>, StoreError> {
        let key = Self::key(store_id);
        let Some(record) = self.store.load(&key).await? else {
            return Ok(None);
        };
        let rotation = serde_json::from_slice::<Rotation>(&record.data).ok();
        match rotation {
            Some(rotation) if stored.is_some_and(|s| digest(s) == rotation.spent) => {
                let waited = now.saturating_sub(rotation.requested_at);
                let mut response = rotation.response;
                response.expires_in = response.expires_in.saturating_sub(waited);
                response.ext_expires_in = response.ext_expires_in.saturating_sub(waited);
                Ok(Some(response))
            }
            _ => {
                self.clear(store_id).await?;
                Ok(None)
            }
        }
    }

    /// Removes a session's handoff (its tokens are in Postgres now).
    pub async fn clear(&self, store_id: &str) -> Result<(), StoreError> {
        self.store.delete(&Self::key(store_id)).await.map(drop)
    }
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
