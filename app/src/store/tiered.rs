//! A cache tier (Redis) in front of a durable tier (Postgres): write-through, read-through.
//!
//! The durable tier decides every compare-and-set, so it holds the truth;
//! the cache holds copies written only over older versions. A write first
//! drops the cached copy, then writes through, then caches the new version,
//! so a reader that missed meanwhile and repopulates from the durable tier
//! can never leave an older version in the cache after the write is
//! acknowledged. Reads fall back to the durable tier while the cache is
//! down; writes need both (otherwise a stale copy could survive the outage).

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

    /// Caches a version just written through. If that fails, the cache must
    /// at least hold nothing: a reader may have put an older copy there
    /// meanwhile, and acknowledging the write over it would lose it.
    async fn cache_written(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        if let Err(e) = self.cache.save_if_newer(key, data, version, ttl).await {
            tracing::debug!(error = %e, "caching a written record failed; dropping the cached copy");
            self.cache.delete(key).await?;
        }
        Ok(())
    }

    /// Reads through to the durable tier and repopulates the cache (best effort).
    async fn read_through(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let record = self.durable.load(key).await?;
        if let Some(r) = &record
            && let Err(e) = self
                .cache
                .save_if_newer(key, &r.data, r.version, r.ttl)
                .await
        {
            tracing::debug!(error = %e, "cache repopulation failed");
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
        let cached = match self.cache.load_many(keys).await {
            Ok(cached) => cached,
            Err(StoreError::Unavailable(reason)) => {
                tracing::debug!(%reason, "cache down; reading the durable tier");
                return self.durable.load_many(keys).await;
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(keys.len());
        for (key, hit) in keys.iter().zip(cached) {
            out.push(match hit {
                Some(record) => Some(record),
                None => self.read_through(key).await?,
            });
        }
        Ok(out)
    }

    async fn save(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        self.cache.delete(key).await?;
        let version = self.durable.save(key, data, expect, ttl).await?;
        self.cache_written(key, data, version, ttl).await?;
        Ok(version)
    }

    async fn save_if_newer(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.cache.delete(key).await?;
        let written = self.durable.save_if_newer(key, data, version, ttl).await?;
        if written {
            self.cache_written(key, data, version, ttl).await?;
        }
        Ok(written)
    }

    /// Drops the cached copy before and after the durable delete: a reader
    /// that loaded the record just before it went would otherwise put it back.
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.cache.delete(key).await?;
        let existed = self.durable.delete(key).await?;
        self.cache.delete(key).await?;
        Ok(existed)
    }

    /// The durable tier's size: it holds every record; the cache holds a subset.
    async fn size(&self) -> Result<StoreSize, StoreError> {
        self.durable.size().await
    }
}
