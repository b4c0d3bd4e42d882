//! Cookies the server did not issue, tampered ciphertexts, and session-id rotation at sign-in.

use e2e_tests::{InProcessStack, browser, database_url, redis_url, sign_in, status};
use sqlx::Connection;

/// The session id a `Set-Cookie` of this page gave the browser, if it set one.
fn session_cookie(browser: &contract::Browser, stack: &InProcessStack) -> Option<String> {
    browser.cookie(&stack.base(0), "app_session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_truncated_and_oversized_cookies_are_signed_out_never_errors() {
    let stack = InProcessStack::start("option4", 1).await;
    let real = sign_in(&stack, 0, "erin").await;
    // An id the server really issued, to truncate and extend.
    let real_id = session_cookie(&real, &stack).expect("session cookie");
    let forged = [
        "A".repeat(43),
        real_id[..20].to_owned(),
        format!("{real_id}x"),
        "../../etc/passwd".to_owned(),
        "x".repeat(8000),
        "%00%ff".to_owned(),
        String::new(),
    ];
    for value in forged {
        let forger = browser();
        forger
            .set_cookie(&stack.base(0), &format!("app_session={value}"))
            .expect("a cookie");
        let answer = forger.profile(&stack.base(0)).await.expect("answers");
        assert_eq!(
            answer.status,
            401,
            "cookie {:?}",
            &value[..value.len().min(20)]
        );
        assert_eq!(
            session_cookie(&forger, &stack).unwrap_or_default(),
            value,
            "a forged id is never adopted or replaced with a session"
        );
    }
    // The callback with a forged cookie does not sign anyone in.
    let forger = browser();
    forger
        .set_cookie(&stack.base(0), &format!("app_session={}", "B".repeat(43)))
        .expect("a cookie");
    let callback = forger
        .get_once(&stack.url(0, "/auth/callback?code=x&state=y"))
        .await
        .expect("answers");
    assert_eq!(callback.status, 400);
    assert_eq!(
        status(&real, &stack.url(0, "/profile")).await,
        200,
        "the real session still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_id_changes_at_sign_in() {
    let stack = InProcessStack::start("option3", 1).await;
    let user = browser();
    // A cookie planted before the sign-in (session fixation): /login stores
    // nothing and sets no session cookie, the sign-in issues a new id.
    let before = "F".repeat(43);
    user.set_cookie(&stack.base(0), &format!("app_session={before}"))
        .expect("cookie");
    let login = user
        .get_once(&stack.url(0, "/login?login_hint=frank"))
        .await
        .expect("login");
    assert_eq!(
        session_cookie(&user, &stack).as_deref(),
        Some(before.as_str())
    );
    let at_idp = user
        .get_once(&login.location.expect("to the IdP"))
        .await
        .expect("authorize");
    let signed_in = user
        .get_once(&at_idp.location.expect("back to the app"))
        .await
        .expect("callback");
    assert_eq!(signed_in.status, 302);
    let after = session_cookie(&user, &stack).expect("a new cookie at sign-in");
    assert_ne!(
        before, after,
        "no fixation: the pre-login id is not the signed-in id"
    );
    let old = browser();
    old.set_cookie(&stack.base(0), &format!("app_session={before}"))
        .expect("cookie");
    assert_eq!(
        status(&old, &stack.url(0, "/profile")).await,
        401,
        "the pre-login id is dead"
    );
    assert_eq!(status(&user, &stack.url(0, "/profile")).await, 200);
}

/// Flips one bit in the middle of a stored ciphertext.
fn tamper(mut data: Vec<u8>) -> Vec<u8> {
    let middle = data.len() / 2;
    data[middle] ^= 0x01;
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_ciphertext_is_a_counted_miss_not_a_crash() {
    let stack = InProcessStack::start("option4", 1).await;
    let user = sign_in(&stack, 0, "grace").await;
    let client = redis::Client::open(redis_url()).expect("redis");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:sess:*", stack.namespace))
        .query_async(&mut redis)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let tamper_copy = async |redis: &mut redis::aio::MultiplexedConnection| {
        let data: Vec<u8> = redis::cmd("HGET")
            .arg(&keys[0])
            .arg("d")
            .query_async(redis)
            .await
            .expect("get");
        let _: () = redis::cmd("HSET")
            .arg(&keys[0])
            .arg("d")
            .arg(tamper(data))
            .query_async(redis)
            .await
            .expect("set");
    };
    let undecryptable = async || {
        let metrics = reqwest::get(stack.url(0, "/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("app_undecryptable_records_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .expect("counted")
    };

    // Only the Redis copy: not served; the session is read from Postgres.
    tamper_copy(&mut redis).await;
    assert_eq!(
        status(&user, &stack.url(0, "/profile")).await,
        200,
        "a bad copy costs a Postgres read, not the session"
    );
    assert_eq!(undecryptable().await, 0);

    // Postgres's record too: nothing readable is left, the session reads as none.
    let store_key = keys[0]
        .strip_prefix(&format!("{}:", stack.namespace))
        .expect("namespaced");
    let mut db = sqlx::PgConnection::connect(&database_url())
        .await
        .expect("postgres");
    let data: Vec<u8> = sqlx::query_scalar("SELECT data FROM kv_store WHERE ns = $1 AND key = $2")
        .bind(&stack.namespace)
        .bind(store_key)
        .fetch_one(&mut db)
        .await
        .expect("row");
    sqlx::query("UPDATE kv_store SET data = $3 WHERE ns = $1 AND key = $2")
        .bind(&stack.namespace)
        .bind(store_key)
        .bind(tamper(data))
        .execute(&mut db)
        .await
        .expect("tamper the row");
    tamper_copy(&mut redis).await;
    assert_eq!(
        status(&user, &stack.url(0, "/profile")).await,
        401,
        "unreadable session reads as none"
    );
    assert_eq!(undecryptable().await, 1);
    let again = sign_in(&stack, 0, "grace").await;
    assert_eq!(
        status(&again, &stack.url(0, "/profile")).await,
        200,
        "the app keeps serving"
    );
}
