//! Each option's defining behaviour, over real HTTP with the mock IdP, real Redis and Postgres.

use contract::TokenSource;
use e2e_tests::{InProcessStack, echoed_sid, profile, redis_url, sign_in, status};

/// Sign in on instance 0 and check `/profile` works there.
async fn signed_in(stack: &InProcessStack, user: &str) -> contract::Browser {
    let browser = sign_in(stack, 0, user).await;
    profile(&browser, stack, 0).await;
    browser
}

/// Two requests of one session add a cart item each, interleaved by hand
/// the way a race would: both read the session, then the first writes, then
/// the second writes through the app's own read-modify-write (what
/// `POST /cart` runs). Returns the cart as a later `GET /cart` reads it.
async fn racing_cart_writes(stack: &InProcessStack, browser: &contract::Browser) -> Vec<String> {
    let sessions = &stack.instances[0].app.sessions;
    let id = browser
        .cookie(&stack.base(0), "app_session")
        .expect("session cookie");
    let mut first = sessions.load(&id).await.expect("load").expect("session");
    let mut second = first.clone();
    first.data.cart.push("first".into());
    sessions.save(&mut first).await.expect("the first write");
    let written = sessions
        .update(&mut second, |data| data.cart.push("second".into()), || {})
        .await
        .expect("the second write");
    assert!(written, "the session is still there");
    browser
        .cart(&stack.base(0))
        .await
        .expect("answers")
        .into_reply()
        .expect("cart")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option1_loses_sessions_on_restart_and_hop_and_shares_tokens_between_browsers() {
    let mut stack = InProcessStack::start("option1", 2).await;
    let first = signed_in(&stack, "alice").await;
    assert_eq!(
        status(&first, &stack.url(1, "/profile")).await,
        401,
        "another instance does not know the session"
    );

    // The same user in a second browser: the instance-wide cache, keyed by
    // account, now hands the first browser the second browser's tokens.
    let second = signed_in(&stack, "alice").await;
    let second_profile = profile(&second, &stack, 0).await;
    let first_profile = profile(&first, &stack, 0).await;
    assert_eq!(first_profile.token_source, TokenSource::Cache);
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
        status(&first, &stack.url(0, "/profile")).await,
        401,
        "a restart forgets every session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option2_survives_restart_but_shares_tokens_across_sessions() {
    let mut stack = InProcessStack::start("option2", 2).await;
    let first = signed_in(&stack, "bob").await;
    let second = signed_in(&stack, "bob").await;
    let second_profile = profile(&second, &stack, 0).await;
    let first_profile = profile(&first, &stack, 1).await;
    assert_eq!(
        echoed_sid(&first_profile),
        echoed_sid(&second_profile),
        "one blob for the app: the latest sign-in's tokens serve every session of the user"
    );
    stack.restart(0).await;
    assert_eq!(status(&first, &stack.url(0, "/profile")).await, 200);
    assert_eq!(status(&first, &stack.url(0, "/cart")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option3_keeps_tokens_per_session_but_loses_an_update_under_a_race() {
    let stack = InProcessStack::start("option3", 2).await;
    let first = signed_in(&stack, "carol").await;
    let own = profile(&first, &stack, 0).await;
    let second = signed_in(&stack, "carol").await;
    let other = profile(&second, &stack, 1).await;
    let again = profile(&first, &stack, 1).await;
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

    assert_eq!(
        racing_cart_writes(&stack, &first).await,
        ["second"],
        "last writer wins: the first, acknowledged item is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_survives_restart_and_redis_flush_loses_nothing_and_leaves_nothing_after_logout() {
    let mut stack = InProcessStack::start("option4", 2).await;
    let browser = signed_in(&stack, "dave").await;
    let own = profile(&browser, &stack, 0).await;
    let other = signed_in(&stack, "dave").await;
    let others = profile(&other, &stack, 0).await;
    assert_ne!(
        echoed_sid(&own),
        echoed_sid(&others),
        "tokens are partitioned by session"
    );
    let added = browser
        .add_to_cart(&stack.base(1), "before-restart")
        .await
        .expect("answers");
    assert_eq!(added.status, 200);

    stack.restart(0).await;
    let after_restart = profile(&browser, &stack, 0).await;
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
    let after_flush = profile(&browser, &stack, 1).await;
    assert_eq!(
        after_flush.token_source,
        TokenSource::Cache,
        "the partition came back from Postgres"
    );
    let cart = browser
        .cart(&stack.base(1))
        .await
        .expect("answers")
        .into_reply()
        .expect("cart");
    assert_eq!(cart.items, ["before-restart"]);

    assert_eq!(
        racing_cart_writes(&stack, &browser).await,
        ["before-restart", "first", "second"],
        "compare-and-set: the second writer re-reads and keeps the first's item"
    );
    let metrics = metrics_of(&stack, 1).await;
    for series in [
        "app_store_entries{instance=\"app-2\",store=\"encrypted(redis+postgres)\"}",
        "app_idp_calls_total{instance=\"app-2\",call=\"api\",outcome=\"ok\"}",
    ] {
        assert!(has_line(&metrics, series), "{series} in {metrics}");
    }

    for b in [&browser, &other] {
        let out = b
            .logout(&stack.base(1))
            .await
            .expect("answers")
            .into_reply()
            .expect("logout reply");
        assert!(out.signed_out && out.idp_session_ended, "{out:?}");
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", stack.namespace))
        .query_async(&mut redis)
        .await
        .expect("keys");
    // A delete leaves a tombstone (field `t`, no data `d`) that expires
    // within TOMBSTONE_TTL, so a late copy cannot bring the session back;
    // no record with data may stay.
    for key in &keys {
        let (data, tombstone, ttl): (bool, bool, i64) = redis::pipe()
            .cmd("HEXISTS")
            .arg(key)
            .arg("d")
            .cmd("HEXISTS")
            .arg(key)
            .arg("t")
            .cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .expect("hash fields");
        assert!(
            !data && tombstone,
            "Redis keeps a record after logout: {key}"
        );
        assert!(
            (0..=app::store::sql::TOMBSTONE_TTL.as_millis() as i64).contains(&ttl),
            "{key}: a tombstone that does not expire within its TTL ({ttl} ms)"
        );
    }
    let pool = sqlx_rows(&stack.namespace).await;
    assert_eq!(pool, 0, "Postgres rows left after logout");
}

async fn metrics_of(stack: &InProcessStack, i: usize) -> String {
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
    let stack = InProcessStack::start_with(
        app::topology::Topology::preset("option4").expect("preset"),
        idp,
        1,
    )
    .await;
    let browser = signed_in(&stack, "heidi").await;
    // Past half the token's life (the renewal offset), every request wants a refresh.
    stack.advance(31);
    let base = stack.base(0);
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        // Clones of one browser share its cookie jar: eight requests of one session.
        let (browser, base) = (browser.clone(), base.clone());
        requests.spawn(async move {
            browser
                .profile(&base)
                .await
                .expect("answers")
                .into_reply()
                .expect("a profile")
        });
    }
    let answers = requests.join_all().await;
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
            .filter(|p| p.token_source == TokenSource::Refresh)
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
    let stack = InProcessStack::start_with(
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
        let (browser, base) = (browser.clone(), stack.base(i % 2));
        requests.spawn(async move { browser.profile(&base).await.expect("answers") });
    }
    for answer in requests.join_all().await {
        assert_eq!(answer.status, 200, "{:?}", answer.outcome);
    }
    let stats = stack.idp.idp.stats();
    assert_eq!(
        stats.token_calls.get(&["refresh_token", "ok"]),
        1,
        "one refresh across both instances"
    );
    assert_eq!(stats.refresh_reuse.total(), 0);
}
