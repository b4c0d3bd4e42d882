//! lost-update and stale-read, from the cart, with Jepsen's set-full
//! semantics and Terry et al.'s session guarantees as facets. Each browser
//! writes items only it writes (unique ids), so every cart read (a
//! `GET /cart`, or the items a `POST /cart` answered with) says which items
//! it reflects.
//!
//! Within one session (sign-in to logout or a 401):
//! - An item is **known** from its write's acknowledgement or from the first
//!   read that shows it, whichever completes first: a write whose outcome is
//!   unknown (timeout, lost connection, 5xx) counts from the moment a read
//!   shows it, and until then is no anomaly either way.
//! - A read that began after an item was known and does not show it
//!   **misses** it. Such a miss is a **stale read** when a read that began
//!   after the missing one completed shows the item again; the item is
//!   **lost** when it is missed for good, confirmed: a read that began after
//!   a missing one completed misses it too, and no read after shows it.
//! - A miss by the session's last read (nothing began after it completed)
//!   can be neither told lost nor back: the session ended first (a logout,
//!   an expiry, the run's end). It is a stale read (the read did not show
//!   what was known before it began), never a lost update.
//!
//! Each miss is named for the session guarantee it breaks:
//! - `monotonic-writes`: the read shows an item written after the missing
//!   one was acknowledged (the later write was applied without the earlier);
//! - `writes-follow-reads`: the same, where the missing item was known from
//!   a read rather than acknowledged (a write after a read must follow what
//!   the read saw);
//! - `monotonic-reads`: the missing item was known from an earlier read;
//! - `read-your-writes`: the missing item was known from its acknowledgement.
//!
//! A session version lower than one already answered to a request that
//! completed before this one began is a stale read too (`monotonic-reads`).
//!
//! The work is linear in the size of the reads: each read's items are
//! looked up once, and the items it should show are listed only when it
//! shows fewer of them than were known.

use std::collections::HashMap;

use super::{Anomaly, Kind, at, secs, starts_session};
use crate::history::{Event, History, Micros, Observed, Request};

/// The facet of a miss that breaks read-your-writes.
pub const READ_YOUR_WRITES: &str = "read-your-writes";
/// The facet of a miss (or a version) that breaks monotonic reads.
pub const MONOTONIC_READS: &str = "monotonic-reads";
/// The facet of a miss that breaks monotonic writes.
pub const MONOTONIC_WRITES: &str = "monotonic-writes";
/// The facet of a miss that breaks writes-follow-reads.
pub const WRITES_FOLLOW_READS: &str = "writes-follow-reads";

/// A read of the cart.
struct Read<'h> {
    index: usize,
    invoked: Micros,
    completed: Micros,
    items: &'h [u32],
}

/// What the session knows of one item.
struct Item {
    id: u32,
    /// The write that sent it (any outcome), and when it was invoked.
    write: Option<(usize, Micros)>,
    /// When its write was acknowledged, and that write.
    acked: Option<(Micros, usize)>,
    /// The earliest-completing read that showed it (completion, read position).
    first_seen: Option<(Micros, usize)>,
    /// The latest-invoked read that showed it (invocation, read position).
    last_seen: Option<(Micros, usize)>,
    /// Reads (positions) that began after it was known and did not show it.
    misses: Vec<usize>,
    /// The guarantee each miss breaks, beside `misses`.
    broken: Vec<&'static str>,
}

impl Item {
    /// When it became known, if it did.
    fn known_at(&self) -> Option<Micros> {
        match (self.acked, self.first_seen) {
            (Some((a, _)), Some((s, _))) => Some(a.min(s)),
            (Some((a, _)), None) => Some(a),
            (None, Some((s, _))) => Some(s),
            (None, None) => None,
        }
    }

    /// Whether it became known from its acknowledgement (not a read).
    fn by_ack(&self) -> bool {
        match (self.acked, self.first_seen) {
            (Some((a, _)), Some((s, _))) => a <= s,
            (acked, _) => acked.is_some(),
        }
    }
}

/// One session of one browser: its cart writes, reads and versions.
#[derive(Default)]
struct Session<'h> {
    /// Cart writes, any outcome: (item, event, invoked, acknowledged at).
    writes: Vec<(u32, usize, Micros, Option<Micros>)>,
    reads: Vec<Read<'h>>,
    /// Every good answer's session version: (invoked, completed, version, event).
    versions: Vec<(Micros, Micros, u64, usize)>,
}

pub fn check(history: &History, by_browser: &[Vec<usize>]) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for events in by_browser {
        let mut session = Session::default();
        for &index in events {
            let event = at(history, index);
            // Nothing is compared across sessions.
            if starts_session(event) {
                found.extend(session_anomalies(history, &session));
                session = Session::default();
                continue;
            }
            if let Request::CartWrite { item } = &event.request {
                let acked = event.outcome.ok().then_some(event.completed);
                session.writes.push((*item, index, event.invoked, acked));
            }
            if !event.outcome.ok() {
                continue;
            }
            if let Some(version) = event.outcome.session_version() {
                session
                    .versions
                    .push((event.invoked, event.completed, version, index));
            }
            if let Some(Observed::Cart { items, .. }) = event.outcome.observed() {
                session.reads.push(Read {
                    index,
                    invoked: event.invoked,
                    completed: event.completed,
                    items,
                });
            }
        }
        found.extend(session_anomalies(history, &session));
    }
    found
}

fn session_anomalies(history: &History, session: &Session<'_>) -> Vec<Anomaly> {
    let mut found = Vec::new();
    let mut reads: Vec<&Read<'_>> = session.reads.iter().collect();
    reads.sort_by_key(|r| (r.invoked, r.index));
    let (mut items, slot) = items_of(session, &reads);

    // The items by when they became known; a read is expected to show those
    // known before it began.
    let mut by_known: Vec<(Micros, usize)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.known_at().map(|k| (k, i)))
        .collect();
    by_known.sort_unstable();
    // The last read that showed each item (by stamp), to tell what a read lacks.
    let mut stamp = vec![usize::MAX; items.len()];
    let mut known = 0;
    for (position, read) in reads.iter().enumerate() {
        while known < by_known.len() && by_known[known].0 < read.invoked {
            known += 1;
        }
        let mut shown = 0;
        let mut latest_write: Option<Micros> = None;
        for item in read.items {
            let Some(&i) = slot.get(item) else { continue };
            if stamp[i] == position {
                continue;
            }
            stamp[i] = position;
            if items[i].known_at().is_some_and(|k| k < read.invoked) {
                shown += 1;
            }
            if let Some((_, invoked)) = items[i].write {
                latest_write = latest_write.max(Some(invoked));
            }
        }
        if shown == known {
            continue;
        }
        for &(known_at, i) in &by_known[..known] {
            if stamp[i] == position {
                continue;
            }
            let item = &mut items[i];
            let broken = match latest_write {
                Some(later) if known_at <= later && item.by_ack() => MONOTONIC_WRITES,
                Some(later) if known_at <= later => WRITES_FOLLOW_READS,
                _ if item.by_ack() => READ_YOUR_WRITES,
                _ => MONOTONIC_READS,
            };
            item.misses.push(position);
            item.broken.push(broken);
        }
    }

    // Each miss: back later (stale), or one of the misses for good.
    let mut stale_by_read: HashMap<usize, Vec<Stale>> = HashMap::new();
    for item in &items {
        if item.misses.is_empty() {
            continue;
        }
        let mut for_good = Vec::new();
        for (&position, &broken) in item.misses.iter().zip(&item.broken) {
            let read = reads[position];
            let back = item
                .last_seen
                .is_some_and(|(invoked, _)| invoked > read.completed);
            if back {
                stale_by_read.entry(position).or_default().push(Stale {
                    item,
                    broken,
                    back: true,
                });
            } else {
                for_good.push((position, broken));
            }
        }
        let Some(&(first, broken)) = for_good.first() else {
            continue;
        };
        let confirmed = for_good
            .iter()
            .find(|&&(p, _)| reads[p].invoked > reads[first].completed);
        match confirmed {
            Some(&(confirming, _)) => {
                found.push(lost(
                    history,
                    item,
                    reads[first],
                    reads[confirming],
                    broken,
                    &reads,
                ));
            }
            // Only the session's last read(s) miss it: lost or stale cannot
            // be told, and the read is stale either way.
            None => {
                for &(position, broken) in &for_good {
                    stale_by_read.entry(position).or_default().push(Stale {
                        item,
                        broken,
                        back: false,
                    });
                }
            }
        }
    }
    let mut stale: Vec<(usize, Vec<Stale>)> = stale_by_read.into_iter().collect();
    stale.sort_unstable_by_key(|(position, _)| *position);
    for (position, mut missing) in stale {
        missing.sort_unstable_by_key(|s| s.item.id);
        found.push(stale_read(history, &reads, position, &missing));
    }
    found.extend(version_regressions(history, session));
    found
}

/// A miss that is not (or cannot be told) a loss.
struct Stale<'i> {
    item: &'i Item,
    broken: &'static str,
    /// Shown again by a later read; else missed by the session's last read.
    back: bool,
}

/// The session's items, and each item's place among them.
fn items_of(session: &Session<'_>, reads: &[&Read<'_>]) -> (Vec<Item>, HashMap<u32, usize>) {
    let mut items: Vec<Item> = Vec::new();
    let mut slot: HashMap<u32, usize> = HashMap::new();
    let mut item_at = |id: u32, items: &mut Vec<Item>| -> usize {
        *slot.entry(id).or_insert_with(|| {
            items.push(Item {
                id,
                write: None,
                acked: None,
                first_seen: None,
                last_seen: None,
                misses: Vec::new(),
                broken: Vec::new(),
            });
            items.len() - 1
        })
    };
    for &(id, index, invoked, acked) in &session.writes {
        let i = item_at(id, &mut items);
        let item = &mut items[i];
        if item.write.is_none() {
            item.write = Some((index, invoked));
        }
        if let Some(acked) = acked
            && item.acked.is_none_or(|(a, _)| acked < a)
        {
            item.acked = Some((acked, index));
        }
    }
    for (position, read) in reads.iter().enumerate() {
        for &id in read.items {
            let i = item_at(id, &mut items);
            let item = &mut items[i];
            if item.first_seen.is_none_or(|(c, _)| read.completed < c) {
                item.first_seen = Some((read.completed, position));
            }
            if item
                .last_seen
                .is_none_or(|(invoked, _)| invoked <= read.invoked)
            {
                item.last_seen = Some((read.invoked, position));
            }
        }
    }
    (items, slot)
}

/// How an item became known, in words, and the event that made it known.
fn known_by(item: &Item, reads: &[&Read<'_>]) -> (String, Option<usize>) {
    let known_at = item.known_at().unwrap_or(0);
    match (item.by_ack(), item.acked, item.first_seen) {
        (true, Some((_, write)), _) => (format!("acknowledged at {}", secs(known_at)), Some(write)),
        (_, _, Some((_, position))) => (
            format!("first seen by a read that completed at {}", secs(known_at)),
            Some(reads[position].index),
        ),
        _ => (format!("known at {}", secs(known_at)), None),
    }
}

fn lost(
    history: &History,
    item: &Item,
    first: &Read<'_>,
    confirming: &Read<'_>,
    broken: &'static str,
    reads: &[&Read<'_>],
) -> Anomaly {
    let (how, known) = known_by(item, reads);
    cart_anomaly(
        Kind::LostUpdate,
        at(history, first.index),
        format!(
            "item {}, {how}, is missing from a read that started at {} and from every read after (the one that started at {} too)",
            item.id,
            secs(first.invoked),
            secs(confirming.invoked)
        ),
        broken,
        known
            .into_iter()
            .chain([first.index, confirming.index])
            .collect(),
    )
}

fn stale_read(
    history: &History,
    reads: &[&Read<'_>],
    position: usize,
    missing: &[Stale<'_>],
) -> Anomaly {
    let read = reads[position];
    let first = &missing[0];
    let (how, known) = known_by(first.item, reads);
    // The last read that showed it: one that began after this one completed.
    let later = first
        .item
        .last_seen
        .filter(|_| first.back)
        .map(|(_, shown)| reads[shown].index);
    let outcome = if first.back {
        "a later read shows it"
    } else {
        "no read began after this one completed (the session or the run ended first), so lost and stale cannot be told; the read is stale either way"
    };
    let more = if missing.len() > 1 {
        format!(" ({} items so)", missing.len())
    } else {
        String::new()
    };
    cart_anomaly(
        Kind::StaleRead,
        at(history, read.index),
        format!(
            "a read that started at {} does not show item {}, {how}; {outcome}{more}",
            secs(read.invoked),
            first.item.id,
        ),
        first.broken,
        known.into_iter().chain([read.index]).chain(later).collect(),
    )
}

/// Versions never go back: an answer to a request that started after
/// another completed carries at least that one's version.
fn version_regressions(history: &History, session: &Session<'_>) -> Vec<Anomaly> {
    let mut found = Vec::new();
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
                MONOTONIC_READS,
                vec![earlier, index],
            ));
        }
    }
    found
}

fn cart_anomaly(
    kind: Kind,
    event: &Event,
    summary: String,
    facet: &'static str,
    evidence: Vec<usize>,
) -> Anomaly {
    Anomaly {
        kind,
        browser: event.browser,
        at: event.completed,
        summary: format!("{}: {summary}", event.browser),
        facet: Some(facet.to_owned()),
        evidence,
    }
}
