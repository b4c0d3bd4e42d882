//! `harness up`: one app's stack brought up by hand: a banner of its URLs,
//! processes and proxies, the scenario's faults once everything is ready,
//! then children that go down reaped and said, until a signal tears it
//! all down.

use std::fmt::Write as _;
use std::io::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::faults;
use crate::model::app::AppUnderTest;
use crate::run_folder::RunFolder;
use crate::scenario::Scenario;
use crate::stage::stack::{Stack, StackSpec};

/// What to bring up and where.
pub struct Up {
    pub app: AppUnderTest,
    pub instances: NonZeroUsize,
    /// Run folder (logs, data); a temporary one when absent.
    pub run_dir: Option<PathBuf>,
    /// Keep the run folder afterwards.
    pub keep: bool,
    /// Its `[[faults]]` run once everything is ready.
    pub scenario: Scenario,
}

/// Brings `up` up, runs its faults, and waits for Ctrl-C or SIGTERM.
pub async fn up(up: Up) -> anyhow::Result<()> {
    // Registered first: a Ctrl-C during bring-up still tears down what started.
    let stop = service_kit::shutdown_signal().context("cannot handle SIGINT/SIGTERM")?;
    tokio::pin!(stop);
    let folder = RunFolder::new(up.run_dir)?;
    let started = Instant::now();
    let spec = StackSpec {
        app: up.app,
        instances: up.instances,
        run_dir: folder.path().to_owned(),
        network_proxy: up.scenario.faults.needs_network_proxy(),
        idp: up.scenario.workload.idp.clone(),
        session_idle_timeout: up.scenario.workload.session_idle_timeout,
        session_absolute_timeout: up.scenario.workload.session_absolute_timeout,
    };
    let mut stack = tokio::select! {
        stack = Stack::up(&spec) => stack?,
        () = &mut stop => return Ok(()),
    };
    let out = banner(&spec, &stack, &folder, started.elapsed());
    // One write: the banner reaches a pipe whole (scripts wait for `ready`).
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    let scenario = &up.scenario;
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
        reap_forever(&mut stack).await;
    };
    tokio::select! {
        () = &mut stop => {}
        () = run_faults => {}
    }
    drop(stack);
    if up.keep {
        eprintln!("run folder kept: {}", folder.keep().display());
    }
    Ok(())
}

/// What is up and where: the app and its bring-up time, the IdP, each
/// instance, the stores, every process, every proxy, the logs.
fn banner(spec: &StackSpec, stack: &Stack, folder: &RunFolder, took: Duration) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{} {} with {} instances up in {} ms",
        match spec.app {
            AppUnderTest::Reference(_) => "topology",
            _ => "target",
        },
        spec.app.name(),
        spec.instances,
        took.as_millis()
    );
    let _ = writeln!(out, "idp       {}", stack.idp_url());
    if let Some(listeners) = &stack.idp_listeners
        && let (Some(https), Some(ca)) = (listeners.https_url(), listeners.ca_file())
    {
        let _ = writeln!(out, "idp https {https} (CA {})", ca.display());
    }
    for instance in &stack.instances {
        let _ = writeln!(out, "{:<9} {}", instance.id, instance.url());
    }
    if let Some(redis) = &stack.redis {
        let _ = writeln!(out, "redis     {}", redis.url());
    }
    if let Some(postgres) = &stack.postgres {
        let _ = writeln!(out, "postgres  {}", postgres.url());
    }
    if let Some(cluster) = &stack.redis_cluster {
        let _ = writeln!(out, "redis-cluster {}", cluster.url());
    }
    for (name, pid) in stack.processes() {
        let _ = writeln!(out, "pid {name} {pid}");
    }
    for path in stack.links.all() {
        let _ = writeln!(
            out,
            "proxy     {} {} -> {}",
            path.link.name(),
            path.link.addr(),
            path.link.upstream()
        );
    }
    let _ = writeln!(out, "logs      {}", folder.path().display());
    out += "ready (Ctrl-C tears everything down)\n";
    out
}

/// Children that die on their own or are killed by hand are reaped (not
/// left defunct) and said, once each time they go down.
async fn reap_forever(stack: &mut Stack) {
    let mut said: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let down = stack.reap_exited().await;
        for name in down.iter().filter(|n| !said.contains(*n)) {
            println!("{name} is down (reaped)");
        }
        said = down;
    }
}
