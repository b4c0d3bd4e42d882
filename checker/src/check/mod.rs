//! The checker: a run's history in, anomalies out, each with the events that
//! prove it. Pure: no I/O, no clock, no stack; what the stores held after
//! the run comes in as data too.
//!
//! # Layout
//! One file per anomaly family (docs/architecture.md, "Anomalies"; how each
//! is found: docs/how-a-run-works.md, "The checker"):
//! - [`sessions`] finds session-loss.
//! - [`cart`] finds lost-update and stale-read (set-full semantics; the
//!   session guarantees as facets).
//! - [`tokens`] finds cross-session-token, cross-user-token, token-after-logout.
//! - [`idp_calls`] finds extra-idp-calls and the minimum token calls a run needs.
//! - [`foreign`] finds cross-session-data (another session's items in a cart).
//! - [`resurrected`] finds session-resurrected (a logged-out cookie answered).
//! - [`orphans`] judges what stores kept of browsers that logged out.
//! - [`resident`] judges what instances keep in their own memory, by counts.
//! - [`windows`] puts anomalies in the fault window they fell in.
//!
//! Timeouts, lost connections and 5xx answers are indeterminate: a write
//! with such an outcome may or may not have happened, and neither is an
//! anomaly; but an item such a write stored is known from the first read
//! that shows it, and its later disappearance is a loss (Jepsen's set-full).

pub mod cart;
pub mod foreign;
pub mod idp_calls;
pub mod orphans;
pub mod resident;
pub mod resurrected;
pub mod sessions;
pub mod tokens;
pub mod windows;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::history::{BrowserId, Event, History, Micros, Request};

/// The anomaly families (docs/architecture.md, "Anomalies").
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    SessionLoss,
    LostUpdate,
    StaleRead,
    CrossSessionToken,
    CrossUserToken,
    TokenAfterLogout,
    ExtraIdpCalls,
    Orphan,
    CrossSessionData,
    SessionResurrected,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::SessionLoss,
        Kind::LostUpdate,
        Kind::StaleRead,
        Kind::CrossSessionToken,
        Kind::CrossUserToken,
        Kind::TokenAfterLogout,
        Kind::ExtraIdpCalls,
        Kind::Orphan,
        Kind::CrossSessionData,
        Kind::SessionResurrected,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::SessionLoss => "session-loss",
            Kind::LostUpdate => "lost-update",
            Kind::StaleRead => "stale-read",
            Kind::CrossSessionToken => "cross-session-token",
            Kind::CrossUserToken => "cross-user-token",
            Kind::TokenAfterLogout => "token-after-logout",
            Kind::ExtraIdpCalls => "extra-idp-calls",
            Kind::Orphan => "orphan",
            Kind::CrossSessionData => "cross-session-data",
            Kind::SessionResurrected => "session-resurrected",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One anomaly and the events that prove it (indexes into the history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: Kind,
    pub browser: BrowserId,
    /// When it was seen: the completion of the event that shows it.
    pub at: Micros,
    /// What happened, in a sentence.
    pub summary: String,
    /// A finer label where the report needs one (session-loss: `hop` when the
    /// answer came from another instance than the session's last good one).
    pub facet: Option<String>,
    pub evidence: Vec<usize>,
}

/// What the checker needs to know besides the history.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The app's session idle timeout: a gap this long is an expiry, not a loss.
    pub idle_timeout: Duration,
    /// The app's absolute session timeout, if known: a session this old
    /// ends however busy, and a 401 past it is no loss.
    pub absolute_timeout: Option<Duration>,
    /// Tokens are renewed this long before they expire.
    pub renewal_offset: Duration,
    /// When the run started (Unix milliseconds), to compare token expiries with.
    pub started_unix_ms: u64,
    /// Each user's `sub`, as the IdP issues it.
    pub subjects: HashMap<String, String>,
}

/// Everything the checker found, and what it could not check.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub anomalies: BTreeMap<Kind, Vec<Anomaly>>,
    /// Checks that could not be made, and why.
    pub unchecked: Vec<(Kind, String)>,
}

impl Findings {
    pub fn count(&self, kind: Kind) -> usize {
        self.anomalies.get(&kind).map_or(0, Vec::len)
    }

    fn add(&mut self, anomalies: Vec<Anomaly>) {
        for anomaly in anomalies {
            self.anomalies
                .entry(anomaly.kind)
                .or_default()
                .push(anomaly);
        }
    }
}

/// Runs every history check; orphans come from [`orphans::check`], which
/// needs what the stores held after the run.
pub fn check(history: &History, settings: &Settings) -> Findings {
    let mut findings = Findings::default();
    let by_browser = history.by_browser();
    findings.add(sessions::check(history, &by_browser, settings));
    findings.add(cart::check(history, &by_browser));
    findings.add(tokens::check(history, &by_browser, settings));
    findings.add(idp_calls::check(history, &by_browser, settings));
    findings.add(foreign::check(history, &by_browser));
    findings.add(resurrected::check(history));
    if !history
        .events
        .iter()
        .any(|e| e.outcome.session_version().is_some())
    {
        findings.unchecked.push((
            Kind::StaleRead,
            "the app sends no x-session-version: version regressions cannot be seen (missing cart items still are)".into(),
        ));
    }
    findings
}

/// Whether `event` ends the browser's session and any after it is another:
/// a sign-in (even one whose outcome is unknown: it may have replaced the
/// session), an acknowledged logout, or a 401 (the app did not know it).
pub fn starts_session(event: &Event) -> bool {
    match &event.request {
        Request::SignIn => true,
        Request::Logout => event.outcome.ok(),
        _ => event.outcome.status() == Some(401),
    }
}

/// The event at `index`; indexes come from the history itself.
fn at(history: &History, index: usize) -> &Event {
    &history.events[index]
}

/// Whole seconds of a run offset, for messages.
fn secs(micros: Micros) -> String {
    format!("{:.3}s", micros as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_shown_by_the_name_it_is_serialized_with() {
        for kind in Kind::ALL {
            let serialized = serde_json::to_value(kind).expect("a kind serializes");
            assert_eq!(serialized, kind.name());
            assert_eq!(kind.to_string(), kind.name());
        }
    }

    #[test]
    fn version_regressions_are_said_unchecked_only_when_the_app_sends_no_version() {
        use crate::history::{BrowserInfo, Observed, Outcome};
        let answered = |session_version| Event {
            browser: BrowserId(0),
            request: Request::CartRead,
            sent_to: "app-1".into(),
            invoked: 1_000_000,
            completed: 1_100_000,
            outcome: Outcome::Answered {
                status: 200,
                instance: None,
                session_version,
                error: None,
                observed: Observed::Nothing,
            },
        };
        let history = |version| History {
            browsers: vec![BrowserInfo {
                person: 0,
                user: "alice".into(),
            }],
            events: vec![answered(version)],
            ..History::default()
        };
        let settings = Settings {
            idle_timeout: Duration::from_secs(1800),
            absolute_timeout: None,
            renewal_offset: Duration::from_secs(10),
            started_unix_ms: 0,
            subjects: HashMap::new(),
        };
        let unchecked = |version| {
            check(&history(version), &settings)
                .unchecked
                .into_iter()
                .map(|(kind, _)| kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(unchecked(None), [Kind::StaleRead]);
        assert!(unchecked(Some(3)).is_empty());
    }

    #[test]
    fn run_offsets_are_shown_in_seconds_to_the_millisecond() {
        assert_eq!(secs(0), "0.000s");
        assert_eq!(secs(1_234_567), "1.235s");
    }
}
