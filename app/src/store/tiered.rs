//! A cache tier (Redis) in front of a durable tier (Postgres): Postgres holds
//! the truth, Redis holds copies whose versions every read checks.
//!
//! # What it promises, and why
//!
//! * **Postgres decides every write.** `save` is Postgres's compare-and-set;
//!   only after it commits (synchronously) is the new version copied to
//!   Redis, with a write that never replaces a newer copy. A write needs
//!   Postgres and nothing else: while Redis is down (paused, killed, cut off
//!   from this instance only) writes and sign-ins still succeed. While
//!   Postgres is down writes fail (503) *before* Redis is touched, so the
//!   Redis copy stays readable.
//! * **No stale read once Redis is back, from any instance.** A Redis copy
//!   may be older than Postgres: a write made while Redis was down or
//!   unreachable from the writing instance (another instance may reach it
//!   fine), or a Redis restarted from nothing and repopulated by a slow
//!   reader. So a read never trusts a copy on its own: it asks Redis for the
//!   records and Postgres for their *versions* (no data: an index lookup) at
//!   the same time, and serves the Redis copy only when its version is
//!   Postgres's. Otherwise it reads Postgres and repairs the copy. A read
//!   that starts after a write was acknowledged asks Postgres after that
//!   commit, so it sees that version or a later one: reads are exactly as
//!   fresh as Postgres. There is no invalidation log to replay and no window
//!   after an outage; the price is one small Postgres query per read, made
//!   in parallel with Redis, so a read costs the slower of the two round
//!   trips, and Redis saves Postgres the data transfer and decryption input.
//! * **Either tier down costs one timeout per instance, then nothing.** Both
//!   tiers sit behind circuit breakers ([`super::breaker`]). With Redis down
//!   reads come from Postgres; with Postgres down reads are served from the
//!   Redis copies unchecked, since no write can be acknowledged anywhere
//!   meanwhile (every write needs Postgres).
//!
//! The one gap: a copy left stale by a write made while Redis was
//! unreachable from the writer, read while Postgres is down too (both
//! outages overlapping on the same key), is served stale until Postgres is
//! back. Deleted records: Postgres says absent, so a leftover copy reads as
//! absent and is removed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Expect, Record, Store, StoreError, StoreSize};

pub struct TieredStore {
    cache: Arc<dyn Store>,
    durable: Arc<dyn Store>,
}

impl TieredStore {
    pub fn new(cache: Arc<dyn Store>, durable: Arc<dyn Store>) -> Self {
        Self { cache, durable }
    }

    /// Copies a version just written to Postgres into Redis, best effort:
    /// readers check copies against Postgres, so a failed copy costs a
    /// Postgres read later, never a stale one.
    async fn cache_written(&self, key: &str, data: &[u8], version: u64, ttl: Option<Duration>) {
        if let Err(e) = self.cache.save_if_newer(key, data, version, ttl).await {
            tracing::debug!(error = %e, "caching a written record failed; reads will go to Postgres");
        }
    }

    /// Reads Postgres and repairs the Redis copy (best effort). A copy newer
    /// than Postgres (the key was deleted and created again) is dropped first,
    /// since a replication write never replaces a newer version.
    async fn read_through(
        &self,
        key: &str,
        cached: Option<&Record>,
    ) -> Result<Option<Record>, StoreError> {
        let record = self.durable.load(key).await?;
        let repaired = async {
            match &record {
                Some(r) => {
                    if cached.is_some_and(|c| c.version > r.version) {
                        self.cache.delete(key).await?;
                    }
                    self.cache
                        .save_if_newer(key, &r.data, r.version, r.ttl)
                        .await
                        .map(drop)
                }
                None if cached.is_some() => self.cache.delete(key).await.map(drop),
                None => Ok(()),
            }
        };
        if let Err(e) = repaired.await {
            tracing::debug!(error = %e, "cache repair failed");
        }
        Ok(record)
    }
}

#[async_trait]
impl Store for TieredStore {
    fn kind(&self) -> String {
        format!("{}+{}", self.cache.kind(), self.durable.kind())
    }

    async fn load(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.load_many(&[key]).await?.pop().flatten())
    }

    async fn load_many(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        let (cached, truth) = tokio::join!(self.cache.load_many(keys), self.durable.versions(keys));
        let (cached, versions) = match (cached, truth) {
            (Ok(cached), Ok(versions)) => (cached, versions),
            (Err(StoreError::Unavailable(reason)), Ok(_)) => {
                tracing::debug!(%reason, "cache down; reading the durable tier");
                return self.durable.load_many(keys).await;
            }
            (Ok(cached), Err(StoreError::Unavailable(reason))) => {
                tracing::debug!(%reason, "durable tier down; serving cached copies");
                return Ok(cached);
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let mut out = Vec::with_capacity(keys.len());
        for ((key, hit), version) in keys.iter().zip(cached).zip(versions) {
            out.push(match (hit, version) {
                (Some(copy), Some(version)) if copy.version == version => Some(copy),
                (None, None) => None,
                (hit, _) => self.read_through(key, hit.as_ref()).await?,
            });
        }
        Ok(out)
    }

    async fn versions(&self, keys: &[&str]) -> Result<Vec<Option<u64>>, StoreError> {
        self.durable.versions(keys).await
    }

    async fn save(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        let version = self.durable.save(key, data, expect, ttl).await?;
        self.cache_written(key, data, version, ttl).await;
        Ok(version)
    }

    async fn save_if_newer(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let written = self.durable.save_if_newer(key, data, version, ttl).await?;
        if written {
            self.cache_written(key, data, version, ttl).await;
        }
        Ok(written)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let live = self.durable.expire(key, ttl).await?;
        // A copy keeping its older, shorter TTL only expires early (a miss
        // that reads Postgres); it cannot outlive Postgres's record unread.
        if let Err(e) = self.cache.expire(key, ttl).await {
            tracing::debug!(error = %e, "cache TTL not renewed");
        }
        Ok(live)
    }

    /// Postgres first: a delete that cannot reach it fails and leaves both
    /// tiers as they were. A copy left in Redis (unreachable, or put back by
    /// a reader racing the delete) reads as absent, since Postgres says so.
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let existed = self.durable.delete(key).await?;
        if let Err(e) = self.cache.delete(key).await {
            tracing::debug!(error = %e, "cached copy not deleted; reads check Postgres");
        }
        Ok(existed)
    }

    /// The durable tier's size: it holds every record; the cache holds a subset.
    async fn size(&self) -> Result<StoreSize, StoreError> {
        self.durable.size().await
    }
}
