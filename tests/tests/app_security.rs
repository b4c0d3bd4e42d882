//! Cookies the server did not issue, tampered ciphertexts, and session-id rotation at sign-in.

use e2e_tests::{Browser, Stack, redis_url};
use reqwest::header::{COOKIE, SET_COOKIE};

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("app_session="))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_truncated_and_oversized_cookies_are_signed_out_never_errors() {
    let stack = Stack::start("option4", 1).await;
    let browser = Browser::new();
    browser.sign_in(&stack, 0, "erin").await;
    let plain = reqwest::Client::new();
    let real_id = {
        // An id the server really issued (a pre-login session's), to truncate and extend.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let login = http
            .get(stack.url(0, "/login?login_hint=erin"))
            .send()
            .await
            .expect("login");
        session_cookie(&login).expect("pre-login cookie")
    };
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
        let response = plain
            .get(stack.url(0, "/profile"))
            .header(COOKIE, format!("app_session={value}"))
            .send()
            .await
            .expect("answers");
        assert_eq!(
            response.status(),
            401,
            "cookie {:?}",
            &value[..value.len().min(20)]
        );
        assert!(
            session_cookie(&response).is_none(),
            "a forged id is never adopted"
        );
    }
    // The callback with a forged cookie does not sign anyone in.
    let response = plain
        .get(stack.url(0, "/auth/callback?code=x&state=y"))
        .header(COOKIE, format!("app_session={}", "B".repeat(43)))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 400);
    assert_eq!(
        browser.get(&stack.url(0, "/profile")).await.0,
        200,
        "the real session still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_id_changes_at_sign_in() {
    let stack = Stack::start("option3", 1).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = http
        .get(stack.url(0, "/login?login_hint=frank"))
        .send()
        .await
        .expect("login");
    let before = session_cookie(&login).expect("pre-login cookie");
    let authorize = login.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let at_idp = http.get(authorize).send().await.expect("authorize");
    let callback = at_idp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let signed_in = http
        .get(callback)
        .header(COOKIE, format!("app_session={before}"))
        .send()
        .await
        .expect("callback");
    assert_eq!(signed_in.status(), 302);
    let after = session_cookie(&signed_in).expect("a new cookie at sign-in");
    assert_ne!(
        before, after,
        "no fixation: the pre-login id is not the signed-in id"
    );
    let old = http
        .get(stack.url(0, "/profile"))
        .header(COOKIE, format!("app_session={before}"))
        .send()
        .await
        .expect("answers");
    assert_eq!(old.status(), 401, "the pre-login id is dead");
    let new = http
        .get(stack.url(0, "/profile"))
        .header(COOKIE, format!("app_session={after}"))
        .send()
        .await
        .expect("answers");
    assert_eq!(new.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_ciphertext_is_a_counted_miss_not_a_crash() {
    let stack = Stack::start("option4", 1).await;
    let browser = Browser::new();
    browser.sign_in(&stack, 0, "grace").await;
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
    let mut data: Vec<u8> = redis::cmd("HGET")
        .arg(&keys[0])
        .arg("d")
        .query_async(&mut redis)
        .await
        .expect("get");
    let middle = data.len() / 2;
    data[middle] ^= 0x01;
    let _: () = redis::cmd("HSET")
        .arg(&keys[0])
        .arg("d")
        .arg(data)
        .query_async(&mut redis)
        .await
        .expect("set");

    assert_eq!(
        browser.get(&stack.url(0, "/profile")).await.0,
        401,
        "unreadable session reads as none"
    );
    let metrics = reqwest::get(stack.url(0, "/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("app_undecryptable_records_total") && l.ends_with(" 1")),
        "{metrics}"
    );
    let again = Browser::new();
    again.sign_in(&stack, 0, "grace").await;
    assert_eq!(
        again.get(&stack.url(0, "/profile")).await.0,
        200,
        "the app keeps serving"
    );
}
