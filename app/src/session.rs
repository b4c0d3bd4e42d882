//! Server-side sessions: unguessable ids, the cookie, idle and absolute timeouts, versioned records.
//!
//! A session is stored under `sess:{HMAC of its id}` ([`crate::store::keys`]),
//! never the id, with a TTL of the idle timeout cut to what is left of the
//! absolute one; records that live as long as the session (option4's token
//! partition) get their TTL renewed with it. A sign-in in progress is not a
//! record but a signed cookie that lives ten minutes.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::msal_model::TokenCache;
use crate::store::keys::StoreKeys;
use crate::store::{Attempts, Expect, Record, Store, StoreError};
use service_kit::Clock;

/// Session ids carry 256 bits from the OS CSPRNG, base64url: always 43 characters.
const ID_LEN: usize = 43;

/// A sign-in in progress: what the callback must see again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// How long a sign-in may take between `/login` and the callback.
pub const PENDING_LOGIN_LIFETIME: Duration = Duration::from_secs(600);

/// What the sign-in cookie carries.
#[derive(Serialize, Deserialize)]
struct SealedLogin {
    pending: PendingLogin,
    expires_at: u64,
}

/// Who is signed in to this session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedIn {
    pub home_account_id: String,
    pub username: String,
    pub oid: String,
    /// The IdP session (`sid`) this browser signed in with.
    pub idp_sid: String,
    /// Kept for the end-session call at logout.
    pub id_token: String,
}

/// What a session record holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionData {
    pub created_at: u64,
    pub last_seen: u64,
    pub pending: Option<PendingLogin>,
    pub user: Option<SignedIn>,
    pub cart: Vec<String>,
    /// Only where the token cache lives inside the session (option3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_cache: Option<TokenCache>,
}

/// A session as this request sees it.
#[derive(Clone, Debug)]
pub struct LoadedSession {
    pub id: String,
    /// The keyed hash of the id its records are stored under (see
    /// [`crate::store::keys`]): `sess:{store_id}`, `tc:{store_id}`.
    pub store_id: String,
    pub data: SessionData,
    pub version: u64,
}

/// How long an unused session lives when nobody says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a session lasts at most, however busy, unless told otherwise.
pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

/// Cookie and lifetime settings.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    pub cookie_name: String,
    pub cookie_secure: bool,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
}

/// Whether session writes compare versions or overwrite blindly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    /// Last writer wins, as express-session and ASP.NET session state do.
    LastWriterWins,
    /// Compare-and-set on the version read; the caller retries on conflict.
    CompareAndSet,
}

/// The session record's key for a store id (the keyed hash of the session id, never the id itself).
/// The store id is a hash tag (`{...}`): on a Redis Cluster every key of
/// one session ([`crate::tokencache::placement::partition_key`] too) lies in
/// one slot, so a read of them all is one pipeline to one node.
pub fn session_key(store_id: &str) -> String {
    format!("sess:{{{store_id}}}")
}

/// Creates, finds, saves and ends sessions in one store.
pub struct Sessions {
    store: Arc<dyn Store>,
    settings: SessionSettings,
    concurrency: Concurrency,
    clock: Clock,
    keys: StoreKeys,
    /// Keys (from a store id) whose TTL follows the session's: every write
    /// of the session renews them too (option4's token partition).
    companions: Option<fn(&str) -> String>,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        settings: SessionSettings,
        concurrency: Concurrency,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            settings,
            concurrency,
            clock,
            keys: StoreKeys::derive(b"", "unset", &[]),
            companions: None,
        }
    }

    /// Store keys derived with these HMAC keys (every instance must share them).
    pub fn with_keys(mut self, keys: StoreKeys) -> Self {
        self.keys = keys;
        self
    }

    /// Renews the TTL of `companion(store_id)` with every write of a session.
    pub fn with_companion(mut self, companion: fn(&str) -> String) -> Self {
        self.companions = Some(companion);
        self
    }

    /// The store id new records of `id` go under.
    pub fn store_id(&self, id: &str) -> String {
        self.keys.digest(id)
    }

    /// The clock timeouts (and the app's token expiry checks) read.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn concurrency(&self) -> Concurrency {
        self.concurrency
    }

    /// The session id the request's cookie names, if it is well-formed. Ids
    /// the server could not have issued (wrong length or alphabet, oversized,
    /// truncated) are ignored without a store lookup.
    pub fn cookie_id(&self, headers: &HeaderMap) -> Option<String> {
        let prefix = format!("{}=", self.settings.cookie_name);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().strip_prefix(&prefix))
            .find(|id| {
                id.len() == ID_LEN
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(str::to_owned)
    }

    /// Loads a session and the extra keys `extra(store_id)` names, in one
    /// round trip where the store can (option4 reads the session and its
    /// token partition together). The session is looked up under the current
    /// key's digest, then under earlier keys' (rotation). A session past its
    /// idle or absolute timeout is deleted and reads as none.
    pub async fn load_with(
        &self,
        id: &str,
        extra: impl Fn(&str) -> Vec<String>,
    ) -> Result<(Option<LoadedSession>, Vec<Option<Record>>), StoreError> {
        self.load_from(id, extra, false).await
    }

    /// As [`Sessions::load_with`], never from a cache copy that may lag the
    /// truth: after a compare-and-set conflict, the version to retry from.
    pub async fn load_latest_with(
        &self,
        id: &str,
        extra: impl Fn(&str) -> Vec<String>,
    ) -> Result<(Option<LoadedSession>, Vec<Option<Record>>), StoreError> {
        self.load_from(id, extra, true).await
    }

    async fn load_from(
        &self,
        id: &str,
        extra: impl Fn(&str) -> Vec<String>,
        latest: bool,
    ) -> Result<(Option<LoadedSession>, Vec<Option<Record>>), StoreError> {
        let mut first_extras = None;
        for store_id in self.keys.candidates(id) {
            let key = session_key(&store_id);
            let extra_keys = extra(&store_id);
            let mut keys: Vec<&str> = vec![&key];
            keys.extend(extra_keys.iter().map(String::as_str));
            let mut records = if latest {
                self.store.load_many_latest(&keys).await?
            } else {
                self.store.load_many(&keys).await?
            };
            let extras = records.split_off(1);
            match records.pop().flatten() {
                Some(record) => {
                    return self.found(id, store_id, record, extras).await;
                }
                None => {
                    first_extras.get_or_insert(extras);
                }
            }
        }
        Ok((None, first_extras.unwrap_or_default()))
    }

    async fn found(
        &self,
        id: &str,
        store_id: String,
        record: Record,
        extras: Vec<Option<Record>>,
    ) -> Result<(Option<LoadedSession>, Vec<Option<Record>>), StoreError> {
        let data: SessionData = match serde_json::from_slice(&record.data) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable session record; treating it as absent");
                return Ok((None, extras));
            }
        };
        let now = self.clock.now();
        let idle = now.saturating_sub(data.last_seen) > self.settings.idle_timeout.as_secs();
        let too_old =
            now.saturating_sub(data.created_at) > self.settings.absolute_timeout.as_secs();
        if idle || too_old {
            self.store.delete(&session_key(&store_id)).await?;
            return Ok((None, extras));
        }
        Ok((
            Some(LoadedSession {
                id: id.to_owned(),
                store_id,
                data,
                version: record.version,
            }),
            extras,
        ))
    }

    pub async fn load(&self, id: &str) -> Result<Option<LoadedSession>, StoreError> {
        Ok(self.load_with(id, |_| Vec::new()).await?.0)
    }

    /// A new session with a fresh id.
    pub async fn create(&self, mut data: SessionData) -> Result<LoadedSession, StoreError> {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = self.clock.now();
        data.created_at = now;
        data.last_seen = now;
        let bytes = serde_json::to_vec(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let store_id = self.store_id(&id);
        let version = self
            .store
            .save(
                &session_key(&store_id),
                &bytes,
                Expect::Absent,
                Some(self.ttl_of(&data)),
            )
            .await?;
        Ok(LoadedSession {
            id,
            store_id,
            data,
            version,
        })
    }

    /// Writes the session back: compare-and-set or last-writer-wins, as configured.
    pub async fn save(&self, session: &mut LoadedSession) -> Result<(), StoreError> {
        session.data.last_seen = self.clock.now();
        let bytes =
            serde_json::to_vec(&session.data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let expect = match self.concurrency {
            Concurrency::LastWriterWins => Expect::Any,
            Concurrency::CompareAndSet => Expect::Version(session.version),
        };
        let ttl = self.ttl_of(&session.data);
        // The companion (option4's token partition) lives as long as the
        // session: renewed with it, in the same round trip where the store can.
        let companion = self
            .companions
            .map(|companion| companion(&session.store_id));
        let renew: Vec<&str> = companion.iter().map(String::as_str).collect();
        session.version = self
            .store
            .save_renewing(&session_key(&session.store_id), &bytes, expect, ttl, &renew)
            .await?;
        Ok(())
    }

    /// Applies `change` to the session and writes it back. Under
    /// compare-and-set a conflict re-reads the session and applies `change`
    /// again, so no acknowledged write is lost; last-writer-wins writes once
    /// and may overwrite another's. `Ok(false)`: the session ended meanwhile.
    pub async fn update(
        &self,
        session: &mut LoadedSession,
        mut change: impl FnMut(&mut SessionData),
        mut on_conflict: impl FnMut(),
    ) -> Result<bool, StoreError> {
        let mut attempts = Attempts::default();
        loop {
            if attempts.is_retry() {
                on_conflict();
                match self.load_latest_with(&session.id, |_| Vec::new()).await?.0 {
                    Some(fresh) => *session = fresh,
                    None => return Ok(false),
                }
            }
            change(&mut session.data);
            if let Some(done) = attempts.settle(self.save(session).await) {
                return done.map(|()| true);
            }
        }
    }

    /// Whether this session should be written just to keep it alive: a
    /// quarter of the idle timeout since the last write, so reads stay reads.
    pub fn needs_touch(&self, session: &LoadedSession) -> bool {
        self.clock.now().saturating_sub(session.data.last_seen)
            > self.settings.idle_timeout.as_secs() / 4
    }

    pub async fn delete(&self, session: &LoadedSession) -> Result<bool, StoreError> {
        self.store.delete(&session_key(&session.store_id)).await
    }

    /// How long the store keeps a session written now: the idle timeout,
    /// cut to what is left of the absolute timeout; every write renews it.
    /// Records whose life follows the session's (the token partition) get the same.
    pub fn ttl_of(&self, data: &SessionData) -> Duration {
        let age = Duration::from_secs(self.clock.now().saturating_sub(data.created_at));
        let left = self.settings.absolute_timeout.saturating_sub(age);
        self.settings
            .idle_timeout
            .min(left)
            .max(Duration::from_secs(1))
    }

    pub fn cookie(&self, id: &str) -> HeaderValue {
        let secure = if self.settings.cookie_secure {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Lax{secure}",
            self.settings.cookie_name
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn pending_cookie_name(&self) -> String {
        format!("{}_login", self.settings.cookie_name)
    }

    /// The sign-in in progress as a cookie instead of a stored record:
    /// `base64url(json) . base64url(HMAC)`, expiring after
    /// [`PENDING_LOGIN_LIFETIME`], sent back only to the callback. Anonymous
    /// `/login` traffic then writes nothing to the stores.
    pub fn pending_cookie(&self, pending: &PendingLogin) -> Result<HeaderValue, StoreError> {
        let sealed = SealedLogin {
            pending: pending.clone(),
            expires_at: self.clock.now() + PENDING_LOGIN_LIFETIME.as_secs(),
        };
        let json = serde_json::to_vec(&sealed).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let payload = URL_SAFE_NO_PAD.encode(&json);
        let tag = self.keys.sign(payload.as_bytes());
        HeaderValue::from_str(&format!(
            "{}={payload}.{tag}; Path=/auth/callback; Max-Age={}; HttpOnly; SameSite=Lax{}",
            self.pending_cookie_name(),
            PENDING_LOGIN_LIFETIME.as_secs(),
            self.secure_attribute(),
        ))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The sign-in in progress the request's cookie carries, if its tag is
    /// ours and it has not expired.
    pub fn pending_login(&self, headers: &HeaderMap) -> Option<PendingLogin> {
        let prefix = format!("{}=", self.pending_cookie_name());
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(&prefix))?;
        let (payload, tag) = value.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if !self.keys.verify(payload.as_bytes(), &tag) {
            return None;
        }
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let sealed: SealedLogin = serde_json::from_slice(&json).ok()?;
        (sealed.expires_at >= self.clock.now()).then_some(sealed.pending)
    }

    /// Clears the sign-in cookie once the callback used it.
    pub fn clear_pending_cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{}=; Path=/auth/callback; Max-Age=0; HttpOnly; SameSite=Lax{}",
            self.pending_cookie_name(),
            self.secure_attribute(),
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn secure_attribute(&self) -> &'static str {
        if self.settings.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    }

    pub fn clear_cookie(&self) -> HeaderValue {
        let secure = if self.settings.cookie_secure {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}",
            self.settings.cookie_name
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}
