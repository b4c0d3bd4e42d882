//! A scenario said in words, as `harness validate` prints it: the load, the
//! mix, the timeouts, the memory the run needs, the carts' bound, each
//! fault as written, and the app it was checked against.

use std::fmt::Write;
use std::num::NonZeroUsize;
use std::path::Path;

use super::Scenario;
use super::capacity::{self, Estimate};
use super::workload::written;
use crate::model::app::AppUnderTest;

/// The memory `scenario` needs on `app` with `instances` (the harness's
/// browsers, and the instances when the harness starts the reference app).
pub fn memory_needed(scenario: &Scenario, app: &AppUnderTest, instances: NonZeroUsize) -> Estimate {
    Estimate::of(
        scenario.workload.browsers(),
        instances.get(),
        app.topology().is_some(),
    )
}

/// What `scenario` (read from `file`) would do on `app` with `instances`,
/// one line per fact.
pub fn describe(
    file: &Path,
    scenario: &Scenario,
    app: &AppUnderTest,
    instances: NonZeroUsize,
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    let workload = &scenario.workload;
    line(format!(
        "{} people x {} browsers, {} in all (stages {}), think time {}, hopping {}, seed {}",
        workload.people,
        workload.browsers_per_person,
        written(workload.duration()),
        workload.test_plan(),
        workload.think_time,
        workload.hopping,
        scenario.seed
    ));
    line(format!(
        "mix: {}",
        workload
            .mix
            .iter()
            .map(|(action, weight)| format!("{action} {weight}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(idle) = workload.session_idle_timeout {
        line(format!(
            "sessions end {} after their last use (handed to the app)",
            written(idle)
        ));
    }
    let estimate = memory_needed(scenario, app, instances);
    line(format!(
        "memory: about {} ({estimate})",
        capacity::mib(estimate.total())
    ));
    match workload.cart_items_bound() {
        Some(0) => {}
        Some(items) if items <= contract::CART_MAX_ITEMS as u64 => line(format!(
            "carts: at most {items} items a session, under the reference app's limit of {}",
            contract::CART_MAX_ITEMS
        )),
        Some(items) => line(format!(
            "carts: up to {items} items a session if every request were instant; the reference app refuses writes past {} (cart_full), which the checker does not count as an anomaly",
            contract::CART_MAX_ITEMS
        )),
        None => line(format!(
            "carts: a pause can be zero, so a session's cart has no bound here; the reference app refuses writes past {} items (cart_full)",
            contract::CART_MAX_ITEMS
        )),
    }
    if let Some(absolute) = workload.session_absolute_timeout {
        line(format!(
            "sessions end {absolute:?} after they began, however busy (handed to the app)"
        ));
    }
    for fault in &scenario.faults.faults {
        let lasts = fault
            .lasts
            .map(|l| format!(" for {}", written(l)))
            .unwrap_or_default();
        line(format!(
            "{}: at {}{lasts}: {}",
            fault.origin,
            written(fault.at),
            fault.action
        ));
    }
    line(format!(
        "{}: {} faults, fine for {} with {} instances",
        file.display(),
        scenario.faults.faults.len(),
        app.name(),
        instances
    ));
    out
}
