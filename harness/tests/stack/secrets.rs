//! What leaves the machine: a smoke run's results file, its history and its
//! HTML report hold none of the cookies or credentials its browsers were
//! handed (a report passed around must not be a set of working sessions),
//! yet one session can still be followed through the history by its label.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::path::Path;

use app::topology::Topology;
use harness::bench::{self, Bench};
use harness::history::{Observed, Request};
use harness::history_file;
use harness::model::app::AppUnderTest;
use harness::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cookie_or_credential_the_browsers_held_reaches_results_history_or_report() {
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.toml");
    let scenario = Scenario::from_file(&smoke).expect("smoke reads");
    let dir = tempfile::tempdir().expect("dir");
    let witness = contract::Witness::default();
    // option1: its sessions are lost at the restart, so the results and the
    // report carry example histories, sign-ins and their cookies' labels in them.
    let outcome = bench::bench(Bench {
        scenario,
        scenario_file: Some(smoke),
        apps: vec![AppUnderTest::Reference(
            Topology::named("option1").expect("preset"),
        )],
        instances: NonZeroUsize::new(2).expect("2"),
        out: dir.path().join("out"),
        source: "secrets-test".into(),
        run_dir: None,
        keep: false,
        history: true,
        witness: Some(witness.clone()),
        shard: None,
        start_at: None,
    })
    .await
    .expect("the smoke run");
    let report = dir.path().join("out/report.html");
    harness::report::write(&outcome.written, &report).expect("report");

    let held = witness.values();
    // Session cookies, the sign-in cookie, the IdP's session cookie, codes, states.
    assert!(held.len() > 30, "the witness saw {} values", held.len());
    let written: Vec<_> = outcome
        .written
        .iter()
        .chain(&outcome.histories)
        .chain([&report])
        .collect();
    assert_eq!(written.len(), 3, "{written:?}");
    for path in &written {
        let text = std::fs::read_to_string(path).expect("written");
        assert!(text.len() > 1000, "{}", path.display());
        for value in &held {
            // As written, and as JSON or a URL would escape it.
            let escaped = value.replace('/', "\\/").replace('%', "%25");
            assert!(
                !text.contains(value.as_str()) && !text.contains(&escaped),
                "{} holds a secret the browsers held ({}...)",
                path.display(),
                &value[..4]
            );
        }
    }

    // Labels instead: stable within the run, so a session is followed.
    let history = history_file::read(&outcome.histories[0]).expect("history reads");
    let sessions: Vec<&str> = history
        .events
        .iter()
        .filter_map(|e| match (&e.request, e.outcome.observed()) {
            (
                Request::SignIn,
                Some(Observed::SignedIn {
                    session: Some(session),
                    ..
                }),
            ) => Some(session.as_str()),
            _ => None,
        })
        .collect();
    assert!(sessions.len() > 10, "{} sign-ins", sessions.len());
    assert!(sessions.iter().all(|s| s.starts_with("session-")));
    let distinct: HashSet<&&str> = sessions.iter().collect();
    assert_eq!(distinct.len(), sessions.len(), "a label per session");
    let tokens = history
        .events
        .iter()
        .filter(|e| matches!(e.outcome.observed(), Some(Observed::Token { sid: Some(sid), jti, .. }) if sid.starts_with("idp-") && jti.starts_with("jti-")))
        .count();
    assert!(tokens > 10, "{tokens} token echoes, labelled");
}
