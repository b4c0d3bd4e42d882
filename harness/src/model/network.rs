//! Network faults: what a fault-proxy link does to the traffic through it
//! (latency with jitter, a bandwidth limit, a blackhole, resets), as a
//! scenario's `network` fault sets them and the proxy applies them.

use std::num::NonZeroU64;
use std::time::Duration;

use serde::Deserialize;

/// What a link does to the traffic through it. Everything is off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkFaults {
    /// Added to every round trip: each chunk coming back from the store is held
    /// this long (as Toxiproxy's latency toxic on the downstream side).
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// The hold varies uniformly within `latency ± jitter` (never below zero);
    /// chunks keep their order, as on one TCP stream.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Bytes per second in each direction; unlimited when absent.
    pub bandwidth: Option<NonZeroU64>,
    /// Data in both directions is swallowed while connections stay open, so
    /// clients wait for their own timeouts.
    pub blackhole: bool,
    /// Every connection, open or new, is reset (TCP RST) at once.
    pub reset_peer: bool,
}

/// The longest latency (plus jitter) a link may add: longer is no network
/// fault but an outage, which `blackhole` says better.
pub const MAX_LATENCY: Duration = Duration::from_secs(60);

impl NetworkFaults {
    pub fn is_clear(&self) -> bool {
        *self == Self::default()
    }

    /// Refuses values no network has (checked where faults are read).
    pub fn check(&self) -> Result<(), String> {
        if self.latency.saturating_add(self.jitter) > MAX_LATENCY {
            return Err(format!(
                "latency + jitter is {:?}; at most {MAX_LATENCY:?} (use blackhole for an outage)",
                self.latency.saturating_add(self.jitter)
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for NetworkFaults {
    /// The faults that are on, e.g. `latency 50ms ± 5ms, bandwidth 1000 B/s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.latency.is_zero() || !self.jitter.is_zero() {
            let mut latency = format!("latency {:?}", self.latency);
            if !self.jitter.is_zero() {
                latency += &format!(" ± {:?}", self.jitter);
            }
            parts.push(latency);
        }
        if let Some(rate) = self.bandwidth {
            parts.push(format!("bandwidth {rate} B/s"));
        }
        if self.blackhole {
            parts.push("blackhole".into());
        }
        if self.reset_peer {
            parts.push("reset-peer".into());
        }
        match parts.is_empty() {
            true => f.write_str("clear"),
            false => f.write_str(&parts.join(", ")),
        }
    }
}
