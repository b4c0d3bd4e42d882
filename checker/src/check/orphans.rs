//! orphan: a session record or token entry still stored, after a grace
//! period, for a browser that logged out. The stage looks in the stores,
//! each tier read raw on its own (`crate::store_probe`; they are not the
//! checker's to reach); this file says what to look for and judges what was
//! found, one orphan per tier that still holds something of a session.

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

/// One store tier, read on its own: a leftover in Redis and one in
/// Postgres are different faults (a cache copy a delete missed, or a
/// delete that never reached the truth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Redis,
    Postgres,
    Sqlite,
}

impl Tier {
    /// Its name, also the facet of an orphan found in it.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Redis => "redis",
            Tier::Postgres => "postgres",
            Tier::Sqlite => "sqlite",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Tier::Redis => "Redis",
            Tier::Postgres => "Postgres",
            Tier::Sqlite => "SQLite",
        }
    }
}

/// The orphan facets of the store tiers, in order.
pub const TIER_FACETS: [&str; 3] = ["redis", "postgres", "sqlite"];

/// What the stores still held after the grace period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftovers {
    /// Ended sessions that still had a session record or a token partition.
    pub sessions: Vec<LeftoverSession>,
    /// Users without a signed-in browser whose refresh tokens an app-wide
    /// token blob still held, and how many (the most any tier's blob held).
    pub blob_tokens: BTreeMap<String, u32>,
    /// The tiers whose blob held any of them (empty in files from before
    /// tiers were read apart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blob_tiers: Vec<Tier>,
    /// Why the stores could not be looked into, when they could not.
    pub unchecked: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftoverSession {
    pub session: String,
    /// In any tier.
    pub session_record: bool,
    pub token_partition: bool,
    /// Each tier that held either, and which (empty in files from before
    /// tiers were read apart: then one orphan, facet `session`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierLeftover>,
}

/// What one tier held of an ended session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierLeftover {
    pub tier: Tier,
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

/// Orphans among `leftovers`: sessions logged out of (`ended`), one per
/// tier that still held something of one (facet: the tier), and blob
/// tokens of users with no session left (`gone`, from
/// [`super::resident::Standings::gone_users`]).
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
        let logout = at(history, session.logout);
        // Files from before tiers were read apart: one finding, "the stores".
        let places: Vec<(Option<Tier>, bool, bool)> = if left.tiers.is_empty() {
            vec![(None, left.session_record, left.token_partition)]
        } else {
            left.tiers
                .iter()
                .map(|t| (Some(t.tier), t.session_record, t.token_partition))
                .collect()
        };
        for (tier, record, partition) in places {
            let what = match (record, partition) {
                (true, true) => "its session record and its tokens",
                (true, false) => "its session record",
                (false, true) => "its tokens",
                (false, false) => continue,
            };
            found.push(Anomaly {
                kind: Kind::Orphan,
                browser: logout.browser,
                at: logout.completed,
                summary: format!(
                    "{} logged out at {}; {} still {} {what}",
                    logout.browser,
                    secs(logout.completed),
                    tier.map_or("the stores", Tier::title),
                    if tier.is_some() { "holds" } else { "hold" },
                ),
                facet: Some(tier.map_or("session", Tier::name).into()),
                evidence: vec![session.sign_in, session.logout],
            });
        }
    }
    let blob_in = if leftovers.blob_tiers.is_empty() {
        "the app-wide token blob".to_owned()
    } else {
        let names: Vec<&str> = leftovers.blob_tiers.iter().map(|t| t.title()).collect();
        format!("the app-wide token blob (in {})", names.join(" and "))
    };
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
                "{user} has no browser that could still be signed in after {} (their last session ended {how}), but {blob_in} still holds {tokens} refresh token(s) of theirs",
                secs(last.ended_at)
            ),
            facet: Some("blob".into()),
            evidence: last.evidence.clone(),
        });
    }
    found
}
