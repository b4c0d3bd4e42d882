//! `harness compare`: a results file against a baseline. Latency is
//! compared as ratios taken inside each run (a request type's percentile
//! over a reference round trip measured beside it, `healthz` by default),
//! because absolute times differ across machines and from one minute to the
//! next on a shared one; absolute limits are opt-in. An anomaly family
//! that rises past the baseline's count fails: by default any rise at all
//! (so any family new to the run), or past a slack (a fraction of the
//! baseline's count) plus an allowance (a count) when asked. CPU per 1,000
//! requests is shown beside, never judged.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::check::Kind;
use crate::model::cpu;
use crate::results::Results;

use super::ReportError;

/// What may worsen before the comparison fails; `harness compare`'s flags
/// (each help line says the flag's meaning, the comment beside it the rest).
#[derive(Clone, Debug, clap::Args)]
pub struct Thresholds {
    /// Largest allowed rise of (request p99 / reference p99).
    #[arg(long = "max-p99-regression", value_name = "MAX_P99_REGRESSION", default_value = "100%", value_parser = parse_percent)]
    pub p99_ratio: f64,
    /// Largest allowed rise of (request p90 / reference p90).
    #[arg(long = "max-p90-regression", value_name = "MAX_P90_REGRESSION", default_value = "100%", value_parser = parse_percent)]
    pub p90_ratio: f64,
    /// Largest allowed rise of (request p50 / reference p50).
    // As a fraction (0.1 = 10%), as every limit here.
    #[arg(long = "max-p50-regression", value_name = "MAX_P50_REGRESSION", default_value = "50%", value_parser = parse_percent)]
    pub p50_ratio: f64,
    /// Opt-in: largest allowed rise of the absolute p99.
    #[arg(long = "max-absolute-p99-regression", value_name = "MAX_ABSOLUTE_P99_REGRESSION", value_parser = parse_percent)]
    pub p99_absolute: Option<f64>,
    /// Opt-in: largest allowed rise of the absolute p90.
    #[arg(long = "max-absolute-p90-regression", value_name = "MAX_ABSOLUTE_P90_REGRESSION", value_parser = parse_percent)]
    pub p90_absolute: Option<f64>,
    /// Opt-in: largest allowed rise of the absolute p50.
    #[arg(long = "max-absolute-p50-regression", value_name = "MAX_ABSOLUTE_P50_REGRESSION", value_parser = parse_percent)]
    pub p50_absolute: Option<f64>,
    /// Allowed rise of an anomaly family, as a fraction of the baseline's count.
    // 0 = any rise fails; a family new to the run fails always.
    #[arg(long, default_value = "0%", value_parser = parse_percent)]
    pub anomaly_slack: f64,
    /// Allowed rise of any anomaly family as a count, on top of the
    /// slack (for options whose anomalies are expected and vary; 0 by
    /// default, so a family new to the run fails).
    #[arg(long, default_value_t = 0)]
    pub anomaly_allowance: u64,
    /// The reference round trip latencies are divided by: healthz | redis-ping.
    #[arg(long, default_value = crate::model::latency::HEALTHZ)]
    pub reference: String,
    /// Fewest samples beyond a percentile, in both files, for it to be
    /// judged: with 20, p50 needs 40 requests of a type (and of the
    /// reference round trip), p90 200, p99 2,000. Fewer: shown, not judged.
    // With fewer, the percentile is the luck of a few requests: a p99 of
    // 200 samples is the second slowest. Counted for the request type and
    // for the reference round trip alike, since a ratio is as noisy as either.
    #[arg(long, default_value_t = 20)]
    pub min_tail: u64,
    /// Count a ratio's rise past its limit only when the request's
    /// absolute time rose past that limit too (a reference that got
    /// faster raises every ratio without any request slowing).
    // An idle moment on a shared machine makes the reference faster.
    #[arg(long)]
    pub confirm_absolute: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            p50_ratio: 0.5,
            p90_ratio: 1.0,
            p99_ratio: 1.0,
            p50_absolute: None,
            p90_absolute: None,
            p99_absolute: None,
            anomaly_slack: 0.0,
            anomaly_allowance: 0,
            reference: crate::model::latency::HEALTHZ.to_owned(),
            min_tail: 20,
            confirm_absolute: false,
        }
    }
}

impl Thresholds {
    /// The percentiles compared: name, quantile, ratio limit, absolute limit.
    fn percentiles(&self) -> [(&'static str, f64, f64, Option<f64>); 3] {
        [
            ("p50", 0.5, self.p50_ratio, self.p50_absolute),
            ("p90", 0.9, self.p90_ratio, self.p90_absolute),
            ("p99", 0.99, self.p99_ratio, self.p99_absolute),
        ]
    }

    /// Fewest samples for quantile `q` to have `min_tail` beyond it.
    fn samples_needed(&self, q: f64) -> u64 {
        (self.min_tail as f64 / (1.0 - q)).round() as u64
    }
}

/// Reads a percentage: `10%` or `10` (both ten percent), as a fraction.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value / 100.0),
        _ => Err(format!(
            "`{text}` is not a percentage (write it as 10% or 10)"
        )),
    }
}

/// How a row came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within its limit (or no limit applies).
    Ok,
    /// Better than the baseline by more than the limit would allow worse.
    Better,
    /// Past its limit: the comparison fails.
    Worse,
    /// Shown for the reader; not judged (too few requests, no reference).
    Info,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Better => "better",
            Verdict::Worse => "WORSE",
            Verdict::Info => "-",
        }
    }
}

/// How a row of several repeats of the current run is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Repeats {
    /// Latency: the repeat with the lowest value. Machine noise seldom slows
    /// every repeat at once; a regression in the code does.
    Best(f64),
    /// Anomalies and failures: the repeat with the highest value.
    Worst(f64),
    /// Shown for the reader: the first repeat's.
    First,
}

/// One compared figure.
#[derive(Clone, Debug)]
pub struct Row {
    pub metric: String,
    pub baseline: String,
    pub current: String,
    pub change: String,
    pub limit: String,
    pub verdict: Verdict,
    pub repeats: Repeats,
}

/// The whole comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub baseline: String,
    pub current: String,
    pub rows: Vec<Row>,
}

impl Comparison {
    /// Whether any row crossed its limit.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Worse)
    }

    /// The rows that failed.
    pub fn failures(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Worse)
            .collect()
    }
}

fn change(base: f64, current: f64) -> Option<f64> {
    (base > 0.0).then(|| current / base - 1.0)
}

fn percent(change: Option<f64>) -> String {
    change.map_or_else(|| "-".to_owned(), |c| format!("{:+.1}%", c * 100.0))
}

/// Judges a rise against a limit: worse past it, better past it the other way.
fn judge(change: Option<f64>, limit: f64) -> Verdict {
    match change {
        Some(c) if c > limit => Verdict::Worse,
        Some(c) if c < -limit.min(0.5) && c < 0.0 => Verdict::Better,
        _ => Verdict::Ok,
    }
}

/// A label for the run: the topology and where it ran.
fn label(results: &Results) -> String {
    let sources: Vec<&str> = results.sources.iter().map(|s| s.name.as_str()).collect();
    format!("{} ({})", results.topology.name, sources.join(", "))
}

/// Compares `current` with `baseline`.
pub fn compare(
    baseline: &Results,
    current: &Results,
    limits: &Thresholds,
) -> Result<Comparison, ReportError> {
    let mut rows = Vec::new();
    if baseline.topology.name != current.topology.name {
        rows.push(Row {
            metric: "topology".into(),
            baseline: baseline.topology.name.clone(),
            current: current.topology.name.clone(),
            change: "differs".into(),
            limit: "same".into(),
            verdict: Verdict::Worse,
            repeats: Repeats::Worst(f64::INFINITY),
        });
    }
    if !current.complete {
        rows.push(Row {
            metric: "run complete".into(),
            baseline: baseline.complete.to_string(),
            current: "false".into(),
            change: current.stopped_because.clone().unwrap_or_default(),
            limit: "true".into(),
            verdict: Verdict::Worse,
            repeats: Repeats::Worst(f64::INFINITY),
        });
    }
    let reference = |r: &Results| -> Result<Option<Sample>, ReportError> {
        r.reference(&limits.reference)
            .map(|series| {
                Ok(Sample {
                    count: series.count,
                    histogram: crate::results::decode(&series.histogram)?,
                })
            })
            .transpose()
    };
    let references = (reference(baseline)?, reference(current)?);
    for kind in baseline.kinds() {
        let (base_count, base_h) = baseline.kind(&kind)?;
        let (cur_count, cur_h) = current.kind(&kind)?;
        if cur_count == 0 {
            rows.push(Row {
                metric: format!("{kind}: requests"),
                baseline: base_count.to_string(),
                current: "0".into(),
                change: "none made".into(),
                limit: "some".into(),
                verdict: Verdict::Worse,
                repeats: Repeats::Worst(f64::INFINITY),
            });
            continue;
        }
        let samples = (
            Sample {
                count: base_count,
                histogram: base_h,
            },
            Sample {
                count: cur_count,
                histogram: cur_h,
            },
        );
        latency_rows(&mut rows, &kind, &samples, &references, limits);
    }
    // Every request type together: in a short run, the one latency with
    // enough samples for its tail to be judged.
    let (base_all, cur_all) = (baseline.overall()?, current.overall()?);
    let samples = (
        Sample {
            count: base_all.0,
            histogram: base_all.2,
        },
        Sample {
            count: cur_all.0,
            histogram: cur_all.2,
        },
    );
    latency_rows(&mut rows, "all requests", &samples, &references, limits);
    cpu_rows(&mut rows, baseline, current);
    for kind in Kind::ALL {
        let (b, c) = (baseline.anomaly(kind), current.anomaly(kind));
        let allowed =
            (b as f64 * (1.0 + limits.anomaly_slack)).floor() as u64 + limits.anomaly_allowance;
        let verdict = if c > allowed {
            Verdict::Worse
        } else if c < b {
            Verdict::Better
        } else {
            Verdict::Ok
        };
        rows.push(Row {
            metric: format!("anomalies: {kind}"),
            baseline: b.to_string(),
            current: c.to_string(),
            change: format!("{:+}", c as i64 - b as i64),
            limit: if allowed == 0 {
                "none new".to_owned()
            } else {
                format!("at most {allowed}")
            },
            verdict,
            repeats: Repeats::Worst(c as f64),
        });
    }
    let errors = |r: &Results| r.overall().map(|(n, e, _)| (n, e));
    let ((bn, be), (cn, ce)) = (errors(baseline)?, errors(current)?);
    let rate = |e: u64, n: u64| e as f64 / n.max(1) as f64;
    rows.push(Row {
        metric: "error rate (5xx, refused, timeouts, lost)".into(),
        baseline: format!("{:.2}%", rate(be, bn) * 100.0),
        current: format!("{:.2}%", rate(ce, cn) * 100.0),
        change: format!("{:+.2} points", (rate(ce, cn) - rate(be, bn)) * 100.0),
        limit: "shown".into(),
        verdict: Verdict::Info,
        repeats: Repeats::First,
    });
    rows.push(Row {
        metric: "IdP token calls / minimum".into(),
        baseline: format!("{:.2}", baseline.idp.ratio),
        current: format!("{:.2}", current.idp.ratio),
        change: percent(change(baseline.idp.ratio, current.idp.ratio)),
        limit: "shown (extra-idp-calls is judged)".into(),
        verdict: Verdict::Info,
        repeats: Repeats::First,
    });
    let per = |r: &Results| r.leaks.store_bytes_per_session;
    rows.push(Row {
        metric: "store bytes per live session".into(),
        baseline: per(baseline).map_or_else(|| "-".into(), |b| format!("{b:.0}")),
        current: per(current).map_or_else(|| "-".into(), |b| format!("{b:.0}")),
        change: match (per(baseline), per(current)) {
            (Some(b), Some(c)) => percent(change(b, c)),
            _ => "-".into(),
        },
        limit: "shown".into(),
        verdict: Verdict::Info,
        repeats: Repeats::First,
    });
    Ok(Comparison {
        baseline: label(baseline),
        current: label(current),
        rows,
    })
}

/// [`compare_repeats`] of the results files at `baseline` and `currents`.
pub fn compare_files(
    baseline: &std::path::Path,
    currents: &[std::path::PathBuf],
    limits: &Thresholds,
) -> Result<Comparison, ReportError> {
    let currents = currents
        .iter()
        .map(|path| Results::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    compare_repeats(&Results::read(baseline)?, &currents, limits)
}

/// `currents` against `baseline`, where the currents are repeats of one run
/// (the same scenario and topology, one after another): each latency row
/// is the best repeat's, each anomaly or failure row the worst repeat's. A
/// latency regression then counts only when every repeat shows it, while
/// any repeat's anomaly counts.
pub fn compare_repeats(
    baseline: &Results,
    currents: &[Results],
    limits: &Thresholds,
) -> Result<Comparison, ReportError> {
    let mut comparisons = currents
        .iter()
        .map(|current| compare(baseline, current, limits))
        .collect::<Result<Vec<_>, _>>()?;
    if comparisons.len() < 2 {
        return comparisons.pop().ok_or(ReportError::Empty);
    }
    let mut order: Vec<String> = Vec::new();
    let mut chosen: std::collections::HashMap<String, Row> = std::collections::HashMap::new();
    for row in comparisons.iter().flat_map(|c| &c.rows) {
        match chosen.get(&row.metric) {
            None => {
                order.push(row.metric.clone());
                chosen.insert(row.metric.clone(), row.clone());
            }
            Some(kept) if replaces(kept.repeats, row.repeats) => {
                chosen.insert(row.metric.clone(), row.clone());
            }
            Some(_) => {}
        }
    }
    Ok(Comparison {
        baseline: comparisons[0].baseline.clone(),
        current: format!(
            "{} x{} repeats (latency: the best repeat's; anomalies: the worst's)",
            comparisons[0].current,
            comparisons.len()
        ),
        rows: order
            .iter()
            .filter_map(|metric| chosen.remove(metric))
            .collect(),
    })
}

/// Whether a repeat's row takes the place of the one kept so far.
fn replaces(kept: Repeats, candidate: Repeats) -> bool {
    match (kept, candidate) {
        (Repeats::Best(kept), Repeats::Best(candidate)) => candidate < kept,
        (Repeats::Worst(kept), Repeats::Worst(candidate)) => candidate > kept,
        _ => false,
    }
}

/// Latencies of one request type (or of the reference) in one run.
struct Sample {
    count: u64,
    histogram: Histogram<u64>,
}

impl Sample {
    fn at(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64
    }
}

/// The rows of one request type: for each percentile, its ratio to the
/// reference's same percentile (judged), then its absolute value (judged
/// only when asked). A percentile with too few samples beyond it, in the
/// type or in the reference, is shown and not judged.
fn latency_rows(
    rows: &mut Vec<Row>,
    kind: &str,
    (base, cur): &(Sample, Sample),
    references: &(Option<Sample>, Option<Sample>),
    limits: &Thresholds,
) {
    for (name, q, ratio_limit, absolute_limit) in limits.percentiles() {
        let needed = limits.samples_needed(q);
        let not_judged = format!("under {needed} samples: not judged");
        let (b, c) = (base.at(q), cur.at(q));
        let enough = base.count.min(cur.count) >= needed;
        let metric = format!("{kind}: {name} / {} {name}", limits.reference);
        match references {
            (Some(base_ref), Some(cur_ref)) => {
                let (br, cr) = (base_ref.at(q).max(1.0), cur_ref.at(q).max(1.0));
                let ch = change(b / br, c / cr);
                let judged = enough && base_ref.count.min(cur_ref.count) >= needed;
                let mut verdict = if judged {
                    judge(ch, ratio_limit)
                } else {
                    Verdict::Info
                };
                let mut limit = if judged {
                    format!("+{:.0}%", ratio_limit * 100.0)
                } else {
                    not_judged.clone()
                };
                // A reference that got faster raises every ratio; a slower
                // request raises its absolute time too. Asked to, count a
                // rise only when both views see it.
                let absolute = change(b, c);
                if limits.confirm_absolute && verdict == Verdict::Worse {
                    limit += " with the absolute time";
                    if absolute.is_none_or(|a| a <= ratio_limit) {
                        verdict = Verdict::Ok;
                        limit += &format!(" (only {}: not confirmed)", percent(absolute));
                    }
                }
                rows.push(Row {
                    metric,
                    baseline: format!("{:.2}", b / br),
                    current: format!("{:.2}", c / cr),
                    change: percent(ch),
                    limit,
                    verdict,
                    repeats: Repeats::Best(c / cr),
                });
            }
            (base_ref, cur_ref) => {
                let state = |r: &Option<Sample>| if r.is_some() { "ok" } else { "no reference" };
                rows.push(Row {
                    metric,
                    baseline: state(base_ref).into(),
                    current: state(cur_ref).into(),
                    change: "-".into(),
                    limit: "not judged".into(),
                    verdict: Verdict::Info,
                    repeats: Repeats::First,
                });
            }
        }
        let ch = change(b, c);
        rows.push(Row {
            metric: format!("{kind}: {name} ms"),
            baseline: format!("{:.2}", b / 1e3),
            current: format!("{:.2}", c / 1e3),
            change: percent(ch),
            limit: match absolute_limit {
                None => "absolute: opt-in".to_owned(),
                Some(l) if enough => format!("+{:.0}%", l * 100.0),
                Some(_) => not_judged,
            },
            verdict: match absolute_limit {
                Some(l) if enough => judge(ch, l),
                _ => Verdict::Info,
            },
            repeats: Repeats::Best(c),
        });
    }
}

/// CPU ms per 1,000 requests of the instances together, Redis, Postgres and
/// the harness: shown beside latency, not judged (CPU seconds on a shared
/// machine move with what else runs on it, as latency does, and no limit
/// has been set for them).
fn cpu_rows(rows: &mut Vec<Row>, baseline: &Results, current: &Results) {
    // None: the run has no such part; an error: why its figure is missing.
    let per_1k = |r: &Results, name: &str| -> Option<Result<f64, &'static str>> {
        let Some(cpu) = &r.cpu else {
            return Some(Err("not measured"));
        };
        let component = cpu.component(name)?;
        Some(component.ms_per_1k_requests.ok_or("unknown"))
    };
    for name in [cpu::APP, cpu::REDIS, cpu::POSTGRES, cpu::HARNESS] {
        let (b, c) = (per_1k(baseline, name), per_1k(current, name));
        if b.is_none() && c.is_none() {
            continue;
        }
        let shown = |v: &Option<Result<f64, &str>>| match v {
            Some(Ok(ms)) => format!("{ms:.1}"),
            Some(Err(why)) => (*why).to_owned(),
            None => "none".to_owned(),
        };
        rows.push(Row {
            metric: format!("CPU ms per 1k requests: {name}"),
            baseline: shown(&b),
            current: shown(&c),
            change: match (b, c) {
                (Some(Ok(b)), Some(Ok(c))) => percent(change(b, c)),
                _ => "-".into(),
            },
            limit: "shown".into(),
            verdict: Verdict::Info,
            repeats: match c {
                Some(Ok(ms)) => Repeats::Best(ms),
                _ => Repeats::First,
            },
        });
    }
}

/// For a terminal: aligned columns.
pub fn table(comparison: &Comparison) -> String {
    let heads = [
        "metric", "baseline", "current", "change", "limit", "verdict",
    ];
    let cells: Vec<[String; 6]> = comparison
        .rows
        .iter()
        .map(|r| {
            [
                r.metric.clone(),
                r.baseline.clone(),
                r.current.clone(),
                r.change.clone(),
                r.limit.clone(),
                r.verdict.word().to_owned(),
            ]
        })
        .collect();
    let mut widths = heads.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "baseline: {}\ncurrent:  {}\n",
        comparison.baseline, comparison.current
    );
    let line = |out: &mut String, row: &[String]| {
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i == 0 {
                let _ = write!(out, "{cell:<w$}");
            } else {
                let _ = write!(out, "  {cell:>w$}");
            }
        }
        out.push('\n');
    };
    line(&mut out, &heads.map(str::to_owned));
    for row in &cells {
        line(&mut out, row);
    }
    out += &verdict_line(comparison);
    out
}

/// For a CI summary: a Markdown table (pipes in cells escaped).
pub fn markdown(comparison: &Comparison) -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut out = format!(
        "### {} against {}\n\n| metric | baseline | current | change | limit | verdict |\n| --- | ---: | ---: | ---: | --- | --- |\n",
        cell(&comparison.current),
        cell(&comparison.baseline)
    );
    for r in &comparison.rows {
        let verdict = if r.verdict == Verdict::Worse {
            "**WORSE**".to_owned()
        } else {
            r.verdict.word().to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {verdict} |",
            cell(&r.metric),
            cell(&r.baseline),
            cell(&r.current),
            cell(&r.change),
            cell(&r.limit)
        );
    }
    out.push('\n');
    out += &verdict_line(comparison);
    out
}

fn verdict_line(comparison: &Comparison) -> String {
    let failures = comparison.failures();
    if failures.is_empty() {
        "verdict: no regression\n".to_owned()
    } else {
        format!(
            "verdict: REGRESSION in {}\n",
            failures
                .iter()
                .map(|r| r.metric.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}
