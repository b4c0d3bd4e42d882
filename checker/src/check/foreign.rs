//! cross-session-data: a cart that shows items its session never wrote.
//! Every browser names its items `b{browser}-{n}`, so a read tells its own
//! from another's: an item of another browser (of another user, facet
//! `other-user`, or another browser of the same person, `same-user`; named
//! by the app in a way the history cannot parse, `unnamed`), or one of
//! this browser's own items written in an earlier session of it (a cart
//! that outlived its logout, `own-earlier-session`).
//!
//! One anomaly per session and source (each other browser, or the
//! browser's own earlier sessions), at the first read that shows it: a
//! leaked cart shows on every later read, which would only repeat it.

use std::collections::{BTreeSet, HashMap};

use super::{Anomaly, Kind, at, secs, starts_session};
use crate::history::{BrowserId, History, Observed, Request};

/// Facet: an item of a browser of another user.
pub const OTHER_USER: &str = "other-user";
/// Facet: an item of another browser of the same user.
pub const SAME_USER: &str = "same-user";
/// Facet: an item this browser wrote in an earlier session.
pub const OWN_EARLIER_SESSION: &str = "own-earlier-session";
/// Facet: items not this browser's whose writer cannot be named.
pub const UNNAMED: &str = "unnamed";

/// Whose items a session saw: another browser, its own earlier sessions,
/// or writers it cannot name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Browser(BrowserId),
    Earlier,
    Unnamed,
}

/// `b7-3` as (browser 7, item 3).
fn parse(item: &str) -> Option<(BrowserId, u32)> {
    let (browser, n) = item.strip_prefix('b')?.split_once('-')?;
    Some((BrowserId(browser.parse().ok()?), n.parse().ok()?))
}

pub fn check(history: &History, by_browser: &[Vec<usize>]) -> Vec<Anomaly> {
    let mut writers: Option<HashMap<(BrowserId, u32), usize>> = None;
    let mut found = Vec::new();
    for events in by_browser {
        let mut session = 0u32;
        let mut signed_in: Option<usize> = None;
        // Each item this browser wrote, and the session it wrote it in.
        let mut written_in: HashMap<u32, u32> = HashMap::new();
        let mut seen: BTreeSet<Source> = BTreeSet::new();
        for &index in events {
            let event = at(history, index);
            if starts_session(event) {
                session += 1;
                seen.clear();
                signed_in =
                    (event.request == Request::SignIn && event.outcome.ok()).then_some(index);
                continue;
            }
            if let Request::CartWrite { item } = event.request {
                written_in.entry(item).or_insert(session);
            }
            let Some(Observed::Cart {
                items,
                foreign,
                others,
                ..
            }) = event.outcome.observed()
            else {
                continue;
            };
            if !event.outcome.ok() {
                continue;
            }
            let mut shown: Vec<(Source, String, Option<usize>)> = Vec::new();
            if !seen.contains(&Source::Earlier)
                && let Some(&item) = items
                    .iter()
                    .find(|item| written_in.get(item).is_some_and(|&s| s < session))
            {
                let write = events
                    .iter()
                    .copied()
                    .find(|&i| at(history, i).request == Request::CartWrite { item });
                shown.push((
                    Source::Earlier,
                    format!("its own item {item} of an earlier session"),
                    write,
                ));
            }
            let mut named = 0;
            for other in others {
                let Some((browser, item)) = parse(other) else {
                    continue;
                };
                named += 1;
                if seen.contains(&Source::Browser(browser))
                    || shown.iter().any(|(s, ..)| *s == Source::Browser(browser))
                {
                    continue;
                }
                let writers = writers.get_or_insert_with(|| all_writes(history));
                shown.push((
                    Source::Browser(browser),
                    format!("item {other}, {browser}'s"),
                    writers.get(&(browser, item)).copied(),
                ));
            }
            if *foreign as usize > named {
                shown.push((
                    Source::Unnamed,
                    format!("{} item(s) not its own", *foreign as usize - named),
                    None,
                ));
            }
            for (source, what, write) in shown {
                if !seen.insert(source) {
                    continue;
                }
                let facet = match source {
                    Source::Earlier => OWN_EARLIER_SESSION,
                    Source::Unnamed => UNNAMED,
                    Source::Browser(other) => {
                        let user = |b: BrowserId| history.browser(b).map(|i| i.user.as_str());
                        if user(other).is_some() && user(other) == user(event.browser) {
                            SAME_USER
                        } else {
                            OTHER_USER
                        }
                    }
                };
                found.push(Anomaly {
                    kind: Kind::CrossSessionData,
                    browser: event.browser,
                    at: event.completed,
                    summary: format!(
                        "{}: a cart read that completed at {} shows {what}",
                        event.browser,
                        secs(event.completed)
                    ),
                    facet: Some(facet.to_owned()),
                    evidence: signed_in.into_iter().chain(write).chain([index]).collect(),
                });
            }
        }
    }
    found
}

/// Every cart write, by its writer and item.
fn all_writes(history: &History) -> HashMap<(BrowserId, u32), usize> {
    history
        .events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e.request {
            Request::CartWrite { item } => Some(((e.browser, item), i)),
            _ => None,
        })
        .collect()
}
