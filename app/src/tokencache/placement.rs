//! The cache-access hooks (MSAL's `ICachePlugin`: load before access, write after a changing access)
//! and the four placements built on them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::handoff::Handoff;
use super::lease::RefreshLeases;
use crate::metrics::Resident;
use crate::msal_model::TokenCache;
use crate::session::{LoadedSession, Sessions};
use crate::store::{Attempts, Expect, Fence, Record, Store, StoreError};

/// A cache as loaded before an access, with what is needed to write it back.
pub struct CacheSnapshot {
    pub cache: TokenCache,
    /// The stored version it was read at, where the placement compares versions.
    pub version: Option<u64>,
}

/// Where tokens live, as hooks around every access.
#[async_trait]
pub trait CacheAccess: Send + Sync {
    /// The placement's name in metrics and results.
    fn kind(&self) -> &'static str;

    /// Store keys worth reading together with the session (one round trip).
    fn prefetch_keys(&self, _store_id: &str) -> Vec<String> {
        Vec::new()
    }

    /// Whether refreshes of one session must not overlap (the partitioned placement).
    fn single_flight(&self) -> bool {
        false
    }

    /// Where the leases live that let one instance at a time refresh a
    /// session's tokens, for placements that coordinate refreshes across
    /// instances ([`CacheAccess::single_flight`]).
    fn leases(&self) -> Option<&dyn RefreshLeases> {
        None
    }

    /// Where a lease holder leaves rotated tokens it could not write, for
    /// the next holder ([`super::handoff`]).
    fn handoff(&self) -> Option<&Handoff> {
        None
    }

    /// The key of a session's refresh lease.
    fn lease_key(&self, session: &LoadedSession) -> String {
        format!("lease:tc:{}", session.store_id)
    }

    /// The cache of a session created a moment ago, where the placement
    /// knows it without a read: none, for a partition named after the new
    /// session (nobody else can know its name yet). `None` where the cache is
    /// shared with other sessions (option1's, option2's) or is read for free
    /// (option3's, inside the session): the caller loads it then.
    fn new_session_snapshot(&self) -> Option<CacheSnapshot> {
        None
    }

    /// Before access: load the cache this session's account may use.
    /// `prefetched` holds the records of [`CacheAccess::prefetch_keys`] when the caller read them.
    async fn before_access(
        &self,
        session: &LoadedSession,
        account: &str,
        prefetched: Option<&[Option<Record>]>,
    ) -> Result<CacheSnapshot, StoreError>;

    /// After a changing access: write the cache back. May write the session (option3).
    /// A compare-and-set placement returns `Conflict` when another writer was
    /// first; a write under a lease is fenced with it where the store can.
    async fn after_access(
        &self,
        session: &mut LoadedSession,
        account: &str,
        snapshot: CacheSnapshot,
        sessions: &Sessions,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;

    /// At logout: what this placement removes.
    async fn on_logout(&self, session: &LoadedSession, account: &str) -> Result<(), StoreError>;

    /// What this process holds (the instance-wide cache), for metrics.
    fn resident(&self) -> Option<Resident> {
        None
    }
}

impl dyn CacheAccess {
    /// One changing access, as MSAL makes it: load the cache (or take the
    /// snapshot just loaded), apply `change`, write it back. Where the
    /// placement compares versions, a conflict re-reads the session and the
    /// cache (never from a copy that may lag) and applies `change` again, so
    /// a token another writer stored meanwhile is kept. A session that ended
    /// meanwhile gets nothing written.
    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        account: &str,
        mut loaded: Option<CacheSnapshot>,
        fence: Option<&Fence>,
        mut change: impl FnMut(&mut TokenCache),
        mut on_conflict: impl FnMut(),
    ) -> Result<(), StoreError> {
        let mut attempts = Attempts::default();
        loop {
            if attempts.is_retry() {
                on_conflict();
                let (fresh, prefetched) = sessions
                    .load_latest_with(&session.id, |store_id| self.prefetch_keys(store_id))
                    .await?;
                match fresh {
                    Some(fresh) => *session = fresh,
                    None => return Ok(()),
                }
                loaded = Some(
                    self.before_access(session, account, Some(&prefetched))
                        .await?,
                );
            }
            let mut snapshot = match loaded.take() {
                Some(snapshot) => snapshot,
                None => self.before_access(session, account, None).await?,
            };
            change(&mut snapshot.cache);
            let written = self
                .after_access(session, account, snapshot, sessions, fence)
                .await;
            if let Some(done) = attempts.settle(written) {
                return done;
            }
        }
    }
}

/// Option1: one cache per instance, shared by every user and session, keyed by
/// account and scopes as MSAL's default in-memory cache is. A second browser of
/// a user finds the first browser's tokens; logout removes the account's tokens
/// for every session of that user on this instance.
#[derive(Default)]
pub struct InstanceWide {
    cache: Mutex<TokenCache>,
}

#[async_trait]
impl CacheAccess for InstanceWide {
    fn kind(&self) -> &'static str {
        "instance-wide"
    }

    async fn before_access(
        &self,
        _: &LoadedSession,
        account: &str,
        _: Option<&[Option<Record>]>,
    ) -> Result<CacheSnapshot, StoreError> {
        // Only this account's entries: what MSAL's lookups would touch.
        let view = self.cache.lock().account_view(account);
        Ok(CacheSnapshot {
            cache: view,
            version: None,
        })
    }

    async fn after_access(
        &self,
        _: &mut LoadedSession,
        account: &str,
        snapshot: CacheSnapshot,
        _: &Sessions,
        _: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let mut cache = self.cache.lock();
        cache.remove_account(account);
        let view = snapshot.cache;
        cache.accounts.extend(view.accounts);
        cache.id_tokens.extend(view.id_tokens);
        cache.access_tokens.extend(view.access_tokens);
        cache.refresh_tokens.extend(view.refresh_tokens);
        Ok(())
    }

    async fn on_logout(&self, _: &LoadedSession, account: &str) -> Result<(), StoreError> {
        self.cache.lock().remove_account(account);
        Ok(())
    }

    fn resident(&self) -> Option<Resident> {
        let cache = self.cache.lock();
        Some(Resident {
            entries: cache.len() as u64,
            accounts: cache.accounts.len() as u64,
        })
    }
}

/// The key of option2's one blob.
pub const SHARED_BLOB_KEY: &str = "tc:app";

/// Option2: one persisted blob for the whole app, loaded before and written
/// after every changing access (MSAL's persistence-plugin pattern). Every
/// request pays for every user's tokens; concurrent writers overwrite each other.
pub struct SharedBlob {
    store: Arc<dyn Store>,
}

impl SharedBlob {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

fn parse_cache(record: Option<&Record>) -> Result<(TokenCache, Option<u64>), StoreError> {
    match record {
        None => Ok((TokenCache::default(), None)),
        Some(r) => TokenCache::from_bytes(&r.data)
            .map(|c| (c, Some(r.version)))
            .map_err(|e| StoreError::Corrupt(format!("token cache: {e}"))),
    }
}

#[async_trait]
impl CacheAccess for SharedBlob {
    fn kind(&self) -> &'static str {
        "shared-blob"
    }

    async fn before_access(
        &self,
        _: &LoadedSession,
        _: &str,
        _: Option<&[Option<Record>]>,
    ) -> Result<CacheSnapshot, StoreError> {
        let record = self.store.load(SHARED_BLOB_KEY).await?;
        let (cache, version) = parse_cache(record.as_ref())?;
        Ok(CacheSnapshot { cache, version })
    }

    async fn after_access(
        &self,
        _: &mut LoadedSession,
        _: &str,
        snapshot: CacheSnapshot,
        _: &Sessions,
        _: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.store
            .save(
                SHARED_BLOB_KEY,
                &snapshot.cache.to_bytes(),
                Expect::Any,
                None,
            )
            .await
            .map(|_| ())
    }

    /// The session row goes; the blob keeps the tokens (the faithful weakness).
    async fn on_logout(&self, _: &LoadedSession, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Option3: the cache is serialized into the session record and the whole
/// session is written back when it changes.
pub struct InSession;

#[async_trait]
impl CacheAccess for InSession {
    fn kind(&self) -> &'static str {
        "in-session"
    }

    async fn before_access(
        &self,
        session: &LoadedSession,
        _: &str,
        _: Option<&[Option<Record>]>,
    ) -> Result<CacheSnapshot, StoreError> {
        Ok(CacheSnapshot {
            cache: session.data.token_cache.clone().unwrap_or_default(),
            version: Some(session.version),
        })
    }

    async fn after_access(
        &self,
        session: &mut LoadedSession,
        _: &str,
        snapshot: CacheSnapshot,
        sessions: &Sessions,
        _: Option<&Fence>,
    ) -> Result<(), StoreError> {
        session.data.token_cache = Some(snapshot.cache);
        sessions.save(session).await
    }

    /// The session is deleted, and its tokens with it.
    async fn on_logout(&self, _: &LoadedSession, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The token partition's key for a session's store id (its keyed hash, never
/// the id), hash-tagged as [`crate::session::session_key`] is.
pub fn partition_key(store_id: &str) -> String {
    format!("tc:{{{store_id}}}")
}

/// Option4: one partition per session (`tc:{keyed hash of the id}`), written
/// with compare-and-set, with the session's TTL (idle and absolute, renewed
/// with every write of the session), deleted at logout; refreshed under a
/// lease ([`super::lease`]), its writes fenced with it where the store can.
pub struct Partitioned {
    store: Arc<dyn Store>,
    ttl: Duration,
    leases: Arc<dyn RefreshLeases>,
    handoff: Option<Handoff>,
}

impl Partitioned {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, leases: Arc<dyn RefreshLeases>) -> Self {
        Self {
            store,
            ttl,
            leases,
            handoff: None,
        }
    }

    /// With a handoff for rotated tokens a holder could not write.
    pub fn with_handoff(mut self, handoff: Handoff) -> Self {
        self.handoff = Some(handoff);
        self
    }
}

#[async_trait]
impl CacheAccess for Partitioned {
    fn kind(&self) -> &'static str {
        "partitioned"
    }

    fn prefetch_keys(&self, store_id: &str) -> Vec<String> {
        vec![partition_key(store_id)]
    }

    fn single_flight(&self) -> bool {
        true
    }

    /// Empty and absent: written as a create (compare-and-set on absence),
    /// so should a partition of that name exist after all, the write
    /// conflicts and [`CacheAccess::update`] reads it and applies the change
    /// again, as after any conflict.
    fn new_session_snapshot(&self) -> Option<CacheSnapshot> {
        Some(CacheSnapshot {
            cache: TokenCache::default(),
            version: None,
        })
    }

    async fn before_access(
        &self,
        session: &LoadedSession,
        _: &str,
        prefetched: Option<&[Option<Record>]>,
    ) -> Result<CacheSnapshot, StoreError> {
        let record = match prefetched {
            Some([record]) => record.clone(),
            _ => self.store.load(&partition_key(&session.store_id)).await?,
        };
        let (cache, version) = parse_cache(record.as_ref())?;
        Ok(CacheSnapshot { cache, version })
    }

    async fn after_access(
        &self,
        session: &mut LoadedSession,
        _: &str,
        snapshot: CacheSnapshot,
        sessions: &Sessions,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let expect = snapshot.version.map_or(Expect::Absent, Expect::Version);
        // The partition lives as long as its session would if written now,
        // and every write of the session renews both (Sessions' companion).
        let ttl = Some(sessions.ttl_of(&session.data).min(self.ttl));
        let key = partition_key(&session.store_id);
        let data = snapshot.cache.to_bytes();
        match fence {
            Some(fence) => {
                self.store
                    .save_fenced(&key, &data, expect, ttl, fence)
                    .await
            }
            None => self.store.save(&key, &data, expect, ttl).await,
        }
        .map(drop)
    }

    async fn on_logout(&self, session: &LoadedSession, _: &str) -> Result<(), StoreError> {
        self.store
            .delete(&partition_key(&session.store_id))
            .await
            .map(|_| ())
    }

    fn leases(&self) -> Option<&dyn RefreshLeases> {
        Some(self.leases.as_ref())
    }

    fn handoff(&self) -> Option<&Handoff> {
        self.handoff.as_ref()
    }
}
