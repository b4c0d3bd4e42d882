//! `harness analyze`: a saved history file (`bench --history`) judged again,
//! offline, by the run's own [`judge`]: the same findings and the same
//! results document, so anyone can audit a verdict from the file alone.
//! Several files are the histories of one scenario's shards (`bench
//! --shard`), judged together as one run ([`crate::shards`]).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::check::{Findings, Kind};
use crate::history::History;
use crate::history_file::{self, HistoryFileError};
use crate::judge::{self, Judged, RunFacts};
use crate::results::Results;
use crate::shards::{self, Combined, NotShards, Part};

/// A history judged again.
pub struct Analysis {
    pub history: History,
    pub facts: RunFacts,
    pub findings: Findings,
    pub results: Results,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    History(#[from] HistoryFileError),
    #[error(
        "{0}: its first line carries no run facts (written by an older harness): the events can be read, but the verdict rests on the scenario and on what was measured live, which this file does not hold"
    )]
    NoFacts(String),
    #[error(transparent)]
    Shards(#[from] NotShards),
}

/// Reads the history file at `path` and judges it.
pub fn analyze(path: &Path) -> Result<Analysis, AnalyzeError> {
    let (history, facts) = history_file::read_run(path)?;
    let facts = facts.ok_or_else(|| AnalyzeError::NoFacts(path.display().to_string()))?;
    let Judged { findings, results } = judge::judge(&facts, &history);
    Ok(Analysis {
        history,
        facts,
        findings,
        results,
    })
}

/// Reads the history files at `paths`: one whole run's, judged as
/// [`analyze`] does, or those of one scenario's shards, judged together.
pub fn analyze_all(paths: &[PathBuf]) -> Result<Analysis, AnalyzeError> {
    if let [one] = paths {
        return analyze(one);
    }
    let mut parts = Vec::with_capacity(paths.len());
    for path in paths {
        let (history, facts) = history_file::read_run(path)?;
        let name = path.display().to_string();
        let facts = facts.ok_or_else(|| AnalyzeError::NoFacts(name.clone()))?;
        parts.push(Part {
            name,
            history,
            facts,
        });
    }
    let Combined {
        history,
        facts,
        sources,
    } = shards::combine(parts)?;
    let Judged {
        findings,
        mut results,
    } = judge::judge(&facts, &history);
    results.sources = sources;
    Ok(Analysis {
        history,
        facts,
        findings,
        results,
    })
}

/// Every anomaly found, a line each (the first `per_kind` of each family),
/// with the events that prove it (what could not be checked the summary
/// table says).
pub fn findings_text(analysis: &Analysis, per_kind: usize) -> String {
    let mut out = String::new();
    for kind in Kind::ALL {
        let Some(found) = analysis.findings.anomalies.get(&kind) else {
            continue;
        };
        let _ = writeln!(out, "{kind}: {}", found.len());
        for anomaly in found.iter().take(per_kind) {
            let facet = anomaly
                .facet
                .as_deref()
                .map_or_else(String::new, |f| format!(" [{f}]"));
            let _ = writeln!(out, "  {}{facet}", anomaly.summary);
            for &index in &anomaly.evidence {
                if let Some(event) = analysis.history.events.get(index) {
                    for line in event.to_string().lines() {
                        let _ = writeln!(out, "      #{index} {line}");
                    }
                }
            }
        }
        if found.len() > per_kind {
            let _ = writeln!(out, "  ... and {} more", found.len() - per_kind);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_without_run_facts_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("old.history.jsonl");
        history_file::write(&History::default(), &path).expect("write");
        let error = analyze(&path).err().expect("refused").to_string();
        assert!(
            error.contains("old.history.jsonl") && error.contains("no run facts"),
            "{error}"
        );
    }
}
