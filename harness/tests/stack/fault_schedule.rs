//! Fault schedules from scenario files run against a real stack: each step
//! happens, is felt, is undone after its `for`, and lands on the timeline.

use std::num::NonZeroUsize;
use std::path::Path;

use app::topology::Topology;
use harness::faults;
use harness::model::ids::{InstanceId, StoreKind};
use harness::scenario::Scenario;

use crate::common;
use crate::common::{browser, held, sign_in, up};

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_idp_outage_and_redis_latency_are_felt_then_undone() {
    let scenario = Scenario::from_file(&common::scenario_fixture("idp-outage-redis-latency.toml"))
        .expect("parses");
    let option4 = Topology::named("option4").expect("preset");
    scenario.check(&option4, one()).expect("fits");
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = up("option4", 1, &dir, scenario.faults.needs_network_proxy()).await;
    let base = stack.instances[0].url();
    let user = browser();
    sign_in(&user, &base).await;
    let app_1 = InstanceId::from_index(0);
    let held_before = held(&stack, StoreKind::Redis, app_1);

    // Both steps at 0 s come first; the schedule then sleeps until the undos
    // at 2 s, during which this request runs.
    let (started, step) = tokio::sync::oneshot::channel::<()>();
    let probe = async {
        let _ = step.await;
        // Another scope needs a refresh, which the outage refuses.
        user.data(&base, "reports").await.expect("answers")
    };
    let mut started = Some(started);
    let (timeline, during) = tokio::join!(
        faults::run(
            &scenario.faults,
            &mut stack,
            tokio::time::Instant::now(),
            |event| {
                if event.action.starts_with("network") {
                    let _ = started.take().map(|s| s.send(()));
                }
            }
        ),
        probe
    );

    assert_eq!(during.status, 503, "the token endpoint is down");
    let actions: Vec<&str> = timeline.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "idp {\"outage\":{\"endpoints\":[\"token\"]}}",
            "network redis from every instance: latency 150ms",
            "idp-clear",
            "network-clear redis from every instance",
        ]
    );
    assert!(timeline.iter().all(|e| e.error.is_none()), "{timeline:?}");
    assert!(
        timeline[2].at >= 2_000_000,
        "undone after its 2 s: {timeline:?}"
    );
    let held_during = held(&stack, StoreKind::Redis, app_1);
    assert!(held_during > held_before, "Redis replies were held");

    let after = user.data(&base, "reports").await.expect("answers");
    assert_eq!(after.status, 200, "the outage is over");
    assert_eq!(
        held(&stack, StoreKind::Redis, app_1),
        held_during,
        "latency cleared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_is_kept_on_the_timeline_and_the_rest_still_run() {
    // Not checked against the topology on purpose: option1 has no Redis.
    let scenario =
        Scenario::from_file(&common::scenario_fixture("flush-then-restart.toml")).expect("parses");
    let option1 = Topology::named("option1").expect("preset");
    assert!(
        scenario.check(&option1, one()).is_err(),
        "check would refuse it"
    );
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = up("option1", 1, &dir, false).await;
    let pid = stack.instances[0]
        .process
        .as_ref()
        .expect("started here")
        .pid();
    let mut seen = Vec::new();
    let timeline = faults::run(
        &scenario.faults,
        &mut stack,
        tokio::time::Instant::now(),
        |step| seen.push(step.to_string()),
    )
    .await;
    assert_eq!(timeline.len(), 2);
    assert!(
        timeline[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("without redis")),
        "{timeline:?}"
    );
    assert!(timeline[1].error.is_none(), "{timeline:?}");
    assert_ne!(
        stack.instances[0]
            .process
            .as_ref()
            .expect("started here")
            .pid(),
        pid,
        "restarted"
    );
    assert!(seen[0].contains("redis-flush: FAILED"), "{seen:?}");
    assert!(seen[1].contains("instance-restart app-1: ok"), "{seen:?}");
}

#[test]
fn the_example_scenario_files_are_valid() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let option4 = Topology::named("option4").expect("preset");
    let mut checked = 0;
    for entry in std::fs::read_dir(&folder).expect("scenarios folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let scenario = Scenario::from_file(&path).expect("valid");
            // A scenario that names its topology (option4-cluster) is checked on it.
            let topology = scenario.topology.clone().unwrap_or_else(|| option4.clone());
            scenario
                .check(&topology, NonZeroUsize::new(3).expect("3"))
                .expect("fits its topology (else option4) x 3");
            checked += 1;
        }
    }
    assert!(checked >= 1, "no scenario files in {}", folder.display());
}
