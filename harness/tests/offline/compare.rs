//! `harness compare` on crafted changes to a real results fixture: a slower
//! request type (judged as a ratio to the reference round trip), a faster
//! one, a new anomaly family, a rise in orphans, and a machine that is
//! slower at everything (which the ratios forgive and absolute limits do not).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::check::Kind;
use harness::results::{self, Results};

fn fixture() -> Results {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/short-option4.json");
    Results::read(&path).expect("fixture")
}

/// Every latency of `text` (a histogram) times `factor`.
fn scaled(text: &str, factor: f64) -> String {
    let histogram = results::decode(text).expect("decodes");
    let mut out = harness::model::latency::histogram();
    for v in histogram.iter_recorded() {
        let value = ((v.value_iterated_to() as f64 * factor) as u64).max(1);
        out.record_n(value, v.count_at_value()).expect("in range");
    }
    results::encode(&out)
}

fn slow_down(run: &mut Results, kind: Option<&str>, factor: f64) {
    for series in &mut run.requests {
        if kind.is_none_or(|k| series.kind == k) {
            series.histogram = scaled(&series.histogram, factor);
            series.raw_histogram = scaled(&series.raw_histogram, factor);
        }
    }
}

fn compare(dir: &Path, baseline: &Results, current: &Results, flags: &[&str]) -> Output {
    let (b, c) = (dir.join("baseline.json"), dir.join("current.json"));
    baseline.write(&b).expect("write");
    current.write(&c).expect("write");
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("compare")
        .arg(&b)
        .arg(&c)
        .args(flags)
        .output()
        .expect("runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The busiest request type of the fixture.
fn busiest(run: &Results) -> String {
    let mut kinds = run.kinds();
    kinds.sort_by_key(|k| std::cmp::Reverse(run.kind(k).expect("kind").0));
    kinds[0].clone()
}

#[test]
fn the_same_run_passes() {
    let dir = tempfile::tempdir().expect("dir");
    let run = fixture();
    let output = compare(dir.path(), &run, &run, &[]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("verdict: no regression"));
}

#[test]
fn a_slower_request_type_fails_on_its_ratio() {
    let dir = tempfile::tempdir().expect("dir");
    let base = fixture();
    let kind = busiest(&base);
    let mut current = base.clone();
    slow_down(&mut current, Some(&kind), 3.0);
    let output = compare(
        dir.path(),
        &base,
        &current,
        &["--max-p50-regression", "20%"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(
        text.contains(&format!("REGRESSION in {kind}: p50 / healthz p50")),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("{kind}: p50 / healthz")))
        .expect("row");
    assert!(row.contains("WORSE"), "{row}");
    // Markdown for a CI summary says the same.
    let output = compare(
        dir.path(),
        &base,
        &current,
        &["--max-p50-regression", "20%", "--markdown"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("| **WORSE** |"));
    assert!(stdout(&output).contains("| metric | baseline | current |"));
}

#[test]
fn a_faster_run_passes_and_says_better() {
    let dir = tempfile::tempdir().expect("dir");
    let base = fixture();
    let kind = busiest(&base);
    let mut current = base.clone();
    slow_down(&mut current, Some(&kind), 0.3);
    let output = compare(dir.path(), &base, &current, &[]);
    assert!(output.status.success(), "{}", stdout(&output));
    let text = stdout(&output);
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("{kind}: p50 / healthz")))
        .expect("row");
    assert!(row.trim_end().ends_with("better"), "{row}");
}

#[test]
fn a_machine_slower_at_everything_passes_unless_absolute_limits_are_asked() {
    let dir = tempfile::tempdir().expect("dir");
    let base = fixture();
    let mut current = base.clone();
    slow_down(&mut current, None, 2.0);
    for reference in &mut current.references {
        reference.histogram = scaled(&reference.histogram, 2.0);
        reference.latency =
            results::Percentiles::of(&results::decode(&reference.histogram).expect("decodes"));
    }
    let output = compare(
        dir.path(),
        &base,
        &current,
        &["--max-p50-regression", "20%"],
    );
    assert!(output.status.success(), "{}", stdout(&output));
    let output = compare(
        dir.path(),
        &base,
        &current,
        &["--max-absolute-p50-regression", "20%"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains(": p50 ms"));
}

#[test]
fn a_new_anomaly_family_fails_even_with_slack_unless_an_allowance_is_given() {
    let dir = tempfile::tempdir().expect("dir");
    let base = fixture();
    assert_eq!(base.anomaly(Kind::LostUpdate), 0, "option4 loses no update");
    let mut current = base.clone();
    let family = current
        .anomalies
        .iter_mut()
        .find(|a| a.kind == Kind::LostUpdate)
        .expect("family");
    family.count = 1;
    let output = compare(dir.path(), &base, &current, &["--anomaly-slack", "1000%"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("REGRESSION in anomalies: lost-update"));
    let output = compare(dir.path(), &base, &current, &["--anomaly-allowance", "1"]);
    assert!(output.status.success(), "{}", stdout(&output));
    family_count(&mut current, Kind::LostUpdate, 2);
    let output = compare(dir.path(), &base, &current, &["--anomaly-allowance", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
}

fn family_count(run: &mut Results, kind: Kind, n: u64) {
    run.anomalies
        .iter_mut()
        .find(|a| a.kind == kind)
        .expect("family")
        .count = n;
}

#[test]
fn orphans_that_rise_fail_unless_within_the_slack() {
    let dir = tempfile::tempdir().expect("dir");
    let mut base = fixture();
    let set = |run: &mut Results, n: u64| {
        run.anomalies
            .iter_mut()
            .find(|a| a.kind == Kind::Orphan)
            .expect("family")
            .count = n;
    };
    set(&mut base, 4);
    let mut current = base.clone();
    set(&mut current, 5);
    let output = compare(dir.path(), &base, &current, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("REGRESSION in anomalies: orphan"));
    let output = compare(dir.path(), &base, &current, &["--anomaly-slack", "50%"]);
    assert!(output.status.success(), "{}", stdout(&output));
    set(&mut current, 3);
    let output = compare(dir.path(), &base, &current, &[]);
    assert!(
        output.status.success(),
        "fewer orphans: {}",
        stdout(&output)
    );
}

#[test]
fn files_without_reference_round_trips_are_not_judged_on_ratios() {
    let dir = tempfile::tempdir().expect("dir");
    // A results file from before references were measured: the field is absent.
    let base = fixture();
    let mut json = serde_json::to_value(&base).expect("json");
    json.as_object_mut().expect("object").remove("references");
    let old: Results = serde_json::from_value(json).expect("an older file still reads");
    assert!(old.references.is_empty());
    let mut current = base.clone();
    slow_down(&mut current, None, 3.0);
    let output = compare(dir.path(), &old, &current, &[]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("no reference"));
}

/// The row of `metric` in a terminal table.
fn row<'a>(text: &'a str, metric: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(metric))
        .unwrap_or_else(|| panic!("no row {metric} in:\n{text}"))
}

#[test]
fn a_percentile_with_few_samples_beyond_it_is_shown_not_judged() {
    let dir = tempfile::tempdir().expect("dir");
    let base = fixture();
    let kind = busiest(&base);
    let (count, _) = base.kind(&kind).expect("kind");
    assert!(
        (100..1000).contains(&count),
        "the fixture's busiest type has enough samples for p90, not for p99: {count}"
    );
    let mut current = base.clone();
    slow_down(&mut current, Some(&kind), 3.0);
    let only_p99 = [
        "--min-tail",
        "10",
        "--max-p50-regression",
        "1000%",
        "--max-p90-regression",
        "1000%",
        "--max-p99-regression",
        "20%",
    ];
    // p99 of a few hundred samples is a handful of requests: not judged.
    let output = compare(dir.path(), &base, &current, &only_p99);
    assert!(output.status.success(), "{}", stdout(&output));
    let text = stdout(&output);
    let p99 = row(&text, &format!("{kind}: p99 / healthz p99"));
    assert!(p99.contains("under 1000 samples: not judged"), "{p99}");
    assert!(row(&text, &format!("{kind}: p90 / healthz p90")).contains("+1000%"));
    // Asking for one sample beyond it judges it, and the slowdown fails.
    let flags: Vec<&str> = only_p99[2..]
        .iter()
        .copied()
        .chain(["--min-tail", "1"])
        .collect();
    let output = compare(dir.path(), &base, &current, &flags);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains(&format!("REGRESSION in {kind}: p99 / healthz p99")));
}

#[test]
fn every_request_type_together_is_compared_too() {
    let dir = tempfile::tempdir().expect("dir");
    let base = fixture();
    let mut current = base.clone();
    slow_down(&mut current, None, 3.0);
    let output = compare(dir.path(), &base, &current, &["--min-tail", "10"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(row(&text, "all requests: p50 / healthz p50").contains("WORSE"));
    assert!(row(&text, "all requests: p90 / healthz p90").contains("WORSE"));
}

#[test]
fn repeats_are_judged_on_the_best_latency_and_the_worst_anomalies() {
    let dir = tempfile::tempdir().expect("dir");
    let base = fixture();
    let kind = busiest(&base);
    let mut slow = base.clone();
    slow_down(&mut slow, Some(&kind), 3.0);
    let (b, fast_path, slow_path) = (
        dir.path().join("b.json"),
        dir.path().join("r1.json"),
        dir.path().join("r2.json"),
    );
    base.write(&b).expect("write");
    base.write(&fast_path).expect("write");
    slow.write(&slow_path).expect("write");
    let run = |currents: &[&PathBuf]| {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .arg("compare")
            .arg(&b)
            .args(currents)
            .output()
            .expect("runs")
    };
    // One repeat slowed (noise): the other is as fast as the baseline.
    let output = run(&[&slow_path, &fast_path]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("x2 repeats"));
    // Every repeat slowed: a regression.
    let output = run(&[&slow_path, &slow_path]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains(&format!("REGRESSION in {kind}: p50 / healthz p50")));
    // An anomaly in any one repeat fails.
    let mut flawed = base.clone();
    family_count(&mut flawed, Kind::LostUpdate, 1);
    flawed.write(&slow_path).expect("write");
    let output = run(&[&fast_path, &slow_path]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("REGRESSION in anomalies: lost-update"));
}

#[test]
fn a_faster_reference_fails_ratios_unless_the_absolute_time_must_confirm() {
    let dir = tempfile::tempdir().expect("dir");
    let base = fixture();
    // The same requests, beside a healthz round trip twice as fast.
    let mut current = base.clone();
    for reference in &mut current.references {
        reference.histogram = scaled(&reference.histogram, 0.5);
        reference.latency =
            results::Percentiles::of(&results::decode(&reference.histogram).expect("decodes"));
    }
    let output = compare(dir.path(), &base, &current, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let output = compare(dir.path(), &base, &current, &["--confirm-absolute"]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("not confirmed"));
    // A request that really got slower is slower both ways.
    let kind = busiest(&base);
    slow_down(&mut current, Some(&kind), 3.0);
    let output = compare(dir.path(), &base, &current, &["--confirm-absolute"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains(&format!("REGRESSION in {kind}: p50 / healthz p50")));
}

/// `run`'s CPU as if its instances spent `app` seconds each, Redis `redis`
/// and Postgres `postgres`, over its requests.
fn with_cpu(run: &mut Results, app: f64, redis: f64, postgres: f64) {
    use harness::model::cpu::CpuSample;
    let start = CpuSample::default();
    let end = CpuSample {
        instances: [("app-1".to_owned(), app), ("app-2".to_owned(), app)].into(),
        redis: Some(redis),
        postgres: Some(postgres),
        harness: 1.0,
    };
    let requests = run.overall().expect("decodes").0;
    run.cpu = Some(results::CpuUse::between(
        &start,
        &end,
        requests,
        (vec!["app-1".into(), "app-2".into()], true, true),
        &Default::default(),
    ));
}

#[test]
fn cpu_per_1k_requests_is_shown_beside_latency_and_never_judged() {
    let dir = tempfile::tempdir().expect("dir");
    let mut base = fixture();
    with_cpu(&mut base, 1.0, 0.5, 0.25);
    let mut current = fixture();
    with_cpu(&mut current, 3.0, 1.5, 0.75);
    let output = compare(dir.path(), &base, &current, &[]);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "three times the CPU fails nothing:\n{text}"
    );
    let requests = base.cpu.as_ref().expect("set").requests as f64;
    let app = row(&text, "CPU ms per 1k requests: app ");
    assert!(
        app.contains(&format!("{:.1}", 2.0 * 1e6 / requests)) && app.contains("+200.0%"),
        "{app}"
    );
    assert!(app.contains("shown"), "{app}");
    row(&text, "CPU ms per 1k requests: redis");
    row(&text, "CPU ms per 1k requests: postgres");
    row(&text, "CPU ms per 1k requests: harness");
    // A baseline from before CPU was read: shown as such, still not judged.
    base.cpu = None;
    let output = compare(dir.path(), &base, &current, &[]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(
        row(&text, "CPU ms per 1k requests: app ").contains("not measured"),
        "{text}"
    );
}
