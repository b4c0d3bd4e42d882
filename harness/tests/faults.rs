//! Each fault action changes observable behaviour, on a real stack of child processes.

use std::time::{Duration, Instant};

use harness::network::NetworkFaults;
use harness::store_links::Store;
use mock_idp::faults::{Endpoint, Endpoints, FaultConfig, OutageFault};

mod common;
use common::{browser, sign_in, up};

async fn status(browser: &reqwest::Client, url: &str) -> u16 {
    match browser.get(url).send().await {
        Ok(response) => response.status().as_u16(),
        // A keep-alive connection the restarted server closed: retry once, as a browser does.
        Err(_) => browser
            .get(url)
            .send()
            .await
            .expect("answers")
            .status()
            .as_u16(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_or_crashing_an_option1_instance_drops_its_sessions() {
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = up("option1", 1, &dir, false).await;
    let base = format!("http://127.0.0.1:{}", stack.instances[0].port);
    for crash in [false, true] {
        let user = browser();
        sign_in(&user, &base).await;
        assert_eq!(status(&user, &format!("{base}/profile")).await, 200);
        if crash {
            stack.crash_instance(0).await.expect("crash");
        } else {
            stack.restart_instance(0).await.expect("restart");
        }
        assert_eq!(
            status(&user, &format!("{base}/profile")).await,
            401,
            "crash={crash}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_makes_option4_requests_wait_or_fail() {
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = up("option4", 1, &dir, false).await;
    let base = format!("http://127.0.0.1:{}", stack.instances[0].port);
    let user = browser();
    sign_in(&user, &base).await;
    let started = Instant::now();
    assert_eq!(status(&user, &format!("{base}/profile")).await, 200);
    let normal = started.elapsed();

    stack
        .redis
        .as_mut()
        .expect("option4 has redis")
        .pause()
        .expect("pause");
    let started = Instant::now();
    let read = status(&user, &format!("{base}/profile")).await;
    let paused = started.elapsed();
    let write = user
        .post(format!("{base}/cart"))
        .json(&serde_json::json!({"item": "while-paused"}))
        .send()
        .await
        .expect("answers")
        .status()
        .as_u16();
    stack
        .redis
        .as_mut()
        .expect("redis")
        .resume()
        .expect("resume");

    assert!(
        read == 503 || paused > normal + Duration::from_secs(1),
        "a read either fails or waits for the Redis timeout: {read} after {paused:?} (normal {normal:?})"
    );
    assert_eq!(write, 503, "writes need Redis");
    assert_eq!(
        status(&user, &format!("{base}/profile")).await,
        200,
        "back to normal after resume"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_outage_makes_token_refreshes_fail() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = up("option3", 1, &dir, false).await;
    let base = format!("http://127.0.0.1:{}", stack.instances[0].port);
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
    let response = user
        .get(format!("{base}/data/reports"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "idp_unavailable");
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

/// Median time of `n` sequential GETs that must succeed.
async fn median_ok(browser: &reqwest::Client, url: &str, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = browser.get(url).send().await.expect("answers");
        assert_eq!(response.status(), 200, "{url}");
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_network_latency_to_redis_shows_up_in_option4_request_latency() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = up("option4", 2, &dir, true).await;
    let profile = format!("http://127.0.0.1:{}/profile", stack.instances[0].port);
    let user = browser();
    sign_in(
        &user,
        &format!("http://127.0.0.1:{}", stack.instances[0].port),
    )
    .await;
    let normal = median_ok(&user, &profile, 9).await;

    let paths = stack
        .set_network(
            Store::Redis,
            &[0],
            &NetworkFaults {
                latency: Duration::from_millis(100),
                jitter: Duration::from_millis(10),
                ..NetworkFaults::default()
            },
        )
        .expect("proxied");
    assert_eq!(paths, 1, "only app-1's path to Redis");
    let slowed = median_ok(&user, &profile, 9).await;
    let other = format!("http://127.0.0.1:{}/profile", stack.instances[1].port);
    let untouched = median_ok(&user, &other, 9).await;

    stack
        .set_network(Store::Redis, &[], &NetworkFaults::default())
        .expect("cleared");
    let cleared = median_ok(&user, &profile, 9).await;

    assert!(
        slowed >= normal + Duration::from_millis(85),
        "each /profile makes at least one Redis round trip: {slowed:?} vs {normal:?}"
    );
    assert!(
        untouched < slowed - Duration::from_millis(50),
        "app-2's path is untouched: {untouched:?} vs {slowed:?}"
    );
    assert!(
        cleared < slowed - Duration::from_millis(50),
        "clearing restores: {cleared:?} vs {slowed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_store_connections_are_reopened_by_the_app() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = up("option4", 1, &dir, true).await;
    let base = format!("http://127.0.0.1:{}", stack.instances[0].port);
    let user = browser();
    sign_in(&user, &base).await;
    let opened = stack.links.all()[0]
        .link
        .stats()
        .accepted
        .load(std::sync::atomic::Ordering::Relaxed);
    stack.reset_network(Store::Redis, &[]).expect("reset");
    stack.reset_network(Store::Postgres, &[]).expect("reset");
    // The request right after may see the reset (indeterminate); the app must reconnect.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let code = status(&user, &format!("{base}/profile")).await;
        statuses.push(code);
        if code == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    let resets: u64 = stack
        .links
        .all()
        .iter()
        .map(|l| {
            l.link
                .stats()
                .resets
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(
        resets >= 2,
        "connections were open on both paths and reset: {resets}"
    );
    let reopened = stack.links.all()[0]
        .link
        .stats()
        .accepted
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        reopened > opened,
        "a new connection to Redis: {opened} -> {reopened}"
    );
}
