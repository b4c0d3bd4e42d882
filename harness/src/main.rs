//! `harness`: the command line, one library call per subcommand. `bench`
//! runs a scenario on topologies and writes results; `validate` (alias
//! `check`) reads a scenario file and says what it would do; `up` brings a topology up by
//! hand; `merge` combines results files; `schema` prints their JSON Schema;
//! `report` writes the HTML report of results files; `compare` judges one
//! against a baseline; `analyze` judges a saved history again.

use std::process::ExitCode;

use anyhow::Context;
use app::topology::TopologyError;
use clap::Parser;
use harness::cli::{Cli, Command};
use harness::deployment::Choice;
use harness::host::{self, fits_this_machine};
use harness::report::compare;
use harness::results;
use harness::scenario::describe::{describe, memory_needed};
use harness::scenario::{Scenario, ScenarioError};
use harness::shard::ShardError;

/// mimalloc: the driver allocates on every request (URLs, headers, history
/// events), and glibc's `malloc` took a tenth of its thread's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A comparison crossed a limit (its table says which).
#[derive(Debug, thiserror::Error)]
#[error("the current run is worse than the baseline")]
struct Regression;

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
            node_memory_mib,
            shard,
            start_at,
        } => {
            let (scenario, file) = match scenario {
                Some(path) => (Scenario::from_file(&path)?, Some(path)),
                None => (Scenario::built_in_smoke()?, None),
            };
            if let Some(shard) = shard {
                shard.check_scenario(&scenario)?;
            }
            let deployment = Choice {
                topology: option,
                topology_file,
                targets: target,
                instances,
                all_allowed: true,
            }
            .resolve(&scenario)?;
            if start_at.is_some() && deployment.apps.len() > 1 {
                return Err(ShardError::StartAtWithSeveralApps(deployment.apps.len()).into());
            }
            deployment.check(&scenario)?;
            let outcome = harness::bench::bench(harness::bench::Bench {
                scenario,
                scenario_file: file,
                apps: deployment.apps,
                instances: deployment.instances,
                out,
                source: source.unwrap_or_else(|| host::source_name(shard)),
                run_dir,
                keep,
                history,
                witness: None,
                shard,
                start_at,
            })
            .await?;
            outcome.print_and_report(report, harness::cli::report_settings(node_memory_mib))?;
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
                let exported = harness::elle::write_file(&analysis.history, &path)
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
            let (merged, missing) = results::merge_files(&files)?;
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
        Command::Report {
            files,
            output,
            node_memory_mib,
        } => {
            harness::report::write_with(
                &files,
                &output,
                harness::cli::report_settings(node_memory_mib),
            )?;
            println!("report: {}", output.display());
            Ok(())
        }
        Command::Compare {
            baseline,
            current,
            limits,
            markdown,
            output,
        } => {
            let comparison = compare::compare_files(&baseline, &current, &limits)?;
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
            app,
            run_dir,
            keep,
            faults,
        } => {
            let scenario =
                faults.map_or_else(|| Ok(Scenario::default()), |f| Scenario::from_file(&f))?;
            let (app, instances) = app.resolve(&scenario)?;
            harness::up::up(harness::up::Up {
                app,
                instances,
                run_dir,
                keep,
                scenario,
            })
            .await
        }
        Command::Validate { file, app } => {
            let scenario = Scenario::from_file(&file)?;
            let (app, instances) = app.resolve(&scenario)?;
            // Refused before anything is said: the refusal names the memory needed.
            fits_this_machine(memory_needed(&scenario, &app, instances))?;
            print!("{}", describe(&file, &scenario, &app, instances));
            Ok(())
        }
    }
}
