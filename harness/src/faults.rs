//! Runs a scenario's fault schedule against a stack: each step at its time,
//! undo steps included, every step kept on the run's record with its outcome.

use std::sync::atomic::{AtomicBool, Ordering};

use mock_idp::faults::FaultConfig;
use tokio::time::Instant;

use crate::history::FaultStep;
use crate::scenario::faults::{FaultAction, FaultSchedule};
use crate::stage::StageError;
use crate::stage::network::NetworkFaults;
use crate::stage::stack::Stack;

/// Runs `schedule` against `stack`, its times counted from `start` (the
/// run's start); a step that fails is kept with its error and the rest still run.
pub async fn run(
    schedule: &FaultSchedule,
    stack: &mut Stack,
    start: Instant,
    on_step: impl FnMut(&FaultStep),
) -> Vec<FaultStep> {
    run_watched(schedule, stack, start, &AtomicBool::new(false), on_step).await
}

/// [`run`], with `applying` true while a step is being applied, so a run
/// whose load ends mid-step (an instance slow to stop) can let that step
/// finish and keep it in the timeline instead of dropping it unrecorded.
pub async fn run_watched(
    schedule: &FaultSchedule,
    stack: &mut Stack,
    start: Instant,
    applying: &AtomicBool,
    mut on_step: impl FnMut(&FaultStep),
) -> Vec<FaultStep> {
    let mut timeline = Vec::new();
    for step in schedule.steps() {
        tokio::time::sleep_until(start + step.at).await;
        let at = start.elapsed();
        applying.store(true, Ordering::SeqCst);
        let outcome = apply(stack, &step.action).await;
        applying.store(false, Ordering::SeqCst);
        let done = start.elapsed();
        let event = FaultStep {
            at: at.as_micros() as u64,
            took: (done - at).as_micros() as u64,
            action: step.action.to_string(),
            ends: step.ends,
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
        FaultAction::InstanceCrash { id, stay_down } => {
            stack.kill_instance(*id).await?;
            if *stay_down {
                return Ok(());
            }
            stack.start_instance(*id).await
        }
        FaultAction::InstanceStart(id) => stack.start_instance(*id).await,
        FaultAction::RedisRestart => stack.redis()?.restart().await,
        FaultAction::RedisFlush => stack.redis()?.flush().await,
        FaultAction::RedisSnapshot => stack.redis()?.snapshot().await,
        FaultAction::RedisPause => stack.redis()?.pause(),
        FaultAction::RedisResume => stack.redis()?.resume(),
        FaultAction::PostgresRestart => stack.postgres()?.restart().await,
        FaultAction::PostgresCrash { stay_down } => {
            let postgres = stack.postgres()?;
            postgres.kill_and_reap().await?;
            if *stay_down {
                return Ok(());
            }
            postgres.start_again().await
        }
        FaultAction::PostgresStart => stack.postgres()?.start_again().await,
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
