//! What each request costs option4 in store round trips, counted by the
//! app's breakers (every Redis pipeline and every Postgres query passes one),
//! on real Redis and Postgres over HTTP: a cached `/profile` in the normal
//! state is one Redis round trip and no Postgres query, a sign-in three and
//! two (it does not read the new session's empty partition), on one Redis server
//! and on a Redis Cluster alike (a session's keys share one slot).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use app::topology::Topology;
use contract::TokenSource;
use e2e_tests::{InProcessStack, Instance, profile, sign_in};
use harness::stage::services::redis_cluster::RedisCluster;
use mock_idp::IdpConfig;

/// Redis and Postgres round trips instance `i` has made so far.
fn trips(instance: &Instance) -> (u64, u64) {
    let count = |kind: &str| {
        instance
            .app
            .breakers
            .iter()
            .filter(|b| b.store_kind() == kind)
            .map(|b| b.stats().round_trips.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    (count("redis"), count("postgres"))
}

/// Waits until the instance trusts its Redis copies (its first coherence polls).
async fn settled(instance: &Instance) {
    let coherence = instance.app.coherence.as_ref().expect("option4 has one");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !coherence.snapshot().trusted {
        assert!(Instant::now() < deadline, "never trusted Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Round trips per request of `n` sequential requests made by `each`.
async fn per_request<F, Fut>(instance: &Instance, n: u64, mut each: F) -> (f64, f64)
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    let (redis, postgres) = trips(instance);
    for i in 0..n {
        each(i).await;
    }
    let (redis_after, postgres_after) = trips(instance);
    (
        (redis_after - redis) as f64 / n as f64,
        (postgres_after - postgres) as f64 / n as f64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_round_trips_per_request_kind_in_the_normal_state() {
    let stack = InProcessStack::start("option4", 1).await;
    assert_normal_state_trips(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option4_on_a_redis_cluster_costs_the_same_round_trips() {
    let dir = tempfile::tempdir().expect("dir");
    let cluster = RedisCluster::start_private(dir.path())
        .await
        .expect("a private cluster");
    let stack = InProcessStack::start_on(
        Topology::preset("option4-cluster").expect("preset"),
        IdpConfig::default(),
        1,
        app::default_session_settings(),
        cluster.url(),
    )
    .await;
    assert_normal_state_trips(&stack).await;
}

async fn assert_normal_state_trips(stack: &InProcessStack) {
    let instance = &stack.instances[0];
    let browser = sign_in(stack, 0, "trips").await;
    settled(instance).await;
    // Once: the copies made before the first poll carry no generation yet.
    assert_eq!(
        profile(&browser, stack, 0).await.token_source,
        TokenSource::Cache
    );

    let profile_cost = per_request(instance, 20, |_| async {
        assert_eq!(
            profile(&browser, stack, 0).await.token_source,
            TokenSource::Cache
        );
    })
    .await;
    let base = stack.base(0);
    let cart_read = per_request(instance, 20, |_| async {
        let page = browser.cart(&base).await.expect("cart");
        assert_eq!(page.status, 200);
    })
    .await;
    let cart_write = per_request(instance, 20, |i| {
        let base = base.clone();
        let browser = &browser;
        async move {
            let page = browser
                .add_to_cart(&base, &format!("item-{i}"))
                .await
                .expect("cart write");
            assert_eq!(page.status, 200);
        }
    })
    .await;
    let sign_ins = per_request(instance, 10, |i| async move {
        sign_in(stack, 0, &format!("trips-{i}")).await;
    })
    .await;
    println!(
        "{} store round trips per request (Redis, Postgres):",
        stack.topology.name
    );
    println!("  GET /profile (cached token): {profile_cost:?}");
    println!("  GET /cart:                   {cart_read:?}");
    println!("  POST /cart:                  {cart_write:?}");
    println!("  sign-in (to the home page):  {sign_ins:?}");
    assert_eq!(
        profile_cost,
        (1.0, 0.0),
        "a cached /profile touches Redis once and Postgres never"
    );
    assert_eq!(cart_read, (1.0, 0.0));
    // Read the session (Redis), compare-and-set it with the partition's TTL
    // renewed (Postgres, one statement), copy both (Redis, one pipeline).
    assert_eq!(cart_write, (2.0, 1.0));
    // Create the session and write its first tokens (each: Postgres, then
    // the Redis copy; the new partition is known empty, not read), then the
    // home page reads the session (Redis).
    assert_eq!(sign_ins, (3.0, 2.0));
}
