//! What the driver benches share: their knobs from the environment, this
//! process's CPU time, and driving a load while its history is taken in.

use std::sync::Arc;
use std::time::Duration;

use harness::history::Collector;
use harness::load::browser::Shared;
use nix::sys::resource::{UsageWho, getrusage};

/// A number from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This process's user + system CPU seconds so far (every thread).
pub fn cpu_seconds() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |usage| {
        let (user, system) = (usage.user_time(), usage.system_time());
        user.tv_sec() as f64
            + user.tv_usec() as f64 / 1e6
            + system.tv_sec() as f64
            + system.tv_usec() as f64 / 1e6
    })
}

/// Drives `shared`'s workload to its end on the load's own thread, taking
/// the history in every `every` as a real run's progress does.
pub async fn drive_and_collect(shared: Arc<Shared>, mut collector: Collector, every: Duration) {
    let collecting = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            collector.drain();
        }
    });
    harness::load::drive_on_own_thread(shared)
        .await
        .expect("load");
    collecting.abort();
}
