//! Each option's defining behaviour, over real HTTP with the mock IdP, real Redis and Postgres.

use e2e_tests::{Browser, Stack, echoed_sid, redis_url};

/// Sign in on instance 0 and check `/profile` works there.
async fn signed_in(stack: &Stack, user: &str) -> Browser {
    let browser = Browser::new();
    let home = browser.sign_in(stack, 0, user).await;
    assert_eq!(home["signed_in"], true, "{home}");
    let (status, profile) = browser.get(&stack.url(0, "/profile")).await;
    assert_eq!(status, 200, "{profile}");
    browser
}

/// Two concurrent cart writes of one session, many times: how many acknowledged items went missing.
async fn lost_items_under_races(stack: &Stack, browser: &Browser, rounds: usize) -> usize {
    let url = stack.url(0, "/cart");
    let mut acknowledged = Vec::new();
    for round in 0..rounds {
        let (a, b) = (format!("r{round}-a"), format!("r{round}-b"));
        let (ra, rb) = tokio::join!(browser.add_to_cart(&url, &a), browser.add_to_cart(&url, &b));
        for ((status, _), item) in [(ra, a), (rb, b)] {
            if status == 200 {
                acknowledged.push(item);
            }
        }
    }
    let (status, cart) = browser.get(&url).await;
    assert_eq!(status, 200);
    let items: Vec<&str> = cart["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    acknowledged
        .iter()
        .filter(|item| !items.contains(&item.as_str()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option1_loses_sessions_on_restart_and_hop_and_shares_tokens_between_browsers() {
    let mut stack = Stack::start("option1", 2).await;
    let first = signed_in(&stack, "alice").await;
    assert_eq!(
        first.get(&stack.url(1, "/profile")).await.0,
        401,
        "another instance does not know the session"
    );

    // The same user in a second browser: the instance-wide cache, keyed by
    // account, now hands the first browser the second browser's tokens.
    let second = signed_in(&stack, "alice").await;
    let (_, second_profile) = second.get(&stack.url(0, "/profile")).await;
    let (_, first_profile) = first.get(&stack.url(0, "/profile")).await;
    assert_eq!(first_profile["source"], "cache");
    assert_eq!(
        echoed_sid(&first_profile),
        echoed_sid(&second_profile),
        "the first browser presents a token of the second browser's IdP session"
    );

    let metrics = metrics_of(&stack, 0).await;
    for series in [
        "app_store_entries{instance=\"app-1\",store=\"instance_token_cache\"}",
        "app_process_resident_memory_bytes{instance=\"app-1\"}",
    ] {
        assert!(has_line(&metrics, series), "{series} in {metrics}");
    }
    stack.restart(0).await;
    assert_eq!(
        first.get(&stack.url(0, "/profile")).await.0,
        401,
        "a restart forgets every session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option2_survives_restart_but_shares_tokens_across_sessions() {
    let mut stack = Stack::start("option2", 2).await;
    let first = signed_in(&stack, "bob").await;
    let second = signed_in(&stack, "bob").await;
    let (_, second_profile) = second.get(&stack.url(0, "/profile")).await;
    let (_, first_profile) = first.get(&stack.url(1, "/profile")).await;
    assert_eq!(
        echoed_sid(&first_profile),
        echoed_sid(&second_profile),
        "one blob for the app: the latest sign-in's tokens serve every session of the user"
    );
    stack.restart(0).await;
    let (status, after) = first.get(&stack.url(0, "/profile")).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(first.get(&stack.url(0, "/cart")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option3_keeps_tokens_per_session_but_loses_an_update_under_a_race() {
    let stack = Stack::start("option3", 2).await;
    let first = signed_in(&stack, "carol").await;
    let (_, own) = first.get(&stack.url(0, "/profile")).await;
    let second = signed_in(&stack, "carol").await;
    let (_, other) = second.get(&stack.url(1, "/profile")).await;
    let (_, again) = first.get(&stack.url(1, "/profile")).await;
    assert_ne!(
        echoed_sid(&own),
        echoed_sid(&other),
        "two browsers, two IdP sessions"
    );
    assert_eq!(
        echoed_sid(&again),
        echoed_sid(&own),
        "each session keeps its own tokens, on any instance"
    );

    let lost = lost_items_under_races(&stack, &first, 30).await;
    assert!(
        lost > 0,
        "last-writer-wins sessions lose acknowledged items under concurrent writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_survives_restart_and_redis_flush_loses_nothing_and_leaves_nothing_after_logout() {
    let mut stack = Stack::start("option4", 2).await;
    let browser = signed_in(&stack, "dave").await;
    let (_, own) = browser.get(&stack.url(0, "/profile")).await;
    let other = signed_in(&stack, "dave").await;
    let (_, others) = other.get(&stack.url(0, "/profile")).await;
    assert_ne!(
        echoed_sid(&own),
        echoed_sid(&others),
        "tokens are partitioned by session"
    );
    assert_eq!(
        browser
            .add_to_cart(&stack.url(1, "/cart"), "before-restart")
            .await
            .0,
        200
    );

    stack.restart(0).await;
    let (status, after_restart) = browser.get(&stack.url(0, "/profile")).await;
    assert_eq!(status, 200, "{after_restart}");
    assert_eq!(echoed_sid(&after_restart), echoed_sid(&own));

    // A Redis flush of this deployment's keys: reads fall through to Postgres.
    let client = redis::Client::open(redis_url()).expect("redis");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", stack.namespace))
        .query_async(&mut redis)
        .await
        .expect("keys");
    assert!(!keys.is_empty(), "sessions and partitions are in Redis");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .expect("flush");
    let (status, after_flush) = browser.get(&stack.url(1, "/profile")).await;
    assert_eq!(status, 200, "{after_flush}");
    assert_eq!(
        after_flush["source"], "cache",
        "the partition came back from Postgres"
    );
    let (_, cart) = browser.get(&stack.url(1, "/cart")).await;
    assert_eq!(cart["items"][0], "before-restart");

    assert_eq!(
        lost_items_under_races(&stack, &browser, 30).await,
        0,
        "compare-and-set loses nothing"
    );
    let metrics = metrics_of(&stack, 1).await;
    for series in [
        "app_store_entries{instance=\"app-2\",store=\"encrypted(redis+postgres)\"}",
        "app_idp_calls_total{instance=\"app-2\",call=\"api\",outcome=\"ok\"}",
    ] {
        assert!(has_line(&metrics, series), "{series} in {metrics}");
    }

    for b in [&browser, &other] {
        let (status, body) = b.get(&stack.url(1, "/logout")).await;
        assert_eq!(
            (status, &body["idp_session_ended"]),
            (200, &serde_json::json!(true))
        );
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", stack.namespace))
        .query_async(&mut redis)
        .await
        .expect("keys");
    assert!(keys.is_empty(), "Redis keys left after logout: {keys:?}");
    let pool = sqlx_rows(&stack.namespace).await;
    assert_eq!(pool, 0, "Postgres rows left after logout");
}

async fn metrics_of(stack: &Stack, i: usize) -> String {
    reqwest::get(stack.url(i, "/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Whether a sample of this series with a positive value is in the text.
fn has_line(metrics: &str, series: &str) -> bool {
    metrics.lines().any(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| v > 0.0)
    })
}

/// Rows of a namespace in the app's Postgres table.
async fn sqlx_rows(namespace: &str) -> i64 {
    let store = app::store::sql::PostgresStore::connect(&e2e_tests::database_url(), namespace)
        .expect("postgres");
    use app::store::Store;
    store.size().await.expect("size").entries as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_refreshes_once_for_concurrent_requests_of_a_session() {
    let idp = mock_idp::IdpConfig {
        access_token_lifetime_secs: 60,
        refresh_reuse: mock_idp::config::ReusePolicy::RevokeFamily,
        ..mock_idp::IdpConfig::default()
    };
    let stack = Stack::start_with(
        app::topology::Topology::preset("option4").expect("preset"),
        idp,
        1,
    )
    .await;
    let browser = signed_in(&stack, "heidi").await;
    // Past half the token's life (the renewal offset), every request wants a refresh.
    stack.advance(31);
    let url = stack.url(0, "/profile");
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        // Clones of one client share its cookie jar: eight requests of one browser.
        let (http, url) = (browser.http.clone(), url.clone());
        requests.spawn(async move {
            let response = http.get(&url).send().await.expect("answers");
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.expect("json"),
            )
        });
    }
    let answers = requests.join_all().await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let stats = stack.idp.idp.stats();
    assert_eq!(
        stats.token_calls.get(&["refresh_token", "ok"]),
        1,
        "one refresh for eight requests"
    );
    assert_eq!(
        stats.refresh_reuse.total(),
        0,
        "no refresh token was presented twice"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|(_, b)| b["source"] == "refresh")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_refreshes_once_across_instances() {
    let idp = mock_idp::IdpConfig {
        access_token_lifetime_secs: 60,
        refresh_reuse: mock_idp::config::ReusePolicy::RevokeFamily,
        // A slow token endpoint makes the two instances' refreshes overlap for sure.
        faults: mock_idp::faults::FaultConfig {
            latency: Some(mock_idp::faults::LatencyFault {
                fixed_ms: 300,
                jitter_ms: 0,
                endpoints: mock_idp::faults::Endpoints(vec![mock_idp::faults::Endpoint::Token]),
            }),
            ..Default::default()
        },
        ..mock_idp::IdpConfig::default()
    };
    let stack = Stack::start_with(
        app::topology::Topology::preset("option4").expect("preset"),
        idp,
        2,
    )
    .await;
    let browser = signed_in(&stack, "ivan").await;
    stack.advance(31);
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..8 {
        // The same browser, hopping between the two instances.
        let (http, url) = (browser.http.clone(), stack.url(i % 2, "/profile"));
        requests.spawn(async move {
            let response = http.get(&url).send().await.expect("answers");
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.expect("json"),
            )
        });
    }
    for (status, body) in requests.join_all().await {
        assert_eq!(status, 200, "{body}");
    }
    let stats = stack.idp.idp.stats();
    assert_eq!(
        stats.token_calls.get(&["refresh_token", "ok"]),
        1,
        "one refresh across both instances"
    );
    assert_eq!(stats.refresh_reuse.total(), 0);
}
