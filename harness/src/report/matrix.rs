//! The claims matrix: for each option, each problem the seed says the
//! topologies suffer (memory growth, loss on restart, tokens shared across
//! sessions, inconsistency across instances) plus loss when a store
//! restarts or loses its data, lost updates, orphans and every other session
//! loss, as observed or not, the number behind it, and which example history
//! proves it. Each anomaly the results count is counted by one cell (or is
//! among the verdict's other anomalies): `accounting` checks it.

use std::fmt::Write;

use crate::check::{Kind, resident};
use crate::results::Results;

use super::parts::{self, LossPart, Losses, family};

/// The rows of the matrix, in the order shown.
pub const CLAIMS: [Claim; 8] = [
    Claim::MemoryGrowth,
    Claim::LossOnRestart,
    Claim::LossOnStoreLoss,
    Claim::SharedTokens,
    Claim::CrossInstance,
    Claim::LostUpdates,
    Claim::Orphans,
    Claim::OtherLosses,
];

/// The families no row counts: the verdict gives their number as "other anomalies".
pub const OTHER: [Kind; 4] = [
    Kind::TokenAfterLogout,
    Kind::ExtraIdpCalls,
    Kind::CrossSessionData,
    Kind::SessionResurrected,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    MemoryGrowth,
    LossOnRestart,
    LossOnStoreLoss,
    SharedTokens,
    CrossInstance,
    LostUpdates,
    Orphans,
    OtherLosses,
}

impl Claim {
    pub fn title(self) -> &'static str {
        match self {
            Claim::MemoryGrowth => "memory growth",
            Claim::LossOnRestart => "loss on an instance restart",
            Claim::LossOnStoreLoss => "loss when a store restarts or loses its data",
            Claim::SharedTokens => "tokens shared across sessions",
            Claim::CrossInstance => "inconsistency across instances",
            Claim::LostUpdates => "lost updates",
            Claim::Orphans => "orphans",
            Claim::OtherLosses => "other session losses",
        }
    }

    /// How the number is found, shown under the matrix.
    pub fn how(self) -> &'static str {
        match self {
            Claim::MemoryGrowth => {
                "state kept past the end of its sessions: sessions or token-cache accounts an \
                 instance holds in its own memory beyond the browsers and users that could still be \
                 signed in there (its /metrics counts, after the grace period), or store growth while \
                 orphans remain; unknown when no session ended without a logout"
            }
            Claim::LossOnRestart => {
                "session-loss anomalies where the session was unknown to the instance that last \
                 answered for it, after that instance went down (restart or crash) and came back; \
                 one answered by another instance (a failover) is counted under inconsistency \
                 across instances, and tokens lost with the session still there under other \
                 session losses (a shared blob loses them to concurrent writers at any time)"
            }
            Claim::LossOnStoreLoss => {
                "session-loss anomalies (sessions or their tokens) where a store was restarted, \
                 crashed or emptied between the session's last good answer and the loss (Redis \
                 restart or flush, Redis holding nothing on disk; Postgres restart or crash), or \
                 that fell in such a fault's window; unknown when the run had none"
            }
            Claim::SharedTokens => {
                "cross-session-token plus cross-user-token anomalies: a token this browser never obtained"
            }
            Claim::CrossInstance => {
                "session-loss on a hop to another instance than the session's last good answer, \
                 its own instance gone down or not (unless a store lost its data in between: \
                 counted above), plus stale reads (an item or version going backwards)"
            }
            Claim::LostUpdates => {
                "lost-update anomalies: an acknowledged cart item missing from every later read"
            }
            Claim::Orphans => {
                "orphan anomalies in the stores: session records or tokens still stored after \
                 logout, past the grace period (state kept in an instance's own memory past its \
                 sessions' end is counted under memory growth)"
            }
            Claim::OtherLosses => {
                "every session-loss no row above counts: outside every fault window or in a window \
                 of another kind, on the instance that last answered for the session, or with the \
                 session kept and its tokens gone (tokens-lost)"
            }
        }
    }
}

/// Whether a claim showed in a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    Observed,
    NotObserved,
    /// The run could not tell (the check was not made, or the scenario never tried it).
    Unknown(String),
}

/// One cell of the matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub seen: Seen,
    /// The figure behind it, in words.
    pub number: String,
    /// An example proving it: (anomaly family, index into its examples).
    pub example: Option<(Kind, usize)>,
    /// The anomalies it counts, by family: its part of each, which no other
    /// cell counts (`accounting` checks that the parts add up, and that
    /// `number` shows each).
    pub counts: Vec<(Kind, u64)>,
}

/// The orphan facets of state kept in an instance's own memory (`check::resident`).
const IN_PROCESS_FACETS: [&str; 2] = [resident::MEMORY_SESSIONS, resident::TOKEN_CACHE];

fn unchecked(results: &Results, kind: Kind) -> Option<String> {
    results
        .unchecked
        .iter()
        .find(|u| u.kind == kind)
        .map(|u| u.reason.clone())
}

/// Whether a fault window's label is an instance going down.
pub fn is_restart(label: &str) -> bool {
    parts::is_restart(label)
}

/// Whether the run had a fault `pred` accepts, by the scenario or the timeline.
fn had_fault(results: &Results, pred: impl Fn(&str) -> bool) -> bool {
    results
        .scenario
        .faults
        .iter()
        .filter(|f| !f.contains("(skipped"))
        .any(|f| pred(f))
        || results
            .timelines
            .iter()
            .flat_map(|t| &t.faults)
            .any(|s| s.error.is_none() && pred(&s.action))
}

/// The store faults the run carried out, by name, once each.
fn store_faults(results: &Results) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for step in results.timelines.iter().flat_map(|t| &t.faults) {
        if step.error.is_none()
            && crate::check::windows::is_store_loss(&step.action)
            && !names.contains(&step.action)
        {
            names.push(step.action.clone());
        }
    }
    names
}

/// The first example of `kind` that `pick` accepts, as a cell link.
fn example_where(
    results: &Results,
    kind: Kind,
    pick: impl Fn(&crate::results::Example) -> bool,
) -> Option<(Kind, usize)> {
    family(results, kind)?
        .examples
        .iter()
        .position(pick)
        .map(|i| (kind, i))
}

fn first_example(results: &Results, kinds: &[Kind]) -> Option<(Kind, usize)> {
    kinds
        .iter()
        .find_map(|&k| example_where(results, k, |_| true))
}

fn seen(observed: bool) -> Seen {
    if observed {
        Seen::Observed
    } else {
        Seen::NotObserved
    }
}

/// Of the orphans: those kept in instances' own memory, and those in the stores.
fn orphans(results: &Results) -> (u64, u64) {
    let in_process: u64 = family(results, Kind::Orphan).map_or(0, |f| {
        IN_PROCESS_FACETS
            .iter()
            .filter_map(|facet| f.facets.get(*facet))
            .sum()
    });
    (
        in_process,
        results.anomaly(Kind::Orphan).saturating_sub(in_process),
    )
}

fn kept_in_process(example: &crate::results::Example) -> bool {
    match &example.facet {
        Some(facet) => IN_PROCESS_FACETS.contains(&facet.as_str()),
        // Files from before examples kept their facet.
        None => example.summary.contains(" in memory"),
    }
}

/// Every row's cell for one run, in the order shown.
pub fn cells(results: &Results) -> Vec<(Claim, Cell)> {
    CLAIMS
        .iter()
        .map(|&claim| (claim, cell(results, claim)))
        .collect()
}

/// The cell of `claim` for one run.
pub fn cell(results: &Results, claim: Claim) -> Cell {
    let count = |kind: Kind| results.anomaly(kind);
    let losses = || Losses::of(results);
    let rebuilt_note = |losses: &Losses| {
        if losses.rebuilt {
            " (split from a file that kept no groups: see the per-window table)"
        } else {
            ""
        }
    };
    match claim {
        Claim::MemoryGrowth => {
            let leaks = &results.leaks;
            let (in_process, stored) = orphans(results);
            let observed = in_process > 0 || (leaks.store_growth_bytes > 0 && stored > 0);
            let mut number = format!(
                "kept past their sessions' end: {in_process} in instance memory, {stored} in the \
                 stores (browsers at the end: {} live, {} logged out, {} expired unused); \
                 store {:+} B, RSS {:+.1} MiB",
                leaks.live_sessions_at_end,
                leaks.sessions_logged_out,
                leaks.sessions_expired,
                leaks.store_growth_bytes,
                leaks.rss_growth_bytes as f64 / 1_048_576.0
            );
            let tiers = results.orphans_by_tier();
            if !tiers.is_empty() {
                let parts: Vec<String> = tiers.iter().map(|(t, n)| format!("{t} {n}")).collect();
                number += &format!("; stored orphans by tier: {}", parts.join(", "));
            }
            if let Some(entries) = leaks.token_cache_entries_at_end {
                number += &format!(
                    ", {entries} cached tokens for {} live sessions",
                    leaks.live_sessions_at_end
                );
            }
            let counts = vec![(Kind::Orphan, in_process)];
            if !observed && let Some(reason) = unchecked(results, Kind::Orphan) {
                return Cell {
                    seen: Seen::Unknown(format!(
                        "what the stores keep past a session's end was not checked: {reason}"
                    )),
                    number,
                    example: None,
                    counts,
                };
            }
            if !observed && leaks.sessions_expired == 0 {
                return Cell {
                    seen: Seen::Unknown(
                        "no session ended without a logout (none lay unused past the app's idle \
                         timeout), so what an app keeps for people who leave could not show: \
                         see scenarios/claims.toml ([app] session_idle_timeout, `leave`)"
                            .into(),
                    ),
                    number,
                    example: None,
                    counts,
                };
            }
            Cell {
                seen: seen(observed),
                number,
                example: observed
                    .then(|| {
                        example_where(results, Kind::Orphan, kept_in_process)
                            .or_else(|| first_example(results, &[Kind::Orphan]))
                    })
                    .flatten(),
                counts,
            }
        }
        Claim::LossOnRestart => {
            let losses = losses();
            let n = losses.part(LossPart::InstanceDown);
            let counts = vec![(Kind::SessionLoss, n)];
            if n == 0 && !had_fault(results, is_restart) {
                return Cell {
                    seen: Seen::Unknown("the scenario restarts no instance".into()),
                    number: "-".into(),
                    example: None,
                    counts,
                };
            }
            let legacy = family(results, Kind::SessionLoss)
                .is_some_and(|f| losses.rebuilt && f.across_instance_down.is_none());
            Cell {
                seen: seen(n > 0),
                number: if legacy {
                    // A file from before losses were tied to the instance going down.
                    format!(
                        "{n} session losses in restart windows, on the instance that had answered"
                    )
                } else {
                    format!(
                        "{n} sessions lost across their instance's restart or crash{}",
                        rebuilt_note(&losses)
                    )
                },
                example: parts::loss_example(results, LossPart::InstanceDown),
                counts,
            }
        }
        Claim::LossOnStoreLoss => {
            let losses = losses();
            let n = losses.part(LossPart::StoreLost);
            let counts = vec![(Kind::SessionLoss, n)];
            let faults = store_faults(results);
            if n == 0 && !had_fault(results, crate::check::windows::is_store_loss) {
                return Cell {
                    seen: Seen::Unknown(
                        "the scenario restarts, crashes or empties no store this app uses".into(),
                    ),
                    number: "-".into(),
                    example: None,
                    counts,
                };
            }
            let mut number = format!(
                "{n} sessions lost across {}",
                if faults.is_empty() {
                    "a store's restart or loss of data".to_owned()
                } else {
                    faults.join(", ")
                }
            );
            if n > 0 {
                let inside = losses.store_in_window;
                let _ = write!(
                    number,
                    " ({inside} in a store fault's window, {} later, when their browsers came back)",
                    n - inside
                );
            }
            number += rebuilt_note(&losses);
            Cell {
                seen: seen(n > 0),
                number,
                example: parts::loss_example(results, LossPart::StoreLost),
                counts,
            }
        }
        Claim::SharedTokens => {
            let n = count(Kind::CrossSessionToken) + count(Kind::CrossUserToken);
            Cell {
                seen: seen(n > 0),
                number: format!(
                    "{} cross-session, {} cross-user",
                    count(Kind::CrossSessionToken),
                    count(Kind::CrossUserToken)
                ),
                example: first_example(results, &[Kind::CrossUserToken, Kind::CrossSessionToken]),
                counts: vec![
                    (Kind::CrossSessionToken, count(Kind::CrossSessionToken)),
                    (Kind::CrossUserToken, count(Kind::CrossUserToken)),
                ],
            }
        }
        Claim::CrossInstance => {
            let losses = losses();
            let hop = losses.part(LossPart::Hop);
            let stale = count(Kind::StaleRead);
            Cell {
                seen: seen(hop + stale > 0),
                number: if losses.hop_after_down > 0 {
                    format!(
                        "{hop} losses on a hop ({} after their instance went down), {stale} stale reads",
                        losses.hop_after_down
                    )
                } else {
                    format!("{hop} losses on a hop, {stale} stale reads")
                },
                example: parts::loss_example(results, LossPart::Hop)
                    .or_else(|| first_example(results, &[Kind::StaleRead])),
                counts: vec![(Kind::SessionLoss, hop), (Kind::StaleRead, stale)],
            }
        }
        Claim::LostUpdates => counted(
            results,
            Kind::LostUpdate,
            count(Kind::LostUpdate),
            "lost cart items",
        ),
        Claim::Orphans => {
            let (_, stored) = orphans(results);
            let mut cell = counted(results, Kind::Orphan, stored, "left behind in the stores");
            cell.example = (stored > 0)
                .then(|| example_where(results, Kind::Orphan, |e| !kept_in_process(e)))
                .flatten();
            cell
        }
        Claim::OtherLosses => {
            let losses = losses();
            let n = losses.part(LossPart::Other);
            let outside = losses
                .other_windows
                .get(crate::results::NO_WINDOW)
                .copied()
                .unwrap_or(0);
            let elsewhere: Vec<String> = losses
                .other_windows
                .iter()
                .filter(|(w, _)| *w != crate::results::NO_WINDOW)
                .map(|(w, k)| format!("{k} in {w}"))
                .collect();
            let mut number = format!("{n} session {}", if n == 1 { "loss" } else { "losses" });
            if n > 0 {
                let _ = write!(number, ": {outside} outside every fault window");
            }
            if !elsewhere.is_empty() {
                let _ = write!(number, ", {}", elsewhere.join(", "));
            }
            if losses.other_tokens_lost > 0 {
                number += &format!(
                    "; {} of them with the session kept and its tokens gone",
                    losses.other_tokens_lost
                );
            }
            number += rebuilt_note(&losses);
            Cell {
                seen: seen(n > 0),
                number,
                example: parts::loss_example(results, LossPart::Other),
                counts: vec![(Kind::SessionLoss, n)],
            }
        }
    }
}

/// A row counting `n` of `kind` (all of it, or the part given).
fn counted(results: &Results, kind: Kind, n: u64, what: &str) -> Cell {
    if n == 0
        && let Some(reason) = unchecked(results, kind)
    {
        return Cell {
            seen: Seen::Unknown(format!("not checked: {reason}")),
            number: "-".into(),
            example: None,
            counts: vec![(kind, 0)],
        };
    }
    Cell {
        seen: seen(n > 0),
        number: format!("{n} {what}"),
        example: (n > 0).then(|| first_example(results, &[kind])).flatten(),
        counts: vec![(kind, n)],
    }
}

/// Whether two runs' cells of one claim give the same verdict (`None`: one
/// of them could not tell, so there is nothing to compare).
pub fn agree(a: &Cell, b: &Cell) -> Option<bool> {
    match (&a.seen, &b.seen) {
        (Seen::Unknown(_), _) | (_, Seen::Unknown(_)) => None,
        (x, y) => Some(x == y),
    }
}

/// The runs to set side by side: each target's run (by index) with the
/// reference app's run of the topology it `models`, of the same scenario
/// file and seed. A target with no such reference run is left out.
pub fn side_by_side(runs: &[&Results]) -> Vec<(usize, usize)> {
    use crate::results::AppKind;
    let same_scenario = |a: &Results, b: &Results| {
        a.scenario.file == b.scenario.file && a.scenario.seed == b.scenario.seed
    };
    runs.iter()
        .enumerate()
        .filter(|(_, r)| r.topology.app != AppKind::Reference)
        .filter_map(|(target, t)| {
            let models = t.topology.models.as_deref()?;
            let reference = runs.iter().position(|r| {
                r.topology.app == AppKind::Reference
                    && r.topology.name == models
                    && same_scenario(r, t)
            })?;
            Some((reference, target))
        })
        .collect()
}
