//! Tombstones a delete could not copy to Redis, written again once Redis
//! answers, so an ended session's copy does not outlive the outage.
//!
//! A delete that commits in Postgres and then fails to write its tombstone
//! (Redis down, or the one node serving the key cut off or killed) covers
//! ([`super::coherence`]): the old copy is never served again. But it stays
//! in Redis, data and all, until its TTL: an ended session's tokens kept
//! where they should be gone (an orphan). So the tombstone is kept here and
//! written again, as it was (same version, same generation), every
//! [`RETRY_EVERY`] until Redis takes it.
//!
//! Writing it late is safe: it is exactly the write the delete made, as a
//! delete that was slow would make it. It lands only over an older copy
//! ([`super::copies`]), and it carries the generation the delete read, which
//! the failure moved on from, so it is never trusted as "absent" either: a
//! reader finds a miss and asks Postgres. Only tombstones of a known
//! version are kept: one "past whatever copy is there" could, written late,
//! land over a newer record's copy.
//!
//! What it does not cover: an instance that dies before Redis answers
//! again (its missed tombstones are lost with it; the copies expire with
//! their TTL), and a tombstone Redis acknowledged and then lost (a master
//! killed before it replicated the write): nothing failed, so nothing is kept.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::coherence::Coherence;
use super::copies::{Copies, CopyWrite};
use crate::store::breaker::Breaker;

/// How often the missed tombstones are tried again.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);

/// At most this many are kept (an outage of hours with many logouts must
/// not grow the instance without bound); beyond it, a new one is dropped
/// (counted), and its copy expires with its TTL.
const KEEP_AT_MOST: usize = 100_000;

/// A tombstone to write again: the version it deletes and the generation
/// its delete read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Missed {
    version: u64,
    generation: u64,
}

/// The missed tombstones of one tiered store, retried in the background
/// until the store is dropped.
pub struct MissedDeletes {
    missed: Mutex<Pending>,
    /// Where the counts show (the tier's metrics); none in unit tests.
    coherence: Option<Arc<Coherence>>,
}

#[derive(Default)]
struct Pending {
    by_key: HashMap<String, Missed>,
    /// Taken to be written, not yet written nor put back: still waiting.
    in_flight: usize,
    dropped: u64,
}

impl Pending {
    fn waiting(&self) -> usize {
        self.by_key.len() + self.in_flight
    }

    /// Keeps `missed` for `key` (of two, the later version, or the same
    /// version under the later generation, as Redis would keep), unless
    /// [`KEEP_AT_MOST`] are kept already.
    fn insert(&mut self, key: String, missed: Missed, most: usize) {
        let kept = self.by_key.len();
        match self.by_key.entry(key) {
            Entry::Occupied(mut entry) => {
                let current = entry.get_mut();
                if (missed.version, missed.generation) > (current.version, current.generation) {
                    *current = missed;
                }
            }
            Entry::Vacant(_) if kept >= most => {
                if self.dropped == 0 {
                    tracing::warn!(
                        "over {most} missed tombstones kept; further ones are dropped and their copies expire with their TTL"
                    );
                }
                self.dropped += 1;
            }
            Entry::Vacant(entry) => {
                entry.insert(missed);
            }
        }
    }
}

impl MissedDeletes {
    /// Starts retrying through `cache` onto `copies`; the counts show in
    /// `coherence`'s stats.
    pub fn start(copies: Arc<Copies>, cache: Arc<Breaker>, coherence: Arc<Coherence>) -> Arc<Self> {
        let this = Arc::new(Self {
            missed: Mutex::new(Pending::default()),
            coherence: Some(coherence),
        });
        tokio::spawn(retry_until_dropped(Arc::downgrade(&this), copies, cache));
        this
    }

    /// Keeps the tombstones among `writes` (a batch that failed) to write again.
    pub fn keep(&self, writes: &[CopyWrite<'_>]) {
        let mut pending = self.missed.lock();
        for write in writes {
            if let CopyWrite::Tombstone {
                key,
                version: Some(version),
                generation,
            } = *write
            {
                let missed = Missed {
                    version,
                    generation,
                };
                pending.insert(key.to_owned(), missed, KEEP_AT_MOST);
            }
        }
        self.show(&pending, 0);
    }

    /// Shows the counts in the tier's stats, with `written` more written.
    fn show(&self, pending: &Pending, written: u64) {
        if let Some(coherence) = &self.coherence {
            let stats = coherence.stats();
            let waiting = pending.waiting() as u64;
            stats
                .missed_deletes_waiting
                .store(waiting, Ordering::Relaxed);
            stats
                .missed_deletes_dropped
                .store(pending.dropped, Ordering::Relaxed);
            stats
                .missed_deletes_written
                .fetch_add(written, Ordering::Relaxed);
        }
    }

    /// How many wait to be written, and how many were dropped unwritten.
    pub fn counts(&self) -> (usize, u64) {
        let pending = self.missed.lock();
        (pending.waiting(), pending.dropped)
    }

    /// Takes every waiting tombstone to write; they count as waiting until
    /// written ([`Self::written`]) or put back.
    fn take(&self) -> Vec<(String, Missed)> {
        let mut pending = self.missed.lock();
        let taken: Vec<_> = std::mem::take(&mut pending.by_key).into_iter().collect();
        pending.in_flight += taken.len();
        taken
    }

    fn written(&self, count: usize) {
        let mut pending = self.missed.lock();
        pending.in_flight -= count;
        self.show(&pending, count as u64);
    }

    /// Puts back what could not be written, unless a newer one of the key came meanwhile.
    fn put_back(&self, batch: Vec<(String, Missed)>) {
        let mut pending = self.missed.lock();
        pending.in_flight -= batch.len();
        for (key, missed) in batch {
            pending.insert(key, missed, KEEP_AT_MOST);
        }
        self.show(&pending, 0);
    }
}

/// Tombstones written in one pipeline on a single server. A cluster takes
/// one at a time: a pipeline goes to one node, and keys of other sessions
/// sit in other slots.
const BATCH: usize = 256;

async fn retry_until_dropped(this: Weak<MissedDeletes>, copies: Arc<Copies>, cache: Arc<Breaker>) {
    let batch_size = if copies.link().is_cluster() { 1 } else { BATCH };
    loop {
        tokio::time::sleep(RETRY_EVERY).await;
        let Some(missed) = this.upgrade() else {
            return;
        };
        let all = missed.take();
        for batch in all.chunks(batch_size) {
            let writes: Vec<CopyWrite<'_>> = batch
                .iter()
                .map(|(key, m)| CopyWrite::Tombstone {
                    key,
                    version: Some(m.version),
                    generation: m.generation,
                })
                .collect();
            let written = cache
                .call(async {
                    copies
                        .write(&writes)
                        .await
                        .map_err(crate::store::redis::failed)
                })
                .await;
            match written {
                Ok(()) => {
                    tracing::debug!(count = batch.len(), "missed tombstones written");
                    missed.written(batch.len());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "missed tombstones not written yet");
                    missed.put_back(batch.to_vec());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tombstone(key: &str, version: Option<u64>, generation: u64) -> CopyWrite<'_> {
        CopyWrite::Tombstone {
            key,
            version,
            generation,
        }
    }

    fn pending() -> MissedDeletes {
        MissedDeletes {
            missed: Mutex::new(Pending::default()),
            coherence: None,
        }
    }

    fn kept(missed: &MissedDeletes) -> Vec<(String, u64, u64)> {
        let mut out: Vec<_> = missed
            .missed
            .lock()
            .by_key
            .iter()
            .map(|(k, m)| (k.clone(), m.version, m.generation))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn only_tombstones_of_a_known_version_are_kept_the_latest_per_key() {
        let missed = pending();
        missed.keep(&[
            tombstone("a", Some(3), 7),
            tombstone("b", None, 7),
            CopyWrite::Expire {
                key: "c",
                ttl: Duration::from_secs(1),
            },
            CopyWrite::Live {
                key: "d",
                data: b"x",
                version: 1,
                ttl: None,
                generation: 7,
                replace_same: false,
            },
        ]);
        missed.keep(&[tombstone("a", Some(2), 9), tombstone("e", Some(1), 7)]);
        missed.keep(&[tombstone("e", Some(1), 8)]);
        assert_eq!(
            kept(&missed),
            [("a".into(), 3, 7), ("e".into(), 1, 8)],
            "a's later version stays; e's same version under a later generation replaces it"
        );
        // What failed again goes back without undoing a newer one.
        let batch = missed.take();
        assert_eq!(
            missed.counts(),
            (2, 0),
            "taken to be written: still waiting"
        );
        missed.keep(&[tombstone("a", Some(4), 9)]);
        missed.put_back(batch);
        assert_eq!(kept(&missed), [("a".into(), 4, 9), ("e".into(), 1, 8)]);
        assert_eq!(missed.counts(), (2, 0));
        let batch = missed.take();
        missed.written(batch.len());
        assert_eq!(missed.counts(), (0, 0), "written: no longer waiting");
    }

    #[test]
    fn beyond_the_bound_new_ones_are_dropped_and_counted() {
        let missed = pending();
        let mut pending = missed.missed.lock();
        for key in ["k0", "k1", "k2", "k3"] {
            pending.insert(
                key.into(),
                Missed {
                    version: 1,
                    generation: 1,
                },
                3,
            );
        }
        // A kept key still takes a later version.
        pending.insert(
            "k1".into(),
            Missed {
                version: 2,
                generation: 1,
            },
            3,
        );
        drop(pending);
        assert_eq!(
            kept(&missed),
            [
                ("k0".into(), 1, 1),
                ("k1".into(), 2, 1),
                ("k2".into(), 1, 1)
            ]
        );
        assert_eq!(missed.counts(), (3, 1));
    }
}
