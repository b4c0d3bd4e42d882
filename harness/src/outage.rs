//! What browsers saw of each fault: the requests that failed after it
//! began (no answer, or a 5xx) until the next fault began or the run ended,
//! and the span they failed over. For a master kill or a failover this is
//! the failover time as browsers saw it, from the history alone (pure).
//!
//! A 4xx is an answer (a session the app no longer knows is a finding of
//! its own, `session-loss`), so it is no failure here.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::history::{Event, FaultStep, Micros};

/// The failed requests after one fault step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FaultErrors {
    /// The step (its index in the timeline's fault steps) and its action.
    pub step: usize,
    pub action: String,
    /// When it began, since the run started.
    pub at_us: Micros,
    /// Requests that completed from then until the next step began (or the run ended).
    pub requests: u64,
    /// Those that failed: no answer, or a 5xx.
    pub failed: u64,
    /// When the first and the last of them completed; none without failures.
    pub first_failure_us: Option<Micros>,
    pub last_failure_us: Option<Micros>,
    /// From the first failure to the last.
    pub failing_span_us: Option<Micros>,
    /// From the step's start to the last failure: how long after the fault
    /// browsers still saw requests fail.
    pub failing_until_us: Option<Micros>,
    /// When the first request that did not fail completed after the last
    /// failure: from the first failure to this is the outage as browsers
    /// saw it (first error to first success). None without failures, or
    /// when none succeeded after them before the next step (or the end).
    #[serde(default)]
    pub recovered_us: Option<Micros>,
    /// The slowest of the requests (invoked to completed): a fault that the
    /// app rides out without an error can still show as a wait.
    #[serde(default)]
    pub slowest_us: Option<Micros>,
}

/// Whether a request failed for want of an answer, or with a 5xx.
fn failed(event: &Event) -> bool {
    event.outcome.status().is_none_or(|status| status >= 500)
}

/// One entry per step that starts a fault (undo steps and steps that
/// failed to apply have none), over `events`, the run ending at `run_end`.
pub fn per_fault(steps: &[FaultStep], events: &[Event], run_end: Micros) -> Vec<FaultErrors> {
    let starts: Vec<(usize, &FaultStep)> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.ends.is_none() && s.error.is_none())
        .collect();
    starts
        .iter()
        .map(|&(index, step)| {
            // Until any later step begins (an undo included: what follows
            // it is no longer this fault's).
            let until = steps
                .iter()
                .map(|s| s.at)
                .filter(|&at| at > step.at)
                .min()
                .unwrap_or(run_end)
                .max(step.at);
            let window: Vec<&Event> = events
                .iter()
                .filter(|e| e.completed >= step.at && e.completed < until)
                .collect();
            let failures: Vec<Micros> = window
                .iter()
                .filter(|e| failed(e))
                .map(|e| e.completed)
                .collect();
            let first = failures.iter().min().copied();
            let last = failures.iter().max().copied();
            let recovered = last.and_then(|last| {
                window
                    .iter()
                    .filter(|e| !failed(e) && e.completed > last)
                    .map(|e| e.completed)
                    .min()
            });
            FaultErrors {
                step: index,
                action: step.action.clone(),
                at_us: step.at,
                requests: window.len() as u64,
                failed: failures.len() as u64,
                first_failure_us: first,
                last_failure_us: last,
                failing_span_us: first.zip(last).map(|(a, b)| b - a),
                failing_until_us: last.map(|b| b - step.at),
                recovered_us: recovered,
                slowest_us: window
                    .iter()
                    .map(|e| e.completed.saturating_sub(e.invoked))
                    .max(),
            }
        })
        .collect()
}

/// One line for the bench summary.
pub fn line(errors: &FaultErrors) -> String {
    let seconds = |us: Micros| us as f64 / 1e6;
    let mut line = format!(
        "{} at {:.1} s: {} of {} requests failed",
        errors.action,
        seconds(errors.at_us),
        errors.failed,
        errors.requests
    );
    if let (Some(first), Some(last), Some(until)) = (
        errors.first_failure_us,
        errors.last_failure_us,
        errors.failing_until_us,
    ) {
        line += &format!(
            ", from {:.2} s to {:.2} s ({:.2} s; the last {:.2} s after it began)",
            seconds(first),
            seconds(last),
            seconds(last - first),
            seconds(until)
        );
    }
    if let Some(back) = errors.recovered_us {
        line += &format!(", the first success after them at {:.2} s", seconds(back));
    }
    if let Some(slowest) = errors.slowest_us {
        line += &format!("; the slowest took {:.2} s", seconds(slowest));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{BrowserId, NoAnswer, Observed, Outcome, Request};

    fn event(completed: Micros, status: Option<u16>) -> Event {
        Event {
            browser: BrowserId(0),
            request: Request::Profile,
            sent_to: "app-1".into(),
            invoked: completed.saturating_sub(1_000),
            completed,
            outcome: match status {
                Some(status) => Outcome::Answered {
                    status,
                    instance: None,
                    session_version: None,
                    error: None,
                    observed: Observed::Nothing,
                },
                None => Outcome::NoAnswer {
                    cause: NoAnswer::Timeout,
                    detail: "timed out".into(),
                },
            },
        }
    }

    fn step(at: Micros, action: &str, ends: Option<usize>) -> FaultStep {
        FaultStep {
            at,
            took: 1_000,
            action: action.into(),
            ends,
            error: None,
            unscheduled: None,
        }
    }

    #[test]
    fn failures_are_counted_from_the_fault_to_the_next_step() {
        let steps = [
            step(1_000_000, "redis-master-kill", None),
            step(5_000_000, "redis-failover", None),
        ];
        let events = [
            event(900_000, None), // before any fault: no one's
            event(1_200_000, Some(200)),
            event(1_500_000, Some(503)), // first failure of the kill
            event(2_000_000, None),      // no answer
            event(2_500_000, Some(401)), // an answer, no failure
            event(3_100_000, Some(500)), // last failure of the kill
            event(4_000_000, Some(200)),
            event(5_200_000, Some(200)), // the failover's: none failed
        ];
        let errors = per_fault(&steps, &events, 6_000_000);
        assert_eq!(errors.len(), 2);
        let kill = &errors[0];
        assert_eq!((kill.requests, kill.failed), (6, 3));
        assert_eq!(kill.first_failure_us, Some(1_500_000));
        assert_eq!(kill.last_failure_us, Some(3_100_000));
        assert_eq!(kill.failing_span_us, Some(1_600_000));
        assert_eq!(kill.failing_until_us, Some(2_100_000));
        assert_eq!(
            kill.recovered_us,
            Some(4_000_000),
            "the first success after the last failure, not the 401 between failures"
        );
        assert_eq!(
            line(kill),
            "redis-master-kill at 1.0 s: 3 of 6 requests failed, from 1.50 s to 3.10 s (1.60 s; the last 2.10 s after it began), the first success after them at 4.00 s; the slowest took 0.00 s"
        );
        let failover = &errors[1];
        assert_eq!((failover.requests, failover.failed), (1, 0));
        assert_eq!(failover.failing_span_us, None);
        assert_eq!(failover.recovered_us, None, "nothing to recover from");
        assert_eq!(failover.slowest_us, Some(1_000));
        assert_eq!(
            line(failover),
            "redis-failover at 5.0 s: 0 of 1 requests failed; the slowest took 0.00 s"
        );
    }

    #[test]
    fn undo_steps_and_failed_steps_open_no_window_but_close_one() {
        let mut broken = step(3_000_000, "redis-failover", None);
        broken.error = Some("no live replica".into());
        let steps = [
            step(1_000_000, "redis-pause", None),
            step(2_000_000, "redis-resume", Some(0)),
            broken,
        ];
        let events = [event(1_500_000, None), event(2_500_000, None)];
        let errors = per_fault(&steps, &events, 4_000_000);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].failed, 1,
            "the failure after the resume is not the pause's"
        );
        assert_eq!(
            errors[0].recovered_us, None,
            "no success followed the failure within the window"
        );
        assert!(per_fault(&[], &events, 4_000_000).is_empty());
    }
}
