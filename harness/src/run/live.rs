//! The live part of a run: the load driven on its own thread, the fault
//! schedule applied (and the instances watched) beside it, and every
//! quarter second the history drained, checked now and then, and the
//! progress line redrawn. Ends when the load does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::RunError;
use super::stage_up::Load;
use crate::check::{self, windows};
use crate::faults;
use crate::history::FaultStep;
use crate::load;
use crate::progress::{Figures, Progress};
use crate::scenario::faults::FaultSchedule;
use crate::scenario::workload::Workload;
use crate::stage::stack::Stack;

/// How long a fault step in progress when the load ends may take to finish.
const STEP_FINISH_WAIT: Duration = Duration::from_secs(60);

/// How the live part ended.
pub(super) struct Lived {
    /// The fault steps applied, scheduled or not, in order.
    pub steps: Vec<FaultStep>,
    /// Why the load ended early, when it did.
    pub stopped_because: Option<String>,
}

/// Drives `browsers` on `stack` with `schedule`'s faults; `stop` completing (a
/// signal) stops the load, which then ends as an interrupted run.
pub(super) async fn drive(
    name: &str,
    workload: &Workload,
    schedule: &FaultSchedule,
    stack: &mut Stack,
    browsers: &Load,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Lived, RunError> {
    let start = browsers.start;
    let mut progress = Progress::new(name, workload.duration());
    let steps = Arc::new(Mutex::new(Vec::<FaultStep>::new()));
    let applying = AtomicBool::new(false);
    let mut stopped_because = None;
    {
        let print = progress.printer();
        let kept = steps.clone();
        let watch = if workload.restart_exited {
            faults::Watch::Restart
        } else {
            faults::Watch::Record
        };
        let fault_run =
            faults::run_watched(schedule, stack, start, &applying, watch, move |step| {
                let what = if step.unscheduled.is_some() {
                    "stage"
                } else {
                    "fault"
                };
                print(&format!("{what} {step}"));
                kept.lock().push(step.clone());
            });
        tokio::pin!(fault_run);
        let driving = load::drive_on_own_thread(browsers.shared.clone());
        tokio::pin!(driving);
        // The fault runner also watches the instances: it runs as long as the load.
        let mut faults_over = false;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_check = Instant::now();
        let mut anomalies = Some(0);
        loop {
            tokio::select! {
                result = &mut driving => {
                    result?;
                    break;
                }
                _ = &mut fault_run, if !faults_over => faults_over = true,
                () = &mut *stop, if stopped_because.is_none() => {
                    stopped_because = Some("interrupted (signal)".to_owned());
                    load::stop("signal");
                }
                _ = tick.tick() => {
                    let mut collected = browsers.collector.lock();
                    collected.drain();
                    if last_check.elapsed() > Duration::from_secs(2) {
                        last_check = Instant::now();
                        anomalies = (collected.len() < 200_000).then(|| {
                            check::check(collected.history(), &browsers.settings)
                                .anomalies
                                .values()
                                .map(Vec::len)
                                .sum()
                        });
                    }
                    drop(collected);
                    let (requests, errors, p99) = browsers.latencies.totals();
                    let now = start.elapsed().as_micros() as u64;
                    let in_force = windows::windows(&steps.lock(), u64::MAX)
                        .into_iter()
                        .filter(|w| w.from <= now && now <= w.to)
                        .map(|w| w.label)
                        .collect();
                    progress.update(&Figures {
                        elapsed: start.elapsed(),
                        requests,
                        errors,
                        p99_micros: p99,
                        anomalies,
                        faults_in_force: in_force,
                    });
                }
            }
        }
        // A step still being applied when the load ended (an instance slow
        // to stop or start) finishes and is recorded: the timeline must say
        // what the browsers went through. Bounded, so a stuck step cannot
        // hold the run.
        if !faults_over && applying.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(STEP_FINISH_WAIT, async {
                while applying.load(Ordering::SeqCst) {
                    tokio::select! {
                        _ = &mut fault_run => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            })
            .await;
        }
    }
    progress.finish();
    if stopped_because.is_none() && load::stopped_early() {
        stopped_because = Some("interrupted (Ctrl-C)".to_owned());
    }
    let steps = steps.lock().clone();
    Ok(Lived {
        steps,
        stopped_because,
    })
}
