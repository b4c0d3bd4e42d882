//! A Redis link's direct connection against a real Redis: an idle link's
//! requests take it, concurrent ones share the multiplexed connection, and
//! no reply ever pairs with another request (after a caller gives up
//! mid-exchange, or after a cut).

use std::time::{Duration, Instant};

use app::store::redis_link::RedisLink;

use crate::common::{Cuttable, free_port, host_port, redis_server, redis_url, unique, via};

fn link(url: &str) -> RedisLink {
    RedisLink::new(
        redis::Client::open(url).expect("url"),
        Duration::from_millis(500),
    )
}

async fn get(link: &RedisLink, key: &str) -> redis::RedisResult<Option<String>> {
    let key = key.to_owned();
    link.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
        .await
        .map(|(value, _)| value)
}

async fn set(link: &RedisLink, key: &str, value: &str) {
    let (key, value) = (key.to_owned(), value.to_owned());
    link.run(|mut c| async move {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut c)
            .await
    })
    .await
    .expect("SET");
}

/// Calls until the direct connection answers one (it is made in the
/// background after the link's first call).
async fn until_direct(link: &RedisLink, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = link.direct_served();
    while link.direct_served() == before {
        assert!(Instant::now() < deadline, "no direct connection within 5 s");
        let _ = get(link, key).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_idle_link_answers_directly_and_concurrent_callers_share_the_multiplexed_connection() {
    let link = link(&redis_url());
    let key = unique("direct");
    set(&link, &key, "one").await;
    until_direct(&link, &key).await;

    let before = link.direct_served();
    for _ in 0..100 {
        assert_eq!(get(&link, &key).await.expect("GET"), Some("one".into()));
    }
    assert_eq!(
        link.direct_served() - before,
        100,
        "sequential calls go direct"
    );

    // Polled together, the first takes the direct connection and the others
    // find it busy: they go through the multiplexed one, all answered right.
    let before = link.direct_served();
    let keys: Vec<String> = (0..50).map(|i| format!("{key}:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        set(&link, k, &i.to_string()).await;
    }
    let before_gets = link.direct_served();
    let answers = futures::future::join_all(keys.iter().map(|k| get(&link, k))).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.expect("GET"), Some(i.to_string()));
    }
    assert!(
        before_gets - before >= 50,
        "the SETs went direct one by one"
    );
    assert_eq!(
        link.direct_served() - before_gets,
        1,
        "one of 50 concurrent GETs direct"
    );
}

#[tokio::test]
async fn a_caller_that_gives_up_mid_exchange_leaves_no_reply_behind_for_the_next() {
    let link = link(&redis_url());
    let key = unique("direct-abandoned");
    set(&link, &key, "kept").await;
    until_direct(&link, &key).await;

    // A blocking pop answers nil after 200 ms; the caller leaves after 20.
    let empty = unique("direct-empty-list");
    let abandoned = tokio::time::timeout(
        Duration::from_millis(20),
        link.run(|mut c| async move {
            redis::cmd("BLPOP")
                .arg(empty)
                .arg(0.2)
                .query_async::<Option<(String, String)>>(&mut c)
                .await
        }),
    )
    .await;
    assert!(abandoned.is_err(), "the pop was abandoned");

    // Had the connection gone back to the slot, the next read on it would
    // get the pop's late nil for its own reply.
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        assert_eq!(get(&link, &key).await.expect("GET"), Some("kept".into()));
    }
    until_direct(&link, &key).await;
    assert_eq!(get(&link, &key).await.expect("GET"), Some("kept".into()));
}

#[tokio::test]
async fn after_a_cut_the_link_and_its_direct_connection_come_back_and_answer_right() {
    let upstream = redis_url();
    let proxy = Cuttable::to(&host_port(&upstream)).await;
    let link = link(&via(&upstream, proxy.addr));
    let key = unique("direct-cut");
    set(&link, &key, "before").await;
    until_direct(&link, &key).await;

    proxy.cut();
    assert!(get(&link, &key).await.is_err(), "a cut link fails");
    proxy.restore();

    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&link, &key).await.is_err() {
        assert!(Instant::now() < deadline, "the link came back within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_direct(&link, &key).await;
    set(&link, &key, "after").await;
    assert_eq!(get(&link, &key).await.expect("GET"), Some("after".into()));
}

#[tokio::test]
async fn a_direct_connection_authenticates_and_selects_the_urls_database() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let _server = redis_server(port, dir.path(), &["--requirepass", "s3cret"]);

    let link = link(&format!("redis://:s3cret@127.0.0.1:{port}/3"));
    set(&link, "k", "shared").await;
    until_direct(&link, "k").await;
    set(&link, "direct", "in db 3").await;
    assert!(link.direct_served() >= 2, "the SET went direct");

    let other = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{port}/3")).expect("url");
    let mut other = other
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let value: Option<String> = redis::cmd("GET")
        .arg("direct")
        .query_async(&mut other)
        .await
        .expect("GET");
    assert_eq!(value.as_deref(), Some("in db 3"));
}

#[tokio::test]
async fn a_direct_connection_the_server_closed_while_idle_is_not_used_and_is_made_again() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    // Redis closes a client idle for over a second.
    let _server = redis_server(port, dir.path(), &["--timeout", "1"]);
    let link = link(&format!("redis://127.0.0.1:{port}"));
    set(&link, "k", "v").await;
    until_direct(&link, "k").await;

    // The multiplexed connection kept busy (a transaction never goes
    // direct) while the direct one idles until the server closes it.
    let idle_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < idle_until {
        link.run(|mut c| async move {
            redis::pipe()
                .atomic()
                .cmd("PING")
                .query_async::<Vec<String>>(&mut c)
                .await
        })
        .await
        .expect("a transaction on the multiplexed connection");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = link.direct_served();
    assert_eq!(get(&link, "k").await.expect("GET"), Some("v".into()));
    assert_eq!(link.direct_served(), before, "the closed one was not used");
    until_direct(&link, "k").await;
}
