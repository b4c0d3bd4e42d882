//! The reference app, run as the harness runs it (a child process), answers
//! every endpoint of the observable contract (docs/architecture.md) with the
//! contract's types, and the headers the checker reads are on every response.

use contract::{ErrorCode, TokenSource};

use crate::common;
use crate::common::{browser, up};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_of_the_reference_app_reads_as_the_contract_types() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = up("option4", 1, &dir, false).await;
    let base = stack.instances[0].url();
    let user = browser();

    let anonymous = user.profile(&base).await.expect("answers");
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.instance.as_deref(), Some("app-1"));
    assert_eq!(
        anonymous.error().map(|e| &e.error),
        Some(&ErrorCode::NotSignedIn)
    );

    let home = user.sign_in(&base, "alice").await.expect("answers");
    let version = home.session_version.expect("a session, versioned");
    let home = home.into_reply().expect("home");
    assert!(
        home.signed_in && home.user.as_deref() == Some("alice"),
        "{home:?}"
    );

    let profile = user.profile(&base).await.expect("answers");
    assert_eq!(profile.instance.as_deref(), Some("app-1"));
    assert!(profile.session_version.is_some_and(|v| v >= version));
    let profile = profile.into_reply().expect("profile");
    assert_eq!(profile.user, "alice");
    assert_eq!(
        profile.token_source,
        TokenSource::Cache,
        "the sign-in's token"
    );
    assert!(profile.api.sid.is_some() && !profile.api.jti.is_empty());
    assert!(profile.api.exp > profile.api.iat);
    assert_eq!(profile.resource, None);

    let data = user
        .data(&base, "reports")
        .await
        .expect("answers")
        .into_reply()
        .expect("data");
    assert_eq!(data.resource.as_deref(), Some("reports"));
    assert_eq!(data.token_source, TokenSource::Refresh, "another scope");
    assert!(
        data.scopes
            .is_some_and(|s| s.starts_with("api://mock-api/"))
    );

    let added = user.add_to_cart(&base, "item-1").await.expect("answers");
    let written = added.session_version.expect("versioned");
    let added = added.into_reply().expect("cart");
    assert_eq!(added.items, ["item-1"]);
    assert_eq!(added.version, written, "body and header agree");
    let cart = user
        .cart(&base)
        .await
        .expect("answers")
        .into_reply()
        .expect("cart");
    assert_eq!(cart.items, ["item-1"]);

    let empty = user.add_to_cart(&base, "").await.expect("answers");
    assert_eq!(empty.status, 400);
    assert_eq!(
        empty.error().map(|e| &e.error),
        Some(&ErrorCode::BadRequest)
    );

    let out = user
        .logout(&base)
        .await
        .expect("answers")
        .into_reply()
        .expect("logout");
    assert!(out.signed_out && out.idp_session_ended, "{out:?}");
    let after = user.cart(&base).await.expect("answers");
    assert_eq!(after.status, 401);
    assert_eq!(
        after.error().map(|e| &e.error),
        Some(&ErrorCode::NotSignedIn)
    );
}

/// The scenario's session idle timeout reaches the app, and any use keeps a
/// session alive, reading the cart included (it once did not: a browser
/// that only read its cart was signed out an idle timeout after its last write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_use_lives_past_the_idle_timeout_and_an_unused_one_ends() {
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("dir");
    let stack = harness::stage::stack::Stack::up(&harness::stage::stack::StackSpec {
        session_idle_timeout: Some(Duration::from_secs(4)),
        session_absolute_timeout: None,
        ..harness::stage::stack::StackSpec::reference(
            app::topology::Topology::named("option4").expect("preset"),
            std::num::NonZeroUsize::MIN,
            dir.path(),
        )
    })
    .await
    .expect("stack up");
    let base = stack.instances[0].url();
    let user = browser();
    common::sign_in(&user, &base).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let cart = user.cart(&base).await.expect("answers");
        assert_eq!(cart.status, 200, "read 9 s into a 4 s idle timeout, in use");
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let cart = user.cart(&base).await.expect("answers");
    assert_eq!(
        cart.status, 401,
        "unused for 6 s: the 4 s idle timeout ended it"
    );
}

/// The scenario's absolute session timeout reaches the app: a session in
/// constant use ends when it has lasted that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_constant_use_ends_at_the_absolute_timeout() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("dir");
    let stack = harness::stage::stack::Stack::up(&harness::stage::stack::StackSpec {
        session_idle_timeout: Some(Duration::from_secs(3)),
        session_absolute_timeout: Some(Duration::from_secs(4)),
        ..harness::stage::stack::StackSpec::reference(
            app::topology::Topology::named("option4").expect("preset"),
            std::num::NonZeroUsize::MIN,
            dir.path(),
        )
    })
    .await
    .expect("stack up");
    let base = stack.instances[0].url();
    let user = browser();
    let began = Instant::now();
    common::sign_in(&user, &base).await;
    let mut ended = None;
    while began.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if user.cart(&base).await.expect("answers").status == 401 {
            ended = Some(began.elapsed());
            break;
        }
    }
    let ended = ended.expect("the session ended");
    assert!(
        ended >= Duration::from_secs(3) && ended <= Duration::from_secs(6),
        "ended {ended:?} after sign-in, with a 4 s absolute timeout"
    );
}
