//! `harness`: the command line, one library call per subcommand. `bench`
//! runs a scenario on topologies and writes results; `check` reads a
//! scenario file and says what it would do; `up` brings a topology up by
//! hand; `merge` combines results files; `schema` prints their JSON Schema;
//! `report` writes the HTML report of results files; `compare` judges one
//! against a baseline; `analyze` judges a saved history again.

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use app::topology::{Topology, TopologyError};
use clap::{Args, Parser, Subcommand};
use harness::faults;
use harness::report::compare;
use harness::results::{self, Results};
use harness::run_folder::RunFolder;
use harness::scenario::capacity::{self, Estimate};
use harness::scenario::target;
use harness::scenario::workload::written;
use harness::scenario::{self as scenarios, Scenario, ScenarioError};
use harness::shard::{self, Shard, ShardError};
use harness::stage::stack::{Stack, StackSpec};
use harness::stage::target::AppUnderTest;

/// The scenario `bench` runs when none is given.
const SMOKE: &str = include_str!("../../scenarios/smoke.toml");

/// mimalloc: the driver allocates on every request (URLs, headers, history
/// events), and glibc's `malloc` took a tenth of its thread's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(version, about = "Measures session and token-cache topologies")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which app (a topology of the reference app, or a target), and how many instances.
#[derive(Args, Debug)]
struct Deployment {
    /// option1 | option2 | option3 | option4 (default: the scenario's, else option4).
    #[arg(long, conflicts_with_all = ["topology_file", "target"])]
    topology: Option<String>,
    /// An app the harness did not build (targets/NAME.toml): the command
    /// that starts one instance, or URLs of instances running elsewhere.
    #[arg(long, value_name = "FILE", conflicts_with = "topology_file")]
    target: Option<PathBuf>,
    /// A custom topology (TOML: name, session_backend, token_cache, encrypt,
    /// concurrency); the harness brings up exactly the stores it needs.
    #[arg(long, value_name = "FILE")]
    topology_file: Option<PathBuf>,
    /// App instances, 1 to 64 (default: the scenario's, else 2).
    #[arg(long, value_parser = scenarios::parse_instances)]
    instances: Option<NonZeroUsize>,
}

impl Deployment {
    /// The topology asked for, else the scenario's, else option4.
    fn topology(&self, scenario: &Scenario) -> anyhow::Result<Topology> {
        Ok(
            match (&self.topology_file, &self.topology, &scenario.topology) {
                (Some(path), _, _) => scenarios::topology_from_file(path)?,
                (None, Some(name), _) => Topology::named(name)?,
                (None, None, Some(topology)) => topology.clone(),
                (None, None, None) => Topology::named("option4")?,
            },
        )
    }

    /// The target asked for, else the reference app in [`Self::topology`].
    fn app(&self, scenario: &Scenario) -> anyhow::Result<AppUnderTest> {
        match &self.target {
            Some(path) => Ok(target::from_file(path)?),
            None => Ok(AppUnderTest::Reference(self.topology(scenario)?)),
        }
    }

    fn instances(&self, scenario: &Scenario, app: &AppUnderTest) -> NonZeroUsize {
        scenarios::instances(instance_count(app), self.instances, scenario)
    }
}

/// A remote target has as many instances as it names.
fn instance_count(app: &AppUnderTest) -> Option<NonZeroUsize> {
    match app {
        AppUnderTest::Remote(remote) => NonZeroUsize::new(remote.instances.len()),
        _ => None,
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario on one topology or on all four in turn: bring the stack
    /// up, drive the browsers with the scenario's faults, check the history,
    /// write one results file per topology, print a summary table.
    Bench {
        /// option1 | option2 | option3 | option4 | all (default: the
        /// scenario's topology, else option4).
        option: Option<String>,
        /// A custom topology instead of an option (TOML, as the app reads it).
        #[arg(long, value_name = "FILE", conflicts_with = "option")]
        topology_file: Option<PathBuf>,
        /// An app the harness did not build (targets/NAME.toml: a command to
        /// start, or URLs of running instances). Repeat it to run several in
        /// turn; with an option (or `all`) too, the reference app runs first,
        /// and the report sets each target beside the option it `models`.
        #[arg(long, value_name = "FILE")]
        target: Vec<PathBuf>,
        /// The scenario (default: the built-in smoke scenario, scenarios/smoke.toml).
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// App instances, 1 to 64 (default: the scenario's, else 2).
        #[arg(long, value_parser = scenarios::parse_instances)]
        instances: Option<NonZeroUsize>,
        /// Where results files go (reports/runs is git-ignored).
        #[arg(long, default_value = "reports/runs")]
        out: PathBuf,
        /// Names this machine's runs in the results (merges keep sources
        /// apart; default: the host name, and `-shardIofN` under --shard).
        #[arg(long)]
        source: Option<String>,
        /// Run folder (logs, data); a temporary one when absent.
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Keep the run folder afterwards.
        #[arg(long)]
        keep: bool,
        /// Also write each run's whole history beside its results file
        /// (NAME.history.jsonl: the browsers and fault steps, then every
        /// request, one per line), to trace any count to its requests.
        #[arg(long)]
        history: bool,
        /// Where the HTML report of the runs goes (default: beside the results files).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Run slice I of N of the scenario's browsers, for load from several
        /// machines (docs/scale-out.md); 1 <= I <= N <= the scenario's
        /// people. Every shard plans the browsers as one run would (same
        /// seed, same choices) and drives the people whose number is I-1
        /// modulo N, each with all of their browsers. Only the scenario's
        /// `fault_shard` (default 1) applies its faults. `harness merge` adds
        /// the N results up; `harness analyze` judges the N histories together.
        #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
        shard: Option<Shard>,
        /// Start the load at this moment, in UTC (YYYY-MM-DDTHH:MM:SSZ, e.g.
        /// `date -u -d '+1 min' +%FT%TZ`), once the stack is up: so shards
        /// on several machines start together. It must be ahead, by at most
        /// one hour; a stack still coming up when it passes fails the run.
        #[arg(long, value_name = "TIME", value_parser = shard::parse_start_at)]
        start_at: Option<SystemTime>,
    },
    /// Write one self-contained HTML report (no network needed to read it)
    /// from results files: verdicts, the claims matrix, latency, anomalies,
    /// IdP calls, memory, a capacity projection, example histories.
    Report {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Compare a results file with a baseline; exit 1 when a limit is
    /// crossed or an anomaly count rises. Latency limits apply to ratios
    /// taken within each run (request / reference round trip). Several
    /// current files are repeats of one run: latency is judged on the best
    /// repeat (machine noise seldom slows them all), anomalies on the worst.
    Compare {
        /// The results file to compare against (reports/baselines/ holds CI's).
        baseline: PathBuf,
        /// The run's results file, or several: repeats of one run.
        #[arg(required = true)]
        current: Vec<PathBuf>,
        /// Largest allowed rise of (request p99 / reference p99).
        #[arg(long, default_value = "100%", value_parser = parse_percent)]
        max_p99_regression: f64,
        /// Largest allowed rise of (request p90 / reference p90).
        #[arg(long, default_value = "100%", value_parser = parse_percent)]
        max_p90_regression: f64,
        /// Largest allowed rise of (request p50 / reference p50).
        #[arg(long, default_value = "50%", value_parser = parse_percent)]
        max_p50_regression: f64,
        /// Opt-in: largest allowed rise of the absolute p99.
        #[arg(long, value_parser = parse_percent)]
        max_absolute_p99_regression: Option<f64>,
        /// Opt-in: largest allowed rise of the absolute p90.
        #[arg(long, value_parser = parse_percent)]
        max_absolute_p90_regression: Option<f64>,
        /// Opt-in: largest allowed rise of the absolute p50.
        #[arg(long, value_parser = parse_percent)]
        max_absolute_p50_regression: Option<f64>,
        /// Allowed rise of an anomaly family, as a fraction of the baseline's count.
        #[arg(long, default_value = "0%", value_parser = parse_percent)]
        anomaly_slack: f64,
        /// Allowed rise of any anomaly family as a count, on top of the
        /// slack (for options whose anomalies are expected and vary; 0 by
        /// default, so a family new to the run fails).
        #[arg(long, default_value_t = 0)]
        anomaly_allowance: u64,
        /// The reference round trip latencies are divided by: healthz | redis-ping.
        #[arg(long, default_value = "healthz")]
        reference: String,
        /// Fewest samples beyond a percentile, in both files, for it to be
        /// judged: with 20, p50 needs 40 requests of a type (and of the
        /// reference round trip), p90 200, p99 2,000. Fewer: shown, not judged.
        #[arg(long, default_value_t = 20)]
        min_tail: u64,
        /// Count a ratio's rise past its limit only when the request's
        /// absolute time rose past that limit too (a reference that got
        /// faster raises every ratio without any request slowing).
        #[arg(long)]
        confirm_absolute: bool,
        /// Print a Markdown table (for a CI summary) instead of the terminal one.
        #[arg(long)]
        markdown: bool,
        /// Also write the table to this file.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Combine results files made on several machines into one: histograms
    /// added and percentiles recomputed, counts summed, timelines kept per
    /// source. Shards (`bench --shard`) must be of one scenario, each once.
    Merge {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Judge a saved history again (NAME.history.jsonl, from `bench
    /// --history`): the same findings and results document the run made,
    /// from the file alone. Prints the summary table and every anomaly.
    /// Several files are one scenario's shards (`bench --shard I/N
    /// --history`), judged together as one run (the fault timeline is the
    /// fault shard's).
    Analyze {
        /// The history file, or each shard's.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Write the results document here (as the run wrote it).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Examples printed per anomaly family.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// Also write the cart requests as Elle's list-append history (EDN),
        /// for `elle-cli --model list-append` (see docs/how-a-run-works.md).
        #[arg(long, value_name = "FILE")]
        elle: Option<PathBuf>,
    },
    /// Print the JSON Schema of results files (as reports/schema.json holds it).
    Schema,
    /// Bring up the stores, the mock IdP and app instances; print the URLs;
    /// tear everything down on Ctrl-C or SIGTERM.
    Up {
        #[command(flatten)]
        deployment: Deployment,
        /// Run folder (logs, data); a temporary one when absent.
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Keep the run folder afterwards.
        #[arg(long)]
        keep: bool,
        /// Scenario file whose `[[faults]]` run once everything is ready.
        #[arg(long, value_name = "FILE")]
        faults: Option<PathBuf>,
    },
    /// Read a scenario file and say what it would do; nothing starts.
    Check {
        file: PathBuf,
        #[command(flatten)]
        deployment: Deployment,
    },
}

/// What `bench` runs, in order: the reference app's topologies (the option
/// or `all`, a topology file, else the scenario's, else option4, unless
/// only targets are named), then each target file.
fn apps_to_run(
    option: Option<&str>,
    topology_file: Option<&std::path::Path>,
    targets: &[PathBuf],
    scenario_topology: Option<&Topology>,
) -> anyhow::Result<Vec<AppUnderTest>> {
    let topologies = match (option, topology_file) {
        (_, Some(path)) => vec![scenarios::topology_from_file(path)?],
        (Some("all"), None) => Topology::PRESETS
            .iter()
            .map(|name| Topology::named(name))
            .collect::<Result<_, _>>()?,
        (Some(name), None) => vec![Topology::named(name)?],
        (None, None) if !targets.is_empty() => Vec::new(),
        (None, None) => vec![match scenario_topology {
            Some(topology) => topology.clone(),
            None => Topology::named("option4")?,
        }],
    };
    let mut apps: Vec<AppUnderTest> = topologies
        .into_iter()
        .map(AppUnderTest::Reference)
        .collect();
    for path in targets {
        apps.push(target::from_file(path)?);
    }
    Ok(apps)
}

/// Beside the results: one run's file name with `.html`; several runs'
/// with `all` in place of the first topology's name.
fn default_report_path(outcome: &harness::bench::Benched) -> PathBuf {
    let first = &outcome.written[0];
    let stem = first
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = match outcome.results.first() {
        Some(results) if outcome.written.len() > 1 => {
            stem.replacen(&format!("-{}-", results.topology.name), "-all-", 1)
        }
        _ => stem,
    };
    first.with_file_name(format!("{stem}.html"))
}

/// A comparison crossed a limit (its table says which).
#[derive(Debug, thiserror::Error)]
#[error("the current run is worse than the baseline")]
struct Regression;

fn parse_percent(text: &str) -> Result<f64, String> {
    compare::parse_percent(text)
}

/// Exit codes: 1 when a run fails or a comparison finds a regression, 2 when
/// the input is wrong (as clap's usage errors).
#[tokio::main]
async fn main() -> ExitCode {
    service_kit::init_tracing();
    match execute(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", said_once(&error));
            ExitCode::from(if bad_input(&error) { 2 } else { 1 })
        }
    }
}

/// The error and the causes under it, each said once: most messages
/// already carry their cause's text (`cannot read F: No such file`), and
/// printing the chain as well said the OS's words twice.
fn said_once(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// Whether the error is in what the user gave (a file, a flag): exit 2.
fn bad_input(error: &anyhow::Error) -> bool {
    error.downcast_ref::<ScenarioError>().is_some()
        || error.downcast_ref::<TopologyError>().is_some()
        || error.downcast_ref::<ShardError>().is_some()
        || error
            .downcast_ref::<harness::analyze::AnalyzeError>()
            .is_some_and(|e| matches!(e, harness::analyze::AnalyzeError::Shards(_)))
        || error
            .downcast_ref::<results::ResultsError>()
            .is_some_and(results::ResultsError::is_bad_input)
        || error
            .downcast_ref::<harness::report::ReportError>()
            .is_some_and(|e| match e {
                harness::report::ReportError::Results(e) => e.is_bad_input(),
                _ => false,
            })
}

/// Refuses a run this machine cannot hold, before anything starts.
fn fits_this_machine(estimate: Estimate) -> Result<(), ScenarioError> {
    match harness::run::host_facts().memory_bytes {
        Some(memory) => match estimate.too_big_for(memory) {
            Some(why) => Err(ScenarioError::Bound(why)),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bench {
            option,
            topology_file,
            target,
            scenario,
            instances,
            out,
            source,
            run_dir,
            keep,
            history,
            report,
            shard,
            start_at,
        } => {
            let (scenario, file) = match scenario {
                Some(path) => (Scenario::from_file(&path)?, Some(path)),
                None => (
                    Scenario::parse(SMOKE, "scenarios/smoke.toml (built in)")?,
                    None,
                ),
            };
            let apps = apps_to_run(
                option.as_deref(),
                topology_file.as_deref(),
                &target,
                scenario.topology.as_ref(),
            )?;
            if let Some(shard) = shard {
                shard.check(&scenario.workload)?;
                if let Some((fault_shard, at)) = &scenario.fault_shard
                    && *fault_shard > shard.count
                {
                    return Err(ShardError::FaultShard {
                        shard,
                        fault_shard: *fault_shard,
                        at: at.to_string(),
                        count: shard.count,
                    }
                    .into());
                }
            }
            if start_at.is_some() && apps.len() > 1 {
                return Err(ShardError::StartAtWithSeveralApps(apps.len()).into());
            }
            let instances =
                scenarios::instances(apps.iter().find_map(instance_count), instances, &scenario);
            for app in &apps {
                scenario.check(app, instances)?;
                fits_this_machine(Estimate::of(
                    scenario.workload.browsers(),
                    instances.get(),
                    app.topology().is_some(),
                ))?;
            }
            let outcome = harness::bench::bench(harness::bench::Bench {
                scenario,
                scenario_file: file,
                apps,
                instances,
                out,
                // Two shards on one machine stay two sources in a merge.
                source: source.unwrap_or_else(|| {
                    let host = harness::run::host_facts().hostname;
                    match shard {
                        Some(shard) => format!("{host}-shard{}of{}", shard.index, shard.count),
                        None => host,
                    }
                }),
                run_dir,
                keep,
                history,
                witness: None,
                shard,
                start_at,
            })
            .await?;
            print!("{}", harness::bench::summary_table(&outcome.results));
            for path in &outcome.written {
                println!("results: {}", path.display());
            }
            for path in &outcome.histories {
                println!("history: {}", path.display());
            }
            if !outcome.written.is_empty() {
                let report = report.unwrap_or_else(|| default_report_path(&outcome));
                harness::report::write(&outcome.written, &report)?;
                println!("report: {}", report.display());
            }
            if let Some(why) = outcome.stopped_because {
                anyhow::bail!("the run was cut short ({why}); the results written cover what ran");
            }
            Ok(())
        }
        Command::Analyze {
            files,
            output,
            examples,
            elle,
        } => {
            let analysis = harness::analyze::analyze_all(&files)?;
            if let Some(path) = elle {
                let out = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let mut out = std::io::BufWriter::new(out);
                let exported = harness::elle::write(&analysis.history, &mut out)
                    .and_then(|e| out.flush().map(|()| e))
                    .with_context(|| format!("writing {}", path.display()))?;
                println!(
                    "elle: {} ({} transactions on {} keys by {} processes)",
                    path.display(),
                    exported.transactions,
                    exported.keys,
                    exported.processes
                );
            }
            print!(
                "{}",
                harness::bench::summary_table(std::slice::from_ref(&analysis.results))
            );
            print!("{}", harness::analyze::findings_text(&analysis, examples));
            if let Some(output) = output {
                analysis.results.write(&output)?;
                println!("results: {}", output.display());
            }
            Ok(())
        }
        Command::Merge { files, output } => {
            let runs = files
                .iter()
                .map(|f| Results::read(f))
                .collect::<Result<Vec<_>, _>>()?;
            // Checked here too, so a refusal names the files.
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            results::check_shards(&names, &runs)?;
            let missing = results::missing_shards(&runs);
            let merged = results::merge(runs)?;
            merged.write(&output)?;
            println!("{} runs merged into {}", files.len(), output.display());
            if !missing.is_empty() {
                eprintln!(
                    "note: shard(s) {} missing: the merged results cover only part of the scenario's browsers",
                    missing.join(", ")
                );
            }
            Ok(())
        }
        Command::Report { files, output } => {
            harness::report::write(&files, &output)?;
            println!("report: {}", output.display());
            Ok(())
        }
        Command::Compare {
            baseline,
            current,
            max_p99_regression,
            max_p90_regression,
            max_p50_regression,
            max_absolute_p99_regression,
            max_absolute_p90_regression,
            max_absolute_p50_regression,
            anomaly_slack,
            anomaly_allowance,
            reference,
            min_tail,
            confirm_absolute,
            markdown,
            output,
        } => {
            let limits = compare::Thresholds {
                p50_ratio: max_p50_regression,
                p90_ratio: max_p90_regression,
                p99_ratio: max_p99_regression,
                p50_absolute: max_absolute_p50_regression,
                p90_absolute: max_absolute_p90_regression,
                p99_absolute: max_absolute_p99_regression,
                anomaly_slack,
                anomaly_allowance,
                reference,
                min_tail,
                confirm_absolute,
            };
            let currents = current
                .iter()
                .map(|path| Results::read(path))
                .collect::<Result<Vec<_>, _>>()?;
            let comparison =
                compare::compare_repeats(&Results::read(&baseline)?, &currents, &limits)?;
            let text = if markdown {
                compare::markdown(&comparison)
            } else {
                compare::table(&comparison)
            };
            print!("{text}");
            if let Some(path) = output {
                std::fs::write(&path, &text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if comparison.failed() {
                return Err(Regression.into());
            }
            Ok(())
        }
        Command::Schema => {
            print!("{}", results::schema());
            Ok(())
        }
        Command::Up {
            deployment,
            run_dir,
            keep,
            faults,
        } => {
            let scenario = match faults {
                Some(file) => Scenario::from_file(&file)?,
                None => Scenario::default(),
            };
            let app = deployment.app(&scenario)?;
            let instances = deployment.instances(&scenario, &app);
            scenario.check(&app, instances)?;
            up(app, instances, run_dir, keep, scenario).await
        }
        Command::Check { file, deployment } => {
            let scenario = Scenario::from_file(&file)?;
            let app = deployment.app(&scenario)?;
            let instances = deployment.instances(&scenario, &app);
            scenario.check(&app, instances)?;
            let workload = &scenario.workload;
            println!(
                "{} people x {} browsers, {} in all (stages {}), think time {}, hopping {}, seed {}",
                workload.people,
                workload.browsers_per_person,
                written(workload.duration()),
                workload.test_plan(),
                workload.think_time,
                workload.hopping,
                scenario.seed
            );
            println!(
                "mix: {}",
                workload
                    .mix
                    .iter()
                    .map(|(action, weight)| format!("{action} {weight}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(idle) = workload.session_idle_timeout {
                println!(
                    "sessions end {} after their last use (handed to the app)",
                    written(idle)
                );
            }
            let estimate = Estimate::of(
                workload.browsers(),
                instances.get(),
                app.topology().is_some(),
            );
            println!(
                "memory: about {} ({estimate})",
                capacity::mib(estimate.total())
            );
            fits_this_machine(estimate)?;
            match workload.cart_items_bound() {
                Some(0) => {}
                Some(items) if items <= contract::CART_MAX_ITEMS as u64 => println!(
                    "carts: at most {items} items a session, under the reference app's limit of {}",
                    contract::CART_MAX_ITEMS
                ),
                Some(items) => println!(
                    "carts: up to {items} items a session if every request were instant; the reference app refuses writes past {} (cart_full), which the checker does not count as an anomaly",
                    contract::CART_MAX_ITEMS
                ),
                None => println!(
                    "carts: a pause can be zero, so a session's cart has no bound here; the reference app refuses writes past {} items (cart_full)",
                    contract::CART_MAX_ITEMS
                ),
            }
            if let Some(absolute) = workload.session_absolute_timeout {
                println!(
                    "sessions end {absolute:?} after they began, however busy (handed to the app)"
                );
            }
            for fault in &scenario.faults.faults {
                let lasts = fault
                    .lasts
                    .map(|l| format!(" for {}", written(l)))
                    .unwrap_or_default();
                println!(
                    "{}: at {}{lasts}: {}",
                    fault.origin,
                    written(fault.at),
                    fault.action
                );
            }
            println!(
                "{}: {} faults, fine for {} with {} instances",
                file.display(),
                scenario.faults.faults.len(),
                app.name(),
                instances
            );
            Ok(())
        }
    }
}

async fn up(
    app: AppUnderTest,
    instances: NonZeroUsize,
    run_dir: Option<PathBuf>,
    keep: bool,
    scenario: Scenario,
) -> anyhow::Result<()> {
    // Registered first: a Ctrl-C during bring-up still tears down what started.
    let stop = service_kit::shutdown_signal().context("cannot handle SIGINT/SIGTERM")?;
    tokio::pin!(stop);
    let folder = RunFolder::new(run_dir)?;
    let started = Instant::now();
    let spec = StackSpec {
        app,
        instances,
        run_dir: folder.path().to_owned(),
        network_proxy: scenario.faults.needs_network_proxy(),
        idp: scenario.workload.idp.clone(),
        session_idle_timeout: scenario.workload.session_idle_timeout,
        session_absolute_timeout: scenario.workload.session_absolute_timeout,
    };
    let mut stack = tokio::select! {
        stack = Stack::up(&spec) => stack?,
        () = &mut stop => return Ok(()),
    };
    let elapsed = started.elapsed();
    let mut out = String::new();
    out += &format!(
        "{} {} with {} instances up in {} ms\n",
        match spec.app {
            AppUnderTest::Reference(_) => "topology",
            _ => "target",
        },
        spec.app.name(),
        instances,
        elapsed.as_millis()
    );
    out += &format!("idp       {}\n", stack.idp_url());
    if let Some(listeners) = &stack.idp_listeners
        && let (Some(https), Some(ca)) = (listeners.https_url(), listeners.ca_file())
    {
        out += &format!("idp https {https} (CA {})\n", ca.display());
    }
    for instance in &stack.instances {
        out += &format!("{:<9} {}\n", instance.id, instance.url());
    }
    if let Some(redis) = &stack.redis {
        out += &format!("redis     {}\n", redis.url());
    }
    if let Some(postgres) = &stack.postgres {
        out += &format!("postgres  {}\n", postgres.url());
    }
    if let Some(cluster) = &stack.redis_cluster {
        out += &format!("redis-cluster {}\n", cluster.url());
    }
    for (name, pid) in stack.processes() {
        out += &format!("pid {name} {pid}\n");
    }
    for path in stack.links.all() {
        out += &format!(
            "proxy     {} {} -> {}\n",
            path.link.name(),
            path.link.addr(),
            path.link.upstream()
        );
    }
    out += &format!("logs      {}\n", folder.path().display());
    out += "ready (Ctrl-C tears everything down)\n";
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    let run_faults = async {
        if !scenario.faults.faults.is_empty() {
            let timeline = faults::run(
                &scenario.faults,
                &mut stack,
                tokio::time::Instant::now(),
                |step| {
                    println!("fault {step}");
                },
            )
            .await;
            let failed = timeline.iter().filter(|s| s.error.is_some()).count();
            println!(
                "fault schedule done: {} steps, {failed} failed",
                timeline.len()
            );
        }
        // Children that die on their own or are killed by hand are reaped
        // (not left defunct) and said, once each time they go down.
        let mut said: Vec<String> = Vec::new();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            let down = stack.reap_exited().await;
            for name in down.iter().filter(|n| !said.contains(*n)) {
                println!("{name} is down (reaped)");
            }
            said = down;
        }
    };
    tokio::select! {
        () = &mut stop => {}
        () = run_faults => {}
    }
    drop(stack);
    if keep {
        eprintln!("run folder kept: {}", folder.keep().display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(apps: &[AppUnderTest]) -> Vec<&str> {
        apps.iter().map(AppUnderTest::name).collect()
    }

    #[test]
    fn bench_runs_the_reference_options_first_then_each_target() {
        let express = |n: u8| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../targets/express-msal/option{n}.toml"))
        };
        let both = apps_to_run(Some("all"), None, &[express(1), express(4)], None).expect("valid");
        assert_eq!(
            names(&both),
            [
                "option1",
                "option2",
                "option3",
                "option4",
                "express-msal-option1",
                "express-msal-option4"
            ]
        );
        let one = apps_to_run(Some("option2"), None, &[express(2)], None).expect("valid");
        assert_eq!(names(&one), ["option2", "express-msal-option2"]);
        let only = apps_to_run(None, None, &[express(3)], None).expect("valid");
        assert_eq!(
            names(&only),
            ["express-msal-option3"],
            "no reference run unless asked"
        );
        let default = apps_to_run(None, None, &[], None).expect("valid");
        assert_eq!(names(&default), ["option4"]);
        let scenario = Topology::named("option3").expect("preset");
        let from_scenario = apps_to_run(None, None, &[], Some(&scenario)).expect("valid");
        assert_eq!(names(&from_scenario), ["option3"]);
        assert!(apps_to_run(Some("option9"), None, &[], None).is_err());
    }
}
