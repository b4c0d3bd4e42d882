//! The hand-made histories under `tests/fixtures/histories/`, each judged by
//! the offline checker (`harness analyze`'s code) against the anomalies its
//! `.expected` file lists: at least one history per anomaly family and
//! facet, and one per indeterminate case that must not be flagged.
//!
//! A `.expected` file: `#` lines say what the history shows; every other
//! line is one anomaly, `KIND [FACET] bBROWSER: EVIDENCE` (the evidence as
//! event numbers, 0 for the line after the first), and the anomalies found
//! must be exactly those.

use std::path::{Path, PathBuf};

use harness::analyze;
use harness::check::Kind;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/histories")
}

/// Every history file of the corpus with its expected anomalies.
fn cases() -> Vec<(PathBuf, Vec<String>)> {
    let mut cases: Vec<(PathBuf, Vec<String>)> = std::fs::read_dir(corpus())
        .expect("the corpus folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".history.jsonl"))
        .map(|history| {
            let name = history
                .to_string_lossy()
                .replace(".history.jsonl", ".expected");
            let text = std::fs::read_to_string(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut expected: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .map(str::to_owned)
                .collect();
            expected.sort();
            (history, expected)
        })
        .collect();
    cases.sort();
    cases
}

fn found(history: &Path) -> Vec<String> {
    let analysis =
        analyze::analyze(history).unwrap_or_else(|e| panic!("{}: {e}", history.display()));
    let mut lines: Vec<String> = analysis
        .findings
        .anomalies
        .values()
        .flatten()
        .map(|a| {
            format!(
                "{} [{}] {}: {}",
                a.kind,
                a.facet.as_deref().unwrap_or(""),
                a.browser,
                a.evidence
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn every_history_of_the_corpus_shows_exactly_its_expected_anomalies() {
    let cases = cases();
    assert!(cases.len() >= 10, "{} histories", cases.len());
    let mut wrong = Vec::new();
    for (history, expected) in &cases {
        let found = found(history);
        if &found != expected {
            wrong.push(format!(
                "{}:\n  expected {expected:#?}\n  found {found:#?}",
                history.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_corpus_shows_every_family_and_facet_and_clean_cases() {
    let expected: Vec<String> = cases().into_iter().flat_map(|(_, e)| e).collect();
    for kind in Kind::ALL {
        assert!(
            expected.iter().any(|e| e.starts_with(&format!("{kind} ["))),
            "no history shows {kind}"
        );
    }
    for facet in [
        "hop",
        "same-instance",
        "tokens-lost",
        "read-your-writes",
        "monotonic-reads",
        "monotonic-writes",
        "writes-follow-reads",
        "refresh-while-cached",
        "refresh-token-reuse",
        "session",
        "blob",
        "memory sessions",
        "other-user",
        "same-user",
        "own-earlier-session",
        "unnamed",
        "other-instance",
    ] {
        assert!(
            expected.iter().any(|e| e.contains(&format!("[{facet}]"))),
            "no history shows facet {facet}"
        );
    }
    let clean = cases().into_iter().filter(|(_, e)| e.is_empty()).count();
    assert!(clean >= 6, "{clean} histories where nothing may be flagged");
}
