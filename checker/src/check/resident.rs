//! orphan (in process): state an instance keeps in its own memory (sessions
//! in a memory store, accounts in its token cache) beyond what the browsers
//! that could still be signed in there account for. A process cannot be
//! looked into, only asked for counts (`/metrics`), so the bound is
//! generous: every browser still possibly signed in that sent this instance
//! a request since it last started may hold one session there, and its user
//! one account.
//! Each unit held beyond that bound is one anomaly, shown with a browser
//! whose session had certainly ended (logged out, or idle past the app's
//! timeout) and that this instance served: one of those the state is kept for.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use super::{Anomaly, Kind, at, secs};
use crate::history::{BrowserId, History, Micros, Request};

/// The orphan facet of sessions kept in an instance's memory store.
pub const MEMORY_SESSIONS: &str = "memory sessions";
/// The orphan facet of accounts kept in an instance's own token cache.
pub const TOKEN_CACHE: &str = "in-process token cache";

/// What one instance held in its own memory at the last look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// `app-1`, as events' `sent_to` names it.
    pub instance: String,
    /// Sessions in its memory store, when it keeps them there.
    pub sessions: Option<u64>,
    /// Accounts in its in-process token cache, when it has one.
    pub accounts: Option<u64>,
}

/// How a browser's session stood when the instances were last looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Possibly still signed in: the app may rightly keep its state.
    Live,
    /// Ended by a logout the app acknowledged (the event's index).
    LoggedOut(usize),
    /// Signed in, then unused for longer than the idle timeout: ended at
    /// that time, its last event's index given.
    Expired(usize, Micros),
    /// Never signed in.
    Never,
}

/// How long past a browser's last request its session has certainly ended:
/// the app's idle timeout counts from its last write, which is no later
/// than the last request, plus slack for timestamps in whole seconds.
pub fn certainly_expired_after(idle_timeout: Duration) -> Duration {
    idle_timeout + (idle_timeout / 10).max(Duration::from_secs(2))
}

fn standing(
    history: &History,
    events: &[usize],
    look: Micros,
    idle: Duration,
    absolute: Option<Duration>,
) -> Standing {
    let mut state = Standing::Never;
    let mut last = None;
    let mut signed_in_at = 0;
    for &index in events {
        let event = at(history, index);
        last = Some(index);
        match event.request {
            Request::SignIn if event.outcome.ok() || event.outcome.indeterminate() => {
                state = Standing::Live;
                signed_in_at = event.invoked;
            }
            Request::SignIn => state = Standing::Never,
            Request::Logout if event.outcome.ok() => state = Standing::LoggedOut(index),
            // The app no longer knew the session: nothing of it is live.
            _ if state == Standing::Live && event.outcome.status() == Some(401) => {
                state = Standing::Never;
            }
            _ => {}
        }
    }
    if let (Standing::Live, Some(last)) = (state, last) {
        let quiet_since = at(history, last).completed;
        let idle_ends = quiet_since + certainly_expired_after(idle).as_micros() as Micros;
        // However busy, a session ends its absolute timeout after it began.
        let absolute_ends =
            absolute.map(|a| signed_in_at + certainly_expired_after(a).as_micros() as Micros);
        let ends = absolute_ends.map_or(idle_ends, |a| a.min(idle_ends));
        if ends <= look {
            return Standing::Expired(last, ends);
        }
    }
    state
}

/// When each browser's sessions could be signed in, as [`standing`] would
/// tell at each moment: from a sign-in that landed (or whose outcome is
/// unknown) to an acknowledged logout, a failed sign-in, a 401, or the idle
/// or absolute timeout after it.
fn live_spans(
    history: &History,
    events: &[usize],
    idle: Duration,
    absolute: Option<Duration>,
) -> Vec<(Micros, Micros)> {
    let idle = certainly_expired_after(idle).as_micros() as Micros;
    let absolute = absolute.map(|a| certainly_expired_after(a).as_micros() as Micros);
    let mut spans = Vec::new();
    // The open span: its start, and when it ends unless used again.
    let mut open: Option<(Micros, Micros, Micros)> = None;
    let ends = |began: Micros, used: Micros| {
        let by_idle = used + idle;
        absolute.map_or(by_idle, |a| by_idle.min(began + a))
    };
    for &index in events {
        let event = at(history, index);
        if let Some((from, _, until)) = open
            && event.invoked >= until
        {
            spans.push((from, until));
            open = None;
        }
        match event.request {
            Request::SignIn if event.outcome.ok() || event.outcome.indeterminate() => {
                if let Some((from, _, _)) = open.take() {
                    spans.push((from, event.invoked));
                }
                open = Some((
                    event.invoked,
                    event.invoked,
                    ends(event.invoked, event.completed),
                ));
            }
            Request::SignIn => {
                if let Some((from, _, _)) = open.take() {
                    spans.push((from, event.invoked));
                }
            }
            Request::Logout if event.outcome.ok() => {
                if let Some((from, _, _)) = open.take() {
                    spans.push((from, event.completed));
                }
            }
            _ if event.outcome.status() == Some(401) => {
                if let Some((from, _, _)) = open.take() {
                    spans.push((from, event.invoked));
                }
            }
            _ => {
                if let Some((from, began, _)) = open {
                    open = Some((from, began, ends(began, event.completed)));
                }
            }
        }
    }
    if let Some((from, _, until)) = open {
        spans.push((from, until));
    }
    spans
}

/// How many browsers could be signed in at each of `times` (sorted or not).
pub fn live_at(
    history: &History,
    times: &[Micros],
    idle: Duration,
    absolute: Option<Duration>,
) -> Vec<u64> {
    // +1 where a span begins, -1 where it ends; swept once over sorted times.
    let mut edges: Vec<(Micros, i64)> = Vec::new();
    for events in history.by_browser() {
        for (from, until) in live_spans(history, &events, idle, absolute) {
            if until > from {
                edges.push((from, 1));
                edges.push((until, -1));
            }
        }
    }
    edges.sort_unstable();
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&i| times[i]);
    let mut counts = vec![0; times.len()];
    let (mut live, mut next) = (0i64, 0);
    for i in order {
        while next < edges.len() && edges[next].0 <= times[i] {
            live += edges[next].1;
            next += 1;
        }
        counts[i] = live.max(0) as u64;
    }
    counts
}

/// How the browsers' sessions stood at the last look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endings {
    /// Possibly still signed in: signed in, not logged out, not told their
    /// session was unknown, and used within the idle timeout.
    pub live: u64,
    pub logged_out: u64,
    /// Signed in, then unused past the idle timeout (left without logout).
    pub expired: u64,
}

/// A user none of whose browsers could still be signed in: how the last of
/// their sessions ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gone {
    pub browser: BrowserId,
    pub ended_at: Micros,
    pub logged_out: bool,
    /// That browser's last sign-in and the event that ended it (the logout,
    /// or the last request before the session expired).
    pub evidence: Vec<usize>,
}

/// Every browser's standing at one look, worked out once from the history.
pub struct Standings<'h> {
    history: &'h History,
    by_browser: Vec<Vec<usize>>,
    of: Vec<Standing>,
}

impl<'h> Standings<'h> {
    /// How each browser of `history` stood at `look`, sessions ending
    /// `idle` after their last use.
    pub fn new(history: &'h History, look: Micros, idle: Duration) -> Self {
        Self::with_timeouts(history, look, idle, None)
    }

    /// As [`Standings::new`], sessions also ending `absolute` after they
    /// began, when the app has such a timeout.
    pub fn with_timeouts(
        history: &'h History,
        look: Micros,
        idle: Duration,
        absolute: Option<Duration>,
    ) -> Self {
        let by_browser = history.by_browser();
        let of = by_browser
            .iter()
            .map(|events| standing(history, events, look, idle, absolute))
            .collect();
        Self {
            history,
            by_browser,
            of,
        }
    }

    fn user(&self, browser: usize) -> Option<&'h str> {
        self.history.browsers.get(browser).map(|i| i.user.as_str())
    }

    pub fn endings(&self) -> Endings {
        let mut endings = Endings::default();
        for standing in &self.of {
            match standing {
                Standing::Live => endings.live += 1,
                Standing::LoggedOut(_) => endings.logged_out += 1,
                Standing::Expired(..) => endings.expired += 1,
                Standing::Never => {}
            }
        }
        endings
    }

    /// Users with a browser that could still be signed in.
    pub fn live_users(&self) -> HashSet<String> {
        (0..self.of.len())
            .filter(|&b| self.of[b] == Standing::Live)
            .filter_map(|b| self.user(b).map(str::to_owned))
            .collect()
    }

    /// Every user who had a session and has none left.
    pub fn gone_users(&self) -> BTreeMap<String, Gone> {
        let history = self.history;
        let live = self.live_users();
        let mut gone: BTreeMap<String, Gone> = BTreeMap::new();
        for (b, events) in self.by_browser.iter().enumerate() {
            let Some(user) = self.user(b) else {
                continue;
            };
            let (last, ended_at, logged_out) = match self.of[b] {
                Standing::LoggedOut(i) => (i, at(history, i).completed, true),
                Standing::Expired(i, ends) => (i, ends, false),
                Standing::Live | Standing::Never => continue,
            };
            if live.contains(user) || gone.get(user).is_some_and(|g| g.ended_at >= ended_at) {
                continue;
            }
            let upto = events.iter().position(|&e| e == last).unwrap_or(0);
            let sign_in = events[..upto].iter().rev().copied().find(|&i| {
                let event = at(history, i);
                event.request == Request::SignIn && event.outcome.ok()
            });
            gone.insert(
                user.to_owned(),
                Gone {
                    browser: at(history, last).browser,
                    ended_at,
                    logged_out,
                    evidence: sign_in.into_iter().chain([last]).collect(),
                },
            );
        }
        gone
    }

    /// The anomalies: for each instance, what it held beyond its bound.
    pub fn check(&self, held: &[Held]) -> Vec<Anomaly> {
        let (history, by_browser, standings) = (self.history, &self.by_browser, &self.of);
        // Users with a browser that could still be signed in, anywhere.
        let anywhere_live = self.live_users();
        let mut found = Vec::new();
        for instance in held {
            // Browsers this instance served since it last started (a restart
            // or crash wiped what it held of the others), and how each stands.
            let since = last_started(history, &instance.instance);
            let served_here = |i: usize| {
                let event = at(history, i);
                event.sent_to == instance.instance && event.invoked >= since
            };
            let served: BTreeSet<usize> = by_browser
                .iter()
                .enumerate()
                .filter(|(_, events)| events.iter().any(|&i| served_here(i)))
                .map(|(browser, _)| browser)
                .collect();
            let user = |b: usize| self.user(b);
            let live: BTreeSet<usize> = served
                .iter()
                .copied()
                .filter(|&b| standings[b] == Standing::Live)
                .collect();
            let live_users: BTreeSet<&str> = live.iter().filter_map(|&b| user(b)).collect();
            // Ended browsers it served, earliest ending first; for accounts,
            // only users with no browser possibly live anywhere.
            let mut ended: Vec<(Micros, usize, usize)> = served
                .iter()
                .filter_map(|&b| match standings[b] {
                    Standing::LoggedOut(i) => Some((at(history, i).completed, b, i)),
                    Standing::Expired(i, ends) => Some((ends, b, i)),
                    Standing::Live | Standing::Never => None,
                })
                .collect();
            ended.sort_unstable();
            let mut gone_here: BTreeMap<&str, (Micros, usize, usize)> = BTreeMap::new();
            for &(ends, b, i) in &ended {
                if let Some(u) = user(b).filter(|u| !anywhere_live.contains(*u)) {
                    // The user's last browser to end is when they were gone.
                    gone_here.insert(u, (ends, b, i));
                }
            }
            let mut gone: Vec<(Micros, usize, usize)> = gone_here.into_values().collect();
            gone.sort_unstable();

            if let Some(sessions) = instance.sessions {
                let beyond = sessions.saturating_sub(live.len() as u64);
                let head = format!(
                    "{} holds {sessions} sessions in memory, {beyond} more than the {} \
                     browsers that could still be signed in there",
                    instance.instance,
                    live.len()
                );
                found.extend(beyond_bound(
                    history,
                    by_browser,
                    beyond,
                    &ended,
                    &served_here,
                    &head,
                    MEMORY_SESSIONS,
                ));
            }
            if let Some(accounts) = instance.accounts {
                let beyond = accounts.saturating_sub(live_users.len() as u64);
                let head = format!(
                    "{} holds tokens of {accounts} accounts in memory, {beyond} more than the \
                     {} users that could still be signed in there",
                    instance.instance,
                    live_users.len()
                );
                found.extend(beyond_bound(
                    history,
                    by_browser,
                    beyond,
                    &gone,
                    &served_here,
                    &head,
                    TOKEN_CACHE,
                ));
            }
        }
        found
    }
}

/// When `instance` last (re)started (a restart, or the start after a crash,
/// done), or 0: its memory holds nothing from before.
fn last_started(history: &History, instance: &str) -> Micros {
    history
        .faults
        .iter()
        .filter(|step| step.error.is_none())
        .filter(|step| {
            let mut words = step.action.split_whitespace();
            words
                .next()
                .is_some_and(|w| w == "instance-restart" || w == "instance-start")
                && words.next() == Some(instance)
        })
        .map(|step| step.at + step.took)
        .max()
        .unwrap_or(0)
}

/// `beyond` anomalies, each naming one of `ended` (cycling when there are
/// fewer ended browsers than units: a unit may be kept for any of them).
fn beyond_bound(
    history: &History,
    by_browser: &[Vec<usize>],
    beyond: u64,
    ended: &[(Micros, usize, usize)],
    served_here: &dyn Fn(usize) -> bool,
    head: &str,
    facet: &str,
) -> Vec<Anomaly> {
    if beyond == 0 {
        return Vec::new();
    }
    if ended.is_empty() {
        // Beyond the bound, yet no browser it served has ended: the state
        // is kept for nobody the history can name (sign-ins that never
        // finished, say). Still one anomaly per unit, shown with the last
        // request the instance served.
        let Some(last) = (0..history.events.len()).rev().find(|&i| served_here(i)) else {
            return Vec::new();
        };
        let event = at(history, last);
        return (0..beyond)
            .map(|_| Anomaly {
                kind: Kind::Orphan,
                browser: event.browser,
                at: event.completed,
                summary: format!("{head}; no browser it served has ended"),
                facet: Some(facet.to_owned()),
                evidence: vec![last],
            })
            .collect();
    }
    (0..beyond as usize)
        .map(|n| {
            let (ends, browser, last) = ended[n % ended.len()];
            let event = at(history, last);
            let how = match event.request {
                Request::Logout => format!("logged out at {}", secs(event.completed)),
                _ => format!(
                    "was last used at {} and had expired by {}",
                    secs(event.completed),
                    secs(ends)
                ),
            };
            let first_here = by_browser
                .get(browser)
                .and_then(|events| events.iter().copied().find(|&i| served_here(i)))
                .unwrap_or(last);
            Anomaly {
                kind: Kind::Orphan,
                browser: event.browser,
                at: ends,
                summary: format!("{head}; {} (served there) {how}", event.browser),
                facet: Some(facet.to_owned()),
                evidence: if first_here == last {
                    vec![last]
                } else {
                    vec![first_here, last]
                },
            }
        })
        .collect()
}
