//! Option4's refresh lease across instances, on real child processes, with
//! an IdP that revokes a refresh token's family at its second use: one
//! refresh per token whatever happens to the holder, and no request stalls
//! on a lease (a still-valid token is served at once; a dead holder is
//! found out within the lease's TTL).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use app::topology::Topology;
use contract::{Browser, TokenSource};
use harness::model::app::AppUnderTest;
use harness::model::idp::IdpOptions;
use harness::model::ids::{InstanceId, StoreKind};
use harness::model::network::NetworkFaults;
use harness::stage::stack::{Stack, StackSpec};
use mock_idp::config::ReusePolicy;
use mock_idp::faults::{Endpoint, Endpoints, ErrorFault, FaultConfig, LatencyFault};

use crate::common::{self, browser, wait_until};

const APP_1: InstanceId = InstanceId::from_index(0);

/// Ten-second access tokens, renewed in their last three seconds. The app
/// counts a token's life from when its request went out (as MSAL does), so
/// after an IdP call of 3 s a new token has 7 s left: not yet due again.
const LIFETIME: Duration = Duration::from_secs(10);

async fn strict_stack(dir: &tempfile::TempDir) -> Stack {
    strict_stack_with(dir, false).await
}

/// With the network fault proxy between the instances and the stores when `proxied`.
async fn strict_stack_with(dir: &tempfile::TempDir, proxied: bool) -> Stack {
    Stack::up(&StackSpec {
        app: AppUnderTest::Reference(Topology::named("option4").expect("preset")),
        instances: NonZeroUsize::new(2).expect("two"),
        run_dir: dir.path().to_owned(),
        network_proxy: proxied,
        idp: IdpOptions {
            access_token_lifetime: LIFETIME,
            refresh_reuse: ReusePolicy::RevokeFamily,
            ..IdpOptions::default()
        },
        session_idle_timeout: None,
        session_absolute_timeout: None,
    })
    .await
    .expect("stack up (app and mock-idp built beside the test)")
}

/// A number from the IdP's `/stats` at `path` (0 when absent).
async fn idp_count(stack: &Stack, path: &[&str]) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{}/stats", stack.idp_url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    path.iter()
        .try_fold(&stats, |node, key| node.get(key))
        .and_then(|v| match v {
            serde_json::Value::Object(o) => Some(o.values().filter_map(|v| v.as_u64()).sum()),
            other => other.as_u64(),
        })
        .unwrap_or(0)
}

async fn refreshes(stack: &Stack) -> u64 {
    idp_count(stack, &["token_calls", "refresh_token", "ok"]).await
}

async fn reuses(stack: &Stack) -> u64 {
    idp_count(stack, &["refresh_reuse"]).await
}

/// `/profile` on `base`: its status, token source and how long it took.
async fn timed_profile(user: &Browser, base: &str) -> (u16, Option<TokenSource>, Duration) {
    let started = Instant::now();
    let answer = user.profile(base).await.expect("an answer");
    let took = started.elapsed();
    (answer.status, answer.reply().map(|p| p.token_source), took)
}

/// The expiry (Unix seconds) of the access token `user` holds, as the API saw it.
async fn token_expiry(user: &Browser, base: &str) -> u64 {
    user.profile(base)
        .await
        .expect("profile")
        .into_reply()
        .expect("a profile")
        .api
        .exp
}

/// Sleeps until `before` ahead of the Unix second `exp`.
async fn until_before(exp: u64, before: Duration) {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(exp) - before;
    if let Ok(wait) = at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

/// The holder dies mid-refresh (its IdP calls answered 503 with a
/// Retry-After, so none was redeemed): the other instance serves the
/// cached token while it is valid, then takes the lease as soon as the dead
/// holder's expires, and refreshes once. No family is revoked, and no
/// request waits longer than the lease's TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_that_dies_mid_refresh_costs_no_family_and_no_stall() {
    let dir = tempfile::tempdir().expect("dir");
    let mut stack = strict_stack(&dir).await;
    let (app1, app2) = (stack.instances[0].url(), stack.instances[1].url());
    let user = browser();
    user.sign_in(&app2, "alice").await.expect("sign in");
    // Due for renewal (under 3 s left), still usable (over 1 s) for 0.3 s:
    // app-2 will need the lease while the dead holder's has not expired.
    until_before(
        token_expiry(&user, &app2).await,
        Duration::from_millis(1300),
    )
    .await;

    stack
        .set_idp_faults(&FaultConfig {
            errors: Some(ErrorFault {
                rate: 1.0,
                status: 503,
                retry_after_secs: 1,
                endpoints: Endpoints(vec![Endpoint::Token]),
            }),
            ..FaultConfig::default()
        })
        .await
        .expect("idp faults");
    let holder = {
        let (user, app1) = (user.clone(), app1.clone());
        tokio::spawn(async move { user.profile(&app1).await })
    };
    // app-1 holds the lease once the IdP has refused its first attempt; it
    // is now waiting out the Retry-After, renewing the lease.
    wait_until(
        Duration::from_secs(5),
        "app-1 never called the IdP",
        || async { idp_count(&stack, &["faults_injected", "error", "token"]).await > 0 },
    )
    .await;
    stack.kill_instance(APP_1).await.expect("kill the holder");
    let _ = holder.await;
    stack
        .set_idp_faults(&FaultConfig::default())
        .await
        .expect("idp faults cleared");

    let mut slowest = Duration::ZERO;
    let mut sources = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let (status, source, took) = timed_profile(&user, &app2).await;
        assert_eq!(status, 200, "served throughout");
        slowest = slowest.max(took);
        sources.push(source);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("slowest /profile on app-2 after the holder died: {slowest:?}");
    assert!(
        sources.contains(&Some(TokenSource::Refresh)),
        "app-2 refreshed once the token ran out: {sources:?}"
    );
    assert_eq!(
        refreshes(&stack).await,
        sources
            .iter()
            .filter(|s| **s == Some(TokenSource::Refresh))
            .count() as u64,
        "no refresh beside those that served a request"
    );
    assert_eq!(reuses(&stack).await, 0, "no refresh token used twice");
    // 800 ms of lease at most, plus a loaded machine's request time.
    assert!(slowest < Duration::from_millis(1500), "waited {slowest:?}");
}

/// The holder is alive but its IdP call outlasts the lease's TTL several
/// times over: it keeps renewing the lease, the other instance serves the
/// still-valid token or waits, and never refreshes without the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_holder_keeps_its_lease_and_the_token_is_refreshed_once() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = strict_stack(&dir).await;
    let (app1, app2) = (stack.instances[0].url(), stack.instances[1].url());
    let user = browser();
    user.sign_in(&app1, "alice").await.expect("sign in");
    until_before(
        token_expiry(&user, &app1).await,
        Duration::from_millis(2500),
    )
    .await;
    stack
        .set_idp_faults(&FaultConfig {
            latency: Some(LatencyFault {
                fixed_ms: 3000,
                jitter_ms: 0,
                endpoints: Endpoints(vec![Endpoint::Token]),
            }),
            ..FaultConfig::default()
        })
        .await
        .expect("idp faults");
    let mut both = tokio::task::JoinSet::new();
    for base in [app1, app2] {
        let user = user.clone();
        both.spawn(async move {
            let mut answers = Vec::new();
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                answers.push(timed_profile(&user, &base).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answers
        });
    }
    let answers: Vec<_> = both.join_all().await.into_iter().flatten().collect();
    assert!(
        answers.iter().all(|(status, ..)| *status == 200),
        "{answers:?}"
    );
    let refreshed = answers
        .iter()
        .filter(|(_, source, _)| *source == Some(TokenSource::Refresh))
        .count();
    assert_eq!(refreshed, 1, "one of the two instances refreshed");
    assert_eq!(
        refreshes(&stack).await,
        1,
        "one refresh for the two instances"
    );
    assert_eq!(reuses(&stack).await, 0, "no refresh token used twice");
}

/// A counter from an instance's `/metrics`, summed over its labels.
async fn app_metric(base: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The holder is cut off from Postgres after the IdP rotated the refresh
/// token but before it could store the new one; its lease runs out and the
/// other instance takes it. Postgres still holds the spent refresh token:
/// the new holder applies what the first one left in Redis instead of
/// presenting the spent token again. One refresh, no family revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_postgres_after_the_idp_answered_hands_its_tokens_over() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = strict_stack_with(&dir, true).await;
    let (app1, app2) = (stack.instances[0].url(), stack.instances[1].url());
    let user = browser();
    user.sign_in(&app1, "alice").await.expect("sign in");
    // Due for renewal whichever second the app stamped the token's expiry
    // with (its clock and the IdP's `exp` may differ by a second).
    until_before(
        token_expiry(&user, &app1).await,
        Duration::from_millis(1500),
    )
    .await;
    // The IdP answers app-1's refresh 1.5 s after it is asked.
    stack
        .set_idp_faults(&FaultConfig {
            latency: Some(LatencyFault {
                fixed_ms: 1500,
                jitter_ms: 0,
                endpoints: Endpoints(vec![Endpoint::Token]),
            }),
            ..FaultConfig::default()
        })
        .await
        .expect("idp faults");
    let holder = {
        let (user, app1) = (user.clone(), app1.clone());
        tokio::spawn(async move { user.profile(&app1).await })
    };
    let within = Duration::from_secs(8);
    wait_until(within, "app-1 never called the IdP", || async {
        idp_count(&stack, &["faults_injected", "latency", "token"]).await > 0
    })
    .await;
    // While the IdP call runs, app-1 loses Postgres: its lease renewals
    // fail and the lease expires; the IdP's answer cannot be stored.
    let blackhole = NetworkFaults {
        blackhole: true,
        ..NetworkFaults::default()
    };
    stack
        .set_network(StoreKind::Postgres, &[APP_1], &blackhole)
        .expect("cut app-1 off from Postgres");
    wait_until(within, "app-1's refresh was never answered", || async {
        refreshes(&stack).await > 0
    })
    .await;
    stack
        .set_idp_faults(&FaultConfig::default())
        .await
        .expect("idp faults cleared");
    // What app-1 left for the next holder (it reaches Redis).
    let redis = redis::Client::open(stack.redis.as_ref().expect("redis").url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let handoffs = format!("{}:rot:*", stack.namespace);
    wait_until(within, "app-1 left no handoff in Redis", || {
        // A clone a poll: the connection is shared, and the future owns it.
        let (mut redis, handoffs) = (redis.clone(), handoffs.clone());
        async move {
            let left = common::redis_keys(&mut redis, &handoffs)
                .await
                .expect("keys");
            !left.is_empty()
        }
    })
    .await;

    let (status, source, _) = timed_profile(&user, &app2).await;
    assert_eq!(status, 200, "app-2 serves the handed-over token");
    assert_eq!(
        source,
        Some(TokenSource::Cache),
        "without a refresh of its own"
    );
    assert_eq!(
        app_metric(&app2, "app_refreshes_handed_over_total").await,
        1
    );
    stack
        .set_network(StoreKind::Postgres, &[APP_1], &NetworkFaults::default())
        .expect("app-1 reaches Postgres again");
    let _ = holder.await;
    // Both instances go on with the handed-over tokens.
    for base in [&app1, &app2] {
        let (status, _, _) = timed_profile(&user, base).await;
        assert_eq!(status, 200, "{base}");
    }
    assert_eq!(refreshes(&stack).await, 1, "one refresh in all");
    assert_eq!(reuses(&stack).await, 0, "no refresh token used twice");
}
