//! How a family's count splits into the parts the report shows, each part
//! in one place: session losses across an instance going down, across a
//! store losing its data, on a hop, and the rest. The split comes from the
//! results' groups (window, facet and cause together); a file from before
//! groups were kept gets them rebuilt from its one-way counts, keeping every
//! total, so its parts still add up.

use std::collections::BTreeMap;

use crate::check::Kind;
use crate::check::sessions::TOKENS_LOST;
use crate::check::windows::is_store_loss;
use crate::results::{AnomalyGroup, AnomalyReport, Example, LossCause, NO_WINDOW, Results};

/// The facet of a session-loss answered by another instance than the
/// session's last good answer (`check::sessions`).
pub const HOP: &str = "hop";

/// Where the report shows a session-loss: exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LossPart {
    /// Its instance went down between its last good answer and the loss,
    /// and the instance that said so was the same one, back.
    InstanceDown,
    /// A store restarted or lost its data in between, or the loss fell in
    /// such a fault's window.
    StoreLost,
    /// Answered by another instance than its last good answer (its own
    /// having gone down or not).
    Hop,
    /// Anything else: outside every window, or in a window of another kind.
    Other,
}

/// The part of a loss in `window`, with `facet`, across `between`: what
/// would not have lost it had it not happened comes first. A store that
/// lost its data loses a session whichever instance asks; a hop loses it
/// when instances do not share sessions, whether or not the first went
/// down (the hop is then only how the browser got there); a loss on the
/// instance that had answered, back from a restart or crash, is that
/// instance's going down.
pub fn loss_part(window: &str, facet: Option<&str>, between: Option<LossCause>) -> LossPart {
    match between {
        Some(LossCause::StoreLost) => LossPart::StoreLost,
        None if is_store_loss(window) => LossPart::StoreLost,
        _ if facet == Some(HOP) => LossPart::Hop,
        Some(LossCause::InstanceDown) => LossPart::InstanceDown,
        None => LossPart::Other,
    }
}

/// Whether a fault window's label (or a scenario's fault line) takes an
/// instance down.
pub fn is_restart(label: &str) -> bool {
    label.contains("instance-restart") || label.contains("instance-crash")
}

/// A family of `results`, when the file has it.
pub fn family(results: &Results, kind: Kind) -> Option<&AnomalyReport> {
    results.anomalies.iter().find(|a| a.kind == kind)
}

/// Whether a family's groups are rebuilt (the file did not keep them).
pub fn rebuilt(report: &AnomalyReport) -> bool {
    report.groups.is_empty() && report.count > 0
}

/// A family's groups: as kept, else rebuilt from its one-way counts.
pub fn groups(report: &AnomalyReport) -> Vec<AnomalyGroup> {
    if rebuilt(report) {
        rebuild(report)
    } else {
        report.groups.clone()
    }
}

/// Groups from `by_window` and `facets` alone: each window's count shared
/// out over the facets in order (so both totals are kept), then, for
/// session losses, the ones across an instance going down (the file's
/// count, else every loss in a restart window, as such files were read)
/// taken from restart windows first. The rebuilt groups add up to what
/// `by_window` does; when that is not the family's count, the accounting
/// says so.
fn rebuild(report: &AnomalyReport) -> Vec<AnomalyGroup> {
    let total: u64 = report.by_window.values().sum();
    let mut facets: Vec<(Option<String>, u64)> = report
        .facets
        .iter()
        .map(|(f, &n)| (Some(f.clone()), n))
        .collect();
    let faceted: u64 = facets.iter().map(|(_, n)| n).sum();
    if faceted < total {
        facets.push((None, total - faceted));
    }
    let mut groups = Vec::new();
    let mut facet = facets.into_iter().peekable();
    let mut facet_left = 0;
    let mut current: Option<String> = None;
    for (window, &n) in &report.by_window {
        let mut left = n;
        while left > 0 {
            if facet_left == 0 {
                match facet.next() {
                    Some((f, m)) => (current, facet_left) = (f, m),
                    None => (current, facet_left) = (None, left),
                }
                continue;
            }
            let take = left.min(facet_left);
            groups.push(AnomalyGroup {
                window: window.clone(),
                facet: current.clone(),
                between: None,
                count: take,
            });
            left -= take;
            facet_left -= take;
        }
    }
    if report.kind != Kind::SessionLoss {
        return groups;
    }
    let mut down = report.across_instance_down.unwrap_or_else(|| {
        groups
            .iter()
            .filter(|g| is_restart(&g.window))
            .map(|g| g.count)
            .sum()
    });
    // Restart windows first, lost tokens last: a loss of tokens is never
    // counted as across an instance going down.
    let order = |g: &AnomalyGroup| {
        (
            !is_restart(&g.window),
            g.facet.as_deref() == Some(TOKENS_LOST),
        )
    };
    let mut indexes: Vec<usize> = (0..groups.len()).collect();
    indexes.sort_by_key(|&i| order(&groups[i]));
    for i in indexes {
        if down == 0 {
            break;
        }
        let take = groups[i].count.min(down);
        down -= take;
        if take < groups[i].count {
            let mut rest = groups[i].clone();
            rest.count -= take;
            groups.push(rest);
        }
        groups[i].count = take;
        groups[i].between = Some(LossCause::InstanceDown);
    }
    groups
}

/// A run's session losses, split into the parts the report shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Losses {
    pub parts: BTreeMap<LossPart, u64>,
    /// The other part by window (`none` outside every window).
    pub other_windows: BTreeMap<String, u64>,
    /// Of the other part: the session kept, its tokens gone.
    pub other_tokens_lost: u64,
    /// Of the store part: those inside a store fault's window (the rest
    /// came later, when their browsers came back).
    pub store_in_window: u64,
    /// Of the hop part: those whose instance had gone down (a failover).
    pub hop_after_down: u64,
    /// The file kept no groups: its split is rebuilt.
    pub rebuilt: bool,
}

impl Losses {
    pub fn of(results: &Results) -> Self {
        let mut losses = Losses::default();
        let Some(report) = family(results, Kind::SessionLoss) else {
            return losses;
        };
        losses.rebuilt = rebuilt(report);
        for group in groups(report) {
            let part = loss_part(&group.window, group.facet.as_deref(), group.between);
            *losses.parts.entry(part).or_insert(0) += group.count;
            if part == LossPart::Hop && group.between == Some(LossCause::InstanceDown) {
                losses.hop_after_down += group.count;
            }
            if part == LossPart::StoreLost && is_store_loss(&group.window) {
                losses.store_in_window += group.count;
            }
            if part == LossPart::Other {
                *losses.other_windows.entry(group.window).or_insert(0) += group.count;
                if group.facet.as_deref() == Some(TOKENS_LOST) {
                    losses.other_tokens_lost += group.count;
                }
            }
        }
        losses
    }

    pub fn part(&self, part: LossPart) -> u64 {
        self.parts.get(&part).copied().unwrap_or(0)
    }
}

/// The part an example session-loss is shown in, as its group would be.
/// An example from before examples kept their facet and cause gets them as
/// the rebuilt groups do: the family's one facet, and across an instance
/// going down as the file counted that (by the example's own events, or
/// by its restart window).
pub fn example_part(results: &Results, report: &AnomalyReport, example: &Example) -> LossPart {
    if !rebuilt(report) && example.facet.is_some() {
        let (window, facet, between) = example.key();
        return loss_part(window, facet, between);
    }
    let window = example.fault_window.as_deref().unwrap_or(NO_WINDOW);
    let facet = match report.facets.keys().collect::<Vec<_>>()[..] {
        [only] => Some(only.as_str()),
        _ if example.summary.contains("its last good answer came from") => Some(HOP),
        _ => None,
    };
    let down = if report.across_instance_down.is_some() {
        crosses_down(results, example)
    } else {
        is_restart(window) && facet != Some(TOKENS_LOST)
    };
    loss_part(window, facet, down.then_some(LossCause::InstanceDown))
}

/// Whether an example session-loss came across its instance going down
/// (as `check::sessions::across_instance_down` decides, from the example's
/// last good answer and its loss).
fn crosses_down(results: &Results, example: &Example) -> bool {
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

/// The first example of session-loss shown in `part`, as a cell link.
pub fn loss_example(results: &Results, part: LossPart) -> Option<(Kind, usize)> {
    let report = family(results, Kind::SessionLoss)?;
    report
        .examples
        .iter()
        .position(|e| example_part(results, report, e) == part)
        .map(|i| (Kind::SessionLoss, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        by_window: &[(&str, u64)],
        facets: &[(&str, u64)],
        down: Option<u64>,
    ) -> AnomalyReport {
        let map =
            |pairs: &[(&str, u64)]| pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect();
        AnomalyReport {
            kind: Kind::SessionLoss,
            count: by_window.iter().map(|(_, n)| n).sum(),
            facets: map(facets),
            by_window: map(by_window),
            across_instance_down: down,
            groups: Vec::new(),
            examples: Vec::new(),
        }
    }

    fn totals(
        groups: &[AnomalyGroup],
    ) -> (BTreeMap<String, u64>, BTreeMap<Option<String>, u64>, u64) {
        let (mut windows, mut facets, mut down) = (BTreeMap::new(), BTreeMap::new(), 0);
        for g in groups {
            *windows.entry(g.window.clone()).or_insert(0) += g.count;
            *facets.entry(g.facet.clone()).or_insert(0) += g.count;
            if g.between == Some(LossCause::InstanceDown) {
                down += g.count;
            }
        }
        (windows, facets, down)
    }

    #[test]
    fn rebuilt_groups_keep_every_total() {
        let r = report(
            &[
                ("instance-restart app-1", 7),
                ("none", 5),
                ("redis-restart", 4),
            ],
            &[("hop", 6), ("same-instance", 8), ("tokens-lost", 2)],
            Some(3),
        );
        let groups = rebuild(&r);
        let (windows, facets, down) = totals(&groups);
        assert_eq!(windows, r.by_window);
        let facets: BTreeMap<String, u64> = facets
            .into_iter()
            .map(|(f, n)| (f.expect("every loss has a facet"), n))
            .collect();
        assert_eq!(facets, r.facets);
        assert_eq!(down, 3);
        assert!(
            groups
                .iter()
                .filter(|g| g.between.is_some())
                .all(|g| is_restart(&g.window)),
            "taken from the restart window first: {groups:?}"
        );
    }

    #[test]
    fn without_a_count_across_instances_going_down_restart_windows_are_it() {
        let r = report(
            &[("instance-restart app-1", 5), ("none", 2)],
            &[("same-instance", 7)],
            None,
        );
        let (_, _, down) = totals(&rebuild(&r));
        assert_eq!(down, 5);
    }

    #[test]
    fn losses_split_by_cause_then_store_window_then_facet() {
        let group = |window: &str, facet: &str, between, count| AnomalyGroup {
            window: window.into(),
            facet: Some(facet.into()),
            between,
            count,
        };
        let mut r = report(&[], &[], None);
        r.groups = vec![
            group(
                "instance-restart app-1",
                "same-instance",
                Some(LossCause::InstanceDown),
                2,
            ),
            group("instance-restart app-1", "same-instance", None, 1),
            group("redis-restart", "same-instance", None, 38),
            group(
                "instance-crash app-2",
                "hop",
                Some(LossCause::InstanceDown),
                6,
            ),
            group("none", "same-instance", Some(LossCause::StoreLost), 9),
            group("none", "same-instance", None, 2),
            group("redis-restart", "hop", None, 3),
            group("none", "hop", None, 4),
            group("none", "tokens-lost", None, 5),
        ];
        r.count = r.groups.iter().map(|g| g.count).sum();
        let results = Results::read(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/short-option4.json"),
        )
        .map(|mut results| {
            results.anomalies.retain(|a| a.kind != Kind::SessionLoss);
            results.anomalies.push(r);
            results
        })
        .expect("fixture");
        let losses = Losses::of(&results);
        assert_eq!(losses.part(LossPart::InstanceDown), 2);
        assert_eq!(losses.part(LossPart::StoreLost), 38 + 9 + 3);
        assert_eq!(losses.part(LossPart::Hop), 4 + 6);
        assert_eq!(losses.hop_after_down, 6);
        assert_eq!(losses.part(LossPart::Other), 1 + 2 + 5);
        assert_eq!(losses.other_tokens_lost, 5);
        assert_eq!(losses.other_windows.get("none"), Some(&7));
        assert!(!losses.rebuilt);
    }
}
