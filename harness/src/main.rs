//! `harness`: the command line. `harness up` brings a topology up by hand
//! (optionally hurting it on a scenario's fault schedule) and `harness check`
//! reads a scenario file and says what it would do.

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use app::topology::{Topology, TopologyError};
use clap::{Args, Parser, Subcommand};
use harness::faults;
use harness::run_folder::RunFolder;
use harness::scenario::{Scenario, ScenarioError};
use harness::stage::stack::{Stack, StackSpec};

#[derive(Parser, Debug)]
#[command(version, about = "Measures session and token-cache topologies")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which topology, and how many instances of it.
#[derive(Args, Debug)]
struct Deployment {
    /// option1 | option2 | option3 | option4.
    #[arg(long, default_value = "option4", conflicts_with = "topology_file")]
    topology: String,
    /// A custom topology (TOML: name, session_backend, token_cache, encrypt,
    /// concurrency); the harness brings up exactly the stores it needs.
    #[arg(long, value_name = "FILE")]
    topology_file: Option<PathBuf>,
    /// App instances (at least 1).
    #[arg(long, default_value = "3")]
    instances: NonZeroUsize,
}

impl Deployment {
    fn topology(&self) -> anyhow::Result<Topology> {
        Ok(match &self.topology_file {
            Some(path) => Topology::from_file(path)?,
            None => Topology::named(&self.topology)?,
        })
    }
}

#[derive(Subcommand, Debug)]
enum Command {
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

/// Exit codes: 1 when a run fails, 2 when the input is wrong (as clap's usage errors).
#[tokio::main]
async fn main() -> ExitCode {
    service_kit::init_tracing();
    match execute(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            let bad_input = error.downcast_ref::<ScenarioError>().is_some()
                || error.downcast_ref::<TopologyError>().is_some();
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up {
            deployment,
            run_dir,
            keep,
            faults,
        } => {
            let topology = deployment.topology()?;
            let scenario = match faults {
                Some(file) => Scenario::from_file(&file)?,
                None => Scenario::default(),
            };
            scenario.check(&topology, deployment.instances)?;
            up(topology, deployment.instances, run_dir, keep, scenario).await
        }
        Command::Check { file, deployment } => {
            let topology = deployment.topology()?;
            let scenario = Scenario::from_file(&file)?;
            scenario.check(&topology, deployment.instances)?;
            for fault in &scenario.faults.faults {
                let lasts = fault
                    .lasts
                    .map(|l| format!(" for {l:?}"))
                    .unwrap_or_default();
                println!(
                    "{}: at {:?}{lasts}: {}",
                    fault.origin, fault.at, fault.action
                );
            }
            println!(
                "{}: {} faults, fine for {} with {} instances",
                file.display(),
                scenario.faults.faults.len(),
                topology.name,
                deployment.instances
            );
            Ok(())
        }
    }
}

async fn up(
    topology: Topology,
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
        topology,
        instances,
        run_dir: folder.path().to_owned(),
        network_proxy: scenario.faults.needs_network_proxy(),
    };
    let mut stack = tokio::select! {
        stack = Stack::up(&spec) => stack?,
        () = &mut stop => return Ok(()),
    };
    let elapsed = started.elapsed();
    let mut out = String::new();
    out += &format!(
        "topology {} with {} instances up in {} ms\n",
        spec.topology.name,
        instances,
        elapsed.as_millis()
    );
    out += &format!("idp       {}\n", stack.idp_url());
    for instance in &stack.instances {
        out += &format!("{:<9} {}\n", instance.id, instance.url());
    }
    if let Some(redis) = &stack.redis {
        out += &format!("redis     {}\n", redis.url());
    }
    if let Some(postgres) = &stack.postgres {
        out += &format!("postgres  {}\n", postgres.url());
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
        if scenario.faults.faults.is_empty() {
            return std::future::pending().await;
        }
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
        std::future::pending::<()>().await
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
