//! Fault windows: when each fault of the run was in force, so every anomaly
//! can be put in the window it happened in (or in none).
//!
//! A fault with a `for` lasts until its undo step; one without (a restart, a
//! crash, a flush, a reset) lasts while it is carried out and a settling time
//! after, when its effects show (requests in flight, reconnections).

use std::time::Duration;

use crate::history::{FaultStep, Micros};

/// The time after an instant fault during which effects are put on it.
pub const SETTLE: Duration = Duration::from_secs(5);

/// One fault in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The step that started it (index into the run's fault steps).
    pub step: usize,
    pub label: String,
    pub from: Micros,
    pub to: Micros,
}

/// The windows of a run's fault steps; undo steps open none of their own.
/// A fault whose undo never ran lasts until `run_end`.
pub fn windows(steps: &[FaultStep], run_end: Micros) -> Vec<Window> {
    let settle = SETTLE.as_micros() as Micros;
    steps
        .iter()
        .enumerate()
        .filter(|(_, step)| step.ends.is_none() && step.error.is_none())
        .map(|(index, step)| {
            let undo = steps.iter().find(|s| s.ends == Some(index));
            let to = match undo {
                Some(undo) => undo.at + undo.took,
                None if has_undo(&step.action) => run_end,
                None => step.at + step.took + settle,
            };
            Window {
                step: index,
                label: step.action.clone(),
                from: step.at,
                to: to.max(step.at),
            }
        })
        .collect()
}

/// Whether an action is one a `for` (or its undo) ends rather than an instant.
fn has_undo(action: &str) -> bool {
    // An instance that exited by itself stays down unless started again.
    ["redis-pause", "idp ", "network ", "instance-exit "]
        .iter()
        .any(|prefix| action.starts_with(prefix))
}

/// The fault actions that restart a store or lose what it holds; Redis is
/// run with nothing persisted, so its restart empties it as a flush does,
/// and a killed cluster master loses what it had not yet replicated.
pub const STORE_LOSSES: [&str; 5] = [
    "redis-restart",
    "redis-flush",
    "redis-master-kill",
    "postgres-restart",
    "postgres-crash",
];

/// Whether a fault (a step's action, or a scenario's `at 30s: ...` line)
/// restarts a store or loses its data.
pub fn is_store_loss(action: &str) -> bool {
    action
        .split([' ', ':'])
        .any(|word| STORE_LOSSES.contains(&word))
}

/// The window `at` fell in: the latest-starting one that covers it.
pub fn window_of(windows: &[Window], at: Micros) -> Option<&Window> {
    windows
        .iter()
        .filter(|w| w.from <= at && at <= w.to)
        .max_by_key(|w| w.from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(at: u64, action: &str, ends: Option<usize>) -> FaultStep {
        FaultStep {
            at,
            took: 1_000,
            action: action.into(),
            ends,
            error: None,
            unscheduled: None,
        }
    }

    #[test]
    fn undo_steps_close_their_window_and_instants_settle() {
        let steps = [
            step(1_000_000, "redis-pause", None),
            step(2_000_000, "instance-restart app-1", None),
            step(3_000_000, "redis-resume", Some(0)),
            step(
                4_000_000,
                "network redis from every instance: latency 5ms",
                None,
            ),
        ];
        let found = windows(&steps, 60_000_000);
        assert_eq!(found.len(), 3);
        assert_eq!((found[0].from, found[0].to), (1_000_000, 3_001_000));
        assert_eq!(found[1].to, 2_001_000 + SETTLE.as_micros() as u64);
        assert_eq!(found[2].to, 60_000_000, "never undone: lasts to the end");
        assert_eq!(window_of(&found, 2_500_000).map(|w| w.step), Some(1));
        assert_eq!(window_of(&found, 1_500_000).map(|w| w.step), Some(0));
        assert_eq!(window_of(&found, 500_000), None);
    }

    #[test]
    fn store_losses_are_named_by_their_action() {
        for action in [
            "redis-restart",
            "at 30s: redis-flush",
            "postgres-crash (down until started)",
            "postgres-restart",
        ] {
            assert!(is_store_loss(action), "{action}");
        }
        for action in [
            "redis-pause",
            "instance-restart app-1",
            "postgres-start",
            "network redis from every instance: latency 5ms",
        ] {
            assert!(!is_store_loss(action), "{action}");
        }
    }
}
