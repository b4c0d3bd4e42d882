//! Latency of every request, in microsecond HDR histograms per request type
//! and instance, and how requests ended. The source of truth for latency
//! (goose's own metrics are off).
//!
//! Each sample goes in twice: as measured, and corrected for coordinated
//! omission against the schedule the scenario intends (HdrHistogram's
//! `record_correct`, as wrk2 does): a browser that waited longer than its
//! think time for an answer would, on schedule, have sent more requests
//! meanwhile, and those phantom requests would each have waited too.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::history::{NoAnswer, Outcome, Request};
use crate::model::latency::{MAX_MICROS, histogram};
use crate::model::outcomes::Outcomes;

/// How requests of one type to one instance went.
#[derive(Clone)]
pub struct Series {
    /// Corrected for coordinated omission.
    pub corrected: Histogram<u64>,
    /// As measured.
    pub raw: Histogram<u64>,
    pub outcomes: Outcomes,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            corrected: histogram(),
            raw: histogram(),
            outcomes: Outcomes::default(),
        }
    }
}

impl Series {
    fn count(&mut self, outcome: &Outcome) {
        let o = &mut self.outcomes;
        match outcome {
            Outcome::Answered { status, .. } if *status >= 500 => o.server_errors += 1,
            Outcome::Answered { status, .. } if *status >= 400 => o.client_errors += 1,
            Outcome::Answered { .. } => o.ok += 1,
            Outcome::NoAnswer { cause, .. } => match cause {
                NoAnswer::Refused => o.refused += 1,
                NoAnswer::Timeout => o.timeouts += 1,
                NoAnswer::Lost => o.lost += 1,
            },
        }
    }
}

/// One second of the run, all requests together.
#[derive(Clone)]
pub struct Second {
    pub latency: Histogram<u64>,
    pub errors: u64,
}

/// Every request's latency and end, shared by all browsers: a series per
/// instance and request type, made on first use, found by index (no lookup
/// by name, no allocation, on a request's path).
pub struct Latencies {
    /// The interval the correction assumes between a browser's requests.
    expected_interval: u64,
    instances: Vec<String>,
    series: Vec<[OnceLock<Mutex<Series>>; KINDS]>,
    seconds: Mutex<Vec<Second>>,
}

/// How many request types there are.
const KINDS: usize = Request::KINDS.len();

impl Latencies {
    /// `expected_interval_micros`: the scenario's mean think time (0: no
    /// correction); `instances`: the ids requests are sent to, in order.
    pub fn new(expected_interval_micros: u64, instances: Vec<String>) -> Self {
        Self {
            expected_interval: expected_interval_micros,
            series: instances
                .iter()
                .map(|_| std::array::from_fn(|_| OnceLock::new()))
                .collect(),
            instances,
            seconds: Mutex::default(),
        }
    }

    /// Records one request of `kind` (an index into [`Request::KINDS`]) sent
    /// to instance `instance` (an index), invoked `at` micros into the run
    /// and taking `micros`.
    pub fn record(&self, kind: usize, instance: usize, at: u64, micros: u64, outcome: &Outcome) {
        let value = micros.clamp(1, MAX_MICROS);
        if let Some(slot) = self.series.get(instance).and_then(|kinds| kinds.get(kind)) {
            let mut series = slot.get_or_init(Mutex::default).lock();
            series.count(outcome);
            let _ = series.raw.record(value);
            let _ = if self.expected_interval > 0 {
                series
                    .corrected
                    .record_correct(value, self.expected_interval)
            } else {
                series.corrected.record(value)
            };
        }
        let second = (at / 1_000_000) as usize;
        let mut seconds = self.seconds.lock();
        if seconds.len() <= second {
            seconds.resize_with(second + 1, || Second {
                latency: Histogram::new_with_bounds(1, MAX_MICROS, 2)
                    .expect("constant, valid bounds"),
                errors: 0,
            });
        }
        let _ = seconds[second].latency.record(value);
        if outcome.indeterminate() || matches!(outcome, Outcome::NoAnswer { .. }) {
            seconds[second].errors += 1;
        }
    }

    /// Every series used, in order.
    fn used(&self) -> impl Iterator<Item = (&'static str, &str, &Mutex<Series>)> {
        self.series
            .iter()
            .zip(&self.instances)
            .flat_map(|(kinds, instance)| {
                kinds.iter().enumerate().filter_map(move |(kind, slot)| {
                    slot.get()
                        .map(|series| (Request::KINDS[kind], instance.as_str(), series))
                })
            })
    }

    /// A copy of every series, by (request type, instance).
    pub fn snapshot(&self) -> BTreeMap<(String, String), Series> {
        self.used()
            .map(|(kind, instance, series)| {
                (
                    (kind.to_owned(), instance.to_owned()),
                    series.lock().clone(),
                )
            })
            .collect()
    }

    /// Every second so far.
    pub fn seconds(&self) -> Vec<Second> {
        self.seconds.lock().clone()
    }

    /// All requests so far: (count, errors, p99 in micros).
    pub fn totals(&self) -> (u64, u64, u64) {
        let mut all = histogram();
        let mut errors = 0;
        for (_, _, series) in self.used() {
            let series = series.lock();
            let _ = all.add(&series.raw);
            errors += series.outcomes.errors();
        }
        (all.len(), errors, all.value_at_quantile(0.99))
    }
}
