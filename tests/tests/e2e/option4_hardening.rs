//! Option4 against someone who can read its stores, against idle sessions and
//! abandoned sign-ins, and its logout: real Redis and Postgres, through the
//! app over HTTP.

use std::time::Duration;

use app::session::SessionSettings;
use app::topology::Topology;
use e2e_tests::{InProcessStack, browser, database_url, redis_url, sign_in, status};
use mock_idp::IdpConfig;

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Every key of the stack's namespace in Redis, without the namespace prefix.
async fn redis_keys(stack: &InProcessStack) -> Vec<String> {
    let mut connection = redis().await;
    let prefix = format!("{}:", stack.namespace);
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .expect("scan");
        keys.extend(found.into_iter().map(|k| k[prefix.len()..].to_owned()));
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// The live keys of the stack's namespace in Postgres.
async fn postgres_keys(stack: &InProcessStack) -> Vec<String> {
    let output = std::process::Command::new("psql")
        .arg(database_url())
        .args(["-At", "-c"])
        .arg(format!(
            "SELECT key FROM kv_store WHERE ns = '{}' AND NOT deleted AND (expires_at IS NULL OR expires_at > {})",
            stack.namespace,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis()
        ))
        .output()
        .expect("psql runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn option4() -> Topology {
    Topology::preset("option4").expect("preset")
}

fn sessions(idle: u64, absolute: u64, secure: bool) -> SessionSettings {
    SessionSettings {
        cookie_name: "app_session".into(),
        cookie_secure: secure,
        idle_timeout: Duration::from_secs(idle),
        absolute_timeout: Duration::from_secs(absolute),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_name_read_from_redis_or_postgres_is_useless_as_a_cookie() {
    let stack = InProcessStack::start("option4", 1).await;
    let user = sign_in(&stack, 0, "mallory-target").await;
    assert_eq!(status(&user, &stack.url(0, "/profile")).await, 200);
    let real_id = user.cookie(&stack.base(0), "app_session").expect("cookie");

    let mut names = redis_keys(&stack).await;
    names.extend(postgres_keys(&stack).await);
    assert!(
        names.iter().any(|k| k.starts_with("sess:")) && names.iter().any(|k| k.starts_with("tc:")),
        "the session and its token partition are stored: {names:?}"
    );
    for name in &names {
        assert!(
            !name.contains(&real_id),
            "the session id itself is stored: {name}"
        );
        let digest = name.rsplit(':').next().expect("a name");
        for replayed in [digest, name.as_str()] {
            let thief = browser();
            thief
                .set_cookie(&stack.base(0), &format!("app_session={replayed}"))
                .expect("cookie");
            for path in ["/profile", "/cart"] {
                assert_eq!(
                    status(&thief, &stack.url(0, path)).await,
                    401,
                    "{replayed} as the cookie on {path}"
                );
            }
        }
    }
    assert_eq!(status(&user, &stack.url(0, "/profile")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_idles_out_leaves_no_token_partition_and_an_active_one_keeps_it() {
    // Idle timeout 2 s, absolute 60 s: the partition's TTL is the session's.
    let stack = InProcessStack::start_with_sessions(
        option4(),
        IdpConfig::default(),
        1,
        sessions(2, 60, false),
    )
    .await;
    let idle = sign_in(&stack, 0, "idle").await;
    let active = sign_in(&stack, 0, "active").await;
    assert_eq!(status(&idle, &stack.url(0, "/profile")).await, 200);
    let partitions = |keys: &[String]| keys.iter().filter(|k| k.starts_with("tc:")).count();
    assert_eq!(partitions(&redis_keys(&stack).await), 2);
    // The active browser comes back every 400 ms for 4 s, twice the idle
    // timeout: each touch of its session renews its partition too.
    for _ in 0..10 {
        assert_eq!(status(&active, &stack.url(0, "/profile")).await, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (in_redis, in_postgres) = (redis_keys(&stack).await, postgres_keys(&stack).await);
    assert_eq!(
        (partitions(&in_redis), partitions(&in_postgres)),
        (1, 1),
        "only the active session's partition is left: {in_redis:?} {in_postgres:?}"
    );
    assert_eq!(
        status(&idle, &stack.url(0, "/profile")).await,
        401,
        "idled out"
    );
    let profile = active.profile(&stack.base(0)).await.expect("answers");
    assert_eq!(profile.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_abandoned_sign_ins_store_nothing() {
    let stack = InProcessStack::start("option4", 1).await;
    let before = (
        redis_keys(&stack).await.len(),
        postgres_keys(&stack).await.len(),
    );
    let anonymous = browser();
    let mut longest = 0;
    for _ in 0..2000 {
        let login = anonymous
            .get_once(&stack.url(0, "/login?login_hint=nobody"))
            .await
            .expect("login");
        assert_eq!(login.status, 302);
        let cookie = anonymous
            .cookie(
                &format!("{}/auth/callback", stack.base(0)),
                "app_session_login",
            )
            .expect("the sign-in travels in a cookie");
        longest = longest.max(cookie.len());
    }
    let after = (
        redis_keys(&stack).await.len(),
        postgres_keys(&stack).await.len(),
    );
    // The bound chosen: a sign-in in progress stores nothing at all; its
    // state is a signed cookie of under 1 KB that expires after 10 minutes.
    assert_eq!(after, before, "no store grows");
    assert!(longest < 1024, "{longest} bytes");

    // A tampered sign-in cookie is no sign-in; the real flow still works.
    let forger = browser();
    forger
        .set_cookie(
            &format!("{}/auth/callback", stack.base(0)),
            "app_session_login=eyJ4IjoxfQ.AAAA; Path=/auth/callback",
        )
        .expect("cookie");
    let callback = forger
        .get_once(&stack.url(0, "/auth/callback?code=x&state=y"))
        .await
        .expect("answers");
    assert_eq!(callback.status, 400);
    let user = sign_in(&stack, 0, "after-the-flood").await;
    assert_eq!(status(&user, &stack.url(0, "/profile")).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_by_post_refuses_other_origins_and_its_cookie_keeps_secure() {
    let stack = InProcessStack::start("option4", 1).await;
    let user = sign_in(&stack, 0, "leaving").await;
    let cookie = format!(
        "app_session={}",
        user.cookie(&stack.base(0), "app_session").expect("cookie")
    );
    let client = reqwest::Client::new();
    let post = |origin: Option<&str>| {
        let mut request = client
            .post(stack.url(0, "/logout"))
            .header("cookie", &cookie);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let refused = post(Some("http://evil.example")).await.expect("answers");
    assert_eq!(refused.status(), 403);
    assert_eq!(
        status(&user, &stack.url(0, "/profile")).await,
        200,
        "still signed in"
    );
    let done = post(Some(&stack.base(0))).await.expect("answers");
    assert_eq!(done.status(), 200);
    assert_eq!(
        status(&user, &stack.url(0, "/profile")).await,
        401,
        "signed out"
    );

    let secure = InProcessStack::start_with_sessions(
        option4(),
        IdpConfig::default(),
        1,
        sessions(1800, 3600, true),
    )
    .await;
    for (method, response) in [
        ("GET", client.get(secure.url(0, "/logout")).send().await),
        ("POST", client.post(secure.url(0, "/logout")).send().await),
    ] {
        let response = response.expect("answers");
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            set_cookie.starts_with("app_session=;") && set_cookie.contains("; Secure"),
            "{method}: {set_cookie}"
        );
    }
}
