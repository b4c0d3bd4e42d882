//! A run's verdict: its history and what was measured beside it (the
//! [`RunFacts`]) in, the findings and the results document out. The run
//! calls [`judge`] once the load is over, and `harness analyze` calls it on a
//! saved history file, whose first line carries the facts: the same code on
//! the same input, so a saved history gives the very same results.
//!
//! Nothing here measures: latencies are made again from the events (every
//! request is one event), everything else the run measured live (samples,
//! reference round trips, the IdP's counts, what the stores kept) comes in
//! the facts.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::check::idp_calls::ReuseBySession;
use crate::check::orphans::{self, Leftovers};
use crate::check::resident;
use crate::check::windows::{self, Window};
use crate::check::{self, Findings, Kind, Settings};
use crate::cpu::CpuMeter;
use crate::history::{self, History, Micros};
use crate::load::latency::Latencies;
use crate::model::cpu::CpuSample;
use crate::model::sample::Sample;
use crate::results::{
    self, AnomalyGroup, AnomalyReport, CpuUse, Example, HarnessInfo, HostFacts, IdpCalls, Leaks,
    LossCause, NO_WINDOW, Percentiles, ReferenceSeries, RequestSeries, Results, ScenarioInfo,
    SecondStats, Source, SourceShard, Timeline, TopologyInfo, Unchecked, WorkloadInfo,
};
use crate::scenario::workload::Workload;

/// Everything besides the history that the verdict rests on: what was run,
/// where, and what was measured live. A history file's first line carries it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunFacts {
    /// The scenario as resolved (defaults filled in).
    pub scenario: ScenarioFacts,
    pub topology: TopologyInfo,
    /// What the checker must know of the app (its timeouts and renewal).
    pub app: AppFacts,
    /// The instances requests went to, in order (`app-1`, ...).
    pub instances: Vec<String>,
    /// Names this machine's run in the results.
    pub source: String,
    pub harness: HarnessInfo,
    pub host: HostFacts,
    pub started_unix_ms: u64,
    /// How long the load ran.
    pub duration_secs: f64,
    /// Why it ended early, when it did.
    pub stopped_because: Option<String>,
    /// A sample a second, the last one taken after the grace period.
    pub samples: Vec<Sample>,
    pub references: Vec<ReferenceSeries>,
    /// The IdP's own counts (`/stats`) at the end.
    pub idp: IdpCounts,
    /// When the stores were last looked into (after the grace period).
    pub look: Micros,
    /// What the stores still held then of browsers that had logged out.
    pub leftovers: Leftovers,
    /// The stage's CPU over the load (none in a history from before it was read).
    pub cpu: Option<CpuFacts>,
    /// Under `bench --shard I/N`: the slice this run drove.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<SourceShard>,
}

/// The stage's CPU readings when the load started and when it ended, and
/// what the meter watched: the results' CPU per 1,000 requests is made from
/// them and the requests the history holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuFacts {
    pub start: CpuSample,
    pub end: CpuSample,
    /// The instances metered, in order.
    pub instances: Vec<String>,
    /// Whether the harness ran (and so metered) Redis and Postgres.
    pub redis: bool,
    pub postgres: bool,
    /// Why a component's figure is unknown, by component.
    pub unknown: BTreeMap<String, String>,
}

impl CpuFacts {
    /// Readings `start` and `end` taken by `meter`.
    pub fn between(start: CpuSample, end: CpuSample, meter: &CpuMeter) -> Self {
        let (instances, redis, postgres) = meter.components();
        Self {
            start,
            end,
            instances,
            redis,
            postgres,
            unknown: meter.unknown(),
        }
    }
}

/// The scenario as it ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenarioFacts {
    /// The file, when the run came from one.
    pub file: Option<String>,
    pub seed: u64,
    pub instances: usize,
    pub workload: Workload,
    /// The `[[faults]]` entries, as the harness read them.
    pub faults: Vec<String>,
}

/// The app's side of the contract the checker relies on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppFacts {
    /// A session unused this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session this old ends however busy, if the app says it has such a timeout.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub absolute_timeout: Option<Duration>,
    /// A cached access token is renewed this long before it expires.
    #[serde(with = "humantime_serde")]
    pub renewal_offset: Duration,
}

impl Default for AppFacts {
    fn default() -> Self {
        Self {
            idle_timeout: app::session::DEFAULT_IDLE_TIMEOUT,
            absolute_timeout: None,
            renewal_offset: Duration::from_secs(300),
        }
    }
}

/// The IdP's counters, as `/stats` gave them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdpCounts {
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub failed: u64,
    pub refresh_reuse: u64,
    pub reuse_by_session: ReuseBySession,
}

/// What [`judge`] makes of a run.
pub struct Judged {
    pub findings: Findings,
    pub results: Results,
}

/// The checker's settings for a run: the app's timeouts, and every user's
/// IdP subject (the mock IdP derives it from the user name).
pub fn settings(facts: &RunFacts, history: &History) -> Settings {
    Settings {
        idle_timeout: facts.app.idle_timeout,
        absolute_timeout: facts.app.absolute_timeout,
        renewal_offset: facts.app.renewal_offset,
        started_unix_ms: facts.started_unix_ms,
        subjects: history
            .browsers
            .iter()
            .map(|b| (b.user.clone(), mock_idp::users::oid_of(&b.user)))
            .collect(),
    }
}

/// The findings and the results document of a run.
pub fn judge(facts: &RunFacts, history: &History) -> Judged {
    let settings = settings(facts, history);
    let by_browser = history.by_browser();
    let mut findings = check::check(history, &settings);

    let (reused, unattributed) =
        check::idp_calls::reuse(history, &by_browser, &facts.idp.reuse_by_session);
    add(&mut findings, reused);
    if unattributed > 0 {
        findings.unchecked.push((
            Kind::ExtraIdpCalls,
            format!(
                "the IdP counted {unattributed} refresh-token reuse(s) of IdP sessions no browser's sign-in names"
            ),
        ));
    }

    let ended = orphans::ended_sessions(history);
    let standings = resident::Standings::with_timeouts(
        history,
        facts.look,
        settings.idle_timeout,
        settings.absolute_timeout,
    );
    if let Some(reason) = &facts.leftovers.unchecked {
        findings.unchecked.push((Kind::Orphan, reason.clone()));
    }
    let held = facts
        .samples
        .last()
        .map(Sample::held_in_process)
        .unwrap_or_default();
    let in_store = orphans::check(history, &ended, &facts.leftovers, &standings.gone_users());
    add(&mut findings, in_store);
    add(&mut findings, standings.check(&held));

    let minimum = check::idp_calls::minimum_token_calls(
        history,
        &by_browser,
        &settings,
        facts.scenario.workload.idp.access_token_lifetime,
    );
    let results = assemble(facts, history, &findings, minimum, standings.endings());
    Judged { findings, results }
}

fn add(findings: &mut Findings, anomalies: Vec<check::Anomaly>) {
    for anomaly in anomalies {
        findings
            .anomalies
            .entry(anomaly.kind)
            .or_default()
            .push(anomaly);
    }
}

/// Every request's latency, made again from the events as the driver
/// timed them (invoked to completed, per request type and instance).
pub fn latencies(facts: &RunFacts, history: &History) -> Latencies {
    let latencies = Latencies::new(
        facts.scenario.workload.think_time.mean().as_micros() as u64,
        facts.instances.clone(),
    );
    let index: HashMap<&str, usize> = facts
        .instances
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for event in &history.events {
        if let Some(&instance) = index.get(event.sent_to.as_str()) {
            latencies.record(
                event.request.kind_index(),
                instance,
                event.invoked,
                event.completed.saturating_sub(event.invoked),
                &event.outcome,
            );
        }
    }
    latencies
}

fn assemble(
    facts: &RunFacts,
    history: &History,
    findings: &Findings,
    minimum: u64,
    endings: resident::Endings,
) -> Results {
    let run_end = Duration::from_secs_f64(facts.duration_secs.max(0.0)).as_micros() as u64;
    let windows = windows::windows(&history.faults, run_end);
    let latencies = latencies(facts, history);
    let requests: Vec<RequestSeries> = latencies
        .snapshot()
        .into_iter()
        .map(|((kind, instance), s)| RequestSeries {
            kind,
            instance,
            count: s.raw.len(),
            outcomes: s.outcomes,
            latency: Percentiles::of(&s.corrected),
            raw_latency: Percentiles::of(&s.raw),
            histogram: results::encode(&s.corrected),
            raw_histogram: results::encode(&s.raw),
        })
        .collect();
    let requests_count = requests.iter().map(|r| r.count).sum();
    let anomalies = Kind::ALL
        .iter()
        .map(|&kind| report(kind, findings, history, &windows, &facts.source))
        .collect();
    let unchecked = findings
        .unchecked
        .iter()
        .map(|(kind, reason)| Unchecked {
            kind: *kind,
            reason: reason.clone(),
        })
        .collect();
    let idp = &facts.idp;
    let token_calls = idp.code_exchanges + idp.refreshes;
    let sessions = history
        .events
        .iter()
        .filter(|e| matches!(e.request, history::Request::SignIn) && e.outcome.ok())
        .count() as u64;
    let seconds = latencies
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
    let scenario = &facts.scenario;
    Results {
        schema_version: results::SCHEMA_VERSION,
        complete: facts.stopped_because.is_none(),
        stopped_because: facts.stopped_because.clone(),
        harness: facts.harness.clone(),
        sources: vec![Source {
            name: facts.source.clone(),
            host: facts.host.clone(),
            started_at: crate::scenario::time::rfc3339(facts.started_unix_ms),
            started_unix_ms: facts.started_unix_ms,
            duration_secs: facts.duration_secs,
            shard: facts.shard,
        }],
        scenario: ScenarioInfo {
            file: scenario.file.clone(),
            seed: scenario.seed,
            instances: scenario.instances,
            workload: WorkloadInfo::of(&scenario.workload),
            faults: scenario.faults.clone(),
        },
        topology: facts.topology.clone(),
        requests,
        anomalies,
        unchecked,
        idp: IdpCalls {
            token_calls,
            code_exchanges: idp.code_exchanges,
            refreshes: idp.refreshes,
            failed_token_calls: idp.failed,
            minimum,
            ratio: results::ratio(token_calls, minimum),
            sessions,
            refresh_reuse: idp.refresh_reuse,
        },
        leaks: leaks(&facts.samples, endings, &live_at_samples(facts, history)),
        timelines: vec![Timeline {
            source: facts.source.clone(),
            faults: history.faults.clone(),
            samples: facts.samples.clone(),
            seconds,
            fault_errors: crate::outage::per_fault(&history.faults, &history.events, run_end),
        }],
        references: facts.references.clone(),
        cpu: facts.cpu.as_ref().map(|cpu| {
            CpuUse::between(
                &cpu.start,
                &cpu.end,
                requests_count,
                (cpu.instances.clone(), cpu.redis, cpu.postgres),
                &cpu.unknown,
            )
        }),
    }
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
    let mut groups: Vec<AnomalyGroup> = Vec::new();
    let mut keys = Vec::with_capacity(found.len());
    for anomaly in found {
        if let Some(facet) = &anomaly.facet {
            *facets.entry(facet.clone()).or_insert(0) += 1;
        }
        let window = windows::window_of(windows, anomaly.at)
            .map_or_else(|| NO_WINDOW.to_owned(), |w| w.label.clone());
        *by_window.entry(window.clone()).or_insert(0) += 1;
        let group = AnomalyGroup {
            window,
            facet: anomaly.facet.clone(),
            between: (kind == Kind::SessionLoss)
                .then(|| loss_cause(history, anomaly))
                .flatten(),
            count: 1,
        };
        match groups.iter_mut().find(|g| g.key() == group.key()) {
            Some(same) => same.count += 1,
            None => groups.push(group.clone()),
        }
        keys.push(group);
    }
    let key_of: Vec<_> = keys.iter().map(AnomalyGroup::key).collect();
    // The first five, and one of every group beyond them: each part the
    // report shows (a loss across a restart, one when a store lost its
    // data, ...) links an example of its own.
    let examples = results::pick_examples(&key_of)
        .into_iter()
        .map(|i| (&found[i], &keys[i]))
        .map(|(anomaly, group)| Example {
            summary: anomaly.summary.clone(),
            source: source.to_owned(),
            fault_window: (group.window != NO_WINDOW).then(|| group.window.clone()),
            facet: group.facet.clone(),
            between: group.between,
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
        across_instance_down: (kind == Kind::SessionLoss).then(|| {
            keys.iter()
                .filter(|g| g.between == Some(LossCause::InstanceDown))
                .count() as u64
        }),
        groups,
        examples,
    }
}

/// What a session-loss came across, its instance going down first.
fn loss_cause(history: &History, anomaly: &check::Anomaly) -> Option<LossCause> {
    if check::sessions::across_instance_down(history, anomaly) {
        Some(LossCause::InstanceDown)
    } else if check::sessions::across_store_loss(history, anomaly) {
        Some(LossCause::StoreLost)
    } else {
        None
    }
}

/// How many browsers could be signed in at each sample.
fn live_at_samples(facts: &RunFacts, history: &History) -> Vec<u64> {
    let times: Vec<Micros> = facts.samples.iter().map(|s| s.at).collect();
    resident::live_at(
        history,
        &times,
        facts.app.idle_timeout,
        facts.app.absolute_timeout,
    )
}

/// The slope of `y` over `x` by least squares; none with fewer than three
/// points or no spread in `x`.
pub fn fitted_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (cov, var) = points.iter().fold((0.0, 0.0), |(c, v), p| {
        (c + (p.0 - mx) * (p.1 - my), v + (p.0 - mx) * (p.0 - mx))
    });
    (var > 0.0).then(|| cov / var)
}

/// `live` is the live sessions at each sample (the first sample being the
/// empty store, before any browser).
fn leaks(samples: &[Sample], endings: resident::Endings, live: &[u64]) -> Leaks {
    let live_sessions = endings.live;
    let first = samples.first();
    let last = samples.last();
    let store = |s: Option<&Sample>| s.map_or(0, Sample::store_bytes) as i64;
    let rss = |s: Option<&Sample>| s.map_or(0, Sample::rss_bytes) as i64;
    let points: Vec<(f64, f64)> = samples
        .iter()
        .zip(live)
        .map(|(s, &n)| (n as f64, s.store_bytes() as f64))
        .collect();
    Leaks {
        live_sessions_at_end: live_sessions,
        store_bytes_per_session: (live_sessions > 0)
            .then(|| (store(last) - store(first)) as f64 / live_sessions as f64),
        store_bytes_per_session_fitted: fitted_slope(&points),
        store_bytes_empty: first.map(Sample::store_bytes),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{BrowserId, BrowserInfo, Event, Observed, Outcome, Request};
    use crate::model::sample::RedisSample;

    fn redis_at(at: Micros, used_memory: u64) -> Sample {
        Sample {
            at,
            redis: Some(RedisSample {
                used_memory,
                ..RedisSample::default()
            }),
            ..Sample::default()
        }
    }

    #[test]
    fn the_fitted_slope_is_the_least_squares_one() {
        assert_eq!(
            fitted_slope(&[(0.0, 100.0), (10.0, 1100.0), (20.0, 2100.0)]),
            Some(100.0)
        );
        assert_eq!(fitted_slope(&[(0.0, 1.0), (1.0, 2.0)]), None, "two points");
        assert_eq!(
            fitted_slope(&[(3.0, 1.0), (3.0, 2.0), (3.0, 5.0)]),
            None,
            "no spread"
        );
        let noisy = fitted_slope(&[(0.0, 0.0), (1.0, 2.0), (2.0, 2.0), (3.0, 4.0)]).expect("slope");
        assert!((noisy - 1.2).abs() < 1e-9, "{noisy}");
    }

    #[test]
    fn store_bytes_per_session_are_growth_over_the_empty_store() {
        let signed_in = |browser: u32, at: Micros| Event {
            browser: BrowserId(browser),
            request: Request::SignIn,
            sent_to: "app-1".into(),
            invoked: at,
            completed: at + 1_000,
            outcome: Outcome::Answered {
                status: 200,
                instance: Some("app-1".into()),
                session_version: None,
                error: None,
                observed: Observed::SignedIn {
                    user: None,
                    session: None,
                    idp_sid: None,
                },
            },
        };
        let history = History {
            browsers: (0..2)
                .map(|p| BrowserInfo {
                    person: p,
                    user: format!("person-{p}"),
                })
                .collect(),
            events: vec![signed_in(0, 1_000_000), signed_in(1, 2_000_000)],
            faults: Vec::new(),
        };
        let facts = RunFacts {
            samples: vec![
                redis_at(0, 1_000_000),
                redis_at(1_500_000, 1_010_000),
                redis_at(2_500_000, 1_021_000),
                redis_at(3_000_000, 1_020_000),
            ],
            look: 3_000_000,
            duration_secs: 3.0,
            ..RunFacts::default()
        };
        let leaks = judge(&facts, &history).results.leaks;
        assert_eq!(leaks.live_sessions_at_end, 2);
        assert_eq!(leaks.store_bytes_empty, Some(1_000_000));
        assert_eq!(
            leaks.store_bytes_per_session,
            Some(10_000.0),
            "the empty server's megabyte is not the sessions'"
        );
        // Live 0, 1, 2, 2 against 0, 10, 21, 20 KB.
        let fitted = leaks.store_bytes_per_session_fitted.expect("fitted");
        assert!((fitted - 10_272.73).abs() < 0.01, "{fitted}");
    }
}
