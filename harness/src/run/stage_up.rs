//! A run's bring-up: the stack of the app up, where the samplers look, the
//! contract the checker holds the app to, the stores before any browser;
//! then the wait for `--start-at`, and the browsers' shared state.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::time::Instant;

use super::{RunError, RunPlan};
use crate::check::Settings;
use crate::cpu::CpuMeter;
use crate::history::{self, Collector};
use crate::load::browser::{InstanceUrl, Shared, SharedSpec};
use crate::load::latency::Latencies;
use crate::load::{self, labels::Labels};
use crate::model::app::{AppUnderTest, ContractSettings};
use crate::model::cpu::CpuSample;
use crate::model::sample::Sample;
use crate::run_folder::RunFolder;
use crate::sample::{Place, Sampler};
use crate::scenario::faults::FaultSchedule;
use crate::scenario::workload::{Workload, person_name};
use crate::stage::stack::{Stack, StackSpec};

/// The stack up and what the run needs to know of it.
pub(super) struct Staged {
    pub stack: Stack,
    /// Where the samplers and the prober look.
    pub place: Place,
    /// What the checker must know of the app.
    pub contract: ContractSettings,
    pub idp_url: String,
    /// The stores before any browser: what each run's store figures grow from.
    pub empty: Sample,
}

/// Brings the stack of `plan` up (`schedule` says whether it needs the
/// fault proxy); `stop` completing first ends the run before it began.
pub(super) async fn stage(
    plan: &RunPlan,
    schedule: &FaultSchedule,
    folder: &RunFolder,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Staged, RunError> {
    let workload = &plan.scenario.workload;
    let spec = StackSpec {
        app: plan.app.clone(),
        instances: plan.instances,
        run_dir: folder.path().to_owned(),
        network_proxy: schedule.needs_network_proxy(),
        idp: workload.idp.clone(),
        session_idle_timeout: workload.session_idle_timeout,
        session_absolute_timeout: workload.session_absolute_timeout,
    };
    let stack = tokio::select! {
        stack = Stack::up(&spec) => stack?,
        () = &mut *stop => return Err(RunError::InterruptedEarly),
    };
    // A signal that came while the stage came up (goose's Ctrl-C handler,
    // installed by an earlier run, only sets its killswitch) stops here.
    if load::stopped_early() {
        return Err(RunError::InterruptedEarly);
    }
    let contract = contract_settings(plan, workload);
    let place = Place {
        instances: instance_urls(&stack),
        redis_url: stack.redis.as_ref().map(|r| r.url()),
        redis_cluster_url: stack.redis_cluster.as_ref().map(|c| c.url()),
        database_url: stack.postgres.as_ref().map(|p| p.url()),
        namespace: stack.namespace.clone(),
        topology: plan.app.topology().cloned(),
        pids: stack.instance_pids(),
        encryption_secret: stack.encryption_secret.clone().into_bytes(),
        sqlite_path: folder.path().join("app-store.db"),
        cpu: CpuMeter::of(&stack),
    };
    let idp_url = stack.idp_url();
    let empty = Sampler::new(place.clone()).sample(0).await;
    Ok(Staged {
        stack,
        place,
        contract,
        idp_url,
        empty,
    })
}

/// Sleeps until `at` (`--start-at`); a moment already gone by more than a
/// second is refused, as the shards would not start together.
pub(super) async fn wait_for_start(
    at: SystemTime,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Result<(), RunError> {
    let when = crate::scenario::time::rfc3339(
        at.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    );
    match at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            eprintln!("waiting {:.1} s for --start-at {when}", wait.as_secs_f64());
            tokio::select! {
                () = tokio::time::sleep(wait) => Ok(()),
                () = &mut *stop => Err(RunError::InterruptedEarly),
            }
        }
        Err(late) if late.duration() > Duration::from_secs(1) => Err(RunError::Setup(format!(
            "--start-at {when} passed {:.1} s before the stage was ready, so this shard would start after the others: give a later moment (bring-up took longer than the time left)",
            late.duration().as_secs_f64()
        ))),
        Err(_) => Ok(()),
    }
}

/// The browsers' shared state and what the run reads of them as they go.
pub(super) struct Load {
    pub shared: Arc<Shared>,
    pub latencies: Arc<Latencies>,
    /// Drains the history the browsers record.
    pub collector: Arc<Mutex<Collector>>,
    pub labels: Arc<Labels>,
    /// The load's start: every history time counts from it.
    pub start: Instant,
    pub started_unix_ms: u64,
    pub cpu_at_start: CpuSample,
    /// What the live and final checks hold the history to.
    pub settings: Settings,
}

/// The clock starts here: the stage's CPU read, the browsers' shared
/// state made (they trust the IdP's CA and tell the witness when asked).
pub(super) fn load(plan: &RunPlan, staged: &Staged) -> Result<Load, RunError> {
    let workload = &plan.scenario.workload;
    let contract = &staged.contract;
    let instances = staged.place.instances.clone();
    let cpu_at_start = staged.place.cpu.read();
    let start = Instant::now();
    let started_unix_ms = unix_ms();
    let (recorder, collector) = history::channel();
    let collector = Arc::new(Mutex::new(collector));
    let latencies = Arc::new(Latencies::new(
        workload.think_time.mean().as_micros() as u64,
        instances.iter().map(|i| i.id.clone()).collect(),
    ));
    let mut shared = Shared::new(SharedSpec {
        instances,
        idp_base: staged.stack.idp_browser_url(),
        session_cookie: contract.session_cookie.clone(),
        recorder,
        latencies: latencies.clone(),
        workload: workload.clone(),
        seed: plan.scenario.seed,
        start,
    })
    .map_err(RunError::Setup)?;
    shared.renewal_offset = contract.renewal_offset;
    if let Some(shard) = plan.shard {
        shared.set_shard(shard);
    }
    // A launched app signs in over HTTPS (MSAL insists), so the browsers
    // trust the IdP's own CA.
    if let Some(ca) = staged
        .stack
        .idp_listeners
        .as_ref()
        .and_then(|l| l.ca_file())
    {
        shared.http =
            contract::HttpClient::trusting(ca).map_err(|e| RunError::Setup(e.to_string()))?;
    }
    if let Some(witness) = &plan.witness {
        shared.http = shared.http.clone().witnessed_by(witness.clone());
    }
    let labels = shared.labels.clone();
    let settings = Settings {
        idle_timeout: contract.idle_timeout,
        absolute_timeout: contract.absolute_timeout,
        renewal_offset: contract.renewal_offset,
        started_unix_ms,
        subjects: subjects(workload.people.get()),
    };
    Ok(Load {
        shared: Arc::new(shared),
        latencies,
        collector,
        labels,
        start,
        started_unix_ms,
        cpu_at_start,
        settings,
    })
}

/// What the checker must know of the app: a target's file says it; the
/// reference app renews as its flags say (see `IdpOptions::renewal_offset`).
fn contract_settings(plan: &RunPlan, workload: &Workload) -> ContractSettings {
    match plan.app.contract() {
        Some(settings) => {
            let mut settings = settings.clone();
            // A launched target that takes the scenario's idle timeout runs with it.
            if let (Some(idle), AppUnderTest::Launched(target)) =
                (workload.session_idle_timeout, &plan.app)
                && target.takes("session_idle_timeout_secs")
            {
                settings.idle_timeout = idle;
            }
            // So does one that takes its absolute timeout.
            if let (Some(absolute), AppUnderTest::Launched(target)) =
                (workload.session_absolute_timeout, &plan.app)
                && target.takes("session_absolute_timeout_secs")
            {
                settings.absolute_timeout = Some(absolute);
            }
            settings
        }
        None => ContractSettings {
            session_cookie: "app_session".into(),
            renewal_offset: workload.idp.renewal_offset(),
            idle_timeout: workload
                .session_idle_timeout
                .unwrap_or(app::session::DEFAULT_IDLE_TIMEOUT),
            absolute_timeout: Some(
                workload
                    .session_absolute_timeout
                    .unwrap_or(app::session::DEFAULT_ABSOLUTE_TIMEOUT),
            ),
            ..ContractSettings::default()
        },
    }
}

/// Where the browsers reach a stack's instances.
pub fn instance_urls(stack: &Stack) -> Vec<InstanceUrl> {
    stack
        .instances
        .iter()
        .map(|i| InstanceUrl {
            id: i.id.to_string(),
            base: i.url(),
        })
        .collect()
}

/// The sessions' IdP subjects for a run's people (exported for tests).
pub fn subjects(people: usize) -> std::collections::HashMap<String, String> {
    (0..people)
        .map(person_name)
        .map(|user| {
            let oid = mock_idp::users::oid_of(&user);
            (user, oid)
        })
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
