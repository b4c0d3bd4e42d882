//! One run: a scenario on an app (the reference app in a topology, or a
//! target) -> the stage up -> faults, load and
//! sampler side by side -> a grace period -> the check -> the results
//! document. An interrupted run (Ctrl-C, SIGTERM) stops the load, checks and
//! writes what it measured, marked incomplete, and tears the stage down.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::check::orphans::{self, Leftovers};
use crate::check::resident;
use crate::check::windows;
use crate::check::{self, Settings};
use crate::cpu::CpuMeter;
use crate::faults;
use crate::history::{self, FaultStep, History};
use crate::judge::{self, AppFacts, CpuFacts, IdpCounts, Judged, RunFacts, ScenarioFacts};
use crate::load::browser::{InstanceUrl, Shared};
use crate::load::latency::Latencies;
use crate::load::{self, LoadError};
use crate::progress::{Figures, Progress};
use crate::reference::{self, Prober};
use crate::results::{AppKind, HarnessInfo, HostFacts, Results, SourceShard, TopologyInfo};
use crate::run_folder::RunFolder;
use crate::sample::{Place, Sampler};
use crate::scenario::Scenario;
use crate::scenario::faults::FaultSchedule;
use crate::scenario::workload::Workload;
use crate::scenario::workload::person_name;
use crate::shard::Shard;
use crate::stage::StageError;
use crate::stage::stack::{Stack, StackSpec};
use crate::stage::target::{AppUnderTest, ContractSettings};

/// How long a fault step in progress when the load ends may take to finish.
const STEP_FINISH_WAIT: Duration = Duration::from_secs(60);

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
    let spec = StackSpec {
        app: plan.app.clone(),
        instances: plan.instances,
        run_dir: folder.path().to_owned(),
        network_proxy: schedule.needs_network_proxy(),
        idp: workload.idp.clone(),
        session_idle_timeout: workload.session_idle_timeout,
        session_absolute_timeout: workload.session_absolute_timeout,
    };
    let mut stack = tokio::select! {
        stack = Stack::up(&spec) => stack?,
        () = &mut *stop => return Err(RunError::InterruptedEarly),
    };
    // A signal that came while the stage came up (goose's Ctrl-C handler,
    // installed by an earlier run, only sets its killswitch) stops here.
    if load::stopped_early() {
        return Err(RunError::InterruptedEarly);
    }
    let instances = instance_urls(&stack);
    let contract = contract_settings(plan, workload);
    let place = Place {
        instances: instances.clone(),
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
    // The stores before any browser: what each run's store figures grow from.
    let empty = Sampler::new(place.clone()).sample(0).await;

    if let Some(at) = plan.start_at {
        wait_for_start(at, stop).await?;
    }
    let cpu_at_start = place.cpu.read();
    let start = Instant::now();
    let started_unix_ms = unix_ms();
    let (recorder, collector) = history::channel();
    let collector = Arc::new(Mutex::new(collector));
    let latencies = Arc::new(Latencies::new(
        workload.think_time.mean().as_micros() as u64,
        instances.iter().map(|i| i.id.clone()).collect(),
    ));
    let mut shared = Shared::new(
        instances,
        stack.idp_browser_url(),
        contract.session_cookie.clone(),
        recorder,
        latencies.clone(),
        workload.clone(),
        plan.scenario.seed,
        start,
    )
    .map_err(RunError::Setup)?;
    shared.renewal_offset = contract.renewal_offset;
    if let Some(shard) = plan.shard {
        shared.set_shard(shard);
    }
    // A launched app signs in over HTTPS (MSAL insists), so the browsers
    // trust the IdP's own CA.
    if let Some(ca) = stack.idp_listeners.as_ref().and_then(|l| l.ca_file()) {
        shared.http =
            contract::HttpClient::trusting(ca).map_err(|e| RunError::Setup(e.to_string()))?;
    }
    if let Some(witness) = &plan.witness {
        shared.http = shared.http.clone().witnessed_by(witness.clone());
    }
    let labels = shared.labels.clone();
    let shared = Arc::new(shared);
    let mut settings = Settings {
        idle_timeout: contract.idle_timeout,
        absolute_timeout: contract.absolute_timeout,
        renewal_offset: contract.renewal_offset,
        started_unix_ms,
        subjects: subjects(workload.people.get()),
    };

    // The sampler looks every second on a task of its own, after the empty stores.
    let samples = Arc::new(Mutex::new(vec![empty]));
    let sampling = {
        let samples = samples.clone();
        let mut sampler = Sampler::new(place.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let sample = sampler.sample(start.elapsed().as_micros() as u64).await;
                samples.lock().push(sample);
            }
        })
    };

    // Reference round trips beside the load, on a task of their own.
    let prober = Arc::new(tokio::sync::Mutex::new(
        Prober::new(place.instances.clone(), place.redis_url.as_deref()).await,
    ));
    let probing = {
        let prober = prober.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(reference::EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for round in 0.. {
                tick.tick().await;
                prober.lock().await.probe(round).await;
            }
        })
    };

    let mut progress = Progress::new(plan.app.name(), workload.duration());
    let steps = Arc::new(Mutex::new(Vec::<FaultStep>::new()));
    let applying = AtomicBool::new(false);
    let mut stopped_because = None;
    {
        let print = progress.printer();
        let kept = steps.clone();
        let watch = if workload.restart_exited {
            faults::Watch::Restart
        } else {
            faults::Watch::Record
        };
        let fault_run = faults::run_watched(
            &schedule,
            &mut stack,
            start,
            &applying,
            watch,
            move |step| {
                let what = if step.unscheduled.is_some() {
                    "stage"
                } else {
                    "fault"
                };
                print(&format!("{what} {step}"));
                kept.lock().push(step.clone());
            },
        );
        tokio::pin!(fault_run);
        let driving = load::drive_on_own_thread(shared.clone());
        tokio::pin!(driving);
        // The fault runner also watches the instances: it runs as long as the load.
        let mut faults_over = false;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_check = Instant::now();
        let mut anomalies = Some(0);
        loop {
            tokio::select! {
                result = &mut driving => {
                    result?;
                    break;
                }
                _ = &mut fault_run, if !faults_over => faults_over = true,
                () = &mut *stop, if stopped_because.is_none() => {
                    stopped_because = Some("interrupted (signal)".to_owned());
                    load::stop("signal");
                }
                _ = tick.tick() => {
                    let mut collected = collector.lock();
                    collected.drain();
                    if last_check.elapsed() > Duration::from_secs(2) {
                        last_check = Instant::now();
                        anomalies = (collected.len() < 200_000).then(|| {
                            check::check(collected.history(), &settings)
                                .anomalies
                                .values()
                                .map(Vec::len)
                                .sum()
                        });
                    }
                    drop(collected);
                    let (requests, errors, p99) = latencies.totals();
                    let now = start.elapsed().as_micros() as u64;
                    let in_force = windows::windows(&steps.lock(), u64::MAX)
                        .into_iter()
                        .filter(|w| w.from <= now && now <= w.to)
                        .map(|w| w.label)
                        .collect();
                    progress.update(&Figures {
                        elapsed: start.elapsed(),
                        requests,
                        errors,
                        p99_micros: p99,
                        anomalies,
                        faults_in_force: in_force,
                    });
                }
            }
        }
        // A step still being applied when the load ended (an instance slow
        // to stop or start) finishes and is recorded: the timeline must say
        // what the browsers went through. Bounded, so a stuck step cannot
        // hold the run.
        if !faults_over && applying.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(STEP_FINISH_WAIT, async {
                while applying.load(Ordering::SeqCst) {
                    tokio::select! {
                        _ = &mut fault_run => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            })
            .await;
        }
    }
    progress.finish();
    if stopped_because.is_none() && load::stopped_early() {
        stopped_because = Some("interrupted (Ctrl-C)".to_owned());
    }
    let load_end = start.elapsed();
    let cpu_at_end = place.cpu.read();
    let cpu = CpuFacts::between(cpu_at_start, cpu_at_end, &place.cpu);
    sampling.abort();
    probing.abort();
    // The abort lands at the task's next await; the lock waits for it.
    let references = prober.lock().await.series();

    // What stays in the stores after a grace period, and one last sample.
    let mut sampler = Sampler::new(place);
    tokio::select! {
        () = tokio::time::sleep(workload.orphan_grace) => {}
        () = &mut *stop => stopped_because = stopped_because.or(Some("interrupted (signal)".into())),
    }
    let look = start.elapsed().as_micros() as u64;
    let last = sampler.sample(look).await;
    let held = last.held_in_process();
    let counted_in_process = !held.is_empty() && held.iter().all(|h| h.sessions.is_some());
    samples.lock().push(last);
    let history = Arc::try_unwrap(collector)
        .map(|c| c.into_inner().finish())
        .unwrap_or_else(|shared| {
            let mut collected = shared.lock();
            collected.drain();
            collected.history().clone()
        });
    let mut history = history;
    history.faults = steps.lock().clone();
    // Newcomers (people who sat down after someone left) are users too.
    for info in &history.browsers {
        settings
            .subjects
            .entry(info.user.clone())
            .or_insert_with(|| mock_idp::users::oid_of(&info.user));
    }
    let ended = orphans::ended_sessions(&history);
    let standings = resident::Standings::with_timeouts(
        &history,
        look,
        settings.idle_timeout,
        settings.absolute_timeout,
    );
    // The app keys its records by the cookie; the history holds labels.
    let by_cookie: Vec<orphans::EndedSession> = ended
        .iter()
        .filter_map(|e| {
            Some(orphans::EndedSession {
                session: labels.session_cookie(&e.session)?,
                ..e.clone()
            })
        })
        .collect();
    let mut leftovers: Leftovers = sampler
        .leftovers(
            &by_cookie,
            &standings.live_users(),
            &settings.subjects,
            counted_in_process,
        )
        .await;
    for left in &mut leftovers.sessions {
        left.session = labels.session(&left.session);
    }
    let mut idp = idp_stats(&idp_url).await;
    // The IdP counts reuse by its own session ids; the history holds their
    // labels. Unlabelled, no reuse could be tied to a browser's sign-in.
    idp.reuse_by_session = std::mem::take(&mut idp.reuse_by_session)
        .into_iter()
        .map(|(sid, counts)| (labels.label("idp", &sid), counts))
        .collect();
    drop(stack);
    let kept = plan.keep.then(|| folder.keep());

    let facts = RunFacts {
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
        instances: shared.instances.iter().map(|i| i.id.clone()).collect(),
        source: plan.source.clone(),
        harness: HarnessInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            git_revision: option_env!("HARNESS_GIT_REVISION").map(str::to_owned),
        },
        host: host_facts(),
        started_unix_ms,
        duration_secs: load_end.as_secs_f64(),
        stopped_because,
        samples: samples.lock().clone(),
        references,
        idp,
        look,
        leftovers,
        cpu: Some(cpu),
        shard: plan.shard.map(|shard| SourceShard {
            index: shard.index,
            count: shard.count,
            fault_shard: plan.scenario.fault_shard(),
        }),
    };
    let Judged { results, .. } = judge::judge(&facts, &history);
    Ok(Outcome {
        results,
        folder: kept,
        history,
        facts,
    })
}

/// Sleeps until `at` (`--start-at`); a moment already gone by more than a
/// second is refused, as the shards would not start together.
async fn wait_for_start(
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

/// The IdP's own counters (`/stats`): token calls by grant and outcome, reuse.
async fn idp_stats(idp_url: &str) -> IdpCounts {
    let Ok(response) = reqwest::get(format!("{idp_url}/stats")).await else {
        return IdpCounts::default();
    };
    let Ok(json) = response.json::<serde_json::Value>().await else {
        return IdpCounts::default();
    };
    let count = |grant: &str, ok: bool| -> u64 {
        json["token_calls"][grant]
            .as_object()
            .map(|outcomes| {
                outcomes
                    .iter()
                    .filter(|(outcome, _)| (outcome.as_str() == "ok") == ok)
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    IdpCounts {
        code_exchanges: count("authorization_code", true),
        refreshes: count("refresh_token", true),
        failed: count("authorization_code", false) + count("refresh_token", false),
        refresh_reuse: json["refresh_reuse"]
            .as_object()
            .map(|actions| actions.values().filter_map(|n| n.as_u64()).sum())
            .unwrap_or(0),
        reuse_by_session: serde_json::from_value(json["refresh_reuse_by_session"].clone())
            .unwrap_or_default(),
    }
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This machine, as the results name it.
pub fn host_facts() -> HostFacts {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    HostFacts {
        hostname: read("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|| "unknown".into()),
        os: std::env::consts::OS.to_owned(),
        kernel: read("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes: read("/proc/meminfo").and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|kib| kib * 1024)
        }),
    }
}

/// The sessions' IdP subjects for a run's people (exported for tests).
pub fn subjects(people: usize) -> HashMap<String, String> {
    (0..people)
        .map(person_name)
        .map(|user| {
            let oid = mock_idp::users::oid_of(&user);
            (user, oid)
        })
        .collect()
}
