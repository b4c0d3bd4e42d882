//! An in-process map: option1's per-instance store, unbounded unless entries carry a TTL.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Expect, Record, Store, StoreError, StoreSize};

struct Entry {
    data: Vec<u8>,
    version: u64,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// Lives and dies with the process, like an Express `MemoryStore` or MSAL's default cache.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> String {
        "memory".into()
    }

    async fn load(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let now = Instant::now();
        let entries = self.entries.lock();
        Ok(entries.get(key).filter(|e| e.live(now)).map(|e| Record {
            data: e.data.clone(),
            version: e.version,
            ttl: e.expires.map(|at| at - now),
        }))
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        match entries.get_mut(key).filter(|e| e.live(now)) {
            Some(entry) => {
                entry.expires = Some(now + ttl);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn save(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        let existing = entries.get(key);
        let live_version = existing.filter(|e| e.live(now)).map(|e| e.version);
        let ok = match expect {
            Expect::Any => true,
            Expect::Absent => live_version.is_none(),
            Expect::Version(v) => live_version == Some(v),
        };
        if !ok {
            return Err(StoreError::Conflict {
                current: live_version,
            });
        }
        let version = existing.map_or(0, |e| e.version) + 1;
        entries.insert(
            key.to_owned(),
            Entry {
                data: data.to_vec(),
                version,
                expires: ttl.map(|t| now + t),
            },
        );
        Ok(version)
    }

    async fn save_if_newer(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if entries
            .get(key)
            .is_some_and(|e| e.live(now) && e.version >= version)
        {
            return Ok(false);
        }
        entries.insert(
            key.to_owned(),
            Entry {
                data: data.to_vec(),
                version,
                expires: ttl.map(|t| now + t),
            },
        );
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        Ok(self.entries.lock().remove(key).is_some_and(|e| e.live(now)))
    }

    async fn size(&self) -> Result<StoreSize, StoreError> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        // Expired entries are dropped here rather than by a timer: the sweep
        // costs nothing while nobody asks, and metrics ask regularly.
        entries.retain(|_, e| e.live(now));
        Ok(StoreSize {
            entries: entries.len() as u64,
            bytes: entries.values().map(|e| e.data.len() as u64).sum(),
        })
    }
}
