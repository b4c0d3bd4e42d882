//! The one store trait every session and token-cache backend implements, and the wrappers that compose.
//!
//! A store maps keys to versioned byte records. Every successful write bumps
//! the version by one, so a caller can write "only if nobody wrote since I
//! read" ([`Expect::Version`]) or blindly ([`Expect::Any`], last writer wins:
//! what options 1 to 3 do, and why they lose updates).

pub mod breaker;
pub mod encrypted;
pub mod keys;
pub mod memory;
pub mod redis;
pub mod redis_direct;
pub mod redis_link;
pub mod redis_run_id;
pub mod redis_target;
pub mod sql;
pub mod tiered;

use std::time::Duration;

use async_trait::async_trait;

/// A stored value and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub data: Vec<u8>,
    /// Starts at 1 and grows by one with each write of the key, also across
    /// delete and re-create where the backend remembers (it never goes back
    /// within one record's life).
    pub version: u64,
    /// Time left before the record expires, when it has a TTL.
    pub ttl: Option<Duration>,
}

/// What a write expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there (last writer wins).
    Any,
    /// Nothing: the key is absent or expired.
    Absent,
    /// Exactly this version.
    Version(u64),
}

/// How much a store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreSize {
    pub entries: u64,
    pub bytes: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write's expectation did not hold; `current` is the version found.
    #[error("version conflict (found {current:?})")]
    Conflict { current: Option<u64> },
    /// The backend cannot be reached or refused the operation; the app answers 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored bytes could not be understood.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store was set up wrongly (a bad URL, a failed migration).
    #[error("store configuration: {0}")]
    Config(String),
    /// A fenced write whose lease had passed to another holder (or expired):
    /// nothing was written.
    #[error("the write's lease is no longer held")]
    Fenced,
}

/// A lease a fenced write must still hold when it lands: the lease row's key
/// and the fencing token it was granted with (see `tokencache::lease`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub lease_key: String,
    pub token: i64,
}

/// A key-value store of versioned records with optional TTLs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for metrics and logs (`memory`, `postgres`, `redis+postgres`, ...).
    fn kind(&self) -> String;

    async fn load(&self, key: &str) -> Result<Option<Record>, StoreError>;

    /// Loads several keys; backends that can do it in one round trip do.
    async fn load_many(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.load(key).await?);
        }
        Ok(out)
    }

    /// As [`Store::load_many`], but never from a copy that may lag the
    /// truth: what a compare-and-set retry reads after a conflict, and a
    /// refresh under its lease. Stores without tiers read as usual.
    async fn load_many_latest(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        self.load_many(keys).await
    }

    /// Writes `data` if `expect` holds; returns the new version.
    async fn save(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError>;

    /// As [`Store::save`], and gives each live key of `renew` the same TTL
    /// (a session and its token partition live as long as each other).
    /// Renewal is best effort: a companion that keeps an older TTL ends a
    /// little earlier, never later. Stores that can do both in one round
    /// trip do.
    async fn save_renewing(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Duration,
        renew: &[&str],
    ) -> Result<u64, StoreError> {
        let version = self.save(key, data, expect, Some(ttl)).await?;
        for companion in renew {
            if let Err(e) = self.expire(companion, ttl).await {
                tracing::debug!(error = %e, "companion TTL not renewed");
            }
        }
        Ok(version)
    }

    /// As [`Store::save`], only while `fence`'s lease is still held, judged in
    /// the same step as the write ([`StoreError::Fenced`] otherwise). Only
    /// stores that hold leases (Postgres) can fence.
    async fn save_fenced(
        &self,
        _key: &str,
        _data: &[u8],
        _expect: Expect,
        _ttl: Option<Duration>,
        _fence: &Fence,
    ) -> Result<u64, StoreError> {
        Err(StoreError::Config(format!(
            "{} cannot fence writes: leases with fencing tokens live in Postgres",
            self.kind()
        )))
    }

    /// Writes `data` as `version` if the key is absent or holds an older
    /// version (replication between tiers); returns whether it wrote.
    async fn save_if_newer(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError>;

    /// The current versions of several keys (`None`: absent or expired),
    /// without their data: what a cache tier checks its copies against.
    async fn versions(&self, keys: &[&str]) -> Result<Vec<Option<u64>>, StoreError> {
        Ok(self
            .load_many(keys)
            .await?
            .into_iter()
            .map(|r| r.map(|r| r.version))
            .collect())
    }

    /// Gives a live key a new TTL without writing it (no version bump);
    /// returns whether the key was there.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Removes a key; returns whether it was there.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;

    /// Live (unexpired) entries and their payload bytes.
    async fn size(&self) -> Result<StoreSize, StoreError>;

    /// One cheap round trip that says whether the store answers.
    async fn ping(&self) -> Result<(), StoreError> {
        self.load("probe:ping").await.map(drop)
    }
}

/// How many times a compare-and-set write is tried before the caller gives up (503).
pub const CAS_ATTEMPTS: usize = 16;

/// The retry policy of a compare-and-set read-modify-write, in one place:
/// a [`StoreError::Conflict`] means another writer came between the read and
/// the write, so the caller reads afresh and tries again, up to
/// [`CAS_ATTEMPTS`] times; any other outcome ends the loop.
///
/// ```ignore
/// let mut attempts = Attempts::default();
/// loop {
///     if attempts.is_retry() { /* read afresh */ }
///     /* change, then write: */
///     if let Some(done) = attempts.settle(store.save(..).await) { return done; }
/// }
/// ```
#[derive(Debug, Default)]
pub struct Attempts {
    conflicts: usize,
}

impl Attempts {
    /// Whether an attempt already lost to another writer, so this one must read afresh.
    pub fn is_retry(&self) -> bool {
        self.conflicts > 0
    }

    /// `Some(result)` when the loop is over (success, another error, or the
    /// last allowed conflict); `None` to try again.
    pub fn settle<T>(&mut self, result: Result<T, StoreError>) -> Option<Result<T, StoreError>> {
        match result {
            Err(StoreError::Conflict { .. }) if self.conflicts + 1 < CAS_ATTEMPTS => {
                self.conflicts += 1;
                None
            }
            done => Some(done),
        }
    }
}

/// Milliseconds since the Unix epoch, for backends that store expiry as a time.
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
