//! The app's store breaker against a real Redis the harness can freeze: an
//! outage costs one timeout, later operations fail at once, and a probe
//! (not a request) finds the store back. Counted, not timed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use app::store::Store;
use app::store::breaker::{Breaker, BreakerSettings};
use app::store::redis::RedisStore;
use harness::stage::services::redis::Redis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_one_timeout_then_fails_fast_until_a_probe_finds_it_back() {
    let dir = tempfile::tempdir().expect("dir");
    let mut redis = Redis::start_private(dir.path()).await.expect("redis");
    let store = RedisStore::connect(&redis.url(), "breaker:").expect("store");
    let breaker = Breaker::new(
        Arc::new(store),
        BreakerSettings {
            timeout: Duration::from_millis(300),
            probe_every: Duration::from_millis(20),
        },
    );
    breaker
        .save("k", b"v", app::store::Expect::Any, None)
        .await
        .expect("up");

    redis.pause().expect("pause");
    // Ten operations in flight when the store freezes: the first to time out
    // takes the others down with it (any started as late as that fail at once).
    let mut in_flight = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let breaker = breaker.clone();
        in_flight.spawn(async move { breaker.load("k").await });
    }
    for outcome in in_flight.join_all().await {
        assert!(outcome.is_err(), "no answer from a frozen Redis");
    }
    let stats = breaker.stats();
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    assert_eq!(count(&stats.outages), 1, "one outage");
    let timed_out = count(&stats.timeouts);
    assert!(timed_out >= 1, "it took a timeout to notice");
    assert_eq!(
        timed_out + count(&stats.cut_short) + count(&stats.fast_failures),
        10,
        "every operation ended with the first timeout or sooner"
    );
    // Later operations do not wait at all.
    let fast_before = count(&stats.fast_failures);
    for _ in 0..5 {
        assert!(breaker.load("k").await.is_err());
    }
    assert_eq!(count(&stats.fast_failures), fast_before + 5);
    assert_eq!(count(&stats.timeouts), timed_out, "no second timeout");
    assert!(breaker.is_open());

    redis.resume().expect("resume");
    let mut waited = 0;
    while breaker.is_open() {
        waited += 1;
        assert!(waited < 500, "the probe finds Redis back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let record = breaker.load("k").await.expect("up again").expect("kept");
    assert_eq!(record.data, b"v");
    assert_eq!(stats.outages.load(Ordering::Relaxed), 1, "still one outage");
}
