//! The accounting rule: per anomaly family, the numbers the claims matrix
//! counts plus the verdict's "other anomalies" equal the results' count, so
//! no anomaly is left out of every cell (or shown twice); and a cell that
//! counts some says so, with the number in its text, as observed (which is
//! what puts it in the verdict). The report refuses to render when a run
//! breaks it.

use crate::check::Kind;
use crate::results::Results;

use super::matrix::{self, Cell, Claim, Seen};

/// How a run's report would misstate its anomalies.
#[derive(Debug, thiserror::Error)]
pub enum Unbalanced {
    #[error(
        "{kind}: the results count {count}, the claims matrix and the verdict show {shown} ({places})"
    )]
    Family {
        kind: Kind,
        count: u64,
        shown: u64,
        places: String,
    },
    #[error("\"{claim}\" counts {n} {kind} but its text does not show the number: {text:?}")]
    Unshown {
        claim: &'static str,
        kind: Kind,
        n: u64,
        text: String,
    },
    #[error("\"{claim}\" counts {n} {kind} but says {seen}, so the verdict would leave them out")]
    NotObserved {
        claim: &'static str,
        kind: Kind,
        n: u64,
        seen: String,
    },
}

/// The rule over the report's own cells and other anomalies for `results`.
pub fn check(results: &Results) -> Result<(), Unbalanced> {
    balance(results, &matrix::cells(results), &matrix::OTHER)
}

/// The rule over `cells` (the matrix's rows for `results`) and `other` (the
/// families the verdict counts as other anomalies, each in full).
pub fn balance(
    results: &Results,
    cells: &[(Claim, Cell)],
    other: &[Kind],
) -> Result<(), Unbalanced> {
    for (claim, cell) in cells {
        for &(kind, n) in &cell.counts {
            if n == 0 {
                continue;
            }
            if !shows(&cell.number, n) {
                return Err(Unbalanced::Unshown {
                    claim: claim.title(),
                    kind,
                    n,
                    text: cell.number.clone(),
                });
            }
            if cell.seen != Seen::Observed {
                return Err(Unbalanced::NotObserved {
                    claim: claim.title(),
                    kind,
                    n,
                    seen: match &cell.seen {
                        Seen::Unknown(why) => format!("unknown ({why})"),
                        _ => "not observed".into(),
                    },
                });
            }
        }
    }
    for kind in Kind::ALL {
        let count = results.anomaly(kind);
        let mut places: Vec<String> = cells
            .iter()
            .flat_map(|(claim, cell)| {
                cell.counts
                    .iter()
                    .filter(move |(k, n)| *k == kind && *n > 0)
                    .map(move |(_, n)| (claim.title(), *n))
            })
            .map(|(title, n)| format!("{title}: {n}"))
            .collect();
        let mut shown: u64 = cells
            .iter()
            .flat_map(|(_, cell)| &cell.counts)
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n)
            .sum();
        if other.contains(&kind) {
            shown += count;
            places.push(format!("other anomalies: {count}"));
        }
        if shown != count {
            return Err(Unbalanced::Family {
                kind,
                count,
                shown,
                places: if places.is_empty() {
                    "no cell counts any".into()
                } else {
                    places.join(", ")
                },
            });
        }
    }
    Ok(())
}

/// Whether `text` holds `n` as a number of its own (not within a longer one).
fn shows(text: &str, n: u64) -> bool {
    let digits = n.to_string();
    text.match_indices(&digits).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + digits.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::shows;

    #[test]
    fn a_number_is_shown_only_on_its_own() {
        assert!(shows("49 session losses", 49));
        assert!(shows("0 losses on a hop, 12 stale reads", 12));
        assert!(!shows("149 session losses", 49));
        assert!(!shows("490 session losses", 49));
        assert!(!shows("RSS +4.9 MiB", 9));
    }
}
