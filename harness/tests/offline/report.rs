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

use crate::common;

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
    // The matrix: eight claims, a cell per option each.
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

/// Each fault step's `fault_errors` become a row of a table: the fault,
/// its start, the failing span from the first error to the first success
/// after, and the failed requests; a run without them has no such table.
#[test]
fn each_fault_step_shows_its_failed_requests_and_failing_span() {
    let plain = report::render(&fixtures()[3..]).expect("renders");
    assert!(
        !plain.contains("fault-errors"),
        "no table without fault steps"
    );
    let mut run = fixtures().remove(3);
    let errors = |action: &str, at_us, failed, first, last, back| harness::outage::FaultErrors {
        step: 0,
        action: action.into(),
        at_us,
        requests: 900,
        failed,
        first_failure_us: first,
        last_failure_us: last,
        failing_span_us: first.zip(last).map(|(a, b): (u64, u64)| b - a),
        failing_until_us: last.map(|b| b - at_us),
        recovered_us: back,
        slowest_us: Some(4_480_000),
    };
    run.timelines[0].fault_errors = vec![
        errors(
            "redis-master-kill",
            3_000_000,
            7,
            Some(3_200_000),
            Some(5_100_000),
            Some(5_350_000),
        ),
        errors("redis-failover <x>", 24_000_000, 0, None, None, None),
        errors(
            "redis-pause",
            30_000_000,
            2,
            Some(30_100_000),
            Some(30_900_000),
            None,
        ),
    ];
    let page = report::render(&[run]).expect("renders");
    let table = page
        .split("<table class=\"fault-errors\">")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .expect("a table of the fault steps");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("<tr><td>"))
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert_eq!(
        rows[0],
        "<tr><td>redis-master-kill</td><td class=\"num\">3.00</td><td>2.15 s (3.20 s &rarr; 5.35 s)</td>\
         <td class=\"num\">7</td><td class=\"num\">900</td><td class=\"num\">4.48</td></tr>"
    );
    assert!(
        rows[1].starts_with("<tr><td>redis-failover &lt;x&gt;</td><td class=\"num\">24.00</td><td>none</td><td class=\"num\">0</td>"),
        "{}",
        rows[1]
    );
    assert!(
        rows[2].contains("at least 0.80 s") && rows[2].contains("no success after it"),
        "{}",
        rows[2]
    );
    // The table sits in the latency section, after the fault timeline's charts.
    let at = |needle: &str| page.find(needle).expect(needle);
    assert!(at("data-chart=\"latency-over-time\"") < at("id=\"fault-errors\""));
    assert!(at("id=\"fault-errors\"") < at("<h2 id=\"cpu\">"));
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
        .split("<tr><th>loss on an instance restart</th>")
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

/// Every results file the repository holds: the report fixtures and the
/// CI baselines.
fn every_committed_results_file() -> Vec<(PathBuf, Results)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for folder in [
        root.join("tests/fixtures"),
        root.join("../reports/baselines"),
    ] {
        for entry in std::fs::read_dir(&folder).expect("folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let results = Results::read(&path).expect("reads");
                files.push((path, results));
            }
        }
    }
    assert!(files.len() >= 8, "{files:?}", files = files.len());
    files
}

/// A session-loss family of `groups` (window, facet, cause, count), with
/// the one-way counts and the examples a run would keep.
fn losses(groups: &[(&str, &str, Option<results::LossCause>, u64)]) -> results::AnomalyReport {
    let mut report = results::AnomalyReport {
        kind: Kind::SessionLoss,
        count: 0,
        facets: Default::default(),
        by_window: Default::default(),
        across_instance_down: Some(0),
        groups: Vec::new(),
        examples: Vec::new(),
    };
    for (index, &(window, facet, between, count)) in groups.iter().enumerate() {
        report.count += count;
        *report.facets.entry(facet.into()).or_insert(0) += count;
        *report.by_window.entry(window.into()).or_insert(0) += count;
        if between == Some(results::LossCause::InstanceDown) {
            *report.across_instance_down.as_mut().expect("some") += count;
        }
        report.groups.push(results::AnomalyGroup {
            window: window.into(),
            facet: Some(facet.into()),
            between,
            count,
        });
        report.examples.push(results::Example {
            summary: format!("loss #{index} in {window}, {facet}"),
            source: "here".into(),
            fault_window: (window != "none").then(|| window.into()),
            facet: Some(facet.into()),
            between,
            events: Vec::new(),
        });
    }
    report
}

/// The option4 fixture with `family` in place of its own of that kind, and
/// the faults of the claims scenario in its timeline.
fn with_family(family: results::AnomalyReport) -> Results {
    let mut run = fixtures().remove(3);
    run.anomalies.retain(|a| a.kind != family.kind);
    run.anomalies.push(family);
    for (at, action) in [
        (10, "instance-restart app-1"),
        (20, "instance-crash app-2"),
        (30, "redis-restart"),
    ] {
        run.timelines[0].faults.push(harness::history::FaultStep {
            at: at * 1_000_000,
            took: 500_000,
            action: action.into(),
            ends: None,
            error: None,
            unscheduled: None,
        });
    }
    run
}

/// The text of the first claims table's row `title`.
fn row<'p>(page: &'p str, title: &str) -> &'p str {
    let start = page
        .find(&format!("<tr><th>{title}"))
        .unwrap_or_else(|| panic!("row {title}"));
    let rest = &page[start..];
    &rest[..rest.find("</tr>").expect("row ends")]
}

#[test]
fn every_committed_results_file_balances_and_renders() {
    for (path, run) in every_committed_results_file() {
        report::accounting::check(&run).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        report::render(std::slice::from_ref(&run))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn session_losses_split_across_windows_and_facets_each_show_once() {
    use harness::results::LossCause::{InstanceDown, StoreLost};
    use report::matrix::{Claim, Seen, cell};
    // The app: 38 losses in the Redis restart's window and 11 in
    // none, all on the same instance, beside losses of every other part.
    let run = with_family(losses(&[
        ("redis-restart", "same-instance", None, 38),
        ("none", "same-instance", None, 11),
        (
            "instance-restart app-1",
            "same-instance",
            Some(InstanceDown),
            3,
        ),
        ("instance-restart app-1", "same-instance", None, 2),
        ("none", "same-instance", Some(StoreLost), 4),
        ("none", "hop", None, 5),
        ("none", "tokens-lost", None, 6),
        ("redis-restart", "hop", Some(InstanceDown), 1),
    ]));
    report::accounting::check(&run).expect("balances");
    let number = |claim| cell(&run, claim).number;
    assert!(
        number(Claim::LossOnRestart).starts_with("3 sessions lost"),
        "{}",
        number(Claim::LossOnRestart)
    );
    assert_eq!(
        number(Claim::LossOnStoreLoss),
        "42 sessions lost across redis-restart (38 in a store fault's window, 4 later, \
         when their browsers came back)"
    );
    assert!(
        number(Claim::CrossInstance)
            .starts_with("6 losses on a hop (1 after their instance went down)"),
        "{}",
        number(Claim::CrossInstance)
    );
    assert_eq!(
        number(Claim::OtherLosses),
        "19 session losses: 17 outside every fault window, 2 in instance-restart app-1; \
         6 of them with the session kept and its tokens gone"
    );
    for claim in [
        Claim::LossOnRestart,
        Claim::LossOnStoreLoss,
        Claim::CrossInstance,
        Claim::OtherLosses,
    ] {
        assert_eq!(cell(&run, claim).seen, Seen::Observed, "{claim:?}");
    }
    // Each part links an example of its own.
    let family = run
        .anomalies
        .iter()
        .find(|a| a.kind == Kind::SessionLoss)
        .expect("family");
    let example = |claim| {
        let (kind, i) = cell(&run, claim).example.expect("an example");
        assert_eq!(kind, Kind::SessionLoss);
        &family.examples[i]
    };
    assert_eq!(example(Claim::LossOnRestart).between, Some(InstanceDown));
    assert!(
        example(Claim::LossOnStoreLoss).fault_window.as_deref() == Some("redis-restart")
            || example(Claim::LossOnStoreLoss).between == Some(StoreLost)
    );
    assert_eq!(example(Claim::CrossInstance).facet.as_deref(), Some("hop"));
    assert_eq!(example(Claim::CrossInstance).fault_window, None);
    assert_eq!(example(Claim::OtherLosses).between, None);
    // The verdict names every observed row with its number.
    let page = report::render(std::slice::from_ref(&run)).expect("renders");
    let verdict = &page[page.find("id=\"verdict-o0\"").expect("verdict")..];
    let verdict = &verdict[..verdict.find("</p>").expect("ends")];
    for text in [
        "loss when a store restarts or loses its data (42 ",
        "other session losses (19 ",
        "loss on an instance restart (3 ",
    ] {
        assert!(verdict.contains(text), "{text}: {verdict}");
    }
    assert!(
        row(&page, "loss when a store restarts or loses its data").contains("42 sessions lost")
    );
}

#[test]
fn a_file_from_before_groups_were_kept_still_balances() {
    use report::matrix::{Claim, cell};
    let mut family = losses(&[
        ("redis-restart", "same-instance", None, 38),
        ("none", "same-instance", None, 11),
        ("instance-restart app-1", "hop", None, 4),
        ("none", "tokens-lost", None, 2),
    ]);
    family.groups.clear();
    family.across_instance_down = None;
    for example in &mut family.examples {
        example.facet = None;
        example.between = None;
    }
    let run = with_family(family);
    report::accounting::check(&run).expect("balances");
    let number = |claim| cell(&run, claim).number;
    // The losses in the restart's window were answered by another instance:
    // a failover, counted as a hop.
    assert!(
        number(Claim::LossOnRestart).starts_with("0 session losses in restart windows"),
        "{}",
        number(Claim::LossOnRestart)
    );
    assert!(
        number(Claim::CrossInstance)
            .starts_with("4 losses on a hop (4 after their instance went down)"),
        "{}",
        number(Claim::CrossInstance)
    );
    assert!(
        number(Claim::LossOnStoreLoss).starts_with("38 sessions lost"),
        "{}",
        number(Claim::LossOnStoreLoss)
    );
    assert!(
        number(Claim::OtherLosses).starts_with("13 session losses: 13 outside"),
        "{}",
        number(Claim::OtherLosses)
    );
}

#[test]
fn orphans_split_between_memory_growth_and_the_stores() {
    use report::matrix::{Claim, cell};
    let mut run = fixtures().remove(3);
    let orphans = run
        .anomalies
        .iter_mut()
        .find(|a| a.kind == Kind::Orphan)
        .expect("family");
    orphans.count = 10;
    orphans
        .facets
        .insert(harness::check::resident::TOKEN_CACHE.into(), 7);
    orphans.facets.insert("session".into(), 3);
    orphans.by_window.insert("none".into(), 10);
    run.leaks.sessions_expired = 4;
    report::accounting::check(&run).expect("balances");
    assert!(
        cell(&run, Claim::MemoryGrowth)
            .number
            .contains(": 7 in instance memory")
    );
    assert_eq!(
        cell(&run, Claim::Orphans).number,
        "3 left behind in the stores"
    );
}

#[test]
fn a_report_that_would_leave_anomalies_out_is_refused() {
    use report::accounting::{Unbalanced, balance};
    use report::matrix::{self, Claim};
    let run = with_family(losses(&[
        ("redis-restart", "same-instance", None, 38),
        ("none", "same-instance", None, 11),
    ]));
    // The matrix as it was: no row for a store's loss, none for the rest.
    let old: Vec<_> = matrix::cells(&run)
        .into_iter()
        .filter(|(c, _)| !matches!(c, Claim::LossOnStoreLoss | Claim::OtherLosses))
        .collect();
    let error = balance(&run, &old, &matrix::OTHER).expect_err("49 losses in no cell");
    assert!(
        matches!(
            error,
            Unbalanced::Family {
                kind: Kind::SessionLoss,
                count: 49,
                shown: 0,
                ..
            }
        ),
        "{error}"
    );
    // A family counted twice is refused as well.
    let mut twice = matrix::cells(&run);
    twice.push((Claim::OtherLosses, matrix::cell(&run, Claim::OtherLosses)));
    assert!(balance(&run, &twice, &matrix::OTHER).is_err());
    // A file whose parts do not add up to its count is not rendered.
    let mut broken = run.clone();
    let family = broken
        .anomalies
        .iter_mut()
        .find(|a| a.kind == Kind::SessionLoss)
        .expect("family");
    family.count = 52;
    let message = report::render(&[run.clone(), broken])
        .expect_err("refused")
        .to_string();
    assert!(
        message.contains("option4 (2)")
            && message.contains(
                "session-loss: the results count 52, the claims matrix and the verdict show 49"
            ),
        "{message}"
    );
    // And through the command, which writes nothing.
    let dir = tempfile::tempdir().expect("dir");
    let mut broken = run;
    broken
        .anomalies
        .iter_mut()
        .find(|a| a.kind == Kind::SessionLoss)
        .expect("family")
        .count = 52;
    let file = dir.path().join("broken.json");
    broken.write(&file).expect("write");
    let out = dir.path().join("r.html");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("report")
        .arg(&file)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("the results count 52"),
        "{output:?}"
    );
    assert!(!out.exists());
}

#[test]
fn a_row_unknown_everywhere_for_one_reason_says_it_once() {
    let mut runs = fixtures();
    for run in &mut runs {
        run.leaks.sessions_expired = 0;
        run.unchecked.retain(|u| u.kind != Kind::Orphan);
    }
    let page = report::render(&runs).expect("renders");
    let memory = row(&page, "memory growth");
    assert_eq!(
        memory.matches("no session ended without a logout").count(),
        1,
        "{memory}"
    );
    assert!(memory.contains("unknown in every column"), "{memory}");
    assert_eq!(
        memory.matches("<strong>unknown</strong>").count(),
        4,
        "{memory}"
    );
    // Each run's own figures stay in its cell.
    for run in &runs {
        let live = format!("{} live", run.leaks.live_sessions_at_end);
        assert!(memory.contains(&live), "{live}: {memory}");
    }
    // A reason one cell alone gives is said in it; one that several give,
    // once for them.
    runs[1].leaks.sessions_expired = 3;
    runs[1].unchecked.push(results::Unchecked {
        kind: Kind::Orphan,
        reason: "a target's store layout is its own".into(),
    });
    let page = report::render(&runs).expect("renders");
    let memory = row(&page, "memory growth");
    assert!(!memory.contains("unknown in every column"), "{memory}");
    assert!(
        memory.contains("unknown in 3 columns: no session ended"),
        "{memory}"
    );
    assert_eq!(
        memory.matches("no session ended without a logout").count(),
        1,
        "{memory}"
    );
    assert_eq!(
        memory.matches("store layout is its own").count(),
        1,
        "{memory}"
    );
    assert!(
        memory.contains("<strong>unknown: what the stores keep"),
        "{memory}"
    );
}

#[test]
fn a_target_is_named_as_its_file_names_it() {
    let runs = fixtures();
    let mut target = as_target(&runs[3], "heldout-express", "option4");
    target.topology.session_backend.clear();
    target.topology.token_cache.clear();
    target.topology.concurrency.clear();
    target.topology.file = Some("targets/heldout/express.toml".into());
    target.topology.description = Some("An Express app written apart, connect-redis only.".into());
    let page = report::render(&[runs[3].clone(), target]).expect("renders");
    let verdict = &page[page.find("id=\"verdict-o1\"").expect("verdict")..];
    let verdict = &verdict[..verdict.find("</p>").expect("ends")];
    assert!(
        verdict.contains(
            "<strong>heldout-express</strong> (an app the harness started, target file \
             <code>targets/heldout/express.toml</code>, models option4: An Express app written \
             apart, connect-redis only.): "
        ),
        "{verdict}"
    );
    assert!(!page.contains("( sessions"), "no empty topology fields");
    assert!(!page.contains("sessions , token cache"), "nor in the facts");
}

#[test]
fn merged_results_keep_their_groups_and_still_balance() {
    use harness::results::LossCause::StoreLost;
    use report::matrix::{Claim, cell};
    let one = with_family(losses(&[
        ("redis-restart", "same-instance", None, 7),
        ("none", "same-instance", Some(StoreLost), 2),
        ("none", "hop", None, 1),
    ]));
    let mut other = with_family(losses(&[
        ("redis-restart", "same-instance", None, 3),
        ("none", "tokens-lost", None, 4),
    ]));
    other.sources[0].name = "load-machine-2".into();
    other.timelines[0].source = "load-machine-2".into();
    let merged = results::merge(vec![one.clone(), other.clone()]).expect("merges");
    report::accounting::check(&merged).expect("balances");
    let family = merged
        .anomalies
        .iter()
        .find(|a| a.kind == Kind::SessionLoss)
        .expect("family");
    assert_eq!(family.groups.iter().map(|g| g.count).sum::<u64>(), 17);
    assert!(
        cell(&merged, Claim::LossOnStoreLoss)
            .number
            .starts_with("12 sessions lost")
    );
    // The examples of both, one of each of the four groups among them.
    assert_eq!(family.examples.len(), 5, "{:?}", family.examples);
    let mut keys: Vec<_> = family.examples.iter().map(results::Example::key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 4, "{:?}", family.examples);
    // With a file that kept no groups, the merge keeps none and is split
    // from its one-way counts.
    let mut legacy = other;
    for family in &mut legacy.anomalies {
        family.groups.clear();
    }
    let merged = results::merge(vec![one, legacy]).expect("merges");
    let family = merged
        .anomalies
        .iter()
        .find(|a| a.kind == Kind::SessionLoss)
        .expect("family");
    assert!(family.groups.is_empty());
    report::accounting::check(&merged).expect("balances");
}

#[test]
fn orphans_are_shown_apart_by_the_store_tier_that_held_them() {
    let mut run = fixtures().remove(3);
    let orphans = run
        .anomalies
        .iter_mut()
        .find(|a| a.kind == Kind::Orphan)
        .expect("family");
    orphans.count = 3;
    orphans.facets = [("redis".to_owned(), 2), ("postgres".to_owned(), 1)].into();
    orphans.by_window = [(results::NO_WINDOW.to_owned(), 3)].into();
    orphans.groups = [("redis", 2), ("postgres", 1)]
        .into_iter()
        .map(|(facet, count)| results::AnomalyGroup {
            window: results::NO_WINDOW.into(),
            facet: Some(facet.into()),
            between: None,
            count,
        })
        .collect();
    assert_eq!(run.orphans_by_tier(), [("redis", 2), ("postgres", 1)]);
    let summary = harness::bench::summary_table(std::slice::from_ref(&run));
    assert!(
        summary.contains("option4: orphans by store tier: redis 2, postgres 1"),
        "{summary}"
    );
    let number = report::matrix::cell(&run, report::matrix::Claim::MemoryGrowth).number;
    assert!(
        number.contains("3 in the stores") && number.contains("by tier: redis 2, postgres 1"),
        "{number}"
    );
    let page = report::render(&[run]).expect("renders");
    assert!(page.contains("Orphans by store tier"));
    assert!(
        page.contains("<td>redis</td><td class=\"num\">2</td>"),
        "tier rows"
    );
    assert!(page.contains("<td>postgres</td><td class=\"num\">1</td>"));
}
