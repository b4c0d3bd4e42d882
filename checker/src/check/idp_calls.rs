//! Token-endpoint calls against what the run needed: extra-idp-calls is a
//! refresh made while the session already held a good token for those
//! scopes; the minimum is one code exchange per sign-in plus one refresh per
//! access-token lifetime a session actually used, per scope set.
//!
//! Both follow MSAL's cache rules: a token serves any subset of its scopes
//! until `renewal_offset` before it expires, and storing a new token drops
//! the cached ones whose scopes intersect its own.
//!
//! A refresh token redeemed twice is an extra call too (facet
//! [`REFRESH_TOKEN_REUSE`]): the history cannot see which refresh token a
//! call presented, so the IdP's own count per IdP session is read
//! ([`reuse`]), each presentation one anomaly of the browser that signed in
//! to that IdP session.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Anomaly, Kind, Settings, at, secs};
use crate::history::{Event, History, Observed, Request};
use contract::TokenSource;

/// The facet of a refresh made while the session held a good token.
pub const REFRESH_WHILE_CACHED: &str = "refresh-while-cached";
/// The facet of a refresh token presented again after it was rotated.
pub const REFRESH_TOKEN_REUSE: &str = "refresh-token-reuse";

/// What the IdP counted of rotated refresh tokens presented again: per IdP
/// session (`sid`), per action taken (`allowed`, `family_revoked`).
pub type ReuseBySession = BTreeMap<String, BTreeMap<String, u64>>;

/// A second of slack on every expiry comparison: the app stamps tokens in
/// whole seconds and decides a moment before the history records.
const SLACK_SECS: f64 = 1.0;

/// A cached token: its scopes, until when (Unix seconds) it serves, and
/// the event that showed it.
struct Cached {
    scopes: BTreeSet<String>,
    until: f64,
    shown_by: usize,
    /// The token's id: a request that waited for another's refresh (a
    /// fleet-wide lease) shows the very token that refresh got.
    jti: String,
}

/// MSAL's per-session cache, as far as the history shows it.
#[derive(Default)]
struct Cache(Vec<Cached>);

impl Cache {
    /// The cached token that serves `scopes` at `when` with `margin` seconds
    /// to spare (negative: one that ran out at most that long ago), if any.
    fn serving(&self, scopes: &BTreeSet<String>, when: f64, margin: f64) -> Option<&Cached> {
        self.0
            .iter()
            .find(|c| scopes.is_subset(&c.scopes) && c.until > when + margin)
    }

    /// Stores a token as a refresh does: overlapping ones go.
    fn store(&mut self, token: Cached) {
        self.0.retain(|c| c.scopes.is_disjoint(&token.scopes));
        self.0.push(token);
    }
}

/// The scope set of an API call: `/data` says it, `/profile` has its own.
fn scope_set(observed: &Observed) -> BTreeSet<String> {
    match observed {
        Observed::Token {
            scopes: Some(scopes),
            ..
        } => scopes.split_whitespace().map(str::to_owned).collect(),
        _ => BTreeSet::from(["profile".to_owned()]),
    }
}

/// Unix seconds of a run offset.
fn unix(settings: &Settings, micros: u64) -> f64 {
    settings.started_unix_ms as f64 / 1e3 + micros as f64 / 1e6
}

pub fn check(history: &History, by_browser: &[Vec<usize>], settings: &Settings) -> Vec<Anomaly> {
    let offset = settings.renewal_offset.as_secs_f64();
    let mut found = Vec::new();
    for events in by_browser {
        let mut cache = Cache::default();
        for &index in events {
            let event = at(history, index);
            if matches!(event.request, Request::SignIn | Request::Logout) {
                cache = Cache::default();
                continue;
            }
            let Some(
                observed @ Observed::Token {
                    source, exp, jti, ..
                },
            ) = event.outcome.observed()
            else {
                continue;
            };
            if !event.outcome.ok() {
                continue;
            }
            let scopes = scope_set(observed);
            let when = unix(settings, event.completed);
            // The app decided to refresh somewhere between the request's
            // invocation and its answer; a slow request (one waiting out a
            // store timeout) may have found the token due only late. So the
            // latest moment counts: extra only when the cached token was
            // clearly still good when the answer came, and
            // was not this refresh's own token (shown first by a concurrent
            // request that waited for this refresh).
            if *source == TokenSource::Refresh
                && let Some(good) = cache.serving(&scopes, when, SLACK_SECS)
                && good.jti != *jti
            {
                found.push(extra(history, event, index, good, when));
            }
            let token = Cached {
                scopes,
                until: *exp as f64 - offset,
                shown_by: index,
                jti: jti.clone(),
            };
            match source {
                TokenSource::Refresh => cache.store(token),
                // A cached token shows what the cache held; it evicts nothing.
                _ => {
                    cache.0.retain(|c| c.scopes != token.scopes);
                    cache.0.push(token);
                }
            }
        }
    }
    found
}

fn extra(history: &History, event: &Event, index: usize, good: &Cached, when: f64) -> Anomaly {
    let shown = at(history, good.shown_by);
    Anomaly {
        kind: Kind::ExtraIdpCalls,
        browser: event.browser,
        at: event.completed,
        summary: format!(
            "{} refreshed by {} although the token it used at {} was good for {:.0} s more",
            event.browser,
            secs(event.completed),
            secs(shown.invoked),
            good.until - when
        ),
        facet: Some(REFRESH_WHILE_CACHED.to_owned()),
        evidence: vec![good.shown_by, index],
    }
}

/// One anomaly per refresh-token reuse the IdP counted, on the browser whose
/// sign-in joined that IdP session; the evidence is that sign-in and the
/// session's API calls that refreshed or failed. Reuses of IdP sessions no
/// event names are returned apart (their count), to be said as unchecked.
pub fn reuse(
    history: &History,
    by_browser: &[Vec<usize>],
    counted: &ReuseBySession,
) -> (Vec<Anomaly>, u64) {
    if counted.is_empty() {
        return (Vec::new(), 0);
    }
    // Each IdP session's browser and its events in that session (from the
    // sign-in that joined it to the next sign-in or logout).
    let mut sessions: HashMap<&str, Vec<usize>> = HashMap::new();
    for events in by_browser {
        let mut current: Option<&str> = None;
        for &index in events {
            let event = at(history, index);
            match (&event.request, event.outcome.observed()) {
                (Request::SignIn, Some(Observed::SignedIn { idp_sid, .. }))
                    if event.outcome.ok() =>
                {
                    current = idp_sid.as_deref();
                }
                (Request::SignIn, _) => current = None,
                _ => {}
            }
            if let Some(sid) = current
                && counted.contains_key(sid)
            {
                sessions.entry(sid).or_default().push(index);
            }
            if event.request == Request::Logout {
                current = None;
            }
        }
    }
    let mut found = Vec::new();
    let mut unattributed = 0;
    for (sid, actions) in counted {
        let Some(events) = sessions.get(sid.as_str()) else {
            unattributed += actions.values().sum::<u64>();
            continue;
        };
        let evidence: Vec<usize> = events
            .iter()
            .copied()
            .filter(|&i| {
                let event = at(history, i);
                match event.outcome.observed() {
                    _ if event.request == Request::SignIn => true,
                    Some(Observed::Token { source, .. }) => *source == TokenSource::Refresh,
                    _ => {
                        matches!(event.request, Request::Profile | Request::Data { .. })
                            && !event.outcome.ok()
                    }
                }
            })
            .take(8)
            .collect();
        let Some(&first) = events.first() else {
            continue;
        };
        let shown = at(history, *evidence.last().unwrap_or(&first));
        for (action, &count) in actions {
            let how = match action.as_str() {
                "family_revoked" => "and revoked its whole family",
                _ => "and accepted it",
            };
            for _ in 0..count {
                found.push(Anomaly {
                    kind: Kind::ExtraIdpCalls,
                    browser: shown.browser,
                    at: shown.completed,
                    summary: format!(
                        "{}: the IdP saw a refresh token of IdP session {sid} presented again after it was rotated ({count} time(s) so) {how}",
                        shown.browser
                    ),
                    facet: Some(REFRESH_TOKEN_REUSE.to_owned()),
                    evidence: evidence.clone(),
                });
            }
        }
    }
    (found, unattributed)
}

/// A token the ideal client holds: its scopes, until when it serves (Unix
/// seconds), and whether that moment is the real token's, shown by the
/// history, or estimated as the IdP stamps (whole seconds, down).
struct Ideal {
    scopes: BTreeSet<String>,
    until: f64,
    exact: bool,
}

impl Ideal {
    /// Whether it serves `scopes` at `when`. An estimate gets a second of
    /// slack: the app's own moment of decision is not recorded, and an
    /// estimated expiry must never run out before the real one (else the
    /// minimum could exceed what a perfect client needs).
    fn serves(&self, scopes: &BTreeSet<String>, when: f64) -> bool {
        let slack = if self.exact { 0.0 } else { SLACK_SECS };
        scopes.is_subset(&self.scopes) && self.until + slack > when
    }
}

/// The fewest token-endpoint calls the recorded sessions needed: a code
/// exchange per sign-in that landed, and a refresh each time a session used
/// a scope set its ideal cache held no good token for.
///
/// The ideal cache holds the real tokens where the history shows them: the
/// one a refresh got (where the app refreshed when the ideal client had
/// to), and the sign-in's own (shown by the first answer served from the
/// cache). Only tokens the app never showed are estimated. A perfect client
/// thus makes exactly the minimum, and calls over it are the app's.
pub fn minimum_token_calls(
    history: &History,
    by_browser: &[Vec<usize>],
    settings: &Settings,
    access_token_lifetime: std::time::Duration,
) -> u64 {
    let offset = settings.renewal_offset.as_secs_f64();
    let lifetime = access_token_lifetime.as_secs_f64() - offset;
    let mut calls = 0;
    for events in by_browser {
        let mut held: Vec<Ideal> = Vec::new();
        for &index in events {
            let event = at(history, index);
            match (&event.request, event.outcome.observed()) {
                (Request::SignIn, Some(Observed::SignedIn { .. })) if event.outcome.ok() => {
                    calls += 1;
                    // The code was exchanged before the answer, so this
                    // serves no shorter than the real token.
                    held = vec![Ideal {
                        scopes: BTreeSet::from(["profile".to_owned()]),
                        until: unix(settings, event.completed).floor() + lifetime,
                        exact: false,
                    }];
                }
                (Request::SignIn | Request::Logout, _) => held.clear(),
                (_, Some(observed @ Observed::Token { source, exp, .. })) if event.outcome.ok() => {
                    let scopes = scope_set(observed);
                    let when = unix(settings, event.invoked);
                    let shown_until = *exp as f64 - offset;
                    if !held.iter().any(|t| t.serves(&scopes, when)) {
                        calls += 1;
                        let (until, exact) = if *source == TokenSource::Refresh {
                            (shown_until, true)
                        } else {
                            (when.floor() + lifetime, false)
                        };
                        held.retain(|t| t.scopes.is_disjoint(&scopes));
                        held.push(Ideal {
                            scopes,
                            until,
                            exact,
                        });
                    } else {
                        // A token no later than the estimate is the one the
                        // estimate stands for (a newer one would outlive it).
                        for t in held
                            .iter_mut()
                            .filter(|t| !t.exact && t.scopes == scopes && shown_until <= t.until)
                        {
                            t.until = shown_until;
                            t.exact = true;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    calls
}
