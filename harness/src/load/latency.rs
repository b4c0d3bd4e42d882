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
use std::sync::Arc;

use hdrhistogram::Histogram;
use parking_lot::{Mutex, RwLock};

use crate::history::{NoAnswer, Outcome};

/// The longest latency a histogram holds (longer ones are clamped to it).
pub const MAX_MICROS: u64 = 120_000_000;

/// A histogram of 1 us to [`MAX_MICROS`] at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant, valid bounds")
}

/// How requests of one type to one instance went.
#[derive(Clone)]
pub struct Series {
    /// Corrected for coordinated omission.
    pub corrected: Histogram<u64>,
    /// As measured.
    pub raw: Histogram<u64>,
    pub ok: u64,
    /// 4xx answers.
    pub client_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    pub refused: u64,
    pub timeouts: u64,
    pub lost: u64,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            corrected: histogram(),
            raw: histogram(),
            ok: 0,
            client_errors: 0,
            server_errors: 0,
            refused: 0,
            timeouts: 0,
            lost: 0,
        }
    }
}

impl Series {
    fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Answered { status, .. } if *status >= 500 => self.server_errors += 1,
            Outcome::Answered { status, .. } if *status >= 400 => self.client_errors += 1,
            Outcome::Answered { .. } => self.ok += 1,
            Outcome::NoAnswer { cause, .. } => match cause {
                NoAnswer::Refused => self.refused += 1,
                NoAnswer::Timeout => self.timeouts += 1,
                NoAnswer::Lost => self.lost += 1,
            },
        }
    }

    /// Requests that got no answer or a 5xx.
    pub fn errors(&self) -> u64 {
        self.server_errors + self.refused + self.timeouts + self.lost
    }
}

/// One second of the run, all requests together.
#[derive(Clone)]
pub struct Second {
    pub latency: Histogram<u64>,
    pub errors: u64,
}

/// A request type and the instance it was sent to.
type SeriesKey = (&'static str, String);

/// Every request's latency and end, shared by all browsers.
pub struct Latencies {
    /// The interval the correction assumes between a browser's requests.
    expected_interval: u64,
    series: RwLock<BTreeMap<SeriesKey, Arc<Mutex<Series>>>>,
    seconds: Mutex<Vec<Second>>,
}

impl Latencies {
    /// `expected_interval_micros`: the scenario's mean think time (0: no correction).
    pub fn new(expected_interval_micros: u64) -> Self {
        Self {
            expected_interval: expected_interval_micros,
            series: RwLock::default(),
            seconds: Mutex::default(),
        }
    }

    /// Records one request of `kind` sent to `instance`, invoked `at` micros
    /// into the run and taking `micros`.
    pub fn record(
        &self,
        kind: &'static str,
        instance: &str,
        at: u64,
        micros: u64,
        outcome: &Outcome,
    ) {
        let value = micros.clamp(1, MAX_MICROS);
        let series = self.series_of(kind, instance);
        {
            let mut series = series.lock();
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

    fn series_of(&self, kind: &'static str, instance: &str) -> Arc<Mutex<Series>> {
        if let Some(series) = self.series.read().get(&(kind, instance.to_owned())) {
            return series.clone();
        }
        self.series
            .write()
            .entry((kind, instance.to_owned()))
            .or_default()
            .clone()
    }

    /// A copy of every series, by (request type, instance).
    pub fn snapshot(&self) -> BTreeMap<(String, String), Series> {
        self.series
            .read()
            .iter()
            .map(|((kind, instance), series)| {
                ((kind.to_string(), instance.clone()), series.lock().clone())
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
        for series in self.series.read().values() {
            let series = series.lock();
            let _ = all.add(&series.raw);
            errors += series.errors();
        }
        (all.len(), errors, all.value_at_quantile(0.99))
    }
}
