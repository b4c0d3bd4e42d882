//! The app's own counters and gauges, rendered as Prometheus text at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::store::StoreSize;
use crate::store::breaker::Breaker;
use crate::store::tiered::coherence::CoherenceStats;

/// A token cache held in the app's own memory, as `/metrics` reports it.
/// Defined here, beside the gauge it feeds, so that the metrics (which the
/// IdP client counts into) import nothing of the token cache: the placements
/// hand it over, and no import runs in a circle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resident {
    /// Accounts, ID tokens, access tokens and refresh tokens together.
    pub entries: u64,
    /// Accounts (users) it holds tokens for.
    pub accounts: u64,
}

/// Counters kept by this instance.
#[derive(Default)]
pub struct Metrics {
    idp_calls: Mutex<BTreeMap<(String, String), u64>>,
    token_sources: Mutex<BTreeMap<String, u64>>,
    write_conflicts: Mutex<u64>,
    refreshes_handed_over: Mutex<u64>,
}

impl Metrics {
    /// One call to the IdP: `call` is the grant or endpoint, `outcome` ok or a failure kind.
    pub fn idp_call(&self, call: &str, outcome: &str) {
        *self
            .idp_calls
            .lock()
            .entry((call.to_owned(), outcome.to_owned()))
            .or_insert(0) += 1;
    }

    /// Where an access token came from: `cache` or `refresh`.
    pub fn token_source(&self, source: &str) {
        *self
            .token_sources
            .lock()
            .entry(source.to_owned())
            .or_insert(0) += 1;
    }

    /// A compare-and-set write that found another writer first and was retried.
    pub fn write_conflict(&self) {
        *self.write_conflicts.lock() += 1;
    }

    /// Tokens a lease holder could not write, applied by the next holder
    /// instead of a second refresh (see `tokencache::handoff`).
    pub fn refresh_handed_over(&self) {
        *self.refreshes_handed_over.lock() += 1;
    }

    pub fn idp_calls(&self, call: &str, outcome: &str) -> u64 {
        self.idp_calls
            .lock()
            .get(&(call.to_owned(), outcome.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text for the counters plus the gauges sampled now.
    pub fn render(
        &self,
        instance: &str,
        stores: &[(&str, Option<StoreSize>)],
        token_cache: Option<Resident>,
        undecryptable: u64,
        breakers: &[Arc<Breaker>],
        coherence: Option<&CoherenceStats>,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP app_idp_calls_total Calls this instance made to the identity provider."
        );
        let _ = writeln!(out, "# TYPE app_idp_calls_total counter");
        for ((call, outcome), n) in self.idp_calls.lock().iter() {
            let _ = writeln!(
                out,
                "app_idp_calls_total{{instance=\"{instance}\",call=\"{call}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP app_token_source_total Access tokens used, by where they came from."
        );
        let _ = writeln!(out, "# TYPE app_token_source_total counter");
        for (source, n) in self.token_sources.lock().iter() {
            let _ = writeln!(
                out,
                "app_token_source_total{{instance=\"{instance}\",source=\"{source}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# TYPE app_write_conflicts_total counter");
        let _ = writeln!(
            out,
            "app_write_conflicts_total{{instance=\"{instance}\"}} {}",
            self.write_conflicts.lock()
        );
        let _ = writeln!(out, "# TYPE app_refreshes_handed_over_total counter");
        let _ = writeln!(
            out,
            "app_refreshes_handed_over_total{{instance=\"{instance}\"}} {}",
            self.refreshes_handed_over.lock()
        );
        let _ = writeln!(out, "# TYPE app_undecryptable_records_total counter");
        let _ = writeln!(
            out,
            "app_undecryptable_records_total{{instance=\"{instance}\"}} {undecryptable}"
        );
        let _ = writeln!(
            out,
            "# HELP app_store_entries Entries in a store as this instance sees it (absent: store unreachable)."
        );
        let _ = writeln!(out, "# TYPE app_store_entries gauge");
        let _ = writeln!(out, "# TYPE app_store_bytes gauge");
        for (store, size) in stores {
            if let Some(size) = size {
                let _ = writeln!(
                    out,
                    "app_store_entries{{instance=\"{instance}\",store=\"{store}\"}} {}",
                    size.entries
                );
                let _ = writeln!(
                    out,
                    "app_store_bytes{{instance=\"{instance}\",store=\"{store}\"}} {}",
                    size.bytes
                );
            }
        }
        if let Some(resident) = token_cache {
            let _ = writeln!(
                out,
                "app_store_entries{{instance=\"{instance}\",store=\"instance_token_cache\"}} {}",
                resident.entries
            );
            let _ = writeln!(
                out,
                "# HELP app_token_cache_accounts Accounts (users) this process's own token cache holds tokens for."
            );
            let _ = writeln!(out, "# TYPE app_token_cache_accounts gauge");
            let _ = writeln!(
                out,
                "app_token_cache_accounts{{instance=\"{instance}\"}} {}",
                resident.accounts
            );
        }
        let _ = writeln!(
            out,
            "# HELP app_store_down Whether the breaker holds a store as down (1) or up (0)."
        );
        let _ = writeln!(out, "# TYPE app_store_down gauge");
        let _ = writeln!(out, "# TYPE app_store_outages_total counter");
        let _ = writeln!(out, "# TYPE app_store_timeouts_total counter");
        let _ = writeln!(out, "# TYPE app_store_fast_failures_total counter");
        let _ = writeln!(out, "# TYPE app_store_cut_short_total counter");
        let _ = writeln!(
            out,
            "# HELP app_store_round_trips_total Operations the request path sent to a store (a pipeline or batched query counts once)."
        );
        let _ = writeln!(out, "# TYPE app_store_round_trips_total counter");
        for breaker in breakers {
            let store = breaker.store_kind();
            let stats = breaker.stats();
            let labels = format!("instance=\"{instance}\",store=\"{store}\"");
            let _ = writeln!(
                out,
                "app_store_down{{{labels}}} {}",
                u8::from(breaker.is_open())
            );
            for (name, counter) in [
                ("outages", &stats.outages),
                ("timeouts", &stats.timeouts),
                ("fast_failures", &stats.fast_failures),
                ("cut_short", &stats.cut_short),
                ("round_trips", &stats.round_trips),
            ] {
                let _ = writeln!(
                    out,
                    "app_store_{name}_total{{{labels}}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
        }
        if let Some(stats) = coherence {
            let _ = writeln!(
                out,
                "# HELP app_cache_reads_total Reads of the Redis cache tier, by how they were served: trusted (Redis alone), checked (against Postgres's versions), durable (Postgres)."
            );
            let _ = writeln!(out, "# TYPE app_cache_reads_total counter");
            for (path, counter) in [
                ("trusted", &stats.trusted_reads),
                ("checked", &stats.checked_reads),
                ("durable", &stats.durable_reads),
            ] {
                let _ = writeln!(
                    out,
                    "app_cache_reads_total{{instance=\"{instance}\",path=\"{path}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
            let _ = writeln!(
                out,
                "# HELP app_coherence_events_total This instance's coherence protocol events: registered as degraded, recovered, adopted a Redis server."
            );
            let _ = writeln!(out, "# TYPE app_coherence_events_total counter");
            for (event, counter) in [
                ("registered", &stats.registrations),
                ("recovered", &stats.recoveries),
                ("adopted", &stats.adoptions),
            ] {
                let _ = writeln!(
                    out,
                    "app_coherence_events_total{{instance=\"{instance}\",event=\"{event}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
            let _ = writeln!(
                out,
                "# HELP app_missed_deletes_waiting Tombstones that could not be copied to Redis, waiting to be written again."
            );
            let _ = writeln!(out, "# TYPE app_missed_deletes_waiting gauge");
            let _ = writeln!(
                out,
                "app_missed_deletes_waiting{{instance=\"{instance}\"}} {}",
                stats.missed_deletes_waiting.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "# HELP app_missed_deletes_total Those tombstones since start: written again, or dropped unwritten (beyond the bound kept)."
            );
            let _ = writeln!(out, "# TYPE app_missed_deletes_total counter");
            for (outcome, counter) in [
                ("written", &stats.missed_deletes_written),
                ("dropped", &stats.missed_deletes_dropped),
            ] {
                let _ = writeln!(
                    out,
                    "app_missed_deletes_total{{instance=\"{instance}\",outcome=\"{outcome}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
            let _ = writeln!(out, "# TYPE app_coherence_generation gauge");
            let _ = writeln!(
                out,
                "app_coherence_generation{{instance=\"{instance}\"}} {}",
                stats.generation.load(Ordering::Relaxed)
            );
            let _ = writeln!(out, "# TYPE app_coherence_fleet_degraded gauge");
            let _ = writeln!(
                out,
                "app_coherence_fleet_degraded{{instance=\"{instance}\"}} {}",
                stats.fleet_degraded.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP app_process_resident_memory_bytes Resident set size of this process."
        );
        let _ = writeln!(out, "# TYPE app_process_resident_memory_bytes gauge");
        if let Some(rss) = resident_bytes() {
            let _ = writeln!(
                out,
                "app_process_resident_memory_bytes{{instance=\"{instance}\"}} {rss}"
            );
        }
        out
    }
}

/// Resident set size from `/proc/self/status` (Linux); `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
