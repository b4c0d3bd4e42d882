//! The command line's grammar: every subcommand and flag of `harness`, with
//! the help it prints (clap). `main.rs` makes one library call per
//! subcommand.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};

use crate::deployment::Choice;
use crate::model::app::AppUnderTest;
use crate::report::compare;
use crate::scenario::{self, Scenario};
use crate::shard::{self, Shard};

#[derive(Parser, Debug)]
#[command(version, about = "Measures session and token-cache topologies")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Which app (a topology of the reference app, or a target), and how many
/// instances: the command line's part of a [`Choice`].
#[derive(Args, Debug)]
pub struct AppArgs {
    /// option1 | option2 | option3 | option4 (default: the scenario's, else option4).
    #[arg(long, conflicts_with_all = ["topology_file", "target"])]
    pub topology: Option<String>,
    /// An app the harness did not build (targets/NAME.toml): the command
    /// that starts one instance, or URLs of instances running elsewhere.
    #[arg(long, value_name = "FILE", conflicts_with = "topology_file")]
    pub target: Option<PathBuf>,
    /// A custom topology (TOML: name, session_backend, token_cache, encrypt,
    /// concurrency); the harness brings up exactly the stores it needs.
    #[arg(long, value_name = "FILE")]
    pub topology_file: Option<PathBuf>,
    /// App instances, 1 to 64 (default: the scenario's, else 2).
    #[arg(long, value_parser = scenario::parse_instances)]
    pub instances: Option<NonZeroUsize>,
}

impl AppArgs {
    /// The one app asked for (else the scenario's topology, else option4),
    /// checked against the scenario's faults, and its instances.
    pub fn resolve(self, scenario: &Scenario) -> anyhow::Result<(AppUnderTest, NonZeroUsize)> {
        let (app, instances) = Choice {
            topology: self.topology,
            topology_file: self.topology_file,
            targets: self.target.into_iter().collect(),
            instances: self.instances,
            all_allowed: false,
        }
        .resolve(scenario)?
        .single();
        scenario.check(&app, instances)?;
        Ok((app, instances))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
        #[arg(long, value_parser = scenario::parse_instances)]
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
        /// The memory one Redis Cluster node may use, in MiB, for the report's
        /// nodes-needed projection (default: the nodes' maxmemory when they
        /// all set one, else 1024).
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
        node_memory_mib: Option<u64>,
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
        /// The memory one Redis Cluster node may use, in MiB, for the report's
        /// nodes-needed projection (default: the nodes' maxmemory when they
        /// all set one, else 1024).
        #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
        node_memory_mib: Option<u64>,
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
        #[command(flatten)]
        limits: compare::Thresholds,
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
        app: AppArgs,
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
    /// Read a scenario file, check it against the app, and say what it
    /// would do; nothing starts. (`check` is its old name, still accepted.)
    #[command(alias = "check")]
    Validate {
        file: PathBuf,
        #[command(flatten)]
        app: AppArgs,
    },
}

/// The report's settings from `--node-memory-mib`.
pub fn report_settings(node_memory_mib: Option<u64>) -> crate::report::Settings {
    crate::report::Settings {
        node_memory: node_memory_mib.map(|mib| mib << 20),
    }
}
