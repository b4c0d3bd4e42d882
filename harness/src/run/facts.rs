//! A run's facts assembled from what it measured: the scenario as resolved,
//! the app as the results name it, the measurements. Pure: no stack, no
//! clock, no file. The verdict is [`crate::judge`]'s, from these facts and
//! the history.

use super::RunPlan;
use crate::check::orphans::Leftovers;
use crate::history::Micros;
use crate::judge::{AppFacts, CpuFacts, IdpCounts, RunFacts, ScenarioFacts};
use crate::model::app::{AppUnderTest, ContractSettings};
use crate::model::sample::Sample;
use crate::results::{AppKind, HarnessInfo, HostFacts, ReferenceSeries, SourceShard, TopologyInfo};

/// What the run measured, beside the history.
pub(super) struct Measured {
    /// The instances requests went to, in order (`app-1`, ...).
    pub instances: Vec<String>,
    pub host: HostFacts,
    pub started_unix_ms: u64,
    /// How long the load ran.
    pub duration_secs: f64,
    pub stopped_because: Option<String>,
    pub samples: Vec<Sample>,
    pub references: Vec<ReferenceSeries>,
    pub idp: IdpCounts,
    pub look: Micros,
    pub leftovers: Leftovers,
    pub cpu: CpuFacts,
}

/// The facts of `plan`'s run of an app held to `contract`.
pub(super) fn run_facts(
    plan: &RunPlan,
    contract: &ContractSettings,
    measured: Measured,
) -> RunFacts {
    RunFacts {
        scenario: ScenarioFacts {
            file: plan.scenario_file.as_ref().map(|p| p.display().to_string()),
            seed: plan.scenario.seed,
            instances: plan.instances.get(),
            workload: plan.scenario.workload.clone(),
            faults: fault_entries(plan),
        },
        topology: topology_info(&plan.app),
        app: AppFacts {
            idle_timeout: contract.idle_timeout,
            absolute_timeout: contract.absolute_timeout,
            renewal_offset: contract.renewal_offset,
        },
        instances: measured.instances,
        source: plan.source.clone(),
        harness: HarnessInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            git_revision: option_env!("HARNESS_GIT_REVISION").map(str::to_owned),
        },
        host: measured.host,
        started_unix_ms: measured.started_unix_ms,
        duration_secs: measured.duration_secs,
        stopped_because: measured.stopped_because,
        samples: measured.samples,
        references: measured.references,
        idp: measured.idp,
        look: measured.look,
        leftovers: measured.leftovers,
        cpu: Some(measured.cpu),
        shard: plan.shard.map(|shard| SourceShard {
            index: shard.index,
            count: shard.count,
            fault_shard: plan.scenario.fault_shard(),
        }),
    }
}

/// The `[[faults]]` entries as the results list them, each said skipped
/// where the app runs without the store it needs.
fn fault_entries(plan: &RunPlan) -> Vec<String> {
    plan.scenario
        .faults
        .faults
        .iter()
        .map(|f| {
            let when = match f.lasts {
                Some(lasts) => format!("at {:?} for {lasts:?}", f.at),
                None => format!("at {:?}", f.at),
            };
            let skipped = if f.fits(&plan.app) {
                ""
            } else {
                " (skipped: the app runs without its store)"
            };
            format!("{when}: {}{skipped}", f.action)
        })
        .collect()
}

/// What the results say of the app: the reference app's topology in full;
/// for a target its name and kind, the rest being its own (empty here).
fn topology_info(app: &AppUnderTest) -> TopologyInfo {
    match app {
        AppUnderTest::Reference(topology) => TopologyInfo {
            name: topology.name.clone(),
            app: AppKind::Reference,
            session_backend: serde_name(&topology.session_backend),
            token_cache: serde_name(&topology.token_cache),
            encrypt: topology.encrypt,
            concurrency: serde_name(&topology.concurrency),
            models: None,
            file: None,
            description: None,
        },
        AppUnderTest::Launched(_) | AppUnderTest::Remote(_) => TopologyInfo {
            name: app.name().to_owned(),
            app: match app {
                AppUnderTest::Launched(_) => AppKind::Launched,
                _ => AppKind::Remote,
            },
            session_backend: String::new(),
            token_cache: String::new(),
            encrypt: false,
            concurrency: String::new(),
            models: app.contract().and_then(|c| c.models.clone()),
            file: app.contract().and_then(|c| c.file.clone()),
            description: app.contract().and_then(|c| c.description.clone()),
        },
    }
}

/// A value's serde name (`redis-postgres`, `partitioned`).
fn serde_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
