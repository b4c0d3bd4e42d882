//! Authorization codes, refresh-token families with rotation, and IdP sessions, all in memory.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::ReusePolicy;
use crate::scope::Scopes;
use crate::users::User;

/// A fresh opaque value of 256 random bits, base64url.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// What `/authorize` granted, waiting to be redeemed at `/token`.
#[derive(Clone, Debug)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scopes: Scopes,
    pub user: Arc<User>,
    pub sid: String,
    pub auth_time: u64,
    pub expires_at: u64,
}

/// One sign-in's chain of refresh tokens, all revoked together.
#[derive(Clone, Debug)]
pub struct Family {
    pub client_id: String,
    pub user: Arc<User>,
    pub sid: String,
    pub scopes: Scopes,
    pub auth_time: u64,
    pub revoked: bool,
}

struct RefreshRecord {
    family: u64,
    expires_at: u64,
    rotated: bool,
}

/// Why a refresh token was refused; every case is `invalid_grant` on the wire.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshRefusal {
    Unknown,
    WrongClient,
    Expired,
    Revoked,
    SessionEnded,
    /// A rotated token was presented again and the policy revoked its family.
    ReuseRevokedFamily,
}

impl RefreshRefusal {
    pub fn description(&self) -> &'static str {
        match self {
            RefreshRefusal::Unknown => "unknown refresh token",
            RefreshRefusal::WrongClient => "refresh token was issued to another client",
            RefreshRefusal::Expired => "refresh token has expired",
            RefreshRefusal::Revoked => "refresh token has been revoked",
            RefreshRefusal::SessionEnded => "the IdP session of this refresh token has ended",
            RefreshRefusal::ReuseRevokedFamily => {
                "refresh token was already used; its whole family is now revoked"
            }
        }
    }
}

/// An accepted refresh: the family it belongs to, and whether it was a reuse.
pub struct Rotation {
    pub family_id: u64,
    pub family: Family,
    pub was_reuse: bool,
}

/// Why a code was refused; every case is `invalid_grant` on the wire.
pub type CodeRefusal = &'static str;

/// An IdP (browser) session: the `sid` in tokens.
#[derive(Clone, Debug)]
pub struct IdpSession {
    pub user: Arc<User>,
    pub ended: bool,
    /// Clients that redeemed a code of this session, so a logout that names
    /// no client (as MSAL samples send it) can still check its redirect URI.
    pub clients: Vec<String>,
}

/// How many inserts pass between sweeps of expired entries, so memory stays
/// bounded by what is live rather than by everything ever issued.
const SWEEP_EVERY: u32 = 4096;

/// All grant state, behind one lock.
#[derive(Default)]
pub struct Grants {
    codes: HashMap<String, AuthCode>,
    /// Codes already redeemed, and the family they started, until they would have expired.
    redeemed_codes: HashMap<String, (u64, u64)>,
    refresh: HashMap<String, RefreshRecord>,
    families: HashMap<u64, Family>,
    sessions: HashMap<String, IdpSession>,
    next_family: u64,
    inserts_since_sweep: u32,
}

impl Grants {
    pub fn insert_code(&mut self, code: String, grant: AuthCode, now: u64) {
        self.codes.insert(code, grant);
        self.note_insert(now);
    }

    /// Redeems a code once. A second redemption revokes whatever the first
    /// one issued (RFC 6749 section 4.1.2).
    pub fn redeem_code(
        &mut self,
        code: &str,
        client_id: &str,
        now: u64,
    ) -> Result<AuthCode, CodeRefusal> {
        if let Some((family, _)) = self.redeemed_codes.get(code) {
            if let Some(family) = self.families.get_mut(family) {
                family.revoked = true;
            }
            return Err(
                "authorization code was already redeemed; tokens issued from it are revoked",
            );
        }
        let grant = self
            .codes
            .remove(code)
            .ok_or("unknown authorization code")?;
        if grant.client_id != client_id {
            return Err("authorization code was issued to another client");
        }
        if grant.expires_at <= now {
            return Err("authorization code has expired");
        }
        Ok(grant)
    }

    /// Starts a refresh-token family for a redeemed code.
    pub fn start_family(&mut self, code: &str, code_expiry: u64, family: Family) -> u64 {
        self.next_family += 1;
        let id = self.next_family;
        if let Some(session) = self.sessions.get_mut(&family.sid)
            && !session.clients.contains(&family.client_id)
        {
            session.clients.push(family.client_id.clone());
        }
        self.families.insert(id, family);
        self.redeemed_codes
            .insert(code.to_owned(), (id, code_expiry));
        id
    }

    pub fn issue_refresh(&mut self, family: u64, expires_at: u64, now: u64) -> String {
        let token = random_token();
        self.refresh.insert(
            token.clone(),
            RefreshRecord {
                family,
                expires_at,
                rotated: false,
            },
        );
        self.note_insert(now);
        token
    }

    /// Checks a presented refresh token and marks it rotated; the caller then issues its successor.
    pub fn rotate_refresh(
        &mut self,
        token: &str,
        client_id: &str,
        now: u64,
        policy: ReusePolicy,
    ) -> Result<Rotation, RefreshRefusal> {
        let record = self.refresh.get_mut(token).ok_or(RefreshRefusal::Unknown)?;
        let family_id = record.family;
        let family = self
            .families
            .get_mut(&family_id)
            .ok_or(RefreshRefusal::Unknown)?;
        if family.client_id != client_id {
            return Err(RefreshRefusal::WrongClient);
        }
        if self.sessions.get(&family.sid).is_some_and(|s| s.ended) {
            return Err(RefreshRefusal::SessionEnded);
        }
        if family.revoked {
            return Err(RefreshRefusal::Revoked);
        }
        if record.expires_at <= now {
            return Err(RefreshRefusal::Expired);
        }
        let was_reuse = record.rotated;
        if was_reuse && policy == ReusePolicy::RevokeFamily {
            family.revoked = true;
            return Err(RefreshRefusal::ReuseRevokedFamily);
        }
        record.rotated = true;
        Ok(Rotation {
            family_id,
            family: family.clone(),
            was_reuse,
        })
    }

    /// The IdP session (`sid`) of the family a refresh token belongs to.
    pub fn family_sid(&self, token: &str) -> Option<&str> {
        let record = self.refresh.get(token)?;
        self.families.get(&record.family).map(|f| f.sid.as_str())
    }

    /// The IdP session with this id, if any.
    pub fn session(&self, sid: &str) -> Option<&IdpSession> {
        self.sessions.get(sid)
    }

    pub fn start_session(&mut self, sid: String, user: Arc<User>) {
        self.sessions.insert(
            sid,
            IdpSession {
                user,
                ended: false,
                clients: Vec::new(),
            },
        );
    }

    /// Ends an IdP session and revokes every refresh-token family of it.
    /// Returns false when there was no such active session.
    pub fn end_session(&mut self, sid: &str) -> bool {
        let Some(session) = self.sessions.get_mut(sid).filter(|s| !s.ended) else {
            return false;
        };
        session.ended = true;
        for family in self.families.values_mut().filter(|f| f.sid == sid) {
            family.revoked = true;
        }
        true
    }

    /// Live entries, for tests and diagnostics: (codes, refresh tokens, families, sessions).
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.codes.len(),
            self.refresh.len(),
            self.families.len(),
            self.sessions.len(),
        )
    }

    fn note_insert(&mut self, now: u64) {
        self.inserts_since_sweep += 1;
        if self.inserts_since_sweep >= SWEEP_EVERY {
            self.inserts_since_sweep = 0;
            self.sweep(now);
        }
    }

    /// Drops expired codes and refresh tokens. Families and sessions stay: they
    /// are few (one per sign-in) and ended sessions must stay known.
    pub fn sweep(&mut self, now: u64) {
        self.codes.retain(|_, c| c.expires_at > now);
        self.redeemed_codes.retain(|_, (_, expiry)| *expiry > now);
        self.refresh.retain(|_, r| r.expires_at > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family() -> Family {
        Family {
            client_id: "c".into(),
            user: Arc::new(User {
                username: "u".into(),
                oid: "o".into(),
                name: "n".into(),
                email: "e".into(),
            }),
            sid: "s".into(),
            scopes: Scopes::default(),
            auth_time: 0,
            revoked: false,
        }
    }

    #[test]
    fn sweeping_drops_only_expired_refresh_tokens() {
        let mut grants = Grants::default();
        let id = grants.start_family("code", 10, family());
        let old = grants.issue_refresh(id, 100, 0);
        let live = grants.issue_refresh(id, 1000, 0);
        grants.sweep(500);
        assert_eq!(
            grants
                .rotate_refresh(&old, "c", 500, ReusePolicy::Allow)
                .err(),
            Some(RefreshRefusal::Unknown)
        );
        assert!(
            grants
                .rotate_refresh(&live, "c", 500, ReusePolicy::Allow)
                .is_ok()
        );
    }

    #[test]
    fn ending_a_session_revokes_its_families() {
        let mut grants = Grants::default();
        grants.start_session("s".into(), family().user);
        let id = grants.start_family("code", 10, family());
        let token = grants.issue_refresh(id, 1000, 0);
        assert!(grants.end_session("s"));
        assert!(!grants.end_session("s"), "ending twice is a no-op");
        assert_eq!(
            grants
                .rotate_refresh(&token, "c", 1, ReusePolicy::Allow)
                .err(),
            Some(RefreshRefusal::SessionEnded)
        );
    }
}
