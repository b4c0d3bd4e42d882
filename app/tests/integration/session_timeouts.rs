//! Idle and absolute session timeouts, enforced by the server on its clock.

use std::sync::Arc;
use std::time::Duration;

use app::Clock;
use app::session::{Concurrency, SessionData, SessionSettings, Sessions};
use app::store::Store;
use app::store::memory::MemoryStore;

fn sessions(clock: &Clock) -> (Sessions, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let settings = SessionSettings {
        cookie_name: "s".into(),
        cookie_secure: true,
        idle_timeout: Duration::from_secs(600),
        absolute_timeout: Duration::from_secs(3600),
    };
    (
        Sessions::new(
            store.clone(),
            settings,
            Concurrency::CompareAndSet,
            clock.clone(),
        ),
        store,
    )
}

#[tokio::test]
async fn an_idle_session_ends_and_is_deleted() {
    let clock = Clock::system();
    let (sessions, store) = sessions(&clock);
    let session = sessions
        .create(SessionData::default())
        .await
        .expect("create");
    clock.advance(599);
    assert!(
        sessions.load(&session.id).await.expect("load").is_some(),
        "still within the idle timeout"
    );
    clock.advance(2);
    assert!(
        sessions.load(&session.id).await.expect("load").is_none(),
        "idle past 600 s"
    );
    assert_eq!(
        store.size().await.expect("size").entries,
        0,
        "and deleted, not just hidden"
    );
}

#[tokio::test]
async fn activity_keeps_a_session_alive_only_until_the_absolute_timeout() {
    let clock = Clock::system();
    let (sessions, _) = sessions(&clock);
    let created = sessions
        .create(SessionData::default())
        .await
        .expect("create");
    let mut elapsed = 0;
    while elapsed < 3500 {
        clock.advance(500);
        elapsed += 500;
        let mut session = sessions
            .load(&created.id)
            .await
            .expect("load")
            .expect("alive while active");
        assert!(
            sessions.needs_touch(&session),
            "a quarter of the idle timeout has passed"
        );
        sessions.save(&mut session).await.expect("touch");
    }
    clock.advance(200);
    assert!(
        sessions.load(&created.id).await.expect("load").is_none(),
        "past 3600 s since creation"
    );
}

#[test]
fn the_cookie_carries_the_configured_name_and_flags() {
    let clock = Clock::system();
    let (sessions, _) = sessions(&clock);
    let cookie = sessions.cookie("abc");
    assert_eq!(
        cookie.to_str().expect("ascii"),
        "s=abc; Path=/; HttpOnly; SameSite=Lax; Secure"
    );
}
