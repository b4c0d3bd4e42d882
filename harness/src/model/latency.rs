//! How latency is kept everywhere (the driver, the reference round trips,
//! the results and their merges): microsecond HDR histograms of one shape,
//! and the names of the reference round trips latencies are divided by.

use hdrhistogram::Histogram;

/// The longest latency a histogram holds (longer ones are clamped to it).
pub const MAX_MICROS: u64 = 120_000_000;

/// A histogram of 1 us to [`MAX_MICROS`] at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant, valid bounds")
}

/// The name of the app's health round trip in the results.
pub const HEALTHZ: &str = "healthz";
/// The name of the Redis round trip in the results.
pub const REDIS_PING: &str = "redis-ping";
