//! `harness bench`: one scenario on one or more apps (the reference app's
//! topologies, or a target) in turn, a results file each, and the summary
//! table of them.

use std::fmt::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::check::Kind;
use crate::history_file::{self, HistoryFileError};
use crate::model::app::AppUnderTest;
use crate::model::cpu;
use crate::results::{Results, ResultsError};
use crate::run::{self, RunError, RunPlan};
use crate::scenario::Scenario;
use crate::scenario::names::file_safe;
use crate::shard::Shard;

/// What to bench.
pub struct Bench {
    pub scenario: Scenario,
    pub scenario_file: Option<PathBuf>,
    pub apps: Vec<AppUnderTest>,
    pub instances: NonZeroUsize,
    /// Where results files go.
    pub out: PathBuf,
    pub source: String,
    pub run_dir: Option<PathBuf>,
    pub keep: bool,
    /// Also write each run's whole history beside its results file.
    pub history: bool,
    /// A test hook (see [`RunPlan::witness`]).
    pub witness: Option<contract::Witness>,
    /// `--shard I/N` (see [`RunPlan::shard`]).
    pub shard: Option<Shard>,
    /// `--start-at`, for the one app it may come with.
    pub start_at: Option<SystemTime>,
}

/// What a bench wrote.
pub struct Benched {
    pub results: Vec<Results>,
    pub written: Vec<PathBuf>,
    /// The history files written (`history`), one per results file.
    pub histories: Vec<PathBuf>,
    /// Why it ended before every topology ran, if it did.
    pub stopped_because: Option<String>,
}

impl Benched {
    /// Where the HTML report goes by default, beside the results: one run's
    /// file name with `.html`; several runs' with `all` in place of the
    /// first topology's name. None when nothing was written.
    pub fn report_path(&self) -> Option<PathBuf> {
        let first = self.written.first()?;
        let stem = first
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = match self.results.first() {
            Some(results) if self.written.len() > 1 => {
                stem.replacen(&format!("-{}-", results.topology.name), "-all-", 1)
            }
            _ => stem,
        };
        Some(first.with_file_name(format!("{stem}.html")))
    }

    /// What `bench` says when done: the summary table, every file written,
    /// then the HTML report, written to `report` or else beside the results.
    pub fn print_and_report(
        &self,
        report: Option<PathBuf>,
        settings: crate::report::Settings,
    ) -> Result<(), crate::report::ReportError> {
        print!("{}", summary_table(&self.results));
        let written = self.written.iter().map(|p| ("results", p));
        for (what, path) in written.chain(self.histories.iter().map(|p| ("history", p))) {
            println!("{what}: {}", path.display());
        }
        if let Some(report) = report.or_else(|| self.report_path()) {
            crate::report::write_with(&self.written, &report, settings)?;
            println!("report: {}", report.display());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    History(#[from] HistoryFileError),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot make the results folder {path}: {error}")]
    Out {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Runs the scenario on each app in turn; an interrupted run is
/// written (marked incomplete) and ends the bench.
pub async fn bench(bench: Bench) -> Result<Benched, BenchError> {
    // Before any run: a results folder that cannot be made should not cost a run.
    std::fs::create_dir_all(&bench.out).map_err(|error| BenchError::Out {
        path: bench.out.clone(),
        error,
    })?;
    let stop = service_kit::shutdown_signal().map_err(BenchError::Signals)?;
    tokio::pin!(stop);
    // Every part of a results file's name is made safe, so it lands in
    // `out` whatever the scenario file or the app is called.
    let stem = bench
        .scenario_file
        .as_ref()
        .and_then(|f| f.file_stem())
        .map_or_else(|| "smoke".to_owned(), |s| file_safe(&s.to_string_lossy()));
    // Shards started at the same second into one shared folder keep apart.
    let stem = match bench.shard {
        Some(shard) => format!("{stem}-shard{}of{}", shard.index, shard.count),
        None => stem,
    };
    let mut done = Benched {
        results: Vec::new(),
        written: Vec::new(),
        histories: Vec::new(),
        stopped_because: None,
    };
    for app in &bench.apps {
        let plan = RunPlan {
            scenario: bench.scenario.clone(),
            scenario_file: bench.scenario_file.clone(),
            app: app.clone(),
            instances: bench.instances,
            run_dir: bench.run_dir.clone(),
            keep: bench.keep,
            source: bench.source.clone(),
            witness: bench.witness.clone(),
            shard: bench.shard,
            start_at: bench.start_at,
        };
        let outcome = match run::run(&plan, &mut stop).await {
            Ok(outcome) => outcome,
            Err(RunError::InterruptedEarly) => {
                done.stopped_because = Some("interrupted before the load started".into());
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let stamp = outcome
            .results
            .sources
            .first()
            .map(|s| s.started_at.replace([':', '-'], ""))
            .unwrap_or_default();
        let path = results_path(&bench.out, &stem, app.name(), &stamp);
        outcome.results.write(&path)?;
        if bench.history {
            let history = history_file::beside(&path);
            history_file::write_run(&outcome.history, Some(&outcome.facts), &history)?;
            done.histories.push(history);
        }
        if let Some(folder) = outcome.folder {
            eprintln!("run folder kept: {}", folder.display());
        }
        let stopped = outcome.results.stopped_because.clone();
        done.results.push(outcome.results);
        done.written.push(path);
        if stopped.is_some() {
            done.stopped_because = stopped;
            break;
        }
    }
    Ok(done)
}

/// Where a run's results go: in `out`, whatever the scenario, the app or
/// the time is called (each part made a safe file name).
fn results_path(out: &std::path::Path, stem: &str, app: &str, stamp: &str) -> PathBuf {
    out.join(format!(
        "{}-{}-{}.json",
        file_safe(stem),
        file_safe(app),
        file_safe(stamp)
    ))
}

/// One line per run: requests, latency, errors, each anomaly family, IdP
/// calls against the minimum, orphans, memory, CPU per 1,000 requests.
pub fn summary_table(runs: &[Results]) -> String {
    let mut out = String::new();
    // As wide as the longest name, so every column stays aligned.
    let width = runs
        .iter()
        .map(|r| r.topology.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(10);
    let _ = write!(
        out,
        "{:<width$} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "topology", "requests", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for kind in Kind::ALL {
        let _ = write!(out, " {:>5}", short(kind));
    }
    let _ = writeln!(
        out,
        " {:>7} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "idp x", "peak rss", "B/session", "fit B/s", "cpu app", "redis", "postgres"
    );
    for run in runs {
        let (requests, errors, all) = match run.overall() {
            Ok(overall) => overall,
            Err(_) => (0, 0, crate::model::latency::histogram()),
        };
        let ms = |q: f64| all.value_at_quantile(q) as f64 / 1e3;
        let _ = write!(
            out,
            "{:<width$} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>6}",
            run.topology.name,
            requests,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            errors
        );
        for kind in Kind::ALL {
            let _ = write!(out, " {:>5}", run.anomaly(kind));
        }
        let bytes = |b: Option<f64>| b.map_or_else(|| "-".to_owned(), |b| format!("{b:.0}"));
        let _ = writeln!(
            out,
            " {:>7.2} {:>8.1}M {:>9} {:>9} {:>9} {:>8} {:>8}",
            run.idp.ratio,
            run.leaks.peak_rss_bytes as f64 / 1048576.0,
            bytes(run.leaks.store_bytes_per_session),
            bytes(run.leaks.store_bytes_per_session_fitted),
            cpu_cell(run, cpu::APP),
            cpu_cell(run, cpu::REDIS),
            cpu_cell(run, cpu::POSTGRES)
        );
    }
    let _ = writeln!(
        out,
        "B/session: store growth over the empty store per live session at the end; fit B/s: the slope of store bytes over live sessions, every sample"
    );
    let _ = writeln!(
        out,
        "anomalies: {}",
        Kind::ALL
            .iter()
            .map(|k| format!("{} = {k}", short(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "cpu: CPU ms (user + system) per 1,000 requests while the load ran, of every instance \
         together, Redis and Postgres (- the topology has none; unknown: a server the harness \
         does not run)"
    );
    for run in runs {
        if !run.complete {
            let _ = writeln!(
                out,
                "{}: INCOMPLETE ({})",
                run.topology.name,
                run.stopped_because.as_deref().unwrap_or("cut short")
            );
        }
        for timeline in &run.timelines {
            for errors in &timeline.fault_errors {
                let _ = writeln!(
                    out,
                    "{}: {}",
                    run.topology.name,
                    crate::outage::line(errors)
                );
            }
        }
        for line in run.exits() {
            let _ = writeln!(out, "{}: {line}", run.topology.name);
        }
        let tiers = run.orphans_by_tier();
        if !tiers.is_empty() {
            let parts: Vec<String> = tiers.iter().map(|(t, n)| format!("{t} {n}")).collect();
            let _ = writeln!(
                out,
                "{}: orphans by store tier: {}",
                run.topology.name,
                parts.join(", ")
            );
        }
        for unchecked in &run.unchecked {
            let _ = writeln!(
                out,
                "{}: {} not checked: {}",
                run.topology.name, unchecked.kind, unchecked.reason
            );
        }
    }
    out
}

/// A component's CPU ms per 1,000 requests: `-` when the run has no such
/// component (or was measured before CPU was), `unknown` when it cannot be read.
fn cpu_cell(run: &Results, component: &str) -> String {
    match run.cpu.as_ref().and_then(|c| c.component(component)) {
        None => "-".to_owned(),
        Some(c) if c.seconds.is_none() => "unknown".to_owned(),
        Some(c) => c
            .ms_per_1k_requests
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}")),
    }
}

/// Column heads of the anomaly families.
fn short(kind: Kind) -> &'static str {
    match kind {
        Kind::SessionLoss => "loss",
        Kind::LostUpdate => "lost",
        Kind::StaleRead => "stale",
        Kind::CrossSessionToken => "xsess",
        Kind::CrossUserToken => "xuser",
        Kind::TokenAfterLogout => "aftlo",
        Kind::ExtraIdpCalls => "xidp",
        Kind::Orphan => "orph",
        Kind::CrossSessionData => "xdata",
        Kind::SessionResurrected => "resur",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_results_file_lands_in_out_whatever_the_names() {
        let out = std::path::Path::new("/tmp/o/t25");
        for (stem, app) in [
            ("smoke", "option4"),
            ("..", "x/../../escaped"),
            ("a/b", "../.."),
            ("", ""),
            ("/etc", "/passwd"),
        ] {
            let path = results_path(out, stem, app, "20261130T101010Z");
            assert_eq!(
                path.parent(),
                Some(out),
                "{stem:?} {app:?}: {}",
                path.display()
            );
            assert!(
                path.components().count() == out.components().count() + 1,
                "{}",
                path.display()
            );
        }
        assert_eq!(
            results_path(out, "smoke", "option4", "20261130T101010Z"),
            out.join("smoke-option4-20261130T101010Z.json")
        );
    }

    #[test]
    fn the_summary_table_stays_aligned_for_long_names() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/short-option4.json");
        let short = Results::read(&fixture).expect("fixture reads");
        let mut long = short.clone();
        long.topology.name = "express-msal-option4-on-staging".into();
        let table = summary_table(&[short, long]);
        let rows: Vec<&str> = table.lines().take(3).collect();
        // Header and both runs are as long as each other: every column aligned.
        let lengths: Vec<usize> = rows.iter().map(|r| r.chars().count()).collect();
        assert!(lengths.windows(2).all(|w| w[0] == w[1]), "{table}");
        assert!(
            rows[2].starts_with("express-msal-option4-on-staging "),
            "{table}"
        );
    }
}
