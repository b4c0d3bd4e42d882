//! Runs a scenario's fault schedule against a stack: each step at its time,
//! undo steps included, every step kept on the run's record with its outcome.
//! Meanwhile it watches the app instances: one that exits by itself is put
//! on the record too (`instance-exit app-N`, its exit status and last log
//! lines), and started again only when the scenario asks for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mock_idp::faults::FaultConfig;
use tokio::time::Instant;

use crate::history::{FaultStep, Unscheduled};
use crate::model::ids::StoreKind;
use crate::model::network::NetworkFaults;
use crate::scenario::faults::{FaultAction, FaultSchedule};
use crate::stage::StageError;
use crate::stage::stack::Stack;

/// Runs `schedule` against `stack`, its times counted from `start` (the
/// run's start); a step that fails is kept with its error and the rest still run.
pub async fn run(
    schedule: &FaultSchedule,
    stack: &mut Stack,
    start: Instant,
    on_step: impl FnMut(&FaultStep),
) -> Vec<FaultStep> {
    run_watched(
        schedule,
        stack,
        start,
        &AtomicBool::new(false),
        Watch::Off,
        on_step,
    )
    .await
}

/// How often the instances are looked at for one that exited by itself.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// Whether and how instances that exit by themselves are watched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Watch {
    /// Not watched: the schedule ends when its last step has run.
    #[default]
    Off,
    /// Each is recorded, and stays down.
    Record,
    /// Each is recorded and started again, as a process supervisor would.
    Restart,
}

/// [`run`], with `applying` true while a step is being applied, so a run
/// whose load ends mid-step (an instance slow to stop) can let that step
/// finish and keep it in the timeline instead of dropping it unrecorded.
/// Watching instances (`watch` not [`Watch::Off`]), it never ends by itself:
/// the caller drops it when the load is over.
pub async fn run_watched(
    schedule: &FaultSchedule,
    stack: &mut Stack,
    start: Instant,
    applying: &AtomicBool,
    watch: Watch,
    mut on_step: impl FnMut(&FaultStep),
) -> Vec<FaultStep> {
    let mut timeline: Vec<FaultStep> = Vec::new();
    let steps = schedule.steps();
    // Where each scheduled step stands in the timeline, which the stage's
    // own events interleave: undo steps name their step by that place.
    let mut placed: Vec<usize> = Vec::with_capacity(steps.len());
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = steps.get(placed.len());
        if next.is_none() && watch == Watch::Off {
            return timeline;
        }
        let due = next.map(|step| start + step.at);
        tokio::select! {
            () = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await },
                if due.is_some() =>
            {
                let Some(step) = next else { continue };
                let at = start.elapsed();
                applying.store(true, Ordering::SeqCst);
                let outcome = apply(stack, &step.action).await;
                applying.store(false, Ordering::SeqCst);
                let done = start.elapsed();
                let event = FaultStep {
                    at: at.as_micros() as u64,
                    took: (done - at).as_micros() as u64,
                    action: step.action.to_string(),
                    ends: step.ends.and_then(|i| placed.get(i).copied()),
                    error: outcome.err().map(|e| e.to_string()),
                    unscheduled: None,
                };
                placed.push(timeline.len());
                on_step(&event);
                timeline.push(event);
            }
            _ = tick.tick(), if watch != Watch::Off => {
                for event in exited(stack, start, watch, timeline.len()).await {
                    on_step(&event);
                    timeline.push(event);
                }
            }
        }
    }
}

/// The instances that exited by themselves since the last look, as steps
/// (`first` is where the first will stand in the timeline), each followed
/// by its start when `watch` restarts them.
async fn exited(stack: &mut Stack, start: Instant, watch: Watch, first: usize) -> Vec<FaultStep> {
    let mut events = Vec::new();
    for (id, status, last_output) in stack.instances_exited() {
        let exit_at = start.elapsed().as_micros() as u64;
        let exit = first + events.len();
        events.push(FaultStep {
            at: exit_at,
            took: 0,
            action: format!("instance-exit {id}"),
            ends: None,
            error: None,
            unscheduled: Some(Unscheduled {
                status,
                last_output,
            }),
        });
        if watch == Watch::Restart {
            let at = start.elapsed();
            let outcome = stack.start_instance(id).await;
            events.push(FaultStep {
                at: at.as_micros() as u64,
                took: (start.elapsed() - at).as_micros() as u64,
                action: format!("instance-start {id}"),
                ends: Some(exit),
                error: outcome.err().map(|e| e.to_string()),
                unscheduled: Some(Unscheduled {
                    status: "started again by the harness ([app] restart_exited)".into(),
                    last_output: Vec::new(),
                }),
            });
        }
    }
    events
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
        FaultAction::RedisMasterKill => stack.redis_cluster()?.kill_master().await.map(drop),
        FaultAction::RedisFailover => stack.redis_cluster()?.failover().await.map(drop),
        FaultAction::RedisReshard { share } => {
            stack.redis_cluster()?.reshard(*share).await.map(drop)
        }
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
        // A cluster's proxies stand in front of its nodes, not between an
        // instance and the store.
        FaultAction::Network {
            store: StoreKind::RedisCluster,
            node,
            set,
            ..
        } => stack.set_cluster_network(*node, set).map(drop),
        FaultAction::NetworkClear {
            store: StoreKind::RedisCluster,
            node,
            ..
        } => stack
            .set_cluster_network(*node, &NetworkFaults::default())
            .map(drop),
        FaultAction::NetworkReset {
            store: StoreKind::RedisCluster,
            node,
            ..
        } => stack.reset_cluster_network(*node).map(drop),
        FaultAction::Network {
            store,
            instances,
            set,
            ..
        } => stack.set_network(*store, instances, set).map(drop),
        FaultAction::NetworkClear {
            store, instances, ..
        } => stack
            .set_network(*store, instances, &NetworkFaults::default())
            .map(drop),
        FaultAction::NetworkReset {
            store, instances, ..
        } => stack.reset_network(*store, instances).map(drop),
    }
}
