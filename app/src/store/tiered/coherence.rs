//! The fleet's coherence record: when an instance may trust a Redis copy
//! without asking Postgres, and what an instance must do before it answers
//! when a copy could not be kept up to date.
//!
//! The record lives in Postgres (`tier_coherence`, `tier_degraded`; the
//! migration has the SQL), one per namespace: a **generation**, the Redis
//! server process (**run_id**) the generation's copies were made on, and the
//! **degraded** instances (those that failed to bring a copy up to date),
//! each until a time of Postgres's clock that its holder renews. Every
//! instance polls it in the background ([`CoherenceSettings::poll_every`])
//! and keeps what it saw as its view, stamped with when the poll was sent.
//! See [`super`] for how reads and writes use it, and the argument.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use sqlx::PgPool;
use sqlx::Row;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;

use crate::store::StoreError;
use crate::store::breaker::Breaker;
use crate::store::redis_link::RedisLink;
use crate::store::redis_target;
use crate::store::sql::{migration_failed, postgres_migrator, unavailable};

/// The protocol's periods. The defaults suit a LAN; every instance of a
/// fleet must use the same `trust_for`.
#[derive(Clone, Copy, Debug)]
pub struct CoherenceSettings {
    /// How often an instance polls the record.
    pub poll_every: Duration,
    /// How long after a poll was sent its view may be trusted; also how long
    /// an instance waits after registering as degraded before it answers.
    pub trust_for: Duration,
    /// How long a degraded registration lasts unless renewed (by each poll).
    pub registration_ttl: Duration,
}

impl Default for CoherenceSettings {
    fn default() -> Self {
        Self {
            poll_every: Duration::from_millis(100),
            trust_for: Duration::from_secs(1),
            registration_ttl: Duration::from_secs(5),
        }
    }
}

/// Added to every wait, for clocks that tick at slightly different rates
/// and the time a reply takes to travel back.
const MARGIN: Duration = Duration::from_millis(50);

/// What an operation reads of the view when it starts.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Copies must carry this generation to be trusted; new copies carry it.
    pub generation: u64,
    /// Whether a copy of this generation, read from [`Snapshot::server`],
    /// may be served without asking Postgres.
    pub trusted: bool,
    pub server: Option<Arc<str>>,
}

impl Snapshot {
    /// Whether a reply from `server` can be trusted under this snapshot.
    pub fn trusts(&self, server: &str) -> bool {
        self.trusted
            && self
                .server
                .as_deref()
                .is_some_and(|named| redis_target::names(named, server))
    }
}

#[derive(Clone, Debug, Default)]
struct View {
    generation: u64,
    server: Option<Arc<str>>,
    /// Instances registered as degraded, this one included.
    degraded: i64,
    /// When the poll this view came from was sent.
    polled_at: Option<Instant>,
}

/// This instance's own degraded registration, as far as it knows.
#[derive(Clone, Copy, Debug)]
struct Registration {
    /// When the registration was first confirmed: every other instance's
    /// view is either newer than it or older than `trust_for` by
    /// `since + trust_for`.
    since: Instant,
    /// Until when it is surely still live (the send time of the last
    /// confirmed renewal plus the TTL: Postgres set a later time).
    valid_until: Instant,
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct CoherenceStats {
    /// Reads served from Redis alone.
    pub trusted_reads: AtomicU64,
    /// Reads whose copies were checked against Postgres's versions.
    pub checked_reads: AtomicU64,
    /// Reads (or parts) served by Postgres: misses, stale copies, Redis down.
    pub durable_reads: AtomicU64,
    /// Times this instance registered as degraded.
    pub registrations: AtomicU64,
    /// Times it left degraded mode (each moved the generation on).
    pub recoveries: AtomicU64,
    /// Times it adopted a Redis server process the record did not name.
    pub adoptions: AtomicU64,
    pub generation: AtomicU64,
    /// 1 while the fleet has a degraded instance, as this instance last saw.
    pub fleet_degraded: AtomicU64,
    /// Tombstones that failed and wait to be written again
    /// ([`super::missed_deletes`]), those written since, and those dropped
    /// unwritten (beyond its bound).
    pub missed_deletes_waiting: AtomicU64,
    pub missed_deletes_written: AtomicU64,
    pub missed_deletes_dropped: AtomicU64,
}

/// One instance's side of the protocol: its view, its registration, the poller.
pub struct Coherence {
    pool: PgPool,
    schema: OnceCell<()>,
    ns: String,
    instance: String,
    settings: CoherenceSettings,
    view: RwLock<View>,
    registration: Mutex<Option<Registration>>,
    /// The cache tier's link and breaker: which server answers, and whether
    /// it answers at all (leaving degraded mode needs both).
    link: Arc<RedisLink>,
    redis: Arc<Breaker>,
    stats: CoherenceStats,
}

impl Coherence {
    /// Starts polling the record of namespace `ns` on `pool` (migrated on first use).
    pub fn start(
        pool: PgPool,
        ns: &str,
        instance: &str,
        link: Arc<RedisLink>,
        redis: Arc<Breaker>,
        settings: CoherenceSettings,
    ) -> Arc<Self> {
        let coherence = Arc::new(Self {
            pool,
            schema: OnceCell::new(),
            ns: ns.to_owned(),
            instance: instance.to_owned(),
            settings,
            view: RwLock::default(),
            registration: Mutex::new(None),
            link,
            redis,
            stats: CoherenceStats::default(),
        });
        tokio::spawn(poll_until_dropped(Arc::downgrade(&coherence)));
        coherence
    }

    pub fn stats(&self) -> &CoherenceStats {
        &self.stats
    }

    /// The view as an operation starting now must use it.
    pub fn snapshot(&self) -> Snapshot {
        let view = self.view.read();
        let fresh = view
            .polled_at
            .is_some_and(|at| at.elapsed() < self.settings.trust_for);
        Snapshot {
            generation: view.generation,
            trusted: fresh && view.degraded == 0 && view.server.is_some(),
            server: view.server.clone(),
        }
    }

    /// Called when this instance committed or read a version in Postgres
    /// that it could not copy to Redis (Redis down or unreachable, a copy
    /// write failed): it must not answer until every other instance checks
    /// Postgres on its reads. Registers as degraded (or relies on its live
    /// registration) and waits until every view older than the registration
    /// has expired. An error (Postgres unreachable) means the caller must
    /// not answer as if it had succeeded.
    pub async fn cover(&self) -> Result<(), StoreError> {
        let mut registration = self.registration.lock().await;
        let live = registration.filter(|r| Instant::now() < r.valid_until);
        let since = match live {
            Some(r) => r.since,
            None => {
                let sent = Instant::now();
                sqlx::query("SELECT tier_degrade($1, $2, $3)")
                    .bind(&self.ns)
                    .bind(&self.instance)
                    .bind(self.settings.registration_ttl.as_millis() as i64)
                    .execute(self.ready().await?)
                    .await
                    .map_err(unavailable)?;
                let since = Instant::now();
                *registration = Some(Registration {
                    since,
                    valid_until: sent + self.settings.registration_ttl,
                });
                self.stats.registrations.fetch_add(1, Ordering::Relaxed);
                // This instance's own reads check Postgres from now on.
                self.view.write().degraded += 1;
                tracing::warn!(
                    instance = %self.instance,
                    "a Redis copy could not be kept up to date; registered as degraded"
                );
                since
            }
        };
        drop(registration);
        tokio::time::sleep_until(since + self.settings.trust_for + MARGIN).await;
        Ok(())
    }

    async fn ready(&self) -> Result<&PgPool, StoreError> {
        self.schema
            .get_or_try_init(|| async {
                postgres_migrator()
                    .run(&self.pool)
                    .await
                    .map_err(migration_failed)
            })
            .await?;
        Ok(&self.pool)
    }

    /// One round of the poller: leave degraded mode if Redis answers again,
    /// adopt a Redis server process the record does not name, then read
    /// the record (renewing this instance's registration).
    async fn poll(&self) -> Result<(), StoreError> {
        let redis_answers = !self.redis.is_open() && self.link.check().await.is_ok();
        if redis_answers {
            self.recover_if_registered().await?;
            self.adopt_if_new().await?;
        }
        let mut registration = self.registration.lock().await;
        let renewing = registration.is_some();
        let sent = Instant::now();
        let row = sqlx::query("SELECT * FROM tier_poll($1, $2, $3)")
            .bind(&self.ns)
            .bind(&self.instance)
            .bind(renewing.then_some(self.settings.registration_ttl.as_millis() as i64))
            .fetch_one(self.ready().await?)
            .await
            .map_err(unavailable)?;
        let view = View {
            generation: row.try_get::<i64, _>("generation").map_err(unavailable)? as u64,
            server: row
                .try_get::<Option<String>, _>("redis_run_id")
                .map_err(unavailable)?
                .map(Arc::from),
            degraded: row.try_get("degraded").map_err(unavailable)?,
            polled_at: Some(sent),
        };
        let registered: bool = row.try_get("registered").map_err(unavailable)?;
        if let Some(r) = registration.as_mut() {
            if registered {
                r.valid_until = sent + self.settings.registration_ttl;
            } else if r.since < sent {
                // It lapsed (and was swept, which moved the generation on).
                *registration = None;
            }
        }
        self.stats
            .generation
            .store(view.generation, Ordering::Relaxed);
        self.stats
            .fleet_degraded
            .store(u64::from(view.degraded > 0), Ordering::Relaxed);
        *self.view.write() = view;
        Ok(())
    }

    /// Redis answers again: the registration ends and the generation moves
    /// on, so the copies this instance left stale are never trusted again.
    /// Held under the registration's lock, so no write relies on the
    /// registration once the generation has moved.
    async fn recover_if_registered(&self) -> Result<(), StoreError> {
        let mut registration = self.registration.lock().await;
        if registration.is_none() {
            return Ok(());
        }
        sqlx::query("SELECT tier_recover($1, $2)")
            .bind(&self.ns)
            .bind(&self.instance)
            .execute(self.ready().await?)
            .await
            .map_err(unavailable)?;
        *registration = None;
        self.stats.recoveries.fetch_add(1, Ordering::Relaxed);
        tracing::info!(instance = %self.instance, "Redis reachable again; left degraded mode");
        Ok(())
    }

    /// The link reaches a Redis server process the record does not name.
    async fn adopt_if_new(&self) -> Result<(), StoreError> {
        let Some(server) = self.link.server() else {
            return Ok(());
        };
        if self.view.read().server.as_deref() == Some(&*server) {
            return Ok(());
        }
        sqlx::query("SELECT tier_adopt($1, $2)")
            .bind(&self.ns)
            .bind(&*server)
            .execute(self.ready().await?)
            .await
            .map_err(unavailable)?;
        self.stats.adoptions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(run_id = %server, "Redis is a server process the record did not name; adopted it");
        Ok(())
    }
}

/// Polls while anyone holds the coherence; a failed poll only lets the
/// view age (reads then check Postgres), and is logged once per outage.
async fn poll_until_dropped(coherence: Weak<Coherence>) {
    let mut failing = false;
    loop {
        let Some(this) = coherence.upgrade() else {
            return;
        };
        let every = this.settings.poll_every;
        match this.poll().await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "coherence poll failed; reads check Postgres until one succeeds");
            }
            Err(_) => {}
        }
        drop(this);
        tokio::time::sleep(every).await;
    }
}
