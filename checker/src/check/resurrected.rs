//! session-resurrected: a session cookie from before a logout answered as
//! signed in. Each browser, a random while after a logout the app
//! acknowledged, sends the cookie it held before it once more, alone in a jar
//! of its own, to an instance drawn at random (`Request::Replay`, a cart
//! read). A 2xx is the session back after its end: a store copy the logout's
//! delete missed, or an instance's cache of it. A 401 is right; a replay
//! with no answer or a 5xx says nothing.

use super::{Anomaly, Kind, at, secs};
use crate::history::{History, Outcome, Request};

/// Facet: the replay was answered by the instance that answered the logout.
pub const SAME_INSTANCE: &str = "same-instance";
/// Facet: by another instance.
pub const OTHER_INSTANCE: &str = "other-instance";

pub fn check(history: &History) -> Vec<Anomaly> {
    // Replays are left out of `by_browser` (they are in no session), so
    // each browser's events are gathered here with them.
    let mut events: Vec<Vec<usize>> = vec![Vec::new(); history.browsers.len()];
    let mut replayed = false;
    for (index, event) in history.events.iter().enumerate() {
        replayed |= event.request == Request::Replay;
        if let Some(list) = events.get_mut(event.browser.0 as usize) {
            list.push(index);
        }
    }
    if !replayed {
        return Vec::new();
    }
    let mut found = Vec::new();
    for list in &mut events {
        list.sort_by_key(|&i| (at(history, i).invoked, i));
        let mut sign_in: Option<usize> = None;
        // The last acknowledged logout, and the sign-in of the session it ended.
        let mut logout: Option<(usize, Option<usize>)> = None;
        for &index in list.iter() {
            let event = at(history, index);
            match event.request {
                Request::SignIn if event.outcome.ok() => sign_in = Some(index),
                Request::Logout if event.outcome.ok() => logout = Some((index, sign_in.take())),
                Request::Replay if event.outcome.ok() => {
                    let Some((logout, signed_in)) = logout else {
                        continue;
                    };
                    let ended = at(history, logout);
                    let same = answered_by(&ended.outcome) == answered_by(&event.outcome);
                    found.push(Anomaly {
                        kind: Kind::SessionResurrected,
                        browser: event.browser,
                        at: event.completed,
                        summary: format!(
                            "{}: the session cookie it held before its logout at {} was answered {} by {} at {}",
                            event.browser,
                            secs(ended.completed),
                            event.outcome.status().unwrap_or(0),
                            answered_by(&event.outcome).unwrap_or(&event.sent_to),
                            secs(event.completed)
                        ),
                        facet: Some(if same { SAME_INSTANCE } else { OTHER_INSTANCE }.to_owned()),
                        evidence: signed_in.into_iter().chain([logout, index]).collect(),
                    });
                }
                _ => {}
            }
        }
    }
    found
}

/// The instance that answered, by `x-instance`.
fn answered_by(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Answered { instance, .. } => instance.as_deref(),
        Outcome::NoAnswer { .. } => None,
    }
}
