//! MSAL's token acquisition over a placement: acquire-silent (a cached access
//! token, or one refresh), storing what a sign-in returned, and forgetting a
//! session's tokens at logout.
//!
//! Where the placement asks for it, at most one refresh per session runs at a
//! time: a lock within the instance and a lease in the store across
//! instances; the others wait, then find the fresh token. A strict IdP takes a
//! second use of one refresh token for theft and revokes the family.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use contract::TokenSource;
use parking_lot::Mutex;

use super::placement::{CacheAccess, CacheSnapshot};
use crate::idp_client::{IdpCallError, IdpClient, TokenResponse};
use crate::metrics::Metrics;
use crate::msal_model::{Account, ScopeSet, TokenGrant};
use crate::session::{LoadedSession, Sessions, SignedIn};
use crate::store::{Record, StoreError};

/// How long a request waits for another instance's refresh of its session.
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// How often it looks for that refresh's result meanwhile.
const LEASE_POLL: Duration = Duration::from_millis(25);

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
        let (snapshot, fresh) = self
            .cached_token(sessions, session, user, &wanted, prefetched)
            .await?;
        if let Some(token) = fresh {
            return Ok((token, TokenSource::Cache));
        }
        if !self.cache.single_flight() {
            return self
                .refresh(sessions, session, user, scopes, snapshot)
                .await;
        }
        let lock = self.refresh_lock(&session.id);
        let _guard = lock.lock().await;
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        loop {
            // Another request may have refreshed while this one waited.
            let (snapshot, fresh) = self
                .cached_token(sessions, session, user, &wanted, None)
                .await?;
            if let Some(token) = fresh {
                return Ok((token, TokenSource::Cache));
            }
            if self.cache.lease_refresh(session, &self.holder).await? {
                // Read again under the lease: the last holder may have just stored.
                let (snapshot, fresh) = self
                    .cached_token(sessions, session, user, &wanted, None)
                    .await?;
                let result = match fresh {
                    Some(token) => Ok((token, TokenSource::Cache)),
                    None => {
                        self.refresh(sessions, session, user, scopes, snapshot)
                            .await
                    }
                };
                if let Err(e) = self.cache.release_refresh(session).await {
                    tracing::debug!(error = %e, "releasing the refresh lease failed; it expires by itself");
                }
                return result;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("refresh lease still held elsewhere; refreshing without it");
                return self
                    .refresh(sessions, session, user, scopes, snapshot)
                    .await;
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Stores what the code exchange of a sign-in returned in the new session's cache.
    pub async fn store_sign_in(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        response: &TokenResponse,
    ) -> Result<(), StoreError> {
        self.store(sessions, session, user, response, None).await
    }

    /// At logout: what the placement removes with the session.
    pub async fn sign_out(
        &self,
        session: &LoadedSession,
        user: &SignedIn,
    ) -> Result<(), StoreError> {
        self.cache.on_logout(session, &user.home_account_id).await
    }

    /// Loads the session's cache view and, if it holds one, an access token
    /// for `wanted` that is not due for renewal.
    async fn cached_token(
        &self,
        sessions: &Sessions,
        session: &LoadedSession,
        user: &SignedIn,
        wanted: &ScopeSet,
        prefetched: Option<&[Option<Record>]>,
    ) -> Result<(CacheSnapshot, Option<String>), StoreError> {
        let account = &user.home_account_id;
        let snapshot = self
            .cache
            .before_access(session, account, prefetched)
            .await?;
        let fresh = snapshot
            .cache
            .access_token(
                account,
                &self.idp.settings().client_id,
                wanted,
                sessions.clock().now(),
                self.renewal_offset,
            )
            .map(|at| at.secret.clone());
        Ok((snapshot, fresh))
    }

    /// Redeems the cached refresh token and stores the answer.
    async fn refresh(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        scopes: &str,
        snapshot: CacheSnapshot,
    ) -> Result<(String, TokenSource), AcquireError> {
        let refresh_token = snapshot
            .cache
            .refresh_token(&user.home_account_id, &self.idp.settings().client_id)
            .ok_or(AcquireError::NoRefreshToken)?
            .to_owned();
        let response = self
            .idp
            .refresh(
                &refresh_token,
                &format!("{scopes} openid profile offline_access"),
            )
            .await?;
        self.store(sessions, session, user, &response, Some(snapshot))
            .await?;
        Ok((response.access_token, TokenSource::Refresh))
    }

    /// Adds a token response to the cache (re-applied on a compare-and-set
    /// conflict, so no token is lost).
    async fn store(
        &self,
        sessions: &Sessions,
        session: &mut LoadedSession,
        user: &SignedIn,
        response: &TokenResponse,
        loaded: Option<CacheSnapshot>,
    ) -> Result<(), StoreError> {
        let client_id = self.idp.settings().client_id.as_str();
        let account = self.account(user, response);
        let now = sessions.clock().now();
        self.cache
            .update(
                sessions,
                session,
                &user.home_account_id,
                loaded,
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
