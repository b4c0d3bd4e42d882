//! Refresh leases: one holder at a time may redeem a session's refresh
//! token, across the fleet, so one refresh token is used once.
//!
//! A lease lasts [`LEASE_TTL`] unless renewed; its holder renews it every
//! [`RENEW_EVERY`] while its IdP call runs, so a live holder keeps it
//! however slow the IdP is, and one that died frees it within a TTL. In
//! Postgres ([`PgLeases`]) the lease is a row judged by the server's clock,
//! with a fencing token from a sequence (it only grows), and the tokens a
//! refresh got are written only while that token still holds the lease, in
//! the same statement ([`crate::store::Store::save_fenced`]).
//!
//! Expiry only lets another instance take a lease over; until one does, the
//! lease is still its holder's (renewal and fenced writes compare the token,
//! not the time). So a holder cut off from Postgres after the IdP rotated
//! its refresh token can still write the new one when Postgres answers
//! again, if nobody took the lease meanwhile. If somebody did, that write is
//! refused, and what the IdP rotated is handed over instead (see
//! [`super::acquire`]). Elsewhere
//! ([`StoreLeases`], for topologies without Postgres) it is a record with a
//! TTL in the session store, released only by its holder; writes are not
//! fenced there.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use crate::store::breaker::Breaker;
use crate::store::sql::{PostgresStore, unavailable};
use crate::store::{Expect, Fence, Store, StoreError};

/// How long a lease lasts unless renewed: about how long a dead holder
/// keeps others waiting.
pub const LEASE_TTL: Duration = Duration::from_millis(800);
/// How often a holder renews its lease while its IdP call runs.
pub const RENEW_EVERY: Duration = Duration::from_millis(200);

/// A granted lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub token: i64,
    /// What writes made under the lease are fenced with, where the store can.
    pub fence: Option<Fence>,
}

/// Where leases live.
#[async_trait]
pub trait RefreshLeases: Send + Sync {
    /// The lease on `key`, or `None` while another holder has it.
    async fn acquire(&self, key: &str, holder: &str) -> Result<Option<Lease>, StoreError>;
    /// Extends a held lease; `false` once it was lost (expired, taken over).
    async fn renew(&self, lease: &Lease) -> Result<bool, StoreError>;
    /// Gives a held lease back (only this holder's: a later holder's stays).
    async fn release(&self, lease: &Lease) -> Result<(), StoreError>;
}

const ACQUIRE: &str = "INSERT INTO refresh_lease AS l (ns, key, token, holder, until)
    VALUES ($1, $2, nextval('refresh_lease_token'), $3, clock_timestamp() + $4 * INTERVAL '1 millisecond')
    ON CONFLICT (ns, key) DO UPDATE SET token = excluded.token, holder = excluded.holder, until = excluded.until
    WHERE l.until < clock_timestamp()
    RETURNING token";
const RENEW: &str =
    "UPDATE refresh_lease SET until = clock_timestamp() + $4 * INTERVAL '1 millisecond'
    WHERE ns = $1 AND key = $2 AND token = $3";
const RELEASE: &str = "DELETE FROM refresh_lease WHERE ns = $1 AND key = $2 AND token = $3";

/// Leases in Postgres, beside the records they fence (see the module doc).
pub struct PgLeases {
    store: Arc<PostgresStore>,
    /// The breaker in front of that Postgres: lease calls are request round trips too.
    breaker: Arc<Breaker>,
}

impl PgLeases {
    pub fn new(store: Arc<PostgresStore>, breaker: Arc<Breaker>) -> Self {
        Self { store, breaker }
    }

    fn ttl_millis() -> i64 {
        LEASE_TTL.as_millis() as i64
    }
}

#[async_trait]
impl RefreshLeases for PgLeases {
    async fn acquire(&self, key: &str, holder: &str) -> Result<Option<Lease>, StoreError> {
        let row = self
            .breaker
            .call(async {
                sqlx::query(ACQUIRE)
                    .bind(self.store.namespace())
                    .bind(key)
                    .bind(holder)
                    .bind(Self::ttl_millis())
                    .fetch_optional(self.store.pool().await?)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token: i64 = row.try_get("token").map_err(unavailable)?;
        Ok(Some(Lease {
            key: key.to_owned(),
            token,
            fence: Some(Fence {
                lease_key: key.to_owned(),
                token,
            }),
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<bool, StoreError> {
        let renewed = self
            .breaker
            .call(async {
                sqlx::query(RENEW)
                    .bind(self.store.namespace())
                    .bind(&lease.key)
                    .bind(lease.token)
                    .bind(Self::ttl_millis())
                    .execute(self.store.pool().await?)
                    .await
                    .map_err(unavailable)
            })
            .await?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.breaker
            .call(async {
                sqlx::query(RELEASE)
                    .bind(self.store.namespace())
                    .bind(&lease.key)
                    .bind(lease.token)
                    .execute(self.store.pool().await?)
                    .await
                    .map_err(unavailable)
            })
            .await
            .map(drop)
    }
}

/// Leases as records with a TTL in any store: for topologies without
/// Postgres. The holder's token is the record's data; renewal and release
/// compare it first (not atomically: a lease that expired between the
/// compare and the write can be extended or removed once more).
pub struct StoreLeases {
    store: Arc<dyn Store>,
}

impl StoreLeases {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The lease record's version while `lease`'s token holds it.
    async fn held(&self, lease: &Lease) -> Result<Option<u64>, StoreError> {
        Ok(self
            .store
            .load(&lease.key)
            .await?
            .filter(|r| r.data == lease.token.to_be_bytes())
            .map(|r| r.version))
    }
}

#[async_trait]
impl RefreshLeases for StoreLeases {
    async fn acquire(&self, key: &str, _holder: &str) -> Result<Option<Lease>, StoreError> {
        let token: i64 = rand::random();
        match self
            .store
            .save(key, &token.to_be_bytes(), Expect::Absent, Some(LEASE_TTL))
            .await
        {
            Ok(_) => Ok(Some(Lease {
                key: key.to_owned(),
                token,
                fence: None,
            })),
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<bool, StoreError> {
        match self.held(lease).await? {
            Some(_) => self.store.expire(&lease.key, LEASE_TTL).await,
            None => Ok(false),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        if self.held(lease).await?.is_some() {
            self.store.delete(&lease.key).await?;
        }
        Ok(())
    }
}
