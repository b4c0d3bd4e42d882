//! lost-update and stale-read, from the cart: each browser writes items only
//! it writes (unique ids), so every successful read says which acknowledged
//! writes it reflects.
//!
//! Within one session (sign-in to logout or loss), an item acknowledged
//! before a read started must be in that read. Missing, and never seen again
//! in a later read of the session: a lost update. Missing, but back in a later
//! read: a stale read. So is a session version lower than one already seen
//! by a request that completed before this one started.

use std::collections::HashMap;

use super::{Anomaly, Kind, at, secs};
use crate::history::{Event, History, Micros, Observed, Request};

/// A read of the cart: a `GET /cart`, or the items a `POST /cart` returned.
struct Read {
    index: usize,
    invoked: Micros,
    completed: Micros,
    items: Vec<u32>,
}

/// One session of one browser: what it wrote and read.
#[derive(Default)]
struct Session {
    /// Item -> the write that acknowledged it.
    acknowledged: HashMap<u32, usize>,
    reads: Vec<Read>,
    /// Every answer's session version: (invoked, completed, version, event).
    versions: Vec<(Micros, Micros, u64, usize)>,
}

pub fn check(history: &History, by_browser: &[Vec<usize>]) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for events in by_browser {
        let mut session = Session::default();
        for &index in events {
            let event = at(history, index);
            // A sign-in, even one whose outcome is unknown, may have replaced
            // the session: nothing is compared across it.
            let starts_new = match &event.request {
                Request::SignIn => true,
                Request::Logout => event.outcome.ok(),
                _ => event.outcome.status() == Some(401),
            };
            if starts_new {
                found.extend(session_anomalies(history, &session));
                session = Session::default();
                continue;
            }
            if !event.outcome.ok() {
                continue;
            }
            if let Some(version) = event.outcome.session_version() {
                session
                    .versions
                    .push((event.invoked, event.completed, version, index));
            }
            if let Request::CartWrite { item } = &event.request {
                session.acknowledged.insert(*item, index);
            }
            if let Some(Observed::Cart { items, .. }) = event.outcome.observed() {
                session.reads.push(Read {
                    index,
                    invoked: event.invoked,
                    completed: event.completed,
                    items: items.clone(),
                });
            }
        }
        found.extend(session_anomalies(history, &session));
    }
    found
}

fn session_anomalies(history: &History, session: &Session) -> Vec<Anomaly> {
    let mut found = Vec::new();
    let mut reported_lost = std::collections::HashSet::new();
    for (n, read) in session.reads.iter().enumerate() {
        let mut missing: Vec<(u32, usize)> = session
            .acknowledged
            .iter()
            .filter(|&(item, &write)| {
                at(history, write).completed < read.invoked && !read.items.contains(item)
            })
            .map(|(&item, &write)| (item, write))
            .collect();
        missing.sort_unstable();
        let mut stale = Vec::new();
        for (item, write) in missing {
            let back_later = session.reads[n + 1..]
                .iter()
                .find(|later| later.invoked > read.completed && later.items.contains(&item));
            match back_later {
                Some(later) => stale.push((item, write, later.index)),
                None if reported_lost.insert(item) => {
                    found.push(cart_anomaly(
                        Kind::LostUpdate,
                        at(history, read.index),
                        format!(
                            "item {item}, acknowledged at {}, is missing from a read that started at {} and from every later read of the session",
                            secs(at(history, write).completed),
                            secs(read.invoked)
                        ),
                        vec![write, read.index],
                    ));
                }
                None => {}
            }
        }
        if let Some(&(item, write, later)) = stale.first() {
            found.push(cart_anomaly(
                Kind::StaleRead,
                at(history, read.index),
                format!(
                    "a read that started at {} does not show item {item} acknowledged at {}; a later read does{}",
                    secs(read.invoked),
                    secs(at(history, write).completed),
                    if stale.len() > 1 {
                        format!(" ({} items so)", stale.len())
                    } else {
                        String::new()
                    }
                ),
                vec![write, read.index, later],
            ));
        }
    }
    // Versions never go back: an answer to a request that started after
    // another completed carries at least that one's version.
    let mut by_completion = session.versions.clone();
    by_completion.sort_by_key(|&(_, completed, _, _)| completed);
    let mut highest: Option<(Micros, u64, usize)> = None;
    let mut by_invocation = session.versions.clone();
    by_invocation.sort_by_key(|&(invoked, _, _, _)| invoked);
    let mut seen = by_completion.iter().peekable();
    for &(invoked, _, version, index) in &by_invocation {
        while let Some(&&(_, completed, v, i)) = seen.peek() {
            if completed >= invoked {
                break;
            }
            if highest.is_none_or(|(_, h, _)| v > h) {
                highest = Some((completed, v, i));
            }
            seen.next();
        }
        if let Some((_, before, earlier)) = highest
            && version < before
        {
            found.push(cart_anomaly(
                Kind::StaleRead,
                at(history, index),
                format!("session version {version}, after version {before} was already answered"),
                vec![earlier, index],
            ));
        }
    }
    found
}

fn cart_anomaly(kind: Kind, event: &Event, summary: String, evidence: Vec<usize>) -> Anomaly {
    Anomaly {
        kind,
        browser: event.browser,
        at: event.completed,
        summary: format!("{}: {summary}", event.browser),
        facet: None,
        evidence,
    }
}
