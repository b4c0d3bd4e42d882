//! Server-side sessions: unguessable ids, the cookie, idle and absolute timeouts, versioned records.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::msal_model::TokenCache;
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
    pub data: SessionData,
    pub version: u64,
}

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

pub fn session_key(id: &str) -> String {
    format!("sess:{id}")
}

/// Creates, finds, saves and ends sessions in one store.
pub struct Sessions {
    store: Arc<dyn Store>,
    settings: SessionSettings,
    concurrency: Concurrency,
    clock: Clock,
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
        }
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

    /// Loads a session and the extra keys asked for, in one round trip where
    /// the store can (option4 reads the session and its token partition together).
    /// A session past its idle or absolute timeout is deleted and reads as none.
    pub async fn load_with(
        &self,
        id: &str,
        extra: &[String],
    ) -> Result<(Option<LoadedSession>, Vec<Option<Record>>), StoreError> {
        let key = session_key(id);
        let mut keys: Vec<&str> = vec![&key];
        keys.extend(extra.iter().map(String::as_str));
        let mut records = self.store.load_many(&keys).await?;
        let extras = records.split_off(1);
        let Some(record) = records.pop().flatten() else {
            return Ok((None, extras));
        };
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
            self.store.delete(&key).await?;
            return Ok((None, extras));
        }
        Ok((
            Some(LoadedSession {
                id: id.to_owned(),
                data,
                version: record.version,
            }),
            extras,
        ))
    }

    pub async fn load(&self, id: &str) -> Result<Option<LoadedSession>, StoreError> {
        Ok(self.load_with(id, &[]).await?.0)
    }

    /// A new session with a fresh id.
    pub async fn create(&self, mut data: SessionData) -> Result<LoadedSession, StoreError> {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = self.clock.now();
        data.created_at = now;
        data.last_seen = now;
        let bytes = serde_json::to_vec(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let version = self
            .store
            .save(&session_key(&id), &bytes, Expect::Absent, Some(self.ttl()))
            .await?;
        Ok(LoadedSession { id, data, version })
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
        session.version = self
            .store
            .save(&session_key(&session.id), &bytes, expect, Some(self.ttl()))
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
                match self.load(&session.id).await? {
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

    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.store.delete(&session_key(id)).await
    }

    /// The store keeps a session as long as the idle timeout; every write renews it.
    fn ttl(&self) -> Duration {
        self.settings.idle_timeout
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

    pub fn clear_cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
            self.settings.cookie_name
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}
