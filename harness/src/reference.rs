//! Reference round trips measured beside the load: a `GET /healthz` to the
//! instances and a Redis `PING` (when the topology has a Redis). Request
//! latencies divided by these compare across machines and runs, because both
//! were slowed by the same machine at the same moment.

use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::load::browser::InstanceUrl;
use crate::model::latency::{self, HEALTHZ, REDIS_PING};
use crate::results::{self, Percentiles, ReferenceSeries};

/// How often each reference is probed: often enough for a few hundred
/// samples in a short run, rarely enough not to be part of the load.
pub const EVERY: Duration = Duration::from_millis(50);

/// One reference's round trips so far.
pub struct Probed {
    pub name: &'static str,
    pub histogram: Histogram<u64>,
    pub failed: u64,
}

impl Probed {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            histogram: latency::histogram(),
            failed: 0,
        }
    }

    fn record(&mut self, took: Result<Duration, ()>) {
        match took {
            Ok(took) => {
                let _ = self
                    .histogram
                    .record((took.as_micros() as u64).clamp(1, latency::MAX_MICROS));
            }
            Err(()) => self.failed += 1,
        }
    }

    /// As the results file holds it.
    pub fn series(&self) -> ReferenceSeries {
        ReferenceSeries {
            name: self.name.to_owned(),
            count: self.histogram.len(),
            failed: self.failed,
            latency: Percentiles::of(&self.histogram),
            histogram: results::encode(&self.histogram),
        }
    }
}

/// Probes the references until dropped (abort the task running it).
pub struct Prober {
    http: reqwest::Client,
    instances: Vec<InstanceUrl>,
    redis: Option<redis::aio::ConnectionManager>,
    pub healthz: Probed,
    pub redis_ping: Probed,
}

impl Prober {
    pub async fn new(instances: Vec<InstanceUrl>, redis_url: Option<&str>) -> Self {
        let redis = match redis_url.and_then(|url| redis::Client::open(url).ok()) {
            Some(client) => redis::aio::ConnectionManager::new_with_config(
                client,
                redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_connection_timeout(Some(Duration::from_secs(2))),
            )
            .await
            .ok(),
            None => None,
        };
        Self {
            // Kept-alive connections, as the browsers' pool keeps them: a
            // fresh TCP handshake per probe would measure something else.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
            instances,
            redis,
            healthz: Probed::new(HEALTHZ),
            redis_ping: Probed::new(REDIS_PING),
        }
    }

    /// One round of probes: the next instance's health, then Redis.
    pub async fn probe(&mut self, round: usize) {
        if !self.instances.is_empty() {
            let instance = &self.instances[round % self.instances.len()];
            let started = Instant::now();
            let answer = self
                .http
                .get(format!("{}/healthz", instance.base))
                .send()
                .await;
            let took = match answer {
                Ok(response) if response.status().is_success() => {
                    let _ = response.bytes().await;
                    Ok(started.elapsed())
                }
                _ => Err(()),
            };
            self.healthz.record(took);
        }
        if let Some(redis) = &mut self.redis {
            let started = Instant::now();
            let answer: redis::RedisResult<String> = redis::cmd("PING").query_async(redis).await;
            let took = answer.map(|_| started.elapsed()).map_err(|_| ());
            self.redis_ping.record(took);
        }
    }

    /// What was probed, as the results file holds it (Redis only when there is one).
    pub fn series(&self) -> Vec<ReferenceSeries> {
        let mut out = vec![self.healthz.series()];
        if self.redis.is_some() {
            out.push(self.redis_ping.series());
        }
        out
    }
}
