//! Each fault action changes observable behaviour, on a real stack of child
//! processes. No assertion here depends on how fast the machine is: effects
//! are counted (requests answered, chunks the proxy held), not timed.

use std::sync::atomic::Ordering;

use harness::model::ids::{InstanceId, StoreKind};
use harness::model::network::NetworkFaults;
use mock_idp::faults::{Endpoint, Endpoints, FaultConfig, OutageFault};

use crate::common::{browser, held, sign_in, status, up};

const APP_1: InstanceId = InstanceId::from_index(0);
const APP_2: InstanceId = InstanceId::from_index(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_or_crashing_an_option1_instance_drops_its_sessions() {
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = up("option1", 1, &dir, false).await;
    let base = stack.instances[0].url();
    for crash in [false, true] {
        let user = browser();
        sign_in(&user, &base).await;
        assert_eq!(status(&user, &format!("{base}/profile")).await, 200);
        if crash {
            stack.crash_instance(APP_1).await.expect("crash");
        } else {
            stack.restart_instance(APP_1).await.expect("restart");
        }
        assert_eq!(
            status(&user, &format!("{base}/profile")).await,
            401,
            "crash={crash}"
        );
    }
}

/// The app's Redis timeout bounds every request while Redis is frozen: all
/// of 20 concurrent cart writes are answered (200 through Postgres, or 503)
/// while the pause lasts, none waits for the resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_does_not_hold_option4_requests_past_the_timeout() {
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = up("option4", 1, &dir, false).await;
    let base = stack.instances[0].url();
    let mut browsers = Vec::new();
    for _ in 0..20 {
        let user = browser();
        sign_in(&user, &base).await;
        browsers.push(user);
    }
    stack
        .redis()
        .expect("option4 has redis")
        .pause()
        .expect("pause");
    let mut writes = tokio::task::JoinSet::new();
    for (i, user) in browsers.iter().enumerate() {
        let (user, base) = (user.clone(), base.clone());
        writes.spawn(async move { user.add_to_cart(&base, &format!("paused-{i}")).await });
    }
    // Generous, and unrelated to the 2 s bound: without the bound they wait forever.
    let answered =
        tokio::time::timeout(std::time::Duration::from_secs(60), writes.join_all()).await;
    let metrics = browsers[0]
        .get(&format!("{base}/metrics"))
        .await
        .expect("metrics");
    stack.redis().expect("redis").resume().expect("resume");
    let answers = answered.expect("every write was answered while Redis stayed paused");
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics
            .lines()
            .any(|l| l == "app_store_outages_total{instance=\"app-1\",store=\"redis\"} 1"),
        "one outage noticed, at the cost of one timeout: {metrics}"
    );
    for answer in answers {
        let answer = answer.expect("an answer, not a dropped connection");
        assert!(
            answer.status == 200 || answer.status == 503,
            "{}: {:?}",
            answer.status,
            answer.outcome
        );
    }
    assert_eq!(
        status(&browsers[0], &format!("{base}/profile")).await,
        200,
        "back to normal after resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_outage_makes_token_refreshes_fail() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = up("option3", 1, &dir, false).await;
    let base = stack.instances[0].url();
    let user = browser();
    sign_in(&user, &base).await;
    stack
        .set_idp_faults(&FaultConfig {
            outage: Some(OutageFault {
                endpoints: Endpoints(vec![Endpoint::Token]),
            }),
            ..FaultConfig::default()
        })
        .await
        .expect("through /admin/faults");
    // A resource of another scope needs a refresh, which the outage refuses.
    let refused = user.data(&base, "reports").await.expect("answers");
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.error().map(|e| e.error.clone()),
        Some(contract::ErrorCode::IdpUnavailable)
    );
    assert_eq!(
        status(&user, &format!("{base}/profile")).await,
        200,
        "cached tokens still serve"
    );
    stack
        .set_idp_faults(&FaultConfig::default())
        .await
        .expect("cleared");
    assert_eq!(
        status(&user, &format!("{base}/data/reports")).await,
        200,
        "refreshes work again"
    );
}

/// Latency on app-1's path to Redis holds app-1's Redis traffic back, not
/// app-2's, and clearing it stops the holding. (How much slower requests
/// get is the benchmark's business, not a test's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_network_latency_to_redis_holds_back_only_that_instances_traffic() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = up("option4", 2, &dir, true).await;
    let (first, second) = (stack.instances[0].url(), stack.instances[1].url());
    let user = browser();
    sign_in(&user, &first).await;
    let profile = |base: &str| format!("{base}/profile");
    assert_eq!(status(&user, &profile(&first)).await, 200);
    assert_eq!(held(&stack, StoreKind::Redis, APP_1), 0, "nothing held yet");

    let paths = stack
        .set_network(
            StoreKind::Redis,
            &[APP_1],
            &NetworkFaults {
                latency: std::time::Duration::from_millis(20),
                jitter: std::time::Duration::from_millis(5),
                ..NetworkFaults::default()
            },
        )
        .expect("proxied");
    assert_eq!(paths, 1, "only app-1's path to Redis");
    assert_eq!(status(&user, &profile(&first)).await, 200);
    let held_on_first = held(&stack, StoreKind::Redis, APP_1);
    assert!(held_on_first > 0, "app-1's Redis replies were held");
    assert_eq!(status(&user, &profile(&second)).await, 200);
    assert_eq!(
        held(&stack, StoreKind::Redis, APP_2),
        0,
        "app-2's path is untouched"
    );

    stack
        .set_network(StoreKind::Redis, &[], &NetworkFaults::default())
        .expect("cleared");
    assert_eq!(status(&user, &profile(&first)).await, 200);
    assert_eq!(
        held(&stack, StoreKind::Redis, APP_1),
        held_on_first,
        "clearing stops the holding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_store_connections_are_reopened_by_the_app() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = up("option4", 1, &dir, true).await;
    let base = stack.instances[0].url();
    let user = browser();
    sign_in(&user, &base).await;
    let stats = |i: usize| stack.links.all()[i].link.stats();
    let opened = stats(0).accepted.load(Ordering::Relaxed);
    stack.reset_network(StoreKind::Redis, &[]).expect("reset");
    stack
        .reset_network(StoreKind::Postgres, &[])
        .expect("reset");
    // The request right after may see the reset (indeterminate); the app must reconnect.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let code = status(&user, &format!("{base}/profile")).await;
        statuses.push(code);
        if code == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    let resets: u64 = (0..stack.links.all().len())
        .map(|i| stats(i).resets.load(Ordering::Relaxed))
        .sum();
    assert!(
        resets >= 2,
        "connections were open on both paths and reset: {resets}"
    );
    let reopened = stats(0).accepted.load(Ordering::Relaxed);
    assert!(
        reopened > opened,
        "a new connection to Redis: {opened} -> {reopened}"
    );
}
