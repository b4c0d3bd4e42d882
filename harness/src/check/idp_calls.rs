//! Token-endpoint calls against what the run needed: extra-idp-calls is a
//! refresh made while the session already held a good token for those
//! scopes; the minimum is one code exchange per sign-in plus one refresh per
//! access-token lifetime a session actually used, per scope set.
//!
//! Both follow MSAL's cache rules: a token serves any subset of its scopes
//! until `renewal_offset` before it expires, and storing a new token drops
//! the cached ones whose scopes intersect its own.

use std::collections::BTreeSet;

use super::{Anomaly, Kind, Settings, at, secs};
use crate::history::{Event, History, Observed, Request};
use contract::TokenSource;

/// A second of slack on every expiry comparison: the app stamps tokens in
/// whole seconds and decides a moment before the history records.
const SLACK_SECS: f64 = 1.0;

/// A cached token: its scopes, until when (Unix seconds) it serves, and
/// the event that showed it.
struct Cached {
    scopes: BTreeSet<String>,
    until: f64,
    shown_by: usize,
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
            let Some(observed @ Observed::Token { source, exp, .. }) = event.outcome.observed()
            else {
                continue;
            };
            if !event.outcome.ok() {
                continue;
            }
            let scopes = scope_set(observed);
            let when = unix(settings, event.invoked);
            // Extra only when the cached token was clearly still good.
            if *source == TokenSource::Refresh
                && let Some(good) = cache.serving(&scopes, when, SLACK_SECS)
            {
                found.push(extra(history, event, index, good, when));
            }
            let token = Cached {
                scopes,
                until: *exp as f64 - offset,
                shown_by: index,
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
            "{} refreshed at {} although the token it used at {} was good for {:.0} s more",
            event.browser,
            secs(event.invoked),
            secs(shown.invoked),
            good.until - when
        ),
        facet: None,
        evidence: vec![good.shown_by, index],
    }
}

/// The fewest token-endpoint calls the recorded sessions needed: a code
/// exchange per sign-in that landed, and a refresh each time a session used
/// a scope set its ideal cache held no good token for.
pub fn minimum_token_calls(
    history: &History,
    by_browser: &[Vec<usize>],
    settings: &Settings,
    access_token_lifetime: std::time::Duration,
) -> u64 {
    let lifetime = access_token_lifetime.as_secs_f64() - settings.renewal_offset.as_secs_f64();
    let mut calls = 0;
    for events in by_browser {
        let mut cache = Cache::default();
        for &index in events {
            let event = at(history, index);
            match (&event.request, event.outcome.observed()) {
                (Request::SignIn, Some(Observed::SignedIn { .. })) if event.outcome.ok() => {
                    calls += 1;
                    cache = Cache::default();
                    cache.store(Cached {
                        scopes: BTreeSet::from(["profile".to_owned()]),
                        until: unix(settings, event.completed) + lifetime,
                        shown_by: index,
                    });
                }
                (Request::SignIn | Request::Logout, _) => cache = Cache::default(),
                (_, Some(observed @ Observed::Token { .. })) if event.outcome.ok() => {
                    let scopes = scope_set(observed);
                    let when = unix(settings, event.invoked);
                    // Needed only when the ideal token had clearly run out.
                    if cache.serving(&scopes, when, -SLACK_SECS).is_none() {
                        calls += 1;
                        cache.store(Cached {
                            scopes,
                            until: when + lifetime,
                            shown_by: index,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    calls
}
