//! Runs a scenario's fault schedule against a stack: each step at its time,
//! undo steps included, every step kept on a timeline with its outcome.

use std::fmt;

use mock_idp::faults::FaultConfig;
use serde::Serialize;
use tokio::time::Instant;

use crate::scenario::faults::{FaultAction, FaultSchedule};
use crate::stage::StageError;
use crate::stage::network::NetworkFaults;
use crate::stage::stack::Stack;

/// A step as it happened.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineEvent {
    /// Since the schedule started.
    pub at_ms: f64,
    pub took_ms: f64,
    pub action: String,
    /// Why the step failed; absent when it worked.
    pub error: Option<String>,
}

impl fmt::Display for TimelineEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:.3}s {}", self.at_ms / 1e3, self.action)?;
        match &self.error {
            None => write!(f, ": ok in {:.0} ms", self.took_ms),
            Some(error) => write!(f, ": FAILED: {error}"),
        }
    }
}

/// Runs `schedule` against `stack` from now; a step that fails is kept on
/// the timeline with its error and the rest still run.
pub async fn run(
    schedule: &FaultSchedule,
    stack: &mut Stack,
    mut on_step: impl FnMut(&TimelineEvent),
) -> Vec<TimelineEvent> {
    let start = Instant::now();
    let mut timeline = Vec::new();
    for (due, action) in schedule.steps() {
        tokio::time::sleep_until(start + due).await;
        let at = start.elapsed();
        let outcome = apply(stack, &action).await;
        let done = start.elapsed();
        let event = TimelineEvent {
            at_ms: at.as_secs_f64() * 1e3,
            took_ms: (done - at).as_secs_f64() * 1e3,
            action: action.to_string(),
            error: outcome.err().map(|e| e.to_string()),
        };
        on_step(&event);
        timeline.push(event);
    }
    timeline
}

/// Carries out one action on the stack.
pub async fn apply(stack: &mut Stack, action: &FaultAction) -> Result<(), StageError> {
    match action {
        FaultAction::InstanceRestart(id) => stack.restart_instance(*id).await,
        FaultAction::InstanceCrash(id) => stack.crash_instance(*id).await,
        FaultAction::RedisRestart => stack.redis()?.restart().await,
        FaultAction::RedisFlush => stack.redis()?.flush().await,
        FaultAction::RedisPause => stack.redis()?.pause(),
        FaultAction::RedisResume => stack.redis()?.resume(),
        FaultAction::PostgresRestart => stack.postgres()?.restart().await,
        FaultAction::Idp(set) => stack.set_idp_faults(set).await,
        FaultAction::IdpClear => stack.set_idp_faults(&FaultConfig::default()).await,
        FaultAction::Network {
            store,
            instances,
            set,
        } => stack.set_network(*store, instances, set).map(drop),
        FaultAction::NetworkClear { store, instances } => stack
            .set_network(*store, instances, &NetworkFaults::default())
            .map(drop),
        FaultAction::NetworkReset { store, instances } => {
            stack.reset_network(*store, instances).map(drop)
        }
    }
}
