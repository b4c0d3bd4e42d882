//! One run: a scenario on an app (the reference app in a topology, or a
//! target) -> the stage up -> faults, load and
//! sampler side by side -> a grace period -> the check -> the results
//! document. An interrupted run (Ctrl-C, SIGTERM) stops the load, checks and
//! writes what it measured, marked incomplete, and tears the stage down.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::check::orphans::{self, Leftovers};
use crate::check::resident;
use crate::check::windows::{self, Window};
use crate::check::{self, Findings, Kind, Settings};
use crate::faults;
use crate::history::{self, FaultStep, History};
use crate::load::browser::{InstanceUrl, Shared};
use crate::load::latency::Latencies;
use crate::load::{self, LoadError};
use crate::progress::{Figures, Progress};
use crate::reference::{self, Prober};
use crate::results::{
    self, AnomalyReport, AppKind, Example, HarnessInfo, HostFacts, IdpCalls, Leaks, Percentiles,
    ReferenceSeries, RequestSeries, Results, ScenarioInfo, SecondStats, Source, Timeline,
    TopologyInfo, Unchecked, WorkloadInfo,
};
use crate::run_folder::RunFolder;
use crate::sample::{Place, Sample, Sampler};
use crate::scenario::Scenario;
use crate::scenario::workload::Workload;
use crate::scenario::workload::person_name;
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
}

/// Runs `plan`; `stop` completing (a signal) ends it early.
pub async fn run(
    plan: &RunPlan,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Outcome, RunError> {
    let workload = &plan.scenario.workload;
    let schedule = plan.scenario.faults.for_app(&plan.app);
    let folder = RunFolder::new(plan.run_dir.clone())?;
    let spec = StackSpec {
        app: plan.app.clone(),
        instances: plan.instances,
        run_dir: folder.path().to_owned(),
        network_proxy: schedule.needs_network_proxy(),
        idp: workload.idp.clone(),
        session_idle_timeout: workload.session_idle_timeout,
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
        database_url: stack.postgres.as_ref().map(|p| p.url()),
        namespace: stack.namespace.clone(),
        topology: plan.app.topology().cloned(),
        pids: stack.instance_pids(),
        encryption_secret: stack.encryption_secret.clone().into_bytes(),
        sqlite_path: folder.path().join("app-store.db"),
    };
    let idp_url = stack.idp_url();

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
    // A launched app signs in over HTTPS (MSAL insists), so the browsers
    // trust the IdP's own CA.
    if let Some(ca) = stack.idp_listeners.as_ref().and_then(|l| l.ca_file()) {
        shared.http =
            contract::HttpClient::trusting(ca).map_err(|e| RunError::Setup(e.to_string()))?;
    }
    let shared = Arc::new(shared);
    let mut settings = Settings {
        idle_timeout: contract.idle_timeout,
        renewal_offset: contract.renewal_offset,
        started_unix_ms,
        subjects: subjects(workload.people.get()),
    };

    // The sampler looks every second on a task of its own.
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
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
        let fault_run = faults::run_watched(&schedule, &mut stack, start, &applying, move |step| {
            print(&format!("fault {step}"));
            kept.lock().push(step.clone());
        });
        tokio::pin!(fault_run);
        let driving = load::drive_on_own_thread(shared.clone());
        tokio::pin!(driving);
        let mut faults_over = schedule.faults.is_empty();
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
    let mut findings = check::check(&history, &settings);
    let ended = orphans::ended_sessions(&history);
    let standings = resident::Standings::new(&history, look, settings.idle_timeout);
    let signed_in = standings.live_users();
    let gone = standings.gone_users();
    let leftovers: Leftovers = sampler
        .leftovers(&ended, &signed_in, &settings.subjects, counted_in_process)
        .await;
    if let Some(reason) = &leftovers.unchecked {
        findings.unchecked.push((Kind::Orphan, reason.clone()));
    }
    let in_process = standings.check(&held);
    for anomaly in orphans::check(&history, &ended, &leftovers, &gone)
        .into_iter()
        .chain(in_process)
    {
        findings
            .anomalies
            .entry(anomaly.kind)
            .or_default()
            .push(anomaly);
    }
    let idp_stats = idp_stats(&idp_url).await;
    let (reused, unattributed) =
        check::idp_calls::reuse(&history, &history.by_browser(), &idp_stats.reuse_by_session);
    for anomaly in reused {
        findings
            .anomalies
            .entry(anomaly.kind)
            .or_default()
            .push(anomaly);
    }
    if unattributed > 0 {
        findings.unchecked.push((
            Kind::ExtraIdpCalls,
            format!("the IdP counted {unattributed} refresh-token reuse(s) of IdP sessions no browser's sign-in names"),
        ));
    }
    drop(stack);
    let kept = plan.keep.then(|| folder.keep());

    let by_browser = history.by_browser();
    let minimum = check::idp_calls::minimum_token_calls(
        &history,
        &by_browser,
        &settings,
        workload.idp.access_token_lifetime,
    );
    let samples = samples.lock().clone();
    let results = assemble(Assembly {
        plan,
        history: &history,
        findings: &findings,
        latencies: &latencies,
        samples,
        idp_stats,
        minimum,
        endings: standings.endings(),
        started_unix_ms,
        duration: load_end,
        stopped_because,
        references,
    });
    Ok(Outcome {
        results,
        folder: kept,
        history,
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
            settings
        }
        None => ContractSettings {
            session_cookie: "app_session".into(),
            renewal_offset: workload.idp.renewal_offset(),
            idle_timeout: workload
                .session_idle_timeout
                .unwrap_or(app::session::DEFAULT_IDLE_TIMEOUT),
            models: None,
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

/// The IdP's own counters: token calls by grant and outcome, reuse.
#[derive(Default)]
struct IdpStats {
    code_exchanges: u64,
    refreshes: u64,
    failed: u64,
    refresh_reuse: u64,
    reuse_by_session: check::idp_calls::ReuseBySession,
}

async fn idp_stats(idp_url: &str) -> IdpStats {
    let Ok(response) = reqwest::get(format!("{idp_url}/stats")).await else {
        return IdpStats::default();
    };
    let Ok(json) = response.json::<serde_json::Value>().await else {
        return IdpStats::default();
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
    IdpStats {
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

struct Assembly<'a> {
    plan: &'a RunPlan,
    history: &'a History,
    findings: &'a Findings,
    latencies: &'a Latencies,
    samples: Vec<Sample>,
    idp_stats: IdpStats,
    minimum: u64,
    endings: resident::Endings,
    started_unix_ms: u64,
    duration: Duration,
    stopped_because: Option<String>,
    references: Vec<ReferenceSeries>,
}

fn assemble(a: Assembly<'_>) -> Results {
    let plan = a.plan;
    let run_end = a.duration.as_micros() as u64;
    let windows = windows::windows(&a.history.faults, run_end);
    let requests = a
        .latencies
        .snapshot()
        .into_iter()
        .map(|((kind, instance), s)| RequestSeries {
            kind,
            instance,
            count: s.raw.len(),
            ok: s.ok,
            client_errors: s.client_errors,
            server_errors: s.server_errors,
            refused: s.refused,
            timeouts: s.timeouts,
            lost: s.lost,
            latency: Percentiles::of(&s.corrected),
            raw_latency: Percentiles::of(&s.raw),
            histogram: results::encode(&s.corrected),
            raw_histogram: results::encode(&s.raw),
        })
        .collect();
    let anomalies = Kind::ALL
        .iter()
        .map(|&kind| report(kind, a.findings, a.history, &windows, &plan.source))
        .collect();
    let unchecked = a
        .findings
        .unchecked
        .iter()
        .map(|(kind, reason)| Unchecked {
            kind: *kind,
            reason: reason.clone(),
        })
        .collect();
    let token_calls = a.idp_stats.code_exchanges + a.idp_stats.refreshes;
    let sessions = a
        .history
        .events
        .iter()
        .filter(|e| matches!(e.request, history::Request::SignIn) && e.outcome.ok())
        .count() as u64;
    let seconds = a
        .latencies
        .seconds()
        .into_iter()
        .enumerate()
        .map(|(second, s)| SecondStats {
            second: second as u64,
            requests: s.latency.len(),
            errors: s.errors,
            p50_us: s.latency.value_at_quantile(0.5),
            p99_us: s.latency.value_at_quantile(0.99),
            max_us: s.latency.max(),
        })
        .collect();
    let leaks = leaks(&a.samples, a.endings);
    Results {
        schema_version: results::SCHEMA_VERSION,
        complete: a.stopped_because.is_none(),
        stopped_because: a.stopped_because,
        harness: HarnessInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            git_revision: option_env!("HARNESS_GIT_REVISION").map(str::to_owned),
        },
        sources: vec![Source {
            name: plan.source.clone(),
            host: host_facts(),
            started_at: rfc3339(a.started_unix_ms),
            started_unix_ms: a.started_unix_ms,
            duration_secs: a.duration.as_secs_f64(),
        }],
        scenario: ScenarioInfo {
            file: plan.scenario_file.as_ref().map(|p| p.display().to_string()),
            seed: plan.scenario.seed,
            instances: plan.instances.get(),
            workload: WorkloadInfo::of(&plan.scenario.workload),
            faults: plan
                .scenario
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
                .collect(),
        },
        topology: topology_info(&plan.app),
        requests,
        anomalies,
        unchecked,
        idp: IdpCalls {
            token_calls,
            code_exchanges: a.idp_stats.code_exchanges,
            refreshes: a.idp_stats.refreshes,
            failed_token_calls: a.idp_stats.failed,
            minimum: a.minimum,
            ratio: results::ratio(token_calls, a.minimum),
            sessions,
            refresh_reuse: a.idp_stats.refresh_reuse,
        },
        leaks,
        timelines: vec![Timeline {
            source: plan.source.clone(),
            faults: a.history.faults.clone(),
            samples: a.samples,
            seconds,
        }],
        references: a.references,
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

fn report(
    kind: Kind,
    findings: &Findings,
    history: &History,
    windows: &[Window],
    source: &str,
) -> AnomalyReport {
    let found = findings
        .anomalies
        .get(&kind)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut facets = BTreeMap::new();
    let mut by_window = BTreeMap::new();
    for anomaly in found {
        if let Some(facet) = &anomaly.facet {
            *facets.entry(facet.clone()).or_insert(0) += 1;
        }
        let window = windows::window_of(windows, anomaly.at)
            .map_or_else(|| "none".to_owned(), |w| w.label.clone());
        *by_window.entry(window).or_insert(0) += 1;
    }
    let across_down: Vec<bool> = found
        .iter()
        .map(|a| kind == Kind::SessionLoss && check::sessions::across_instance_down(history, a))
        .collect();
    // The first five, and a loss across an instance going down among them
    // when there is one (the report's restart claim links to it).
    let mut shown: Vec<usize> = (0..found.len().min(5)).collect();
    if let Some(down) = across_down.iter().position(|&d| d)
        && !shown.contains(&down)
    {
        shown.pop();
        shown.push(down);
    }
    let examples = shown
        .into_iter()
        .map(|i| &found[i])
        .map(|anomaly| Example {
            summary: anomaly.summary.clone(),
            source: source.to_owned(),
            fault_window: windows::window_of(windows, anomaly.at).map(|w| w.label.clone()),
            events: anomaly
                .evidence
                .iter()
                .filter_map(|&i| history.events.get(i).cloned())
                .collect(),
        })
        .collect();
    AnomalyReport {
        kind,
        count: found.len() as u64,
        facets,
        by_window,
        across_instance_down: (kind == Kind::SessionLoss)
            .then(|| across_down.iter().filter(|&&d| d).count() as u64),
        examples,
    }
}

fn leaks(samples: &[Sample], endings: resident::Endings) -> Leaks {
    let live_sessions = endings.live;
    let first = samples.first();
    let last = samples.last();
    let store = |s: Option<&Sample>| s.map_or(0, Sample::store_bytes) as i64;
    let rss = |s: Option<&Sample>| s.map_or(0, Sample::rss_bytes) as i64;
    Leaks {
        live_sessions_at_end: live_sessions,
        store_bytes_per_session: (live_sessions > 0)
            .then(|| store(last) as f64 / live_sessions as f64),
        store_growth_bytes: store(last) - store(first),
        peak_rss_bytes: samples.iter().map(Sample::rss_bytes).max().unwrap_or(0),
        rss_growth_bytes: rss(last) - rss(first),
        token_cache_entries_at_end: last.and_then(|s| {
            s.instances
                .iter()
                .filter_map(|i| i.token_cache_entries)
                .reduce(|a, b| a + b)
        }),
        sessions_logged_out: endings.logged_out,
        sessions_expired: endings.expired,
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix milliseconds (UTC).
fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
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
