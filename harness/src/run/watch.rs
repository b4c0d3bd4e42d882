//! What runs beside the load on tasks of its own: the sampler, a look at
//! memory, stores and CPU every second, and the prober's reference round
//! trips.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::model::sample::Sample;
use crate::reference::{self, Prober};
use crate::results::ReferenceSeries;
use crate::sample::{Place, Sampler};

/// The sampler's and the prober's tasks, and what they gather.
pub(super) struct Watchers {
    /// Every sample so far, the empty stores' first.
    pub samples: Arc<Mutex<Vec<Sample>>>,
    sampling: JoinHandle<()>,
    prober: Arc<tokio::sync::Mutex<Prober>>,
    probing: JoinHandle<()>,
}

impl Watchers {
    /// Starts both; times count from `start`.
    pub async fn start(place: &Place, start: Instant, empty: Sample) -> Self {
        // The sampler looks every second on a task of its own, after the empty stores.
        let samples = Arc::new(Mutex::new(vec![empty]));
        let sampling = {
            let samples = samples.clone();
            let mut sampler = Sampler::new(place.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let sample = sampler.sample(start.elapsed().as_micros() as u64).await;
                    samples.lock().push(sample);
                }
            })
        };
        // Reference round trips beside the load, on a task of their own.
        let prober = Arc::new(tokio::sync::Mutex::new(
            Prober::new(place.instances.clone(), place.redis_url.as_deref()).await,
        ));
        let probing = {
            let prober = prober.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(reference::EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for round in 0.. {
                    tick.tick().await;
                    prober.lock().await.probe(round).await;
                }
            })
        };
        Self {
            samples,
            sampling,
            prober,
            probing,
        }
    }

    /// Stops both; the prober's round trips, and the samples (the last,
    /// after the grace period, is pushed by the caller).
    pub async fn stop(self) -> (Arc<Mutex<Vec<Sample>>>, Vec<ReferenceSeries>) {
        self.sampling.abort();
        self.probing.abort();
        // The abort lands at the task's next await; the lock waits for it.
        let references = self.prober.lock().await.series();
        (self.samples, references)
    }
}
