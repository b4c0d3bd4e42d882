//! How big a run may be, and the memory it will need: the bounds scenario
//! files and flags are held to (each with the reason), and an estimate
//! from figures measured on this project's machines, which `check` states
//! and `bench` holds against this machine's memory before anything starts.

use std::fmt;

/// Every browser costs the harness about this much, the history of its
/// requests included: 10,000 browsers held a minute peaked at 334 MiB of
/// harness RSS (docs/benchmarks.md, `driver_scale`), 2,000 at 63 MiB.
pub const BYTES_PER_BROWSER: u64 = 34 << 10;

/// The harness with no browser: its runtimes, the sampler, the stage.
pub const HARNESS_BASE_BYTES: u64 = 30 << 20;

/// A reference app instance: 11 to 13 MiB each in the smoke baselines
/// (`reports/baselines/`, 2 instances, 12 browsers). It grows with the
/// users whose tokens it caches; counted here at the measured figure.
pub const BYTES_PER_INSTANCE: u64 = 13 << 20;

/// The most browsers a run may have (people x per_person, and so any
/// stage): at [`BYTES_PER_BROWSER`] they need about 16 GiB of harness
/// memory, what a 24 GiB machine like this project's can hold beside the
/// app, its stores and the IdP.
pub const MAX_BROWSERS: usize = 500_000;

/// The most browsers one person may have open at once.
pub const MAX_PER_PERSON: usize = 100;

/// The most app instances: each is a process of its own with its own
/// connections to the stores (and, through the fault proxy, its own
/// links); more than 64 on one machine measure its scheduler, not the app.
pub const MAX_INSTANCES: usize = 64;

/// Why the browsers are bounded, for messages.
pub const BROWSERS_REASON: &str = "each costs the harness about 34 KiB (10,000 peaked at 334 MiB), so 500,000 need about 16 GiB, what a 24 GiB machine can hold beside the app";

/// Why the instances are bounded, for messages.
pub const INSTANCES_REASON: &str = "each is a process with its own store connections; past 64 one machine measures its scheduler, not the app";

/// The memory a run will need, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    pub harness: u64,
    /// The reference app's instances; `None` for an app the harness did not build.
    pub instances: Option<u64>,
}

impl Estimate {
    /// For `browsers` browsers on `instances` instances of the reference app
    /// (`reference`), or of an app whose memory is its own.
    pub fn of(browsers: usize, instances: usize, reference: bool) -> Self {
        Self {
            harness: HARNESS_BASE_BYTES
                .saturating_add(BYTES_PER_BROWSER.saturating_mul(browsers as u64)),
            instances: reference.then(|| BYTES_PER_INSTANCE.saturating_mul(instances as u64)),
        }
    }

    pub fn total(&self) -> u64 {
        self.harness.saturating_add(self.instances.unwrap_or(0))
    }

    /// Why this machine, with `memory` bytes, cannot hold the run, if it cannot.
    pub fn too_big_for(&self, memory: u64) -> Option<String> {
        (self.total() > memory).then(|| {
            format!(
                "the run needs about {} of memory ({self}) and this machine has {}: fewer browsers or instances, or a larger machine",
                mib(self.total()),
                mib(memory)
            )
        })
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "harness {} at 34 KiB a browser", mib(self.harness))?;
        match self.instances {
            Some(bytes) => write!(f, ", app instances {} at 13 MiB each", mib(bytes)),
            None => f.write_str(", plus the target's own instances"),
        }
    }
}

/// Bytes as `12 MiB` or `3.4 GiB`.
pub fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / 1048576.0;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_the_measured_figures_and_never_overflows() {
        let ten_thousand = Estimate::of(10_000, 2, true);
        // 10,000 browsers peaked at 334 MiB in driver_scale.
        assert!((330 << 20..=400 << 20).contains(&ten_thousand.harness));
        assert_eq!(ten_thousand.instances, Some(26 << 20));
        assert!(ten_thousand.too_big_for(24 << 30).is_none());
        let most = Estimate::of(MAX_BROWSERS, MAX_INSTANCES, true);
        assert!(most.total() < 24 << 30, "{}", mib(most.total()));
        let why = most.too_big_for(4 << 30).expect("too big for 4 GiB");
        assert!(why.contains("16.") && why.contains("4.0 GiB"), "{why}");
        assert_eq!(Estimate::of(usize::MAX, usize::MAX, true).total(), u64::MAX);
        assert_eq!(Estimate::of(12, 2, false).instances, None);
    }
}
