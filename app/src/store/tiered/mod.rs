//! A cache tier (Redis) in front of a durable tier (Postgres): Postgres is
//! the truth and decides every write; in the normal state a read is served
//! by Redis alone, one round trip, no Postgres query.
//!
//! # How
//!
//! * **Writes** go to Postgres first (its compare-and-set decides), then the
//!   new version is copied to Redis ([`copies`]: a copy lands only over an
//!   older one). A delete leaves a tombstone in both. A write needs only
//!   Postgres: with Redis down, writes and sign-ins still succeed.
//! * **Reads** take the snapshot of this instance's view of the fleet's
//!   coherence record ([`coherence`]). When the view is *trusted* (its poll
//!   was sent less than `trust_for` ago, no instance is registered as
//!   degraded, and the Redis reply comes from the server process the record
//!   names), a copy carrying the view's generation is served as it is. A
//!   missing copy, or one of another generation, is read from Postgres and
//!   copied back. When the view is not trusted, a read asks Redis for the
//!   copies and Postgres for the versions at once, and serves a copy only
//!   when its version is Postgres's (the read costs the slower round trip).
//! * **Covering**: whenever an instance commits or reads a version in
//!   Postgres that it then fails to copy to Redis (Redis down, unreachable
//!   from it, a write that timed out), it registers itself as degraded in
//!   the record and does not answer until `trust_for` (plus a margin) after
//!   the registration was confirmed ([`coherence::Coherence::cover`]).
//!   It renews the registration with each poll while it lasts. When Redis
//!   answers it again it ends the registration and moves the generation on;
//!   a registration whose holder stops renewing it (a crash) is ended by the
//!   next poll of any instance, which also moves the generation on.
//! * **Missed deletes**: a tombstone that could not be copied is kept and
//!   written again, as it was, once Redis answers ([`missed_deletes`]), so
//!   the copy of a deleted record (an ended session's tokens) does not stay
//!   in Redis until its TTL.
//! * **Another Redis**: the link knows the `run_id` of the server process
//!   behind each reply. A server that restarted (empty, or from an older
//!   snapshot) or a replica promoted in a failover has another: replies from
//!   it are not trusted until an instance has adopted it in the record,
//!   which moves the generation on.
//!
//! # Why a trusted read is never stale
//!
//! Say a reader trusts a copy at version `v` of generation `G` at time `t`,
//! while Postgres holds a newer `v'` that was acknowledged, or shown to some
//! client, before `t`.
//! 1. The copy was written by an operation that read the view's generation
//!    `G` *before* it read or wrote `v` in Postgres. Had `v'` committed
//!    before that, the operation would have seen `v'` (or conflicted). So
//!    `v'` committed later, and its committer then copied it. That copy
//!    would have replaced `v`'s (copies land over older versions), so it
//!    failed (or never happened: the committer died; then `v'` was neither
//!    acknowledged nor shown, except by a reader of Postgres, which copies
//!    what it read or covers, the same case).
//! 2. So the committer covered before answering: registered at some `r`,
//!    and answered after `r + trust_for`. The reader's view came from a poll
//!    sent at `p` with no degraded instance and generation `G`: the poll
//!    preceded `r` (a later poll would have seen the registration, or the
//!    generation moved on when it ended). Then `t > r + trust_for > p +
//!    trust_for`, and the view was no longer trusted at `t`. Contradiction.
//! 3. A Redis that lost or rewound its data is another server process; its
//!    copies carry generations from before the adoption that moved it on.
//!
//! # What it does not cover
//!
//! * Clocks: each instance measures `trust_for` on its own monotonic clock;
//!   the argument needs those clocks to run at the same rate within
//!   [`coherence`]'s margin over one `trust_for` (true of any two machines
//!   not broken). Lease and registration expiry use Postgres's clock only.
//! * A process frozen (SIGSTOP, a VM pause) for longer than `trust_for`
//!   between reading its snapshot and serving a copy serves what was true
//!   when it froze; one frozen longer than [`crate::store::sql::TOMBSTONE_TTL`]
//!   between reading Postgres and copying a record deleted meanwhile could
//!   copy it back.
//! * A Redis that hides a failover behind one connection (a proxy): the
//!   run_id check sees one server. Redis must not evict keys (a tombstone
//!   evicted early lets a late copy of its record back): `maxmemory-policy
//!   noeviction`, or enough memory.
//! * Redis is trusted for freshness, not against an attacker who can write
//!   to it: encryption ([`super::encrypted`]) binds a ciphertext to its key
//!   and version, so a copy cannot be swapped for another record's or
//!   another version's, but a whole older copy written back is served until
//!   the generation moves on.
//! * While Postgres is unreachable from an instance, its view ages out after
//!   `trust_for`: its reads then fail (503) rather than serve unchecked copies.

pub mod coherence;
pub mod copies;
pub mod missed_deletes;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;

use self::coherence::{Coherence, CoherenceSettings};
use self::copies::{Copies, Copy, CopyWrite};
use self::missed_deletes::MissedDeletes;
use super::breaker::{Breaker, BreakerSettings};
use super::redis::RedisStore;
use super::redis_link::RedisLink;
use super::sql::{Durable, PostgresStore, TOMBSTONE_TTL, postgres_pool};
use super::{Expect, Fence, Record, Store, StoreError, StoreSize};

/// Redis copies of Postgres records, kept coherent across a fleet (see the module doc).
pub struct TieredStore {
    copies: Arc<Copies>,
    /// Tombstones that failed, written again once Redis answers.
    missed_deletes: Arc<MissedDeletes>,
    cache: Arc<Breaker>,
    durable: Arc<PostgresStore>,
    durable_breaker: Arc<Breaker>,
    coherence: Arc<Coherence>,
}

/// Where the two tiers are, and the protocol's settings.
pub struct TierSettings<'a> {
    pub redis: Arc<RedisLink>,
    pub redis_prefix: &'a str,
    pub database_url: &'a str,
    pub namespace: &'a str,
    /// Names this instance in the coherence record.
    pub instance: &'a str,
    pub breaker: BreakerSettings,
    pub coherence: CoherenceSettings,
}

impl TieredStore {
    /// Both tiers behind circuit breakers, and this instance's side of the
    /// coherence protocol started (it polls until the store is dropped).
    pub fn connect(settings: TierSettings<'_>) -> Result<Self, StoreError> {
        let durable = Arc::new(PostgresStore::connect(
            settings.database_url,
            settings.namespace,
        )?);
        let cache = Breaker::new(
            Arc::new(RedisStore::on_link(
                settings.redis.clone(),
                settings.redis_prefix,
            )),
            settings.breaker,
        );
        let durable_breaker = Breaker::new(durable.clone(), settings.breaker);
        let coherence = Coherence::start(
            postgres_pool(settings.database_url, 2)?,
            settings.namespace,
            settings.instance,
            settings.redis.clone(),
            cache.clone(),
            settings.coherence,
        );
        let copies = Arc::new(Copies::new(
            settings.redis,
            settings.redis_prefix,
            TOMBSTONE_TTL,
        ));
        Ok(Self {
            missed_deletes: MissedDeletes::start(copies.clone(), cache.clone(), coherence.clone()),
            copies,
            cache,
            durable,
            durable_breaker,
            coherence,
        })
    }

    /// The breakers in front of Redis and Postgres, for metrics.
    pub fn breakers(&self) -> [Arc<Breaker>; 2] {
        [self.cache.clone(), self.durable_breaker.clone()]
    }

    pub fn coherence(&self) -> &Arc<Coherence> {
        &self.coherence
    }

    /// The Redis tier alone, behind its breaker: for records that are
    /// never Postgres's (the refresh handoff).
    pub fn cache_tier(&self) -> Arc<Breaker> {
        self.cache.clone()
    }

    /// The durable tier (leases live beside its records).
    pub fn durable(&self) -> &Arc<PostgresStore> {
        &self.durable
    }

    /// Tombstones waiting to be written again, and how many were dropped unwritten.
    pub fn missed_deletes(&self) -> (usize, u64) {
        self.missed_deletes.counts()
    }

    /// Copies `writes` to Redis, or covers for them when that fails (see
    /// the module doc); tombstones among them are written again later
    /// ([`missed_deletes`]).
    async fn copy_or_cover(&self, writes: &[CopyWrite<'_>]) -> Result<(), StoreError> {
        match self.cache.call(self.copy(writes)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "copy to Redis failed; covering");
                self.missed_deletes.keep(writes);
                self.coherence.cover().await
            }
        }
    }

    async fn copy(&self, writes: &[CopyWrite<'_>]) -> Result<(), StoreError> {
        self.copies
            .write(writes)
            .await
            .map_err(super::redis::failed)
    }

    async fn read_copies(&self, keys: &[&str]) -> Result<(Vec<Copy>, Arc<str>), StoreError> {
        self.copies.read(keys).await.map_err(super::redis::failed)
    }

    /// Reads `keys` from Postgres, then makes their copies match what it
    /// read (or covers when that fails). `cached` is what Redis held, where
    /// known: a missing copy of a gone record needs no tombstone; where not
    /// known, the caller distrusts the copies, and they are replaced even
    /// at the same version.
    async fn read_durable(
        &self,
        keys: &[&str],
        cached: Option<&[Copy]>,
        generation: u64,
    ) -> Result<Vec<Option<Record>>, StoreError> {
        let states = self.durable_breaker.call(self.durable.states(keys)).await?;
        self.coherence
            .stats()
            .durable_reads
            .fetch_add(1, Ordering::Relaxed);
        let mut writes = Vec::new();
        for (i, (key, state)) in keys.iter().zip(&states).enumerate() {
            let cached = cached.map(|c| &c[i]);
            match state {
                Durable::Live(record) => writes.push(CopyWrite::Live {
                    key,
                    data: &record.data,
                    version: record.version,
                    ttl: record.ttl,
                    generation,
                    replace_same: cached.is_none(),
                }),
                Durable::Gone(version) if cached != Some(&Copy::Missing) => {
                    writes.push(CopyWrite::Tombstone {
                        key,
                        version: Some(*version),
                        generation,
                    });
                }
                Durable::Unknown if cached.is_some_and(|c| *c != Copy::Missing) => {
                    writes.push(CopyWrite::Tombstone {
                        key,
                        version: None,
                        generation,
                    });
                }
                Durable::Gone(_) | Durable::Unknown => {}
            }
        }
        if !writes.is_empty() {
            self.copy_or_cover(&writes).await?;
        }
        Ok(states.into_iter().map(Durable::into_record).collect())
    }

    /// The trusted path: copies of the snapshot's generation as they are;
    /// the rest from Postgres. `None`: the reply came from a Redis server
    /// the snapshot does not trust.
    async fn read_trusted(
        &self,
        keys: &[&str],
        copies: Vec<Copy>,
        generation: u64,
    ) -> Result<Vec<Option<Record>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut misses = Vec::new();
        let mut miss_copies = Vec::new();
        for (i, copy) in copies.into_iter().enumerate() {
            match copy {
                Copy::Live {
                    record,
                    generation: g,
                } if g == generation => out.push(Some(record)),
                Copy::Tombstone { generation: g, .. } if g == generation => out.push(None),
                copy => {
                    out.push(None);
                    misses.push(i);
                    miss_copies.push(copy);
                }
            }
        }
        if misses.is_empty() {
            self.coherence
                .stats()
                .trusted_reads
                .fetch_add(1, Ordering::Relaxed);
            return Ok(out);
        }
        let miss_keys: Vec<&str> = misses.iter().map(|&i| keys[i]).collect();
        let fetched = self
            .read_durable(&miss_keys, Some(&miss_copies), generation)
            .await?;
        for (i, record) in misses.into_iter().zip(fetched) {
            out[i] = record;
        }
        Ok(out)
    }

    /// The checked path: a copy is served only when its version is
    /// Postgres's, read at the same time; the rest from Postgres.
    async fn read_checked(
        &self,
        keys: &[&str],
        generation: u64,
    ) -> Result<Vec<Option<Record>>, StoreError> {
        let (cached, versions) = tokio::join!(
            self.cache.call(self.read_copies(keys)),
            self.durable_breaker.call(self.durable.versions(keys))
        );
        let versions = versions?;
        let cached = match cached {
            Ok((cached, _server)) => cached,
            Err(StoreError::Unavailable(reason)) => {
                tracing::debug!(%reason, "Redis down; reading Postgres");
                return self.read_durable(keys, None, generation).await;
            }
            Err(e) => return Err(e),
        };
        self.coherence
            .stats()
            .checked_reads
            .fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(keys.len());
        let mut stale = Vec::new();
        for (i, (copy, version)) in cached.iter().zip(versions).enumerate() {
            match (copy, version) {
                (Copy::Live { record, .. }, Some(v)) if record.version == v => {
                    out.push(Some(record.clone()));
                }
                (Copy::Tombstone { .. } | Copy::Missing, None) => out.push(None),
                _ => {
                    out.push(None);
                    stale.push(i);
                }
            }
        }
        if !stale.is_empty() {
            let stale_keys: Vec<&str> = stale.iter().map(|&i| keys[i]).collect();
            let stale_copies: Vec<Copy> = stale.iter().map(|&i| cached[i].clone()).collect();
            let fetched = self
                .read_durable(&stale_keys, Some(&stale_copies), generation)
                .await?;
            for (i, record) in stale.into_iter().zip(fetched) {
                out[i] = record;
            }
        }
        Ok(out)
    }

    /// A write Postgres decides, then its copy ([`Self::written`]). The
    /// generation is read before `write` runs (a future does nothing until
    /// polled): the freshness argument above needs that order.
    async fn decided_then_copied(
        &self,
        key: &str,
        data: &[u8],
        ttl: Option<Duration>,
        renewed: &[&str],
        write: impl Future<Output = Result<u64, StoreError>>,
    ) -> Result<u64, StoreError> {
        let generation = self.coherence.snapshot().generation;
        let version = self.durable_breaker.call(write).await?;
        self.written(key, data, version, ttl, generation, renewed)
            .await?;
        Ok(version)
    }

    /// The copy of a version just written, and what else the write changed
    /// (`renewed`: companions whose expiry the write renewed).
    async fn written(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
        generation: u64,
        renewed: &[&str],
    ) -> Result<(), StoreError> {
        let mut writes = vec![CopyWrite::Live {
            key,
            data,
            version,
            ttl,
            generation,
            replace_same: false,
        }];
        if let Some(ttl) = ttl {
            writes.extend(renewed.iter().map(|key| CopyWrite::Expire { key, ttl }));
        }
        self.copy_or_cover(&writes).await
    }
}

#[async_trait]
impl Store for TieredStore {
    fn kind(&self) -> String {
        "redis+postgres".into()
    }

    async fn load(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.load_many(&[key]).await?.pop().flatten())
    }

    async fn load_many(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        let snapshot = self.coherence.snapshot();
        if !snapshot.trusted {
            return self.read_checked(keys, snapshot.generation).await;
        }
        match self.cache.call(self.read_copies(keys)).await {
            Ok((copies, server)) if snapshot.trusts(&server) => {
                self.read_trusted(keys, copies, snapshot.generation).await
            }
            // Another Redis server process than the record names: until it
            // is adopted, its copies are checked.
            Ok(_) => self.read_checked(keys, snapshot.generation).await,
            Err(StoreError::Unavailable(reason)) => {
                tracing::debug!(%reason, "Redis down; reading Postgres");
                self.read_durable(keys, None, snapshot.generation).await
            }
            Err(e) => Err(e),
        }
    }

    async fn load_many_latest(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        let generation = self.coherence.snapshot().generation;
        self.read_durable(keys, None, generation).await
    }

    async fn versions(&self, keys: &[&str]) -> Result<Vec<Option<u64>>, StoreError> {
        self.durable_breaker.call(self.durable.versions(keys)).await
    }

    async fn save(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        let write = self.durable.save(key, data, expect, ttl);
        self.decided_then_copied(key, data, ttl, &[], write).await
    }

    async fn save_renewing(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Duration,
        renew: &[&str],
    ) -> Result<u64, StoreError> {
        let write = self.durable.save_renewing(key, data, expect, ttl, renew);
        self.decided_then_copied(key, data, Some(ttl), renew, write)
            .await
    }

    async fn save_fenced(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
        fence: &Fence,
    ) -> Result<u64, StoreError> {
        let write = self.durable.save_fenced(key, data, expect, ttl, fence);
        self.decided_then_copied(key, data, ttl, &[], write).await
    }

    async fn save_if_newer(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let generation = self.coherence.snapshot().generation;
        let written = self
            .durable_breaker
            .call(self.durable.save_if_newer(key, data, version, ttl))
            .await?;
        if written {
            self.written(key, data, version, ttl, generation, &[])
                .await?;
        }
        Ok(written)
    }

    /// Postgres first; a copy that keeps its older, shorter TTL only
    /// expires early (a miss that reads Postgres), so the copy's renewal is
    /// best effort and never covered.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let live = self
            .durable_breaker
            .call(self.durable.expire(key, ttl))
            .await?;
        if live
            && let Err(e) = self
                .cache
                .call(self.copy(&[CopyWrite::Expire { key, ttl }]))
                .await
        {
            tracing::debug!(error = %e, "copy's TTL not renewed");
        }
        Ok(live)
    }

    /// A tombstone in Postgres, then in Redis (covered when that fails).
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let generation = self.coherence.snapshot().generation;
        let deleted = self
            .durable_breaker
            .call(self.durable.tombstone(key))
            .await?;
        let tombstone = CopyWrite::Tombstone {
            key,
            version: deleted.map(|(version, _)| version),
            generation,
        };
        self.copy_or_cover(&[tombstone]).await?;
        Ok(deleted.is_some_and(|(_, was_live)| was_live))
    }

    /// The durable tier's size: it holds every record; the cache holds a subset.
    async fn size(&self) -> Result<StoreSize, StoreError> {
        self.durable_breaker.call(self.durable.size()).await
    }
}
