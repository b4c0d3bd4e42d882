//! After the load: a grace period, one last sample, the history finished
//! (with the fault steps), what the stores still hold of ended sessions,
//! and the IdP's own counters.

use std::sync::Arc;

use parking_lot::Mutex;

use super::stage_up::Load;
use crate::check::orphans::{self, Leftovers};
use crate::check::resident;
use crate::history::{FaultStep, History, Micros};
use crate::judge::IdpCounts;
use crate::model::sample::Sample;
use crate::sample::{Place, Sampler};
use crate::scenario::workload::Workload;

/// What the run measured after the load.
pub(super) struct EndState {
    /// When the stores were last looked into.
    pub look: Micros,
    pub history: History,
    pub leftovers: Leftovers,
    pub idp: IdpCounts,
}

/// Waits out the grace period (`stop` cuts it short, said in
/// `stopped_because`), then looks into the stores and the IdP.
#[allow(clippy::too_many_arguments)]
pub(super) async fn gather(
    place: Place,
    workload: &Workload,
    browsers: Load,
    steps: Vec<FaultStep>,
    samples: &Mutex<Vec<Sample>>,
    idp_url: &str,
    stop: &mut (impl Future<Output = ()> + Unpin),
    stopped_because: &mut Option<String>,
) -> EndState {
    let Load {
        collector,
        labels,
        start,
        mut settings,
        ..
    } = browsers;
    // What stays in the stores after a grace period, and one last sample.
    let mut sampler = Sampler::new(place);
    tokio::select! {
        () = tokio::time::sleep(workload.orphan_grace) => {}
        () = &mut *stop => *stopped_because = stopped_because.take().or(Some("interrupted (signal)".into())),
    }
    let look = start.elapsed().as_micros() as u64;
    let last = sampler.sample(look).await;
    let held = last.held_in_process();
    let counted_in_process = !held.is_empty() && held.iter().all(|h| h.sessions.is_some());
    samples.lock().push(last);
    let mut history = Arc::try_unwrap(collector)
        .map(|c| c.into_inner().finish())
        .unwrap_or_else(|shared| {
            let mut collected = shared.lock();
            collected.drain();
            collected.history().clone()
        });
    history.faults = steps;
    // Newcomers (people who sat down after someone left) are users too.
    for info in &history.browsers {
        settings
            .subjects
            .entry(info.user.clone())
            .or_insert_with(|| mock_idp::users::oid_of(&info.user));
    }
    let ended = orphans::ended_sessions(&history);
    let standings = resident::Standings::with_timeouts(
        &history,
        look,
        settings.idle_timeout,
        settings.absolute_timeout,
    );
    // The app keys its records by the cookie; the history holds labels.
    let by_cookie: Vec<orphans::EndedSession> = ended
        .iter()
        .filter_map(|e| {
            Some(orphans::EndedSession {
                session: labels.session_cookie(&e.session)?,
                ..e.clone()
            })
        })
        .collect();
    let mut leftovers: Leftovers = sampler
        .leftovers(
            &by_cookie,
            &standings.live_users(),
            &settings.subjects,
            counted_in_process,
        )
        .await;
    for left in &mut leftovers.sessions {
        left.session = labels.session(&left.session);
    }
    let mut idp = idp_stats(idp_url).await;
    // The IdP counts reuse by its own session ids; the history holds their
    // labels. Unlabelled, no reuse could be tied to a browser's sign-in.
    idp.reuse_by_session = std::mem::take(&mut idp.reuse_by_session)
        .into_iter()
        .map(|(sid, counts)| (labels.label("idp", &sid), counts))
        .collect();
    EndState {
        look,
        history,
        leftovers,
        idp,
    }
}

/// The IdP's own counters (`/stats`): token calls by grant and outcome, reuse.
async fn idp_stats(idp_url: &str) -> IdpCounts {
    let Ok(response) = reqwest::get(format!("{idp_url}/stats")).await else {
        return IdpCounts::default();
    };
    let Ok(json) = response.json::<serde_json::Value>().await else {
        return IdpCounts::default();
    };
    let count = |grant: &str, ok: bool| -> u64 {
        json["token_calls"][grant]
            .as_object()
            .map(|outcomes| {
                outcomes
                    .iter()
                    .filter(|(outcome, _)| (outcome.as_str() == "ok") == ok)
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    };
    IdpCounts {
        code_exchanges: count("authorization_code", true),
        refreshes: count("refresh_token", true),
        failed: count("authorization_code", false) + count("refresh_token", false),
        refresh_reuse: json["refresh_reuse"]
            .as_object()
            .map(|actions| actions.values().filter_map(|n| n.as_u64()).sum())
            .unwrap_or(0),
        reuse_by_session: serde_json::from_value(json["refresh_reuse_by_session"].clone())
            .unwrap_or_default(),
    }
}
