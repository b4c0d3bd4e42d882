//! MSAL's token acquisition over a placement: acquire-silent (a cached access
//! token, or one refresh), storing what a sign-in returned, and forgetting a
//! session's tokens at logout.
//!
//! Where the placement asks for it, at most one refresh per session runs at a
//! time across the fleet: a lock within the instance, and a lease across
//! instances ([`super::lease`]) that the holder renews while its IdP call
//! runs, whose token fences the write of what the refresh got. A request
//! that finds another refresh under way serves the cached access token at
//! once if it is still valid, even if due for renewal; only one with no
//! usable token waits, and never refreshes without the lease. A strict IdP
//! takes a second use of one refresh token for theft and revokes the family.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use contract::TokenSource;
use parking_lot::Mutex;

use super::lease::{Lease, RENEW_EVERY};
use super::placement::{CacheAccess, CacheSnapshot};
use crate::idp_client::{IdpCallError, IdpClient, TokenResponse};
use crate::metrics::Metrics;
use crate::msal_model::{Account, ScopeSet, TokenGrant};
use crate::session::{LoadedSession, Sessions, SignedIn};
use crate::store::{Fence, Record, StoreError};

/// How long a request with no usable token waits for another holder's
/// refresh of its session before it gives up (503); it never refreshes
/// without the lease.
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// How often it looks for that refresh's result, or a free lease, meanwhile.
const LEASE_POLL: Duration = Duration::from_millis(25);
/// A cached access token with at least this long left may be served while
/// another request refreshes it (the API call it is for takes milliseconds).
const USABLE_FOR: u64 = 1;
/// How long the tokens a refresh got are tried again when the store cannot
/// take them: the IdP has rotated the refresh token, so the old one stored
/// is spent, and giving up loses the session's tokens. About a store
/// restart's length; a request waits that long at most.
const ROTATION_WRITE_FOR: Duration = Duration::from_secs(5);
/// The first pause between those tries (doubling up to [`ROTATION_WRITE_PAUSE_MAX`]).
const ROTATION_WRITE_PAUSE: Duration = Duration::from_millis(50);
const ROTATION_WRITE_PAUSE_MAX: Duration = Duration::from_millis(400);
/// How long a refresh waits on the handoff ([`super::handoff`]), which is
/// best effort: a paused Redis (whose own timeout is seconds) must not
/// stall the refresh, and every request of the session waiting on it.
const HANDOFF_WITHIN: Duration = Duration::from_millis(300);

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Idp(#[from] IdpCallError),
    /// Nothing in the cache to refresh with: the user must sign in again.
    #[error("no refresh token cached; sign in again")]
    NoRefreshToken,
    /// Another instance holds the session's refresh lease, and no cached
    /// token is usable meanwhile.
    #[error("a refresh of this session is under way elsewhere")]
    RefreshElsewhere,
    /// The lease was lost while the IdP call ran (renewals failed): the
    /// refresh was abandoned rather than finished without it.
    #[error("the refresh lease was lost")]
    LeaseLost,
}

/// What a handoff left: a token for the wanted scopes, or the cache to refresh from.
enum Handed {
    Served(String),
    Refresh(CacheSnapshot),
}

/// A cached access token for the wanted scopes.
struct Cached {
    secret: String,
    /// Not yet due for renewal: serve it.
    fresh: bool,
}

/// Acquires tokens for the sessions of one instance.
pub struct TokenAcquirer {
    cache: Arc<dyn CacheAccess>,
    idp: Arc<IdpClient>,
    metrics: Arc<Metrics>,
    /// Names this instance as a lease holder.
    holder: String,
    /// Seconds before expiry at which a cached access token is renewed.
    renewal_offset: u64,
    refresh_locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl TokenAcquirer {
    pub fn new(
        cache: Arc<dyn CacheAccess>,
        idp: Arc<IdpClient>,
        metrics: Arc<Metrics>,
        holder: String,
        renewal_offset: u64,
    ) -> Self {
        Self {
            cache,
            idp,
            metrics,
            holder,
            renewal_offset,
            refresh_locks: Mutex::new(HashMap::new()),
        }
    }

    /// Where the tokens live.
    pub fn cache(&self) -> &Arc<dyn CacheAccess> {
        &self.cache
    }

    /// Acquire-silent for `scopes` in this signed-in session: a cached access
    /// token not due for renewal, or a refresh whose answer is stored.
    /// `prefetched` holds the placement's prefetch records read with the session.
    pub async fn acquire_silent(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        prefetched: &[Option<Record>],
        scopes: &str,
    ) -> Result<(String, TokenSource), AcquireError> {
        let wanted = ScopeSet::parse(scopes);
        let prefetched = (!prefetched.is_empty()).then_some(prefetched);
        let (snapshot, cached) = self
            .cached_token(sessions, session, user, &wanted, prefetched)
            .await?;
        if let Some(token) = cached.as_ref().filter(|c| c.fresh) {
            return Ok((token.secret.clone(), TokenSource::Cache));
        }
        let Some(leases) = self.cache.leases().filter(|_| self.cache.single_flight()) else {
            return self
                .refresh(sessions, session, user, scopes, snapshot, None)
                .await;
        };
        // Within this instance: one request refreshes, the others serve the
        // still-valid token meanwhile, or wait for the refresh.
        let lock = self.refresh_lock(&session.id);
        let _guard = match (lock.try_lock(), cached) {
            (Ok(guard), _) => guard,
            (Err(_), Some(usable)) => return Ok((usable.secret, TokenSource::Cache)),
            (Err(_), None) => lock.lock().await,
        };
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        loop {
            // Another request may have refreshed while this one waited.
            let (_, cached) = self
                .cached_token(sessions, session, user, &wanted, None)
                .await?;
            if let Some(token) = cached.as_ref().filter(|c| c.fresh) {
                return Ok((token.secret.clone(), TokenSource::Cache));
            }
            let lease_key = self.cache.lease_key(session);
            if let Some(lease) = leases.acquire(&lease_key, &self.holder).await? {
                let result = self
                    .refresh_under(&lease, sessions, session, user, scopes, &wanted)
                    .await;
                let leases = self.cache.clone();
                tokio::spawn(async move {
                    if let Some(leases) = leases.leases()
                        && let Err(e) = leases.release(&lease).await
                    {
                        tracing::debug!(error = %e, "releasing the refresh lease failed; it expires by itself");
                    }
                });
                return result;
            }
            if let Some(usable) = cached {
                return Ok((usable.secret, TokenSource::Cache));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AcquireError::RefreshElsewhere);
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Under the lease: reads the cache from the truth (the last holder may
    /// have stored just before it died, its copy never made), refreshes if
    /// still needed, renewing the lease while the IdP call runs; a lease
    /// lost meanwhile abandons the refresh.
    async fn refresh_under(
        &self,
        lease: &Lease,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        scopes: &str,
        wanted: &ScopeSet,
    ) -> Result<(String, TokenSource), AcquireError> {
        let (fresh_session, prefetched) = sessions
            .load_latest_with(&session.id, |store_id| self.cache.prefetch_keys(store_id))
            .await?;
        if let Some(fresh_session) = fresh_session {
            *session = fresh_session;
        }
        let (snapshot, cached) = self
            .cached_token(sessions, session, user, wanted, Some(&prefetched))
            .await?;
        if let Some(token) = cached.filter(|c| c.fresh) {
            return Ok((token.secret, TokenSource::Cache));
        }
        let fence = lease.fence.as_ref();
        let refresh = async {
            let snapshot = match self
                .take_handoff(sessions, session, user, wanted, snapshot, fence)
                .await?
            {
                Handed::Served(secret) => return Ok((secret, TokenSource::Cache)),
                Handed::Refresh(snapshot) => snapshot,
            };
            self.refresh(sessions, session, user, scopes, snapshot, fence)
                .await
        };
        let keep = async {
            let Some(leases) = self.cache.leases() else {
                return;
            };
            // Given up only when the lease is known taken: a renewal that
            // fails (a busy machine, a store outage) must not throw away
            // tokens the IdP has already rotated. Until another instance
            // takes the lease over, it is still this holder's, expired or
            // not, and fencing refuses the write once one has.
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                if let Ok(false) = leases.renew(lease).await {
                    return;
                }
            }
        };
        tokio::select! {
            result = refresh => match result {
                Err(AcquireError::Store(StoreError::Fenced)) => Err(AcquireError::LeaseLost),
                other => other,
            },
            () = keep => {
                tracing::warn!("refresh lease lost while the IdP call ran; refresh abandoned");
                Err(AcquireError::LeaseLost)
            }
        }
    }

    /// Applies the tokens a previous holder got but could not write
    /// ([`super::handoff`]), if they follow what `snapshot` holds: then a
    /// token for `wanted` may be there already; else what to refresh from.
    async fn take_handoff(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        wanted: &ScopeSet,
        snapshot: CacheSnapshot,
        fence: Option<&Fence>,
    ) -> Result<Handed, AcquireError> {
        let Some(handoff) = self.cache.handoff() else {
            return Ok(Handed::Refresh(snapshot));
        };
        let stored = snapshot
            .cache
            .refresh_token(&user.home_account_id, &self.idp.settings().client_id);
        let now = sessions.clock().now();
        // Nothing can be handed over while Redis is away.
        let taken = handoff_step("reading", handoff.take(&session.store_id, stored, now)).await;
        let Some(Some(response)) = taken else {
            return Ok(Handed::Refresh(snapshot));
        };
        self.store_rotated(sessions, session, user, &response, now, snapshot, fence)
            .await?;
        self.metrics.refresh_handed_over();
        self.clear_handoff(&session.store_id);
        let (snapshot, cached) = self
            .cached_token(sessions, session, user, wanted, None)
            .await?;
        Ok(match cached.filter(|c| c.fresh) {
            Some(token) => Handed::Served(token.secret),
            None => Handed::Refresh(snapshot),
        })
    }

    /// Removes a session's handoff once its tokens are in the store, in the
    /// background (a stale one left behind is recognised and removed later).
    fn clear_handoff(&self, store_id: &str) {
        if self.cache.handoff().is_none() {
            return;
        }
        let cache = self.cache.clone();
        let store_id = store_id.to_owned();
        tokio::spawn(async move {
            if let Some(handoff) = cache.handoff()
                && let Err(e) = handoff.clear(&store_id).await
            {
                tracing::debug!(error = %e, "clearing the refresh handoff failed");
            }
        });
    }

    /// Stores what the code exchange of a sign-in returned in the cache of
    /// `session`, which must have been created for this sign-in (a
    /// partitioned cache is then known to be empty, and not read: one round
    /// trip to each store less for option4); its lifetimes count from
    /// `requested_at`.
    pub async fn store_sign_in(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        response: &TokenResponse,
        requested_at: u64,
    ) -> Result<(), StoreError> {
        let loaded = self.cache.new_session_snapshot();
        self.store(
            sessions,
            session,
            user,
            response,
            requested_at,
            loaded,
            None,
        )
        .await
    }

    /// At logout: what the placement removes with the session.
    pub async fn sign_out(
        &self,
        session: &LoadedSession,
        user: &SignedIn,
    ) -> Result<(), StoreError> {
        self.cache.on_logout(session, &user.home_account_id).await
    }

    /// Loads the session's cache view and, if it holds one still valid, an
    /// access token for `wanted`, and whether it is due for renewal.
    async fn cached_token(
        &self,
        sessions: &Sessions,
        session: &LoadedSession,
        user: &SignedIn,
        wanted: &ScopeSet,
        prefetched: Option<&[Option<Record>]>,
    ) -> Result<(CacheSnapshot, Option<Cached>), StoreError> {
        let account = &user.home_account_id;
        let snapshot = self
            .cache
            .before_access(session, account, prefetched)
            .await?;
        let client_id = &self.idp.settings().client_id;
        let now = sessions.clock().now();
        let valid_for = |offset| {
            snapshot
                .cache
                .access_token(account, client_id, wanted, now, offset)
                .map(|at| at.secret.clone())
        };
        let cached = match valid_for(self.renewal_offset) {
            Some(secret) => Some(Cached {
                secret,
                fresh: true,
            }),
            None => valid_for(USABLE_FOR).map(|secret| Cached {
                secret,
                fresh: false,
            }),
        };
        Ok((snapshot, cached))
    }

    /// Redeems the cached refresh token and stores the answer.
    async fn refresh(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        scopes: &str,
        snapshot: CacheSnapshot,
        fence: Option<&Fence>,
    ) -> Result<(String, TokenSource), AcquireError> {
        let refresh_token = snapshot
            .cache
            .refresh_token(&user.home_account_id, &self.idp.settings().client_id)
            .ok_or(AcquireError::NoRefreshToken)?
            .to_owned();
        let requested_at = sessions.clock().now();
        let response = self
            .idp
            .refresh(
                &refresh_token,
                &format!("{scopes} openid profile offline_access"),
            )
            .await?;
        // Under a lease, the next holder must find these if this write
        // never lands: the refresh token stored is spent now.
        let handed = match (fence, self.cache.handoff()) {
            (Some(_), Some(handoff)) => {
                let left =
                    handoff.leave(&session.store_id, &refresh_token, requested_at, &response);
                handoff_step("leaving", left).await.is_some()
            }
            _ => false,
        };
        self.store_rotated(
            sessions,
            session,
            user,
            &response,
            requested_at,
            snapshot,
            fence,
        )
        .await?;
        if handed {
            self.clear_handoff(&session.store_id);
        }
        Ok((response.access_token, TokenSource::Refresh))
    }

    /// Stores what a refresh got, trying again for [`ROTATION_WRITE_FOR`]
    /// while the store is unavailable: the refresh token stored before is
    /// spent now, so these tokens are the session's only good ones.
    #[allow(clippy::too_many_arguments)]
    async fn store_rotated(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        response: &TokenResponse,
        requested_at: u64,
        snapshot: CacheSnapshot,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + ROTATION_WRITE_FOR;
        let mut pause = ROTATION_WRITE_PAUSE;
        let mut loaded = Some(snapshot);
        loop {
            match self
                .store(
                    sessions,
                    session,
                    user,
                    response,
                    requested_at,
                    loaded.take(),
                    fence,
                )
                .await
            {
                Err(StoreError::Unavailable(e))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %e, "storing refreshed tokens failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(ROTATION_WRITE_PAUSE_MAX);
                }
                other => return other,
            }
        }
    }

    /// Adds a token response to the cache (re-applied on a compare-and-set
    /// conflict, so no token is lost), its lifetimes counted from
    /// `requested_at` (Unix seconds when its request went out: a cached
    /// expiry is then never later than the token's own).
    #[allow(clippy::too_many_arguments)]
    async fn store(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        response: &TokenResponse,
        requested_at: u64,
        loaded: Option<CacheSnapshot>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let client_id = self.idp.settings().client_id.as_str();
        let account = self.account(user, response);
        let now = requested_at;
        self.cache
            .update(
                sessions,
                session,
                &user.home_account_id,
                loaded,
                fence,
                |cache| cache.add(grant(account.clone(), client_id, response), now),
                || self.metrics.write_conflict(),
            )
            .await
    }

    /// MSAL's account entity for this user, from the token response.
    fn account(&self, user: &SignedIn, response: &TokenResponse) -> Account {
        Account {
            home_account_id: user.home_account_id.clone(),
            environment: url::Url::parse(&self.idp.settings().authority)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default(),
            realm: response.utid.clone(),
            local_account_id: user.oid.clone(),
            username: user.username.clone(),
            name: user.username.clone(),
        }
    }

    fn refresh_lock(&self, session_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.refresh_locks.lock();
        if let Some(lock) = locks.get(session_id).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(session_id.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

/// One best-effort step on the handoff, bounded by [`HANDOFF_WITHIN`]:
/// its result, or `None` (logged) when it failed or took too long.
async fn handoff_step<T>(
    what: &str,
    step: impl Future<Output = Result<T, StoreError>>,
) -> Option<T> {
    match tokio::time::timeout(HANDOFF_WITHIN, step).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "{what} the refresh handoff failed");
            None
        }
        Err(_) => {
            tracing::debug!("{what} the refresh handoff timed out");
            None
        }
    }
}

fn grant<'a>(account: Account, client_id: &'a str, response: &'a TokenResponse) -> TokenGrant<'a> {
    TokenGrant {
        account,
        client_id,
        access_token: &response.access_token,
        scope: &response.scope,
        expires_in: response.expires_in,
        ext_expires_in: response.ext_expires_in,
        id_token: response.id_token.as_deref(),
        refresh_token: response.refresh_token.as_deref(),
    }
}
