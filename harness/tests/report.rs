//! The HTML report from committed results fixtures (real short runs of the
//! four options, `harness/tests/fixtures/`): its sections, every chart, the
//! claims matrix and its links, escaping of what files hold, and a report
//! from merged results. Structure, not pixels (`report_browser.rs` opens it
//! in a real browser).

use std::collections::BTreeSet;
use std::path::PathBuf;

use harness::check::Kind;
use harness::report;
use harness::results::{self, Results};

mod common;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixtures() -> Vec<Results> {
    ["option1", "option2", "option3", "option4"]
        .iter()
        .map(|o| {
            let path = fixture_dir().join(format!("short-{o}.json"));
            common::assert_valid_results(&path);
            Results::read(&path).expect("fixture reads")
        })
        .collect()
}

/// Every `id="..."` in the page.
fn ids(page: &str) -> BTreeSet<String> {
    page.split(" id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Every in-page link target.
fn links(page: &str) -> Vec<String> {
    page.split("href=\"#")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn charts(page: &str, key: &str) -> usize {
    page.matches(&format!("data-chart=\"{key}\"><svg")).count()
}

#[test]
fn a_report_of_four_options_has_every_section_chart_and_matrix_link() {
    let runs = fixtures();
    let page = report::render(&runs).expect("renders");
    for section in [
        "verdicts",
        "matrix",
        "latency",
        "anomalies",
        "idp",
        "memory",
        "projection",
        "examples",
        "facts",
    ] {
        assert!(
            page.contains(&format!("<h2 id=\"{section}\">")),
            "section {section}"
        );
    }
    // Verdicts come first, then the matrix, then the evidence.
    let at = |needle: &str| page.find(needle).expect(needle);
    assert!(at("id=\"verdicts\"") < at("id=\"matrix\""));
    assert!(at("id=\"matrix\"") < at("id=\"latency\""));
    for index in 0..4 {
        assert!(page.contains(&format!("id=\"verdict-o{index}\"")));
    }
    assert_eq!(charts(&page, "latency-distribution"), 4);
    assert_eq!(charts(&page, "latency-over-time"), 4);
    for key in ["idp-calls", "store-bytes", "rss", "projection"] {
        assert_eq!(charts(&page, key), 1, "{key}");
    }
    // The matrix: six claims, a cell per option each.
    let matrix = &page[at("<table class=\"matrix\">")..];
    let matrix = &matrix[..matrix.find("</table>").expect("table ends")];
    for claim in report::matrix::CLAIMS {
        let row = &matrix[matrix.find(claim.title()).expect("claim row")..];
        let row = &row[..row.find("</tr>").expect("row ends")];
        assert_eq!(row.matches("<td class=").count(), 4, "{row}");
    }
    // Every in-page link lands on an anchor, and every anomaly example of
    // the files is in the page.
    let anchors = ids(&page);
    let targets = links(&page);
    assert!(
        targets.iter().any(|t| t.starts_with("ex-")),
        "matrix links examples"
    );
    for target in &targets {
        assert!(anchors.contains(target), "link #{target} has no anchor");
    }
    for (index, run) in runs.iter().enumerate() {
        for family in &run.anomalies {
            for i in 0..family.examples.len() {
                let id = format!("ex-o{index}-{}-{i}", family.kind.name());
                assert!(anchors.contains(&id), "example {id}");
            }
        }
    }
    // The matrix's own links: an observed cell with examples links one.
    assert!(matrix.contains("href=\"#ex-"), "matrix links to examples");
    // Facts: topology, host and harness version of every run.
    for run in &runs {
        assert!(page.contains(&run.sources[0].host.hostname));
        assert!(page.contains(&run.topology.session_backend));
    }
    assert!(page.contains(&runs[0].harness.version));
}

#[test]
fn the_page_needs_no_network_and_no_script() {
    let page = report::render(&fixtures()).expect("renders");
    assert!(!page.contains("<script"), "no script");
    assert!(!page.contains("<link"), "no stylesheet from elsewhere");
    assert!(!page.contains("@import") && !page.contains("@font-face"));
    assert!(!page.contains("url("), "no CSS fetches");
    for attribute in ["src=", "href=\"http", "href=\"//", "xlink:href"] {
        assert!(!page.contains(attribute), "{attribute}");
    }
}

#[test]
fn the_claims_match_what_the_files_hold() {
    let runs = fixtures();
    use report::matrix::{Claim, Seen, cell};
    for run in &runs {
        let lost = cell(run, Claim::LostUpdates);
        assert_eq!(
            lost.seen == Seen::Observed,
            run.anomaly(Kind::LostUpdate) > 0,
            "{}",
            run.topology.name
        );
        let shared = cell(run, Claim::SharedTokens);
        assert_eq!(
            shared.seen == Seen::Observed,
            run.anomaly(Kind::CrossSessionToken) + run.anomaly(Kind::CrossUserToken) > 0
        );
    }
    // The fixtures restart an instance: option1 keeps sessions in memory
    // and loses them; option4 keeps them in Redis and Postgres and does not.
    let restart = |r: &Results| cell(r, Claim::LossOnRestart).seen;
    assert_eq!(restart(&runs[0]), Seen::Observed, "option1 loses sessions");
    assert_eq!(restart(&runs[3]), Seen::NotObserved, "option4 keeps them");
}

#[test]
fn a_report_of_merged_results_shows_each_source() {
    let runs = fixtures();
    let mut other = runs[3].clone();
    other.sources[0].name = "load-machine-2".into();
    other.timelines[0].source = "load-machine-2".into();
    for family in &mut other.anomalies {
        for example in &mut family.examples {
            example.source = "load-machine-2".into();
        }
    }
    let merged = results::merge(vec![runs[3].clone(), other]).expect("merges");
    let page = report::render(std::slice::from_ref(&merged)).expect("renders");
    assert_eq!(charts(&page, "latency-over-time"), 2, "one per source");
    assert!(page.contains("source load-machine-2"));
    assert_eq!(charts(&page, "latency-distribution"), 1);
    let single = runs[3].requests.iter().map(|s| s.count).sum::<u64>();
    assert!(
        page.contains(&format!("{} requests", single * 2)),
        "counts add"
    );
}

#[test]
fn what_the_files_hold_is_escaped() {
    let mut run = fixtures().remove(3);
    run.topology.name = "<script>alert(1)</script>".into();
    run.sources[0].host.hostname = "\"><img src=x onerror=alert(2)>".into();
    run.timelines[0].faults.push(harness::history::FaultStep {
        at: 1_000_000,
        took: 1_000,
        action: "<svg onload=alert(3)>".into(),
        ends: None,
        error: None,
        unscheduled: None,
    });
    if let Some(family) = run.anomalies.iter_mut().find(|a| !a.examples.is_empty()) {
        family.examples[0].summary = "<b>bold</b>".into();
    }
    let page = report::render(&[run]).expect("renders");
    assert!(!page.contains("<script>alert"));
    assert!(!page.contains("<img src=x"));
    assert!(!page.contains("<svg onload"));
    assert!(!page.contains("<b>bold</b>"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn harness_report_writes_the_file_it_names() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("nested/r.html");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("report")
        .args(
            ["option1", "option4"]
                .iter()
                .map(|o| fixture_dir().join(format!("short-{o}.json"))),
        )
        .arg("-o")
        .arg(&out)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("report: "));
    let page = std::fs::read_to_string(&out).expect("written");
    assert_eq!(charts(&page, "latency-distribution"), 2);
    // A file that is not a results file is an error, not an empty report.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{}").expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["report"])
        .arg(&bad)
        .arg("-o")
        .arg(dir.path().join("x.html"))
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a results file"));
}

/// `run` relabelled as a target that implements `models`.
fn as_target(run: &Results, name: &str, models: &str) -> Results {
    let mut target = run.clone();
    target.topology.name = name.into();
    target.topology.app = results::AppKind::Launched;
    target.topology.models = Some(models.into());
    target
}

/// The rows of the side-by-side table that are marked as differing.
fn differing(page: &str) -> usize {
    let section = page
        .split("id=\"side-by-side\"")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or("");
    section.matches("differs from the reference").count()
}

#[test]
fn a_target_sits_beside_the_reference_run_of_the_topology_it_models() {
    let runs = fixtures();
    // A target that behaves as option1 does: beside option1, nothing differs.
    let same = as_target(&runs[0], "express-msal-option1", "option1");
    // One that behaves as option4 does while claiming to be option1: the
    // restart losses (option1 loses sessions, option4 does not) differ.
    let other = as_target(&runs[3], "pretender", "option1");
    let page = report::render(&[runs[0].clone(), same.clone()]).expect("renders");
    assert!(page.contains("id=\"side-by-side\""), "section present");
    assert!(
        links(&page).contains(&"side-by-side".to_owned()),
        "and linked"
    );
    assert!(page.contains("option1 (reference)"));
    assert_eq!(differing(&page), 0);

    let page = report::render(&[runs[0].clone(), other]).expect("renders");
    assert!(differing(&page) >= 1, "loss on restart differs");
    let row = page
        .split("<tr><th>loss on restart</th>")
        .nth(2) // the second table: the side-by-side one
        .and_then(|rest| rest.split("</tr>").next())
        .expect("row");
    assert!(row.contains("differs from the reference"), "{row}");

    // No pairing without the reference run, or with another scenario seed.
    let page = report::render(&[runs[1].clone(), same.clone()]).expect("renders");
    assert!(!page.contains("id=\"side-by-side\""));
    let mut reseeded = same;
    reseeded.scenario.seed += 1;
    let page = report::render(&[runs[0].clone(), reseeded]).expect("renders");
    assert!(!page.contains("id=\"side-by-side\""));
}

#[test]
fn memory_growth_is_state_kept_past_sessions_that_ended() {
    use report::matrix::{Claim, Seen, cell};
    let mut run = fixtures().remove(3);
    run.unchecked.retain(|u| u.kind != Kind::Orphan);
    let seen = |r: &Results| cell(r, Claim::MemoryGrowth).seen;
    // No session ended without a logout: nothing could be kept for people who left.
    run.leaks.sessions_expired = 0;
    assert!(matches!(seen(&run), Seen::Unknown(_)), "{:?}", seen(&run));
    // Some did, and nothing was kept.
    run.leaks.sessions_expired = 12;
    assert_eq!(seen(&run), Seen::NotObserved);
    // The stores could not be looked into: it cannot tell.
    let mut blind = run.clone();
    blind.unchecked.push(results::Unchecked {
        kind: Kind::Orphan,
        reason: "a target's store layout is its own".into(),
    });
    assert!(matches!(seen(&blind), Seen::Unknown(reason) if reason.contains("not checked")));
    // An instance kept tokens of people who left, in its own memory.
    let orphans = run
        .anomalies
        .iter_mut()
        .find(|a| a.kind == Kind::Orphan)
        .expect("family");
    orphans.count = 3;
    orphans
        .facets
        .insert(harness::check::resident::TOKEN_CACHE.into(), 3);
    assert_eq!(seen(&run), Seen::Observed);
    assert!(
        cell(&run, Claim::MemoryGrowth)
            .number
            .starts_with("kept past their sessions' end: 3 in instance memory, 0 in the stores")
    );
    blind.anomalies = run.anomalies.clone();
    assert_eq!(
        seen(&blind),
        Seen::Observed,
        "counted from /metrics even so"
    );
}
