//! Whose tokens a browser's API calls carried, from the protected API's echo:
//! cross-user-token (`sub` is not this browser's user), cross-session-token
//! (`sid` is not the IdP session this browser signed in with), and
//! token-after-logout (`sid` names an IdP session that a logout had ended
//! before the call started).

use std::collections::HashMap;

use super::{Anomaly, Kind, Settings, at, secs};
use crate::history::{Event, History, Micros, Observed, Request};

pub fn check(history: &History, by_browser: &[Vec<usize>], settings: &Settings) -> Vec<Anomaly> {
    let ended = ended_sessions(history, by_browser);
    let mut found = Vec::new();
    for events in by_browser {
        // The IdP session of the last sign-in known to have landed, and that sign-in.
        let mut current: Option<(String, usize)> = None;
        for &index in events {
            let event = at(history, index);
            match (&event.request, event.outcome.observed()) {
                (Request::SignIn, Some(Observed::SignedIn { idp_sid, .. }))
                    if event.outcome.ok() =>
                {
                    current = idp_sid.clone().map(|sid| (sid, index));
                }
                (Request::SignIn, _) | (Request::Logout, _) => current = None,
                (
                    _,
                    Some(Observed::Token {
                        sub,
                        sid: Some(sid),
                        ..
                    }),
                ) if event.outcome.ok() => {
                    let user = history.browser(event.browser).map(|b| b.user.as_str());
                    let expected = user.and_then(|u| settings.subjects.get(u));
                    let signed_in = current.as_ref().map(|(_, i)| *i);
                    if let Some(expected) = expected
                        && sub != expected
                    {
                        found.push(anomaly(
                            Kind::CrossUserToken,
                            event,
                            format!(
                                "{} of {} presented a token of another user (sub {sub})",
                                event.browser,
                                user.unwrap_or("?")
                            ),
                            signed_in.into_iter().chain([index]).collect(),
                        ));
                    } else if let Some((own, signed_in)) = &current
                        && sid != own
                    {
                        found.push(anomaly(
                            Kind::CrossSessionToken,
                            event,
                            format!(
                                "{} signed in with IdP session {own} but presented a token of IdP session {sid}",
                                event.browser
                            ),
                            vec![*signed_in, index],
                        ));
                    }
                    if let Some(&(logout, ended_at)) = ended.get(sid.as_str())
                        && ended_at < event.invoked
                    {
                        found.push(anomaly(
                            Kind::TokenAfterLogout,
                            event,
                            format!(
                                "{} presented a token of IdP session {sid}, which a logout ended at {}",
                                event.browser,
                                secs(ended_at)
                            ),
                            vec![logout, index],
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// Every IdP session a logout ended, with the logout and when it completed.
fn ended_sessions<'h>(
    history: &'h History,
    by_browser: &[Vec<usize>],
) -> HashMap<&'h str, (usize, Micros)> {
    let mut ended = HashMap::new();
    for events in by_browser {
        let mut current: Option<&str> = None;
        for &index in events {
            let event = at(history, index);
            match (&event.request, event.outcome.observed()) {
                (Request::SignIn, Some(Observed::SignedIn { idp_sid, .. }))
                    if event.outcome.ok() =>
                {
                    current = idp_sid.as_deref();
                }
                (Request::SignIn, _) => current = None,
                (
                    Request::Logout,
                    Some(Observed::LoggedOut {
                        idp_session_ended: true,
                    }),
                ) => {
                    if let Some(sid) = current.take() {
                        ended.entry(sid).or_insert((index, event.completed));
                    }
                }
                (Request::Logout, _) => current = None,
                _ => {}
            }
        }
    }
    ended
}

fn anomaly(kind: Kind, event: &Event, summary: String, evidence: Vec<usize>) -> Anomaly {
    Anomaly {
        kind,
        browser: event.browser,
        at: event.completed,
        summary,
        facet: None,
        evidence,
    }
}
