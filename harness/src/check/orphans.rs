//! orphan: a session record or token entry still stored, after a grace
//! period, for a browser that logged out. The stage looks in the stores
//! (they are not the checker's to reach); this file says what to look for
//! and judges what was found.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::resident::Gone;
use super::{Anomaly, Kind, at, secs};
use crate::history::{History, Observed, Request};

/// A session a browser ended with a logout that the app acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndedSession {
    /// The session id (the cookie the sign-in set).
    pub session: String,
    pub sign_in: usize,
    pub logout: usize,
}

/// What the stores still held after the grace period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftovers {
    /// Ended sessions that still had a session record or a token partition.
    pub sessions: Vec<LeftoverSession>,
    /// Users without a signed-in browser whose refresh tokens an app-wide
    /// token blob still held, and how many.
    pub blob_tokens: BTreeMap<String, u32>,
    /// Why the stores could not be looked into, when they could not.
    pub unchecked: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftoverSession {
    pub session: String,
    pub session_record: bool,
    pub token_partition: bool,
}

/// The sessions browsers logged out of, for the stage to look for.
pub fn ended_sessions(history: &History) -> Vec<EndedSession> {
    let mut ended = Vec::new();
    for events in history.by_browser() {
        let mut current: Option<(String, usize)> = None;
        for index in events {
            let event = at(history, index);
            match (&event.request, event.outcome.observed()) {
                (Request::SignIn, Some(Observed::SignedIn { session, .. }))
                    if event.outcome.ok() =>
                {
                    current = session.clone().map(|s| (s, index));
                }
                (Request::SignIn, _) => current = None,
                (Request::Logout, _) if event.outcome.ok() => {
                    if let Some((session, sign_in)) = current.take() {
                        ended.push(EndedSession {
                            session,
                            sign_in,
                            logout: index,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    ended
}

/// Orphans among `leftovers`: sessions logged out of (`ended`), and blob
/// tokens of users with no session left (`gone`, from [`super::resident::Standings::gone_users`]).
pub fn check(
    history: &History,
    ended: &[EndedSession],
    leftovers: &Leftovers,
    gone: &BTreeMap<String, Gone>,
) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for left in &leftovers.sessions {
        let Some(session) = ended.iter().find(|e| e.session == left.session) else {
            continue;
        };
        let what = match (left.session_record, left.token_partition) {
            (true, true) => "its session record and its tokens",
            (true, false) => "its session record",
            (false, true) => "its tokens",
            (false, false) => continue,
        };
        let logout = at(history, session.logout);
        found.push(Anomaly {
            kind: Kind::Orphan,
            browser: logout.browser,
            at: logout.completed,
            summary: format!(
                "{} logged out at {}; the stores still hold {what}",
                logout.browser,
                secs(logout.completed)
            ),
            facet: Some("session".into()),
            evidence: vec![session.sign_in, session.logout],
        });
    }
    for (user, tokens) in &leftovers.blob_tokens {
        let Some(last) = gone.get(user) else { continue };
        let how = if last.logged_out {
            "by a logout"
        } else {
            "unused past the idle timeout: left without logout"
        };
        found.push(Anomaly {
            kind: Kind::Orphan,
            browser: last.browser,
            at: last.ended_at,
            summary: format!(
                "{user} has no browser that could still be signed in after {} (their last session ended {how}), but the app-wide token blob still holds {tokens} refresh token(s) of theirs",
                secs(last.ended_at)
            ),
            facet: Some("blob".into()),
            evidence: last.evidence.clone(),
        });
    }
    found
}
