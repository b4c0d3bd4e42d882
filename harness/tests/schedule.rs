//! Fault schedules from scenario files run against a real stack: each step
//! happens on time, is felt, is undone after its `for`, and lands on the timeline.

use std::path::Path;
use std::time::{Duration, Instant};

use harness::schedule::FaultSchedule;

mod common;
use common::{browser, sign_in, up};

async fn timed_get(browser: &reqwest::Client, url: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = browser
        .get(url)
        .send()
        .await
        .expect("answers")
        .status()
        .as_u16();
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_idp_outage_and_redis_latency_are_felt_then_undone() {
    let schedule = FaultSchedule::parse(
        r#"
[[faults]]
at = "0s"
action = "idp"
set = { outage = { endpoints = ["token"] } }
for = "2s"

[[faults]]
at = "0s"
action = "network"
store = "redis"
set = { latency = "150ms" }
for = "2s"
"#,
        "inline.toml",
    )
    .expect("parses");
    schedule.check("option4", 1).expect("fits");
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = up("option4", 1, &dir, schedule.needs_network_proxy()).await;
    let base = format!("http://127.0.0.1:{}", stack.instances[0].port);
    let browser = browser();
    sign_in(&browser, &base).await;
    let (_, normal) = timed_get(&browser, &format!("{base}/profile")).await;

    let probe = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Another scope needs a refresh, which the outage refuses; Redis is slow.
        timed_get(&browser, &format!("{base}/data/reports")).await
    };
    let (timeline, (during_status, during_time)) =
        tokio::join!(schedule.run(&mut stack, |_| {}), probe);

    assert_eq!(during_status, 503, "the token endpoint is down");
    assert!(
        during_time >= Duration::from_millis(150),
        "Redis is 150 ms away: {during_time:?} (normal {normal:?})"
    );
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
    assert!(timeline[1].at_ms < 1000.0, "{timeline:?}");
    assert!(
        timeline[2].at_ms >= 2000.0 && timeline[2].at_ms < 3500.0,
        "undone after 2 s: {timeline:?}"
    );

    let (after_status, after_time) = timed_get(&browser, &format!("{base}/data/reports")).await;
    assert_eq!(after_status, 200, "the outage is over");
    let (_, profile_after) = timed_get(&browser, &format!("{base}/profile")).await;
    assert!(
        profile_after < Duration::from_millis(150),
        "latency cleared: {profile_after:?} ({after_time:?} with a refresh)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_is_kept_on_the_timeline_and_the_rest_still_run() {
    // Not checked against the topology on purpose: option1 has no Redis.
    let schedule = FaultSchedule::parse(
        "[[faults]]\nat = \"0s\"\naction = \"redis-flush\"\n\n\
         [[faults]]\nat = \"100ms\"\naction = \"instance-restart\"\ninstance = 1\n",
        "inline.toml",
    )
    .expect("parses");
    assert!(
        schedule.check("option1", 1).is_err(),
        "check would refuse it"
    );
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = up("option1", 1, &dir, schedule.needs_network_proxy()).await;
    let pid = stack.instances[0].process.pid();
    let mut seen = Vec::new();
    let timeline = schedule
        .run(&mut stack, |step| seen.push(step.to_string()))
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
    assert_ne!(stack.instances[0].process.pid(), pid, "restarted");
    assert!(seen[0].contains("redis-flush: FAILED"), "{seen:?}");
    assert!(seen[1].contains("instance-restart app-1: ok"), "{seen:?}");
}

#[test]
fn the_example_scenario_files_are_valid() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut checked = 0;
    for entry in std::fs::read_dir(&folder).expect("scenarios folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let schedule = FaultSchedule::from_file(&path).expect("valid");
            schedule.check("option4", 3).expect("fits option4 x 3");
            checked += 1;
        }
    }
    assert!(checked >= 1, "no scenario files in {}", folder.display());
}
