//! What browsers saw of each fault step, from the results' `fault_errors`:
//! a table per source timeline with the step's start, its failed requests,
//! and the failing span from the first error to the first success after
//! the last (for a master kill or a failover, the failover time browsers
//! saw). Runs without fault steps show nothing.

use std::fmt::Write;

use crate::history::Micros;
use crate::outage::FaultErrors;

use super::Column;
use super::escape::escape;

fn seconds(us: Micros) -> String {
    format!("{:.2}", us as f64 / 1e6)
}

fn at(us: Option<Micros>) -> String {
    us.map_or_else(|| "-".to_owned(), seconds)
}

/// The failing span's cell: first error to first success after, or to the
/// last error with a note when no success came before the next step.
fn span(errors: &FaultErrors) -> String {
    match (
        errors.first_failure_us,
        errors.recovered_us,
        errors.last_failure_us,
    ) {
        (Some(first), Some(back), _) => format!(
            "{} s ({} s &rarr; {} s)",
            seconds(back.saturating_sub(first)),
            seconds(first),
            seconds(back)
        ),
        (Some(first), None, Some(last)) => format!(
            "at least {} s ({} s &rarr; last error {} s; no success after it before the next step)",
            seconds(last.saturating_sub(first)),
            seconds(first),
            seconds(last)
        ),
        _ => "none".to_owned(),
    }
}

/// The section's part for every timeline that has fault steps: one table each.
pub fn section(out: &mut String, columns: &[Column<'_>]) {
    let any = columns.iter().any(|c| {
        c.results
            .timelines
            .iter()
            .any(|t| !t.fault_errors.is_empty())
    });
    if !any {
        return;
    }
    *out += "<h3 id=\"fault-errors\">Each fault as browsers saw it</h3>\n<p>Per fault step, the requests that \
             completed from its start until the next step began (or the run ended), and those that failed (no \
             answer, or a 5xx; a 4xx is an answer). The failing span runs from the first failed request to the \
             first request that succeeded after the last failed one: for a master kill or a failover, the \
             failover time browsers saw. A fault the app rides out without an error shows as a wait in the \
             slowest request instead. Times are seconds since the run started.</p>\n";
    for column in columns {
        for timeline in column
            .results
            .timelines
            .iter()
            .filter(|t| !t.fault_errors.is_empty())
        {
            let _ = writeln!(
                out,
                "<p class=\"muted\">{}, source {}</p>\n<table class=\"fault-errors\"><tr><th>fault</th>\
                 <th>start s</th><th>failing span s (first error &rarr; first success after)</th>\
                 <th>failed requests</th><th>requests</th><th>slowest s</th></tr>",
                escape(&column.label),
                escape(&timeline.source)
            );
            for errors in &timeline.fault_errors {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    escape(&errors.action),
                    seconds(errors.at_us),
                    span(errors),
                    errors.failed,
                    errors.requests,
                    at(errors.slowest_us)
                );
            }
            *out += "</table>\n";
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_span_runs_to_the_first_success_or_says_none_came() {
        let mut errors = FaultErrors {
            first_failure_us: Some(1_500_000),
            last_failure_us: Some(3_100_000),
            recovered_us: Some(4_000_000),
            ..FaultErrors::default()
        };
        assert_eq!(
            span(&errors),
            "2.50 s (1.50 s &rarr; 4.00 s)",
            "first error to first success after"
        );
        errors.recovered_us = None;
        assert_eq!(
            span(&errors),
            "at least 1.60 s (1.50 s &rarr; last error 3.10 s; no success after it before the next step)"
        );
        assert_eq!(span(&FaultErrors::default()), "none");
    }
}
