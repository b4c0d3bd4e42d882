//! One run: a scenario on an app (the reference app in a topology, or a
//! target) -> the stage up -> faults, load and sampler side by side -> a
//! grace period -> the facts measured beside the history -> the verdict
//! ([`crate::judge`], the one path from a history to a verdict). An
//! interrupted run (Ctrl-C, SIGTERM) stops the load, checks and writes what
//! it measured, marked incomplete, and tears the stage down.
//!
//! - [`stage_up`]: the stack up, where the samplers look, the browsers' state.
//! - [`watch`]: the sampler and the prober, on tasks of their own.
//! - [`live`]: the load with the faults beside it, checked as it goes.
//! - [`end_state`]: the grace period, the history finished, the stores' leftovers.
//! - [`facts`]: what was measured assembled as the run's facts (pure).

mod end_state;
mod facts;
mod live;
mod stage_up;
mod watch;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::SystemTime;

pub use self::stage_up::{instance_urls, subjects};
use crate::history::History;
use crate::judge::{self, CpuFacts, Judged, RunFacts};
use crate::load::LoadError;
use crate::model::app::AppUnderTest;
use crate::results::Results;
use crate::run_folder::RunFolder;
use crate::scenario::Scenario;
use crate::scenario::faults::FaultSchedule;
use crate::shard::Shard;
use crate::stage::StageError;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub scenario: Scenario,
    /// The file the scenario came from, for the results.
    pub scenario_file: Option<PathBuf>,
    pub app: AppUnderTest,
    /// Instances to start (a remote target has as many as it names).
    pub instances: NonZeroUsize,
    pub run_dir: Option<PathBuf>,
    pub keep: bool,
    /// Names this machine's run in the results (merges keep sources apart).
    pub source: String,
    /// A test hook: told every cookie and credential the browsers are
    /// handed, for a test to look for in what the run wrote.
    pub witness: Option<contract::Witness>,
    /// `--shard I/N`: drive only this slice of the browsers; the faults
    /// only when it is the scenario's fault shard.
    pub shard: Option<Shard>,
    /// `--start-at`: the moment the load starts, once the stage is up.
    pub start_at: Option<SystemTime>,
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("interrupted before the load started: nothing was measured")]
    InterruptedEarly,
    #[error("{0}")]
    Setup(String),
}

/// A run's results (marked incomplete when it was cut short) and the kept run folder.
pub struct Outcome {
    pub results: Results,
    pub folder: Option<PathBuf>,
    /// Every request the checker read (for `bench --history`).
    pub history: History,
    /// What the verdict rests on besides the history (its file's first line).
    pub facts: RunFacts,
}

/// Runs `plan`; `stop` completing (a signal) ends it early.
pub async fn run(
    plan: &RunPlan,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Outcome, RunError> {
    let workload = &plan.scenario.workload;
    // One shard applies the faults (the scenario's `fault_shard`, else 1):
    // N shards each restarting Redis would be N faults, not the scenario's.
    let schedule = match plan.shard {
        Some(shard) if shard.index != plan.scenario.fault_shard() => FaultSchedule::default(),
        _ => plan.scenario.faults.for_app(&plan.app),
    };
    let folder = RunFolder::new(plan.run_dir.clone())?;
    let mut staged = stage_up::stage(plan, &schedule, &folder, stop).await?;
    if let Some(at) = plan.start_at {
        stage_up::wait_for_start(at, stop).await?;
    }
    let browsers = stage_up::load(plan, &staged)?;
    let start = browsers.start;
    let watchers = watch::Watchers::start(&staged.place, start, staged.empty).await;

    let lived = live::drive(
        plan.app.name(),
        workload,
        &schedule,
        &mut staged.stack,
        &browsers,
        stop,
    )
    .await?;
    let mut stopped_because = lived.stopped_because;
    let load_end = start.elapsed();
    let cpu_at_end = staged.place.cpu.read();
    let cpu = CpuFacts::between(browsers.cpu_at_start.clone(), cpu_at_end, &staged.place.cpu);
    let (samples, references) = watchers.stop().await;

    let instances = browsers
        .shared
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let started_unix_ms = browsers.started_unix_ms;
    let end = end_state::gather(
        staged.place,
        workload,
        browsers,
        lived.steps,
        &samples,
        &staged.idp_url,
        stop,
        &mut stopped_because,
    )
    .await;
    drop(staged.stack);
    let kept = plan.keep.then(|| folder.keep());

    let facts = facts::run_facts(
        plan,
        &staged.contract,
        facts::Measured {
            instances,
            host: crate::host::host_facts(),
            started_unix_ms,
            duration_secs: load_end.as_secs_f64(),
            stopped_because,
            samples: samples.lock().clone(),
            references,
            idp: end.idp,
            look: end.look,
            leftovers: end.leftovers,
            cpu,
        },
    );
    let Judged { results, .. } = judge::judge(&facts, &end.history);
    Ok(Outcome {
        results,
        folder: kept,
        history: end.history,
        facts,
    })
}
