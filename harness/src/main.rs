//! `harness`: the command line. For now, `harness up` brings a topology up by
//! hand (optionally hurting it on a fault schedule) and `harness check` reads a
//! scenario file's fault schedule without running it.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harness::process::{abandoned, owned_prefix};
use harness::schedule::FaultSchedule;
use harness::stack::{Stack, StackSpec};

/// Temporary run folders are `harness-run-<pid>-…`.
const RUN_PREFIX: &str = "harness-run-";

#[derive(Parser, Debug)]
#[command(version, about = "Measures session and token-cache topologies")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Bring up the stores, the mock IdP and app instances; print the URLs;
    /// tear everything down on Ctrl-C or SIGTERM.
    Up {
        #[arg(long, default_value = "option4")]
        topology: String,
        #[arg(long, default_value_t = 3)]
        instances: usize,
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
    /// Read a scenario file's fault schedule and say what it would do.
    Check {
        file: PathBuf,
        #[arg(long, default_value = "option4")]
        topology: String,
        #[arg(long, default_value_t = 3)]
        instances: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up {
            topology,
            instances,
            run_dir,
            keep,
            faults,
        } => {
            let schedule = match faults {
                Some(file) => FaultSchedule::from_file(&file)?,
                None => FaultSchedule::default(),
            };
            schedule.check(&topology, instances)?;
            up(topology, instances, run_dir, keep, schedule).await
        }
        Command::Check {
            file,
            topology,
            instances,
        } => {
            let schedule = FaultSchedule::from_file(&file)?;
            schedule.check(&topology, instances)?;
            for fault in &schedule.faults {
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
                "{}: {} faults, fine for {topology} with {instances} instances",
                file.display(),
                schedule.faults.len()
            );
            Ok(())
        }
    }
}

async fn up(
    topology: String,
    instances: usize,
    run_dir: Option<PathBuf>,
    keep: bool,
    schedule: FaultSchedule,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered first: a Ctrl-C during bring-up still tears down what started.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let temp = match &run_dir {
        Some(_) => None,
        None => {
            // Run folders of harnesses that were SIGKILLed are removed here.
            for folder in abandoned(&std::env::temp_dir(), RUN_PREFIX) {
                let _ = std::fs::remove_dir_all(folder);
            }
            Some(
                tempfile::Builder::new()
                    .prefix(&owned_prefix(RUN_PREFIX))
                    .tempdir()?,
            )
        }
    };
    let run_dir = run_dir.unwrap_or_else(|| {
        temp.as_ref()
            .map(|t| t.path().to_owned())
            .unwrap_or_default()
    });
    let started = Instant::now();
    let spec = StackSpec {
        topology,
        instances,
        run_dir: run_dir.clone(),
        network_proxy: schedule.needs_network_proxy(),
    };
    let mut stack = tokio::select! {
        stack = Stack::up(&spec) => stack?,
        _ = interrupt.recv() => return Ok(()),
        _ = terminate.recv() => return Ok(()),
    };
    let elapsed = started.elapsed();
    let mut out = String::new();
    out += &format!(
        "topology {} with {} instances up in {} ms\n",
        spec.topology,
        instances,
        elapsed.as_millis()
    );
    out += &format!("idp       {}\n", stack.idp_url());
    for instance in &stack.instances {
        out += &format!("{:<9} http://127.0.0.1:{}\n", instance.id, instance.port);
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
    out += &format!("logs      {}\n", run_dir.display());
    out += "ready (Ctrl-C tears everything down)\n";
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    let run_faults = async {
        if schedule.faults.is_empty() {
            return std::future::pending().await;
        }
        let timeline = schedule
            .run(&mut stack, |step| println!("fault {step}"))
            .await;
        let failed = timeline.iter().filter(|s| s.error.is_some()).count();
        println!(
            "fault schedule done: {} steps, {failed} failed",
            timeline.len()
        );
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
        () = run_faults => {}
    }
    drop(stack);
    if keep && let Some(temp) = temp {
        let kept = temp.keep();
        eprintln!("run folder kept: {}", kept.display());
    }
    Ok(())
}
