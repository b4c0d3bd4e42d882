//! A circuit breaker in front of a networked store (Redis, Postgres): every
//! operation is bounded by one timeout, and a store that timed out or refused
//! counts as down, so requests fail fast to their fallback instead of each
//! waiting out the timeout again.
//!
//! An outage costs one timeout per instance: operations in flight when the
//! first one times out are cut short with it, later ones fail at once, and a
//! background probe (not a request) finds the store back and closes the
//! breaker. Without this, a request that makes two store calls (read the
//! session, then write it) waited two full timeouts while the store was
//! frozen, longer than a short outage itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Expect, Record, Store, StoreError, StoreSize};

/// How long operations may take and how often a down store is probed.
#[derive(Clone, Copy, Debug)]
pub struct BreakerSettings {
    /// One operation's bound; past it the store counts as down.
    pub timeout: Duration,
    /// While down, the store is probed this often.
    pub probe_every: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            probe_every: Duration::from_millis(250),
        }
    }
}

/// What the breaker has seen, for `/metrics`.
#[derive(Debug, Default)]
pub struct BreakerStats {
    /// Times the store went from up to down (each cost at most one timeout).
    pub outages: AtomicU64,
    /// Operations that waited out the whole timeout, the breaker's or the
    /// client's own (those in flight together when the store froze).
    pub timeouts: AtomicU64,
    /// Operations refused at once because the store was down.
    pub fast_failures: AtomicU64,
    /// Operations cut short when another one found the store down.
    pub cut_short: AtomicU64,
    /// Operations sent to the store (each one round trip: a pipeline or a
    /// batched query counts once), the request path's cost in store calls.
    pub round_trips: AtomicU64,
}

/// A store behind a circuit breaker.
pub struct Breaker {
    inner: Arc<dyn Store>,
    settings: BreakerSettings,
    /// Whether the store counts as down; changes wake operations in flight.
    down: watch::Sender<bool>,
    probing: Mutex<bool>,
    stats: Arc<BreakerStats>,
}

impl Breaker {
    pub fn new(inner: Arc<dyn Store>, settings: BreakerSettings) -> Arc<Self> {
        Arc::new(Self {
            inner,
            settings,
            down: watch::channel(false).0,
            probing: Mutex::new(false),
            stats: Arc::default(),
        })
    }

    pub fn stats(&self) -> &BreakerStats {
        &self.stats
    }

    /// Whether the store counts as down now.
    pub fn is_open(&self) -> bool {
        *self.down.borrow()
    }

    /// The inner store's name, for metrics.
    pub fn store_kind(&self) -> String {
        self.inner.kind()
    }

    /// Runs one operation (one round trip to the store) under the breaker.
    pub async fn call<T>(
        self: &Arc<Self>,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut down = self.down.subscribe();
        if *down.borrow_and_update() {
            self.stats.fast_failures.fetch_add(1, Ordering::Relaxed);
            return Err(self.unavailable("down, waiting for a probe to find it back"));
        }
        self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(self.settings.timeout, operation) => outcome,
            _ = down.wait_for(|down| *down) => {
                self.stats.cut_short.fetch_add(1, Ordering::Relaxed);
                return Err(self.unavailable("went down during the operation"));
            }
        };
        match outcome {
            Err(_elapsed) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                self.trip();
                Err(self.unavailable(&format!("no answer within {:?}", self.settings.timeout)))
            }
            Ok(Err(StoreError::Unavailable(reason))) => {
                // The client's own timeout (Redis's response timeout) may
                // fire first: a failure that took as long is a timeout too.
                if started.elapsed() >= self.settings.timeout.mul_f64(0.9) {
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                self.trip();
                Err(StoreError::Unavailable(reason))
            }
            Ok(answered) => answered,
        }
    }

    fn unavailable(&self, why: &str) -> StoreError {
        StoreError::Unavailable(format!("{} {why}", self.inner.kind()))
    }

    /// Marks the store down (once per outage) and starts the probe.
    fn trip(self: &Arc<Self>) {
        let newly_down = self
            .down
            .send_if_modified(|down| !std::mem::replace(down, true));
        if !newly_down {
            return;
        }
        self.stats.outages.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(store = %self.inner.kind(), "store down; failing fast until a probe finds it back");
        let mut probing = self.probing.lock();
        if *probing {
            return;
        }
        *probing = true;
        let breaker = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = breaker.upgrade() else {
                    return;
                };
                tokio::time::sleep(this.settings.probe_every).await;
                let answered = tokio::time::timeout(this.settings.timeout, this.inner.ping())
                    .await
                    .is_ok_and(|pinged| pinged.is_ok());
                if answered {
                    *this.probing.lock() = false;
                    this.down.send_replace(false);
                    tracing::info!(store = %this.inner.kind(), "store back");
                    return;
                }
            }
        });
    }
}

/// The trait is implemented on `Arc<Breaker>`: the probe needs to outlive a call.
#[async_trait]
impl Store for Arc<Breaker> {
    fn kind(&self) -> String {
        self.inner.kind()
    }

    async fn load(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.call(self.inner.load(key)).await
    }

    async fn load_many(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        self.call(self.inner.load_many(keys)).await
    }

    async fn save(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        self.call(self.inner.save(key, data, expect, ttl)).await
    }

    async fn save_if_newer(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.call(self.inner.save_if_newer(key, data, version, ttl))
            .await
    }

    async fn versions(&self, keys: &[&str]) -> Result<Vec<Option<u64>>, StoreError> {
        self.call(self.inner.versions(keys)).await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.call(self.inner.expire(key, ttl)).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.call(self.inner.delete(key)).await
    }

    /// Metrics only, and a walk of every key may take longer than one
    /// operation should: not bounded, and a slow one does not trip the breaker.
    async fn size(&self) -> Result<StoreSize, StoreError> {
        if self.is_open() {
            return Err(self.unavailable("down"));
        }
        self.inner.size().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(self.inner.ping()).await
    }
}
