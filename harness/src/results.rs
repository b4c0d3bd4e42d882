//! The results document: one JSON file per run, described by
//! `reports/schema.json` (derived from these types), and the merge of
//! several runs' files into one.
//!
//! Latencies are serialized HDR histograms (HdrHistogram's V2 deflate
//! format, base64), so runs made on several load machines merge exactly:
//! histograms add, percentiles are recomputed, counts sum, and each source's
//! timelines (samples, latency per second, fault steps) stay apart.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::check::Kind;
use crate::history::{Event, FaultStep};
use crate::model::cpu::{self, CpuSample};
use crate::model::outcomes::Outcomes;
use crate::model::sample::Sample;
use crate::scenario::source::{self, ReadError};
use crate::scenario::workload::Workload;

/// Bumped when the document's shape changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a results file could not be read, written or merged.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// Writing failed (the OS's reason, said once).
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    /// The file could not be read as text (through the one guarded reader).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Text that is not a results document, where it goes wrong.
    #[error("{path}:{line}:{column}: not a results file: {reason}")]
    Json {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("a histogram does not decode: {0}")]
    Histogram(String),
    #[error("nothing to merge")]
    Empty,
    /// Shards that do not make one scenario's run (see [`check_shards`]).
    #[error("{0}")]
    Shards(String),
}

/// serde_json's message without its trailing " at line L column C" (the
/// position leads the message instead).
fn json_reason(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

impl ResultsError {
    /// Whether the user gave a file that is not a readable results file.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ResultsError::Read(_) | ResultsError::Json { .. } | ResultsError::Shards(_)
        )
    }
}

/// One run's results (or several, merged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Results {
    pub schema_version: u32,
    /// False when the run was interrupted: the figures cover what ran.
    pub complete: bool,
    /// Why it ended early, when it did.
    pub stopped_because: Option<String>,
    pub harness: HarnessInfo,
    /// Where the run (or each merged run) happened.
    pub sources: Vec<Source>,
    pub scenario: ScenarioInfo,
    pub topology: TopologyInfo,
    /// Per request type and instance.
    pub requests: Vec<RequestSeries>,
    /// Every anomaly family, found or not.
    pub anomalies: Vec<AnomalyReport>,
    /// Checks that could not be made, and why.
    pub unchecked: Vec<Unchecked>,
    pub idp: IdpCalls,
    pub leaks: Leaks,
    /// Per source: what happened when.
    pub timelines: Vec<Timeline>,
    /// Round trips with none of the app's work in them, measured beside the
    /// load (`healthz`, `redis-ping`): what `harness compare` divides request
    /// latencies by, since absolute times differ across machines. Empty in
    /// files written before they were measured.
    #[serde(default)]
    pub references: Vec<ReferenceSeries>,
    /// CPU seconds per component over the measured run, and per 1,000
    /// requests. Absent in files from before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUse>,
}

/// CPU time (user + system) the run's processes spent from the load's
/// start to its end: the cost of a topology, beside its latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CpuUse {
    /// Requests made meanwhile (every type and instance, errors included):
    /// what the per-1,000 figures divide by.
    pub requests: u64,
    /// Each instance (`app-1`, ...), every instance together (`app`), then
    /// `redis` and `postgres` when the run had them, then `harness` (the
    /// load driver, sampler and live checker: the measuring's own cost).
    pub components: Vec<ComponentCpu>,
}

/// One component's CPU over the measured run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentCpu {
    pub name: String,
    /// CPU seconds; absent when unknown (never guessed).
    pub seconds: Option<f64>,
    /// CPU milliseconds per 1,000 requests.
    pub ms_per_1k_requests: Option<f64>,
    /// Why it is unknown: an external server, an instance that runs elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl ComponentCpu {
    fn new(name: &str, seconds: Result<f64, String>, requests: u64) -> Self {
        let (seconds, unknown) = match seconds {
            Ok(s) => (Some(s), None),
            Err(why) => (None, Some(why)),
        };
        Self {
            name: name.to_owned(),
            seconds,
            ms_per_1k_requests: seconds.and_then(|s| per_1k(s, requests)),
            unknown,
        }
    }
}

/// CPU milliseconds per 1,000 requests; none without requests.
fn per_1k(seconds: f64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| seconds * 1e6 / requests as f64)
}

impl CpuUse {
    /// The CPU spent between two readings, for `requests` requests.
    /// `instances` are the instances' ids; `unknown` says why a component
    /// has no figure (from [`cpu::CpuMeter::unknown`]).
    pub fn between(
        start: &CpuSample,
        end: &CpuSample,
        requests: u64,
        (instances, redis, postgres): (Vec<String>, bool, bool),
        unknown: &BTreeMap<String, String>,
    ) -> Self {
        let spent = |name: &str, from: Option<f64>, to: Option<f64>| -> Result<f64, String> {
            match (from, to) {
                (Some(from), Some(to)) => Ok((to - from).max(0.0)),
                // Down when the load started (it had spent none of the run's CPU yet).
                (None, Some(to)) if !unknown.contains_key(name) => Ok(to),
                _ => Err(unknown
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| "unknown: its processes were not seen running".into())),
            }
        };
        let mut components: Vec<ComponentCpu> = instances
            .iter()
            .map(|id| {
                let seconds = spent(
                    id,
                    start.instances.get(id).copied(),
                    end.instances.get(id).copied(),
                );
                ComponentCpu::new(id, seconds, requests)
            })
            .collect();
        let app = components
            .iter()
            .map(|c| c.seconds.ok_or(()))
            .sum::<Result<f64, ()>>()
            .map_err(|()| "unknown: not every instance's CPU is known".to_owned());
        components.push(ComponentCpu::new(cpu::APP, app, requests));
        if redis {
            let seconds = spent(cpu::REDIS, start.redis, end.redis);
            components.push(ComponentCpu::new(cpu::REDIS, seconds, requests));
        }
        if postgres {
            let seconds = spent(cpu::POSTGRES, start.postgres, end.postgres);
            components.push(ComponentCpu::new(cpu::POSTGRES, seconds, requests));
        }
        let harness = Ok((end.harness - start.harness).max(0.0));
        components.push(ComponentCpu::new(cpu::HARNESS, harness, requests));
        Self {
            requests,
            components,
        }
    }

    /// A component by name (`app`, `redis`, `app-1`, ...).
    pub fn component(&self, name: &str) -> Option<&ComponentCpu> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Another run's CPU added: seconds summed component by component
    /// (unknown in either, unknown in both), per-1,000 figures recomputed
    /// from the summed requests.
    fn add(&mut self, other: CpuUse) {
        self.requests += other.requests;
        for theirs in other.components {
            match self.components.iter_mut().find(|c| c.name == theirs.name) {
                Some(ours) => {
                    ours.seconds = ours.seconds.zip(theirs.seconds).map(|(a, b)| a + b);
                    if ours.seconds.is_none() && ours.unknown.is_none() {
                        ours.unknown = theirs.unknown;
                    }
                }
                None => self.components.push(theirs),
            }
        }
        for component in &mut self.components {
            component.ms_per_1k_requests = component.seconds.and_then(|s| per_1k(s, self.requests));
        }
    }
}

/// One reference round trip, measured as the load ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReferenceSeries {
    /// `healthz` (an app instance's `GET /healthz`) or `redis-ping`.
    pub name: String,
    pub count: u64,
    /// Probes that got no good answer (an instance restarting); not in the histogram.
    pub failed: u64,
    pub latency: Percentiles,
    /// HdrHistogram V2 deflate, base64; microseconds.
    pub histogram: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HarnessInfo {
    pub version: String,
    /// `git describe` of the harness's checkout when it was built, if known.
    pub git_revision: Option<String>,
}

/// One machine's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    pub name: String,
    pub host: HostFacts,
    /// RFC 3339.
    pub started_at: String,
    pub started_unix_ms: u64,
    pub duration_secs: f64,
    /// Present when the run was one slice of a scenario (`bench --shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<SourceShard>,
}

/// Which slice of a scenario's browsers a run drove (`bench --shard I/N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceShard {
    /// I, from 1.
    pub index: u32,
    /// N.
    pub count: u32,
    /// The one shard that applied the scenario's faults.
    pub fault_shard: u32,
}

impl std::fmt::Display for SourceShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    pub kernel: Option<String>,
    pub cpus: usize,
    pub memory_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioInfo {
    /// The file, when the run came from one.
    pub file: Option<String>,
    pub seed: u64,
    pub instances: usize,
    pub workload: WorkloadInfo,
    /// The `[[faults]]` entries, as the harness read them.
    pub faults: Vec<String>,
}

/// The resolved workload, as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadInfo(#[schemars(with = "serde_json::Value")] pub serde_json::Value);

impl WorkloadInfo {
    pub fn of(workload: &Workload) -> Self {
        Self(serde_json::to_value(workload).unwrap_or_default())
    }
}

/// What was measured: the reference app in a topology (all fields), or an
/// app the harness did not build (`app` says which; the topology fields
/// are empty, its storage being its own).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopologyInfo {
    pub name: String,
    /// Absent in files written before targets existed: the reference app.
    #[serde(default)]
    pub app: AppKind,
    pub session_backend: String,
    pub token_cache: String,
    pub encrypt: bool,
    pub concurrency: String,
    /// For a target: the reference app's topology it implements (its
    /// target file's `models`), so reports set the two side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<String>,
    /// For a target: its file, as it was named to the harness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// For a target: what its file says it is (the file's opening comment),
    /// so a report names it as its author did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Which kind of app a run measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AppKind {
    /// This project's app, in the topology named.
    #[default]
    Reference,
    /// An app the harness started from a target file's command.
    Launched,
    /// Instances running elsewhere, given as URLs: driven and checked only.
    Remote,
}

/// Percentiles in microseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// Requests of one type to one instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequestSeries {
    pub kind: String,
    pub instance: String,
    pub count: u64,
    /// How they ended: six fields (`ok` .. `lost`) at this level in the file.
    #[serde(flatten)]
    pub outcomes: Outcomes,
    /// Corrected for coordinated omission (see `histogram`).
    pub latency: Percentiles,
    /// As measured.
    pub raw_latency: Percentiles,
    /// The corrected histogram, HdrHistogram V2 deflate, base64; microseconds.
    pub histogram: String,
    pub raw_histogram: String,
}

/// One anomaly family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnomalyReport {
    pub kind: Kind,
    pub count: u64,
    /// Counts by facet (session-loss: `hop` or `same-instance`; orphan: `session` or `blob`).
    pub facets: BTreeMap<String, u64>,
    /// Counts by the fault window they fell in; `none` outside every window.
    pub by_window: BTreeMap<String, u64>,
    /// session-loss only: those whose instance went down (restart or crash)
    /// between the session's last good answer and the loss. Absent in files
    /// from before it was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub across_instance_down: Option<u64>,
    /// The count split by fault window, facet and cause together (the
    /// maps above split it one way each), so a report can show every part
    /// of a family once and check that the parts add up to `count`. Empty
    /// in files from before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<AnomalyGroup>,
    /// Up to five, with the events that prove each, and one of every group
    /// beyond them, so each part a report shows can link its own example.
    pub examples: Vec<Example>,
}

/// The anomalies of one family that share a fault window, a facet and a cause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AnomalyGroup {
    /// The fault window they fell in; `none` outside every window.
    pub window: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between: Option<LossCause>,
    pub count: u64,
}

impl AnomalyGroup {
    /// What groups one anomaly with others.
    pub fn key(&self) -> GroupKey<'_> {
        (self.window.as_str(), self.facet.as_deref(), self.between)
    }
}

/// A group's identity: (window, facet, cause).
pub type GroupKey<'a> = (&'a str, Option<&'a str>, Option<LossCause>);

/// session-loss: what happened between the session's last good answer and
/// its loss, which makes the loss that event's (checked in this order).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum LossCause {
    /// The instance that last answered well for it was restarted or crashed.
    InstanceDown,
    /// A store was restarted, crashed or flushed.
    StoreLost,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Example {
    pub summary: String,
    pub source: String,
    pub fault_window: Option<String>,
    /// Its facet, as its family's `facets` counts it (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facet: Option<String>,
    /// session-loss: its cause, as its family's `groups` count it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between: Option<LossCause>,
    pub events: Vec<Event>,
}

impl Example {
    /// The group it belongs to (window `none` outside every window).
    pub fn key(&self) -> GroupKey<'_> {
        (
            self.fault_window.as_deref().unwrap_or(NO_WINDOW),
            self.facet.as_deref(),
            self.between,
        )
    }
}

/// The window of what fell outside every fault window.
pub const NO_WINDOW: &str = "none";

/// How many examples a family keeps at least (when it has them).
pub const EXAMPLES: usize = 5;

/// Which of `keys` (one per anomaly, in order) to keep as examples: the
/// first [`EXAMPLES`], and the first of every group not among them, in
/// their order.
pub fn pick_examples<K: PartialEq>(keys: &[K]) -> Vec<usize> {
    let mut shown: Vec<usize> = (0..keys.len().min(EXAMPLES)).collect();
    for (index, key) in keys.iter().enumerate().skip(EXAMPLES) {
        if !shown.iter().any(|&i| keys[i] == *key) {
            shown.push(index);
        }
    }
    shown
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Unchecked {
    pub kind: Kind,
    pub reason: String,
}

/// Token-endpoint calls against the fewest the run needed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IdpCalls {
    /// Counted by the IdP (`/stats`): code exchanges and refreshes that succeeded.
    pub token_calls: u64,
    pub code_exchanges: u64,
    pub refreshes: u64,
    /// Failed token calls, by the IdP's count.
    pub failed_token_calls: u64,
    /// One code exchange per sign-in and one refresh per token lifetime used.
    pub minimum: u64,
    /// `token_calls / minimum`.
    pub ratio: f64,
    /// Sessions the run signed in.
    pub sessions: u64,
    /// Refresh tokens presented again after rotation (a strict IdP revokes the family).
    pub refresh_reuse: u64,
}

/// What the stores and instances grew to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Leaks {
    /// Browsers possibly still signed in at the last look (after the grace
    /// period): signed in, not logged out, used within the idle timeout.
    pub live_sessions_at_end: u64,
    /// What the store grew by over the empty store (the first sample, taken
    /// before any browser), at the last sample, per live session then (None
    /// without live sessions). Files written before the empty store was
    /// sampled first divided the whole store.
    pub store_bytes_per_session: Option<f64>,
    /// The slope of store bytes against live sessions over every sample
    /// (least squares): bytes per session as the run went, not only at its
    /// end. None with fewer than three samples or no change in live sessions.
    #[serde(default)]
    pub store_bytes_per_session_fitted: Option<f64>,
    /// The empty store's bytes (the first sample).
    #[serde(default)]
    pub store_bytes_empty: Option<u64>,
    /// Store bytes at the last sample minus the first.
    pub store_growth_bytes: i64,
    pub peak_rss_bytes: u64,
    /// Instance RSS at the last sample minus the first.
    pub rss_growth_bytes: i64,
    /// In-process token-cache entries at the end (option1), summed over instances.
    pub token_cache_entries_at_end: Option<u64>,
    /// Browsers whose last session had ended by the last look: by a logout,
    /// or by lying unused past the app's idle timeout (left without logout).
    /// Only sessions that ended can show state kept past their end.
    #[serde(default)]
    pub sessions_logged_out: u64,
    #[serde(default)]
    pub sessions_expired: u64,
}

/// One source's timelines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Timeline {
    pub source: String,
    pub faults: Vec<FaultStep>,
    pub samples: Vec<Sample>,
    /// Every second of the run: requests, errors and latency.
    pub seconds: Vec<SecondStats>,
    /// Per fault step: the requests that failed after it began, and over
    /// what span (for a cluster failover, the failover time browsers saw).
    /// Absent in files from before it was measured, and in runs without faults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fault_errors: Vec<crate::outage::FaultErrors>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecondStats {
    pub second: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// A histogram as the document holds it.
pub fn encode(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    match V2DeflateSerializer::new().serialize(histogram, &mut bytes) {
        Ok(_) => STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

pub fn decode(text: &str) -> Result<Histogram<u64>, ResultsError> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| ResultsError::Histogram(e.to_string()))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| ResultsError::Histogram(format!("{e:?}")))
}

impl Results {
    pub fn read(path: &Path) -> Result<Self, ResultsError> {
        let text = source::read_text(path, source::MAX_RESULTS_BYTES)?;
        serde_json::from_str(&text).map_err(|e| ResultsError::Json {
            path: path.display().to_string(),
            line: e.line(),
            // serde_json counts 0 at the end of a line's text; a place in a
            // file counts from 1.
            column: e.column().max(1),
            reason: json_reason(&e),
        })
    }

    pub fn write(&self, path: &Path) -> Result<(), ResultsError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| ResultsError::Io {
                path: parent.display().to_string(),
                error,
            })?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| ResultsError::Io {
            path: shown.clone(),
            error: std::io::Error::other(e),
        })?;
        std::fs::write(path, text).map_err(|error| ResultsError::Io { path: shown, error })
    }

    pub fn anomaly(&self, kind: Kind) -> u64 {
        self.anomalies
            .iter()
            .find(|a| a.kind == kind)
            .map_or(0, |a| a.count)
    }

    /// Orphans found in each store tier (the orphan facets `redis`,
    /// `postgres`, `sqlite`), for the tiers that had any.
    pub fn orphans_by_tier(&self) -> Vec<(&'static str, u64)> {
        let Some(family) = self.anomalies.iter().find(|a| a.kind == Kind::Orphan) else {
            return Vec::new();
        };
        crate::check::orphans::TIER_FACETS
            .iter()
            .filter_map(|&tier| Some((tier, *family.facets.get(tier)?)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// The app instances that exited with no fault asking, a sentence each:
    /// the app under test crashed (what the anomalies and errors after it
    /// come from).
    pub fn exits(&self) -> Vec<String> {
        self.timelines
            .iter()
            .flat_map(|t| &t.faults)
            .filter_map(|step| {
                let instance = step.action.strip_prefix("instance-exit ")?;
                let unscheduled = step.unscheduled.as_ref()?;
                let last = unscheduled
                    .last_output
                    .last()
                    .map_or_else(String::new, |line| format!("; its last output: {line}"));
                Some(format!(
                    "{instance} EXITED by itself at {:.3}s, no fault asking ({}){last}",
                    step.at as f64 / 1e6,
                    unscheduled.status
                ))
            })
            .collect()
    }

    /// A reference round trip by name (`healthz`, `redis-ping`).
    pub fn reference(&self, name: &str) -> Option<&ReferenceSeries> {
        self.references.iter().find(|r| r.name == name)
    }

    /// One request type over every instance: its count and histogram.
    pub fn kind(&self, kind: &str) -> Result<(u64, Histogram<u64>), ResultsError> {
        let mut all = crate::model::latency::histogram();
        let mut count = 0;
        for series in self.requests.iter().filter(|s| s.kind == kind) {
            all.add(decode(&series.histogram)?)
                .map_err(|e| ResultsError::Histogram(format!("{e:?}")))?;
            count += series.count;
        }
        Ok((count, all))
    }

    /// The request types present, in the order first seen.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = Vec::new();
        for series in &self.requests {
            if !kinds.contains(&series.kind) {
                kinds.push(series.kind.clone());
            }
        }
        kinds
    }

    /// All requests of every type and instance together.
    pub fn overall(&self) -> Result<(u64, u64, Histogram<u64>), ResultsError> {
        let mut all = crate::model::latency::histogram();
        let (mut count, mut errors) = (0, 0);
        for series in &self.requests {
            all.add(decode(&series.histogram)?)
                .map_err(|e| ResultsError::Histogram(format!("{e:?}")))?;
            count += series.count;
            errors += series.outcomes.errors();
        }
        Ok((count, errors, all))
    }
}

/// The JSON Schema of the document, as committed in `reports/schema.json`.
pub fn schema() -> String {
    let schema = schemars::schema_for!(Results);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// The results files at `paths` as one (`harness merge`): each read, the
/// shards checked with the files' names in any refusal, then merged; and
/// the shards none of them holds (empty for whole runs).
pub fn merge_files(paths: &[std::path::PathBuf]) -> Result<(Results, Vec<String>), ResultsError> {
    let runs = paths
        .iter()
        .map(|f| Results::read(f))
        .collect::<Result<Vec<_>, _>>()?;
    // Checked here too, so a refusal names the files.
    let names: Vec<String> = paths.iter().map(|f| f.display().to_string()).collect();
    check_shards(&names, &runs)?;
    let missing = missing_shards(&runs);
    Ok((merge(runs)?, missing))
}

/// Several runs as one: histograms added and percentiles recomputed,
/// counts summed, examples pooled (five per family and one of each group),
/// timelines kept per source.
pub fn merge(runs: Vec<Results>) -> Result<Results, ResultsError> {
    let named: Vec<String> = runs
        .iter()
        .map(|r| {
            r.sources
                .first()
                .map_or_else(|| "a run".to_owned(), |s| format!("{}'s run", s.name))
        })
        .collect();
    check_shards(&named, &runs)?;
    // Shards of a remote target all read one IdP's counters, each at its
    // own end: each count is the whole IdP's, not the shard's, so the
    // latest (largest) stands for them all instead of their sum.
    let shared_idp = runs.first().is_some_and(|r| {
        r.topology.app == AppKind::Remote && r.sources.iter().any(|s| s.shard.is_some())
    });
    let mut runs = runs.into_iter();
    let mut merged = runs.next().ok_or(ResultsError::Empty)?;
    for run in runs {
        merged.complete &= run.complete;
        if merged.stopped_because.is_none() {
            merged.stopped_because = run.stopped_because;
        }
        merged.sources.extend(run.sources);
        merged.timelines.extend(run.timelines);
        merged.unchecked.extend(run.unchecked);
        merged.unchecked.dedup();
        for series in run.requests {
            match merged
                .requests
                .iter_mut()
                .find(|s| s.kind == series.kind && s.instance == series.instance)
            {
                Some(into) => add_series(into, &series)?,
                None => merged.requests.push(series),
            }
        }
        for report in run.anomalies {
            match merged.anomalies.iter_mut().find(|a| a.kind == report.kind) {
                Some(into) => {
                    // Groups add up only when both files kept them (a
                    // family with no anomaly has none to keep).
                    let grouped = |r: &AnomalyReport| r.count == 0 || !r.groups.is_empty();
                    let both_grouped = grouped(into) && grouped(&report);
                    into.count += report.count;
                    for (facet, n) in report.facets {
                        *into.facets.entry(facet).or_insert(0) += n;
                    }
                    for (window, n) in report.by_window {
                        *into.by_window.entry(window).or_insert(0) += n;
                    }
                    if both_grouped {
                        add_groups(&mut into.groups, report.groups);
                    } else {
                        into.groups.clear();
                    }
                    // Known only when every run counted it.
                    into.across_instance_down = into
                        .across_instance_down
                        .zip(report.across_instance_down)
                        .map(|(a, b)| a + b);
                    let mut pooled = std::mem::take(&mut into.examples);
                    pooled.extend(report.examples);
                    let keep = pick_examples(&pooled.iter().map(Example::key).collect::<Vec<_>>());
                    into.examples = pooled
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| keep.contains(i))
                        .map(|(_, example)| example)
                        .collect();
                }
                None => merged.anomalies.push(report),
            }
        }
        for reference in run.references {
            match merged
                .references
                .iter_mut()
                .find(|r| r.name == reference.name)
            {
                Some(into) => {
                    let mut sum = decode(&into.histogram)?;
                    sum.add(decode(&reference.histogram)?)
                        .map_err(|e| ResultsError::Histogram(format!("{e:?}")))?;
                    into.histogram = encode(&sum);
                    into.latency = Percentiles::of(&sum);
                    into.count += reference.count;
                    into.failed += reference.failed;
                }
                None => merged.references.push(reference),
            }
        }
        // Known only when every run measured it.
        merged.cpu = match (merged.cpu.take(), run.cpu) {
            (Some(mut ours), Some(theirs)) => {
                ours.add(theirs);
                Some(ours)
            }
            _ => None,
        };
        let idp = &mut merged.idp;
        if shared_idp {
            if run.idp.token_calls > idp.token_calls {
                idp.token_calls = run.idp.token_calls;
                idp.code_exchanges = run.idp.code_exchanges;
                idp.refreshes = run.idp.refreshes;
                idp.failed_token_calls = run.idp.failed_token_calls;
                idp.refresh_reuse = run.idp.refresh_reuse;
            }
        } else {
            idp.token_calls += run.idp.token_calls;
            idp.code_exchanges += run.idp.code_exchanges;
            idp.refreshes += run.idp.refreshes;
            idp.failed_token_calls += run.idp.failed_token_calls;
            idp.refresh_reuse += run.idp.refresh_reuse;
        }
        idp.minimum += run.idp.minimum;
        idp.sessions += run.idp.sessions;
        idp.ratio = ratio(idp.token_calls, idp.minimum);
        let leaks = &mut merged.leaks;
        leaks.live_sessions_at_end += run.leaks.live_sessions_at_end;
        leaks.sessions_logged_out += run.leaks.sessions_logged_out;
        leaks.sessions_expired += run.leaks.sessions_expired;
        leaks.store_growth_bytes += run.leaks.store_growth_bytes;
        leaks.rss_growth_bytes += run.leaks.rss_growth_bytes;
        leaks.peak_rss_bytes = leaks.peak_rss_bytes.max(run.leaks.peak_rss_bytes);
        let mean = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            (a, b) => a.or(b),
        };
        leaks.store_bytes_per_session = mean(
            leaks.store_bytes_per_session,
            run.leaks.store_bytes_per_session,
        );
        leaks.store_bytes_per_session_fitted = mean(
            leaks.store_bytes_per_session_fitted,
            run.leaks.store_bytes_per_session_fitted,
        );
        leaks.store_bytes_empty = match (leaks.store_bytes_empty, run.leaks.store_bytes_empty) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        leaks.token_cache_entries_at_end = match (
            leaks.token_cache_entries_at_end,
            run.leaks.token_cache_entries_at_end,
        ) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
    merged
        .requests
        .sort_by(|a, b| (&a.kind, &a.instance).cmp(&(&b.kind, &b.instance)));
    Ok(merged)
}

/// Refuses results that are not shards of one scenario's run, each once:
/// a shard beside a whole run, shards of different cuts (`1/2` and `1/3`),
/// one shard twice, or shards of different scenarios (seed, workload,
/// faults, instances, app, fault shard). `names` names each run in the
/// message (its file). Results without shards pass: runs of one scenario
/// on several machines, each whole, merge as they always have.
pub fn check_shards(names: &[String], runs: &[Results]) -> Result<(), ResultsError> {
    // Each source of each run: a merged file of shards carries several.
    let mut seen: Vec<(usize, Option<SourceShard>)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        for source in &run.sources {
            seen.push((i, source.shard));
        }
    }
    let name = |i: usize| names.get(i).map_or("a run", String::as_str);
    let Some(&(first, first_shard)) = seen.first() else {
        return Ok(());
    };
    let fail = |message: String| Err(ResultsError::Shards(message));
    for &(i, shard) in &seen[1..] {
        match (first_shard, shard) {
            (None, None) => {}
            (Some(a), None) | (None, Some(a)) => {
                let (sharded, whole) = if first_shard.is_some() {
                    (first, i)
                } else {
                    (i, first)
                };
                return fail(format!(
                    "{} is shard {a} of a scenario and {} a whole run: merge the shards of one run together, and whole runs together",
                    name(sharded),
                    name(whole)
                ));
            }
            (Some(a), Some(b)) if a.count != b.count => {
                return fail(format!(
                    "{} is shard {a} and {} shard {b}: shards of one run are cut the same way (the same N)",
                    name(first),
                    name(i)
                ));
            }
            (Some(a), Some(b)) if a.fault_shard != b.fault_shard => {
                return fail(format!(
                    "{} had shard {} apply the faults and {} shard {}: not one run's shards",
                    name(first),
                    a.fault_shard,
                    name(i),
                    b.fault_shard
                ));
            }
            _ => {}
        }
    }
    if first_shard.is_none() {
        return Ok(());
    }
    for (k, &(i, a)) in seen.iter().enumerate() {
        if let Some(&(j, _)) = seen[..k].iter().find(|(_, b)| *b == a) {
            let shard = a.map(|a| a.to_string()).unwrap_or_default();
            return fail(if i == j {
                format!("{} holds shard {shard} twice", name(i))
            } else {
                format!(
                    "{} and {} are both shard {shard}: each shard's results are merged once",
                    name(j),
                    name(i)
                )
            });
        }
    }
    let base = &runs[first];
    for (i, run) in runs.iter().enumerate() {
        let differs = if run.scenario.seed != base.scenario.seed {
            Some(format!(
                "seed {} against {}",
                base.scenario.seed, run.scenario.seed
            ))
        } else if run.scenario.workload != base.scenario.workload {
            Some("their workloads differ".to_owned())
        } else if run.scenario.faults != base.scenario.faults {
            Some("their faults differ".to_owned())
        } else if run.scenario.instances != base.scenario.instances {
            Some(format!(
                "{} instances against {}",
                base.scenario.instances, run.scenario.instances
            ))
        } else if run.topology.name != base.topology.name {
            Some(format!(
                "app {} against {}",
                base.topology.name, run.topology.name
            ))
        } else {
            None
        };
        if let Some(why) = differs {
            return fail(format!(
                "{} and {} are shards of different scenarios ({why}): only one scenario's shards merge",
                name(first),
                name(i)
            ));
        }
    }
    Ok(())
}

/// The shards of `count` that none of `runs` holds (empty when they are whole runs).
pub fn missing_shards(runs: &[Results]) -> Vec<String> {
    let shards: Vec<SourceShard> = runs
        .iter()
        .flat_map(|r| r.sources.iter().filter_map(|s| s.shard))
        .collect();
    let Some(count) = shards.first().map(|s| s.count) else {
        return Vec::new();
    };
    (1..=count)
        .filter(|index| !shards.iter().any(|s| s.index == *index))
        .map(|index| format!("{index}/{count}"))
        .collect()
}

/// `from`'s groups added into `into`'s, group by group.
fn add_groups(into: &mut Vec<AnomalyGroup>, from: Vec<AnomalyGroup>) {
    for group in from {
        match into.iter_mut().find(|g| g.key() == group.key()) {
            Some(same) => same.count += group.count,
            None => into.push(group),
        }
    }
}

fn add_series(into: &mut RequestSeries, from: &RequestSeries) -> Result<(), ResultsError> {
    let add = |a: &str, b: &str| -> Result<(String, Percentiles), ResultsError> {
        let mut sum = decode(a)?;
        sum.add(decode(b)?)
            .map_err(|e| ResultsError::Histogram(format!("{e:?}")))?;
        Ok((encode(&sum), Percentiles::of(&sum)))
    };
    let (histogram, latency) = add(&into.histogram, &from.histogram)?;
    let (raw_histogram, raw_latency) = add(&into.raw_histogram, &from.raw_histogram)?;
    into.histogram = histogram;
    into.latency = latency;
    into.raw_histogram = raw_histogram;
    into.raw_latency = raw_latency;
    into.count += from.count;
    into.outcomes.add(&from.outcomes);
    Ok(())
}

/// Calls over the minimum; 1.0 when nothing was needed.
pub fn ratio(calls: u64, minimum: u64) -> f64 {
    if minimum == 0 {
        if calls == 0 { 1.0 } else { calls as f64 }
    } else {
        calls as f64 / minimum as f64
    }
}

#[cfg(test)]
mod tests {
    use super::pick_examples;

    #[test]
    fn examples_are_the_first_five_and_one_of_every_other_group() {
        let keys = ["a", "a", "a", "a", "a", "b", "a", "c", "b", "c"];
        assert_eq!(pick_examples(&keys), [0, 1, 2, 3, 4, 5, 7]);
        assert_eq!(pick_examples(&["a", "b"]), [0, 1]);
        assert_eq!(pick_examples::<&str>(&[]), Vec::<usize>::new());
    }
}
