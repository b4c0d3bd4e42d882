//! session-loss: a signed-in browser is treated as signed out (401) with no
//! logout or expiry before it.

use super::{Anomaly, Kind, Settings, at, secs};
use crate::history::{Event, FaultStep, History, Micros, Observed, Request};

/// The facet of a loss where the session is there but its tokens are gone.
pub const TOKENS_LOST: &str = "tokens-lost";

/// Whether a 401 says the session is there but its tokens are gone (the
/// contract's `signin_required`), rather than the session unknown.
pub fn tokens_lost(lost: &Event) -> bool {
    lost.outcome.error() == Some("signin_required")
}

/// Whether a browser is signed in, as far as its own requests tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignedIn {
    Yes,
    No,
    /// After a sign-in or logout whose outcome is unknown.
    Unknown,
}

pub fn check(history: &History, by_browser: &[Vec<usize>], settings: &Settings) -> Vec<Anomaly> {
    // A session may expire as early as 3/4 of the idle timeout after the last
    // request that saw it (the app refreshes its idle clock at most every quarter).
    let expiry = settings.idle_timeout.as_micros() as Micros * 3 / 4;
    // A session may end its absolute timeout after the sign-in that began
    // it was sent, less a second (the app counts whole seconds).
    let absolute = settings
        .absolute_timeout
        .map(|a| (a.as_micros() as Micros).saturating_sub(1_000_000));
    let mut found = Vec::new();
    for events in by_browser {
        let mut state = SignedIn::No;
        let mut signed_in_by: Option<usize> = None;
        let mut last_good: Option<usize> = None;
        for &index in events {
            let event = at(history, index);
            match &event.request {
                Request::SignIn => {
                    state = match (&event.outcome.observed(), event.outcome.ok()) {
                        (Some(Observed::SignedIn { .. }), true) => SignedIn::Yes,
                        _ if event.outcome.indeterminate() => SignedIn::Unknown,
                        // /login replaced the old session cookie with a pre-login one.
                        _ => SignedIn::No,
                    };
                    signed_in_by = Some(index);
                    last_good = (state == SignedIn::Yes).then_some(index);
                }
                Request::Logout => {
                    state = if event.outcome.ok() {
                        SignedIn::No
                    } else {
                        SignedIn::Unknown
                    };
                }
                // Not part of the session (and left out of `by_browser`).
                Request::Health | Request::Replay => {}
                Request::Profile
                | Request::Data { .. }
                | Request::CartWrite { .. }
                | Request::CartRead => {
                    if event.outcome.ok() {
                        state = SignedIn::Yes;
                        last_good = Some(index);
                    } else if event.outcome.status() == Some(401) {
                        let idle_since = last_good.map(|i| at(history, i).completed);
                        let began = signed_in_by.map(|i| at(history, i).invoked);
                        let expired = idle_since
                            .is_some_and(|t| event.invoked.saturating_sub(t) > expiry)
                            || began.zip(absolute).is_some_and(|(began, absolute)| {
                                event.invoked.saturating_sub(began) >= absolute
                            });
                        if state == SignedIn::Yes && !expired {
                            found.push(loss(history, event, index, signed_in_by, last_good));
                        }
                        state = SignedIn::No;
                    }
                }
            }
        }
    }
    found
}

fn loss(
    history: &History,
    event: &Event,
    index: usize,
    signed_in_by: Option<usize>,
    last_good: Option<usize>,
) -> Anomaly {
    let now_by = answered_by(event);
    let last_instance = last_good.and_then(|i| answered_by(at(history, i)));
    let hop = match (&last_instance, &now_by) {
        (Some(before), Some(now)) => before != now,
        _ => false,
    };
    let mut evidence: Vec<usize> = signed_in_by.into_iter().chain(last_good).collect();
    evidence.dedup();
    evidence.push(index);
    let code = event.outcome.error().unwrap_or("401");
    Anomaly {
        kind: Kind::SessionLoss,
        browser: event.browser,
        at: event.completed,
        summary: format!(
            "{} signed in and never logged out, got {code} from {} at {}{}",
            event.browser,
            now_by.as_deref().unwrap_or(&event.sent_to),
            secs(event.completed),
            match (&last_instance, hop) {
                (Some(before), true) => format!(" (its last good answer came from {before})"),
                _ => String::new(),
            }
        ),
        // Signed out, on another instance than the session's last good
        // answer, or on the same one; or the session is there but the app
        // lost its tokens and wants a new sign-in.
        facet: Some(
            if tokens_lost(event) {
                TOKENS_LOST
            } else if hop {
                "hop"
            } else {
                "same-instance"
            }
            .into(),
        ),
        evidence,
    }
}

/// Whether a session-loss came across its instance going down: the session
/// itself was unknown (not merely its tokens gone) to a request after the
/// instance that last answered well for it was restarted or crashed. A loss
/// merely inside a restart's window may have other causes; so may lost
/// tokens, which an app-wide blob loses to concurrent writers at any time,
/// and which cannot be told apart from tokens a restart took.
pub fn across_instance_down(history: &History, anomaly: &Anomaly) -> bool {
    if anomaly.facet.as_deref() == Some(TOKENS_LOST) {
        return false;
    }
    let [.., last_good, lost] = anomaly.evidence[..] else {
        return false;
    };
    went_down_between(at(history, last_good), at(history, lost), &history.faults)
}

/// Whether the instance that answered `good` was restarted, crashed or
/// exited by itself (a step of `faults`) after that answer and before
/// `lost` was sent.
pub fn went_down_between(good: &Event, lost: &Event, faults: &[FaultStep]) -> bool {
    let Some(instance) = answered_by(good) else {
        return false;
    };
    faults.iter().any(|step| {
        let mut words = step.action.split_whitespace();
        matches!(
            words.next(),
            Some("instance-restart" | "instance-crash" | "instance-exit")
        ) && words.next() == Some(instance.as_str())
            && step.at + step.took >= good.completed
            && step.at <= lost.invoked
    })
}

/// Whether a session-loss came across a store losing its data: a store was
/// restarted, crashed or flushed (`windows::STORE_LOSSES`) after the
/// session's last good answer and before the loss was sent. Lost tokens
/// count too: a store that held them restarted.
pub fn across_store_loss(history: &History, anomaly: &Anomaly) -> bool {
    let [.., last_good, lost] = anomaly.evidence[..] else {
        return false;
    };
    store_lost_between(at(history, last_good), at(history, lost), &history.faults)
}

/// Whether a store was restarted, crashed or flushed (a step of `faults`)
/// after `good` was answered and before `lost` was sent.
pub fn store_lost_between(good: &Event, lost: &Event, faults: &[FaultStep]) -> bool {
    faults.iter().any(|step| {
        step.ends.is_none()
            && step.error.is_none()
            && super::windows::is_store_loss(&step.action)
            && step.at + step.took >= good.completed
            && step.at <= lost.invoked
    })
}

/// The instance that answered, by `x-instance`, else where it was sent.
fn answered_by(event: &Event) -> Option<String> {
    match &event.outcome {
        crate::history::Outcome::Answered { instance, .. } => {
            Some(instance.clone().unwrap_or_else(|| event.sent_to.clone()))
        }
        crate::history::Outcome::NoAnswer { .. } => None,
    }
}
