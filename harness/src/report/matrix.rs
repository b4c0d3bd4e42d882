//! The claims matrix: for each option, each problem the seed says the
//! topologies suffer (memory growth, loss on restart, tokens shared across
//! sessions, inconsistency across instances) plus lost updates and orphans,
//! as observed or not, the number behind it, and which example history
//! proves it.

use crate::check::{Kind, resident};
use crate::results::{AnomalyReport, Results};

/// The rows of the matrix, in the order shown.
pub const CLAIMS: [Claim; 6] = [
    Claim::MemoryGrowth,
    Claim::LossOnRestart,
    Claim::SharedTokens,
    Claim::CrossInstance,
    Claim::LostUpdates,
    Claim::Orphans,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    MemoryGrowth,
    LossOnRestart,
    SharedTokens,
    CrossInstance,
    LostUpdates,
    Orphans,
}

impl Claim {
    pub fn title(self) -> &'static str {
        match self {
            Claim::MemoryGrowth => "memory growth",
            Claim::LossOnRestart => "loss on restart",
            Claim::SharedTokens => "tokens shared across sessions",
            Claim::CrossInstance => "inconsistency across instances",
            Claim::LostUpdates => "lost updates",
            Claim::Orphans => "orphans",
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
                "session-loss anomalies where the session was unknown after the instance that last \
                 answered for it went down (restart or crash); tokens lost with the session still \
                 there are not counted here (a shared blob loses them to concurrent writers at any time)"
            }
            Claim::SharedTokens => {
                "cross-session-token plus cross-user-token anomalies: a token this browser never obtained"
            }
            Claim::CrossInstance => {
                "session-loss on a hop to another instance, plus stale reads (an item or version going backwards)"
            }
            Claim::LostUpdates => {
                "lost-update anomalies: an acknowledged cart item missing from every later read"
            }
            Claim::Orphans => {
                "orphan anomalies: session records or tokens still stored after logout, past the grace \
                 period, and state kept in an instance's memory past its sessions' end"
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
}

/// The orphan facets of state kept in an instance's own memory (`check::resident`).
const IN_PROCESS_FACETS: [&str; 2] = [resident::MEMORY_SESSIONS, resident::TOKEN_CACHE];

fn family(results: &Results, kind: Kind) -> Option<&AnomalyReport> {
    results.anomalies.iter().find(|a| a.kind == kind)
}

fn unchecked(results: &Results, kind: Kind) -> Option<String> {
    results
        .unchecked
        .iter()
        .find(|u| u.kind == kind)
        .map(|u| u.reason.clone())
}

/// Whether a fault window's label is an instance going down.
pub fn is_restart(label: &str) -> bool {
    label.contains("instance-restart") || label.contains("instance-crash")
}

/// Whether an example session-loss came across its instance going down
/// (as `check::sessions::across_instance_down` decides, from the example's
/// last good answer and its loss).
fn crosses_down(results: &Results, example: &crate::results::Example) -> bool {
    let [.., good, lost] = &example.events[..] else {
        return false;
    };
    if crate::check::sessions::tokens_lost(lost) {
        return false;
    }
    results
        .timelines
        .iter()
        .filter(|t| t.source == example.source)
        .any(|t| crate::check::sessions::went_down_between(good, lost, &t.faults))
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

/// The cell of `claim` for one run.
pub fn cell(results: &Results, claim: Claim) -> Cell {
    let count = |kind: Kind| results.anomaly(kind);
    match claim {
        Claim::MemoryGrowth => {
            let leaks = &results.leaks;
            let in_process: u64 = family(results, Kind::Orphan).map_or(0, |f| {
                IN_PROCESS_FACETS
                    .iter()
                    .filter_map(|facet| f.facets.get(*facet))
                    .sum()
            });
            let stored = count(Kind::Orphan).saturating_sub(in_process);
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
            if let Some(entries) = leaks.token_cache_entries_at_end {
                number += &format!(
                    ", {entries} cached tokens for {} live sessions",
                    leaks.live_sessions_at_end
                );
            }
            if !observed && let Some(reason) = unchecked(results, Kind::Orphan) {
                return Cell {
                    seen: Seen::Unknown(format!(
                        "what the stores keep past a session's end was not checked: {reason}"
                    )),
                    number,
                    example: None,
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
                };
            }
            Cell {
                seen: seen(observed),
                number,
                example: observed
                    .then(|| {
                        example_where(results, Kind::Orphan, |e| e.summary.contains(" in memory"))
                            .or_else(|| first_example(results, &[Kind::Orphan]))
                    })
                    .flatten(),
            }
        }
        Claim::LossOnRestart => {
            let restarts = results.scenario.faults.iter().any(|f| is_restart(f))
                || results
                    .timelines
                    .iter()
                    .flat_map(|t| &t.faults)
                    .any(|s| is_restart(&s.action));
            let in_restart: u64 = family(results, Kind::SessionLoss)
                .map(|f| {
                    f.by_window
                        .iter()
                        .filter(|(w, _)| is_restart(w))
                        .map(|(_, n)| n)
                        .sum()
                })
                .unwrap_or(0);
            if !restarts {
                return Cell {
                    seen: Seen::Unknown("the scenario restarts no instance".into()),
                    number: "-".into(),
                    example: None,
                };
            }
            let Some(across) =
                family(results, Kind::SessionLoss).map_or(Some(0), |f| f.across_instance_down)
            else {
                // A file from before losses were tied to the instance going down.
                return Cell {
                    seen: seen(in_restart > 0),
                    number: format!("{in_restart} session losses in restart windows"),
                    example: example_where(results, Kind::SessionLoss, |e| {
                        e.fault_window.as_deref().is_some_and(is_restart)
                    }),
                };
            };
            Cell {
                seen: seen(across > 0),
                number: format!(
                    "{across} sessions lost across their instance's restart or crash \
                     ({in_restart} session losses in restart windows)"
                ),
                example: example_where(results, Kind::SessionLoss, |e| crosses_down(results, e)),
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
            }
        }
        Claim::CrossInstance => {
            let hop = family(results, Kind::SessionLoss)
                .and_then(|f| f.facets.get("hop").copied())
                .unwrap_or(0);
            let stale = count(Kind::StaleRead);
            Cell {
                seen: seen(hop + stale > 0),
                number: format!("{hop} losses on a hop, {stale} stale reads"),
                example: example_where(results, Kind::SessionLoss, |e| {
                    e.summary.contains("its last good answer came from")
                })
                .or_else(|| first_example(results, &[Kind::StaleRead])),
            }
        }
        Claim::LostUpdates => counted(results, Kind::LostUpdate, "lost cart items"),
        Claim::Orphans => counted(results, Kind::Orphan, "left behind"),
    }
}

fn counted(results: &Results, kind: Kind, what: &str) -> Cell {
    let n = results.anomaly(kind);
    if n == 0
        && let Some(reason) = unchecked(results, kind)
    {
        return Cell {
            seen: Seen::Unknown(format!("not checked: {reason}")),
            number: "-".into(),
            example: None,
        };
    }
    Cell {
        seen: seen(n > 0),
        number: format!("{n} {what}"),
        example: first_example(results, &[kind]),
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
