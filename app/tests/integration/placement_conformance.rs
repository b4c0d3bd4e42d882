//! One conformance suite for every token-cache placement, built the way the app builds them
//! (real Postgres, SQLite and Redis), with each placement's own answers where they differ by design.

use std::sync::Arc;
use std::time::Duration;

use app::Clock;
use app::default_session_settings;
use app::msal_model::{Account, ScopeSet, TokenGrant};
use app::session::{LoadedSession, SessionData, Sessions, SignedIn};
use app::tokencache::placement::CacheAccess;
use app::topology::{Backends, Topology};

struct Fixture {
    sessions: Sessions,
    cache: Arc<dyn CacheAccess>,
    _dir: tempfile::TempDir,
}

fn fixture(option: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let topology = Topology::preset(option).expect("preset");
    let backends = Backends {
        redis_url: Some(crate::common::redis_url()),
        redis_cluster_urls: Vec::new(),
        redis_ca_pem: None,
        database_url: Some(crate::common::database_url()),
        sqlite_path: dir.path().join("store.db"),
        namespace: crate::common::unique("pc"),
        encryption_secret: b"placement conformance".to_vec(),
        encryption_key_id: "k1".into(),
        previous_key_ids: Vec::new(),
        breaker: Default::default(),
        instance: "placement-conformance".into(),
        coherence: Default::default(),
    };
    let built = topology
        .build(&backends, Duration::from_secs(3600))
        .expect("build");
    Fixture {
        sessions: Sessions::new(
            built.sessions,
            default_session_settings(),
            topology.concurrency,
            Clock::system(),
        ),
        cache: built.cache,
        _dir: dir,
    }
}

fn account(user: &str) -> Account {
    Account {
        home_account_id: format!("{user}.tenant"),
        environment: "idp".into(),
        realm: "tenant".into(),
        local_account_id: user.into(),
        username: user.into(),
        name: user.into(),
    }
}

fn grant<'a>(user: &str, token: &'a str, scope: &'a str) -> TokenGrant<'a> {
    TokenGrant {
        account: account(user),
        client_id: "app",
        access_token: token,
        scope,
        expires_in: 3600,
        ext_expires_in: 3600,
        id_token: Some("id-token"),
        refresh_token: Some("refresh-token"),
    }
}

impl Fixture {
    async fn session_of(&self, user: &str) -> LoadedSession {
        self.sessions
            .create(SessionData {
                user: Some(SignedIn {
                    home_account_id: format!("{user}.tenant"),
                    username: user.into(),
                    oid: user.into(),
                    idp_sid: "sid".into(),
                    id_token: "id-token".into(),
                }),
                ..SessionData::default()
            })
            .await
            .expect("session")
    }

    /// Adds a token the way the app does after a grant: the library's one
    /// read-modify-write of the cache, retried on conflict.
    async fn store_token(&self, session: &mut LoadedSession, user: &str, token: &str, scope: &str) {
        let account = format!("{user}.tenant");
        self.cache
            .update(
                &self.sessions,
                session,
                &account,
                None,
                None,
                |cache| cache.add(grant(user, token, scope), 1000),
                || {},
            )
            .await
            .expect("stored");
    }

    async fn token(&self, session: &LoadedSession, user: &str, scope: &str) -> Option<String> {
        let account = format!("{user}.tenant");
        let snapshot = self
            .cache
            .before_access(session, &account, None)
            .await
            .expect("before");
        snapshot
            .cache
            .access_token(&account, "app", &ScopeSet::parse(scope), 1000, 300)
            .map(|t| t.secret.clone())
    }

    /// Reloads the session as the next request would see it.
    async fn reload(&self, session: &LoadedSession) -> LoadedSession {
        self.sessions
            .load(&session.id)
            .await
            .expect("load")
            .expect("present")
    }
}

/// What differs between placements by design.
struct Expected {
    /// After one browser logs out, does the user's other browser keep its tokens?
    other_browser_keeps_tokens: bool,
    /// Do two overlapping writes of one session both survive?
    concurrent_writes_both_survive: bool,
    /// Does it know a new session's cache without reading it?
    knows_a_new_sessions_cache: bool,
}

mod checks {
    use super::*;

    pub async fn round_trip(f: Fixture) {
        let mut session = f.session_of("u1").await;
        assert_eq!(
            f.token(&session, "u1", "api://x/api.read").await,
            None,
            "empty at first"
        );
        f.store_token(&mut session, "u1", "at-1", "api://x/api.read openid")
            .await;
        let session = f.reload(&session).await;
        assert_eq!(
            f.token(&session, "u1", "api://x/api.read").await.as_deref(),
            Some("at-1")
        );
        let account = "u1.tenant";
        let snapshot = f
            .cache
            .before_access(&session, account, None)
            .await
            .expect("before");
        assert_eq!(
            snapshot.cache.refresh_token(account, "app"),
            Some("refresh-token")
        );
    }

    pub async fn accounts_do_not_see_each_other(f: Fixture) {
        let mut a = f.session_of("ua").await;
        let mut b = f.session_of("ub").await;
        f.store_token(&mut a, "ua", "at-a", "api://x/api.read")
            .await;
        f.store_token(&mut b, "ub", "at-b", "api://x/api.read")
            .await;
        let (a, b) = (f.reload(&a).await, f.reload(&b).await);
        assert_eq!(
            f.token(&a, "ua", "api://x/api.read").await.as_deref(),
            Some("at-a")
        );
        assert_eq!(
            f.token(&b, "ub", "api://x/api.read").await.as_deref(),
            Some("at-b")
        );
    }

    pub async fn large_caches(f: Fixture) {
        let mut session = f.session_of("big").await;
        let scopes: Vec<String> = (0..50).map(|i| format!("api://x/scope{i}")).collect();
        for (i, scope) in scopes.iter().enumerate() {
            f.store_token(
                &mut session,
                "big",
                &format!("at-{i}-{}", "x".repeat(1200)),
                scope,
            )
            .await;
        }
        let session = f.reload(&session).await;
        for (i, scope) in scopes.iter().enumerate().step_by(7) {
            let token = f.token(&session, "big", scope).await.expect("cached");
            assert!(token.starts_with(&format!("at-{i}-")), "{scope}");
        }
    }

    pub async fn logout(f: Fixture, expected: &Expected) {
        let mut first = f.session_of("lo").await;
        let mut second = f.session_of("lo").await;
        f.store_token(&mut first, "lo", "at-first", "api://x/api.read")
            .await;
        f.store_token(&mut second, "lo", "at-second", "api://x/data.read")
            .await;
        let first = f.reload(&first).await;
        f.cache
            .on_logout(&first, "lo.tenant")
            .await
            .expect("logout");
        f.sessions.delete(&first).await.expect("delete");
        let second = f.reload(&second).await;
        assert_eq!(
            f.token(&second, "lo", "api://x/data.read").await.is_some(),
            expected.other_browser_keeps_tokens,
            "the other browser's tokens after this browser's logout"
        );
    }

    /// A placement that knows a new session's cache without reading it (a
    /// sign-in then skips the read) knows it right: what a read gives. And
    /// should the cache hold something after all, the write made from what
    /// it knew conflicts, reads, and keeps what was there.
    pub async fn a_new_sessions_cache(f: Fixture, expected: &Expected) {
        let known = f.cache.new_session_snapshot();
        assert_eq!(known.is_some(), expected.knows_a_new_sessions_cache);
        let Some(known) = known else { return };
        let account = "ns.tenant";
        let session = f.session_of("ns").await;
        let read = f
            .cache
            .before_access(&session, account, None)
            .await
            .expect("read");
        assert_eq!(known.version, read.version);
        assert!(known.cache.is_empty() && read.cache.is_empty());

        let mut session = f.session_of("ns").await;
        f.store_token(&mut session, "ns", "at-there", "api://x/api.read")
            .await;
        let mut session = f.reload(&session).await;
        f.cache
            .update(
                &f.sessions,
                &mut session,
                account,
                f.cache.new_session_snapshot(),
                None,
                |cache| cache.add(grant("ns", "at-new", "api://x/data.read"), 1000),
                || {},
            )
            .await
            .expect("written");
        let now = f.reload(&session).await;
        assert_eq!(
            f.token(&now, "ns", "api://x/api.read").await.as_deref(),
            Some("at-there"),
            "what was there is kept"
        );
        assert_eq!(
            f.token(&now, "ns", "api://x/data.read").await.as_deref(),
            Some("at-new")
        );
    }

    /// Two requests of one session read the cache, then both write: a
    /// compare-and-set placement makes the second re-read and keep both.
    pub async fn concurrent_writers(f: Fixture, expected: &Expected) {
        let account = "cw.tenant";
        let mut session = f.session_of("cw").await;
        f.store_token(&mut session, "cw", "at-0", "api://x/api.read")
            .await;
        let mut a = f.reload(&session).await;
        let mut b = a.clone();
        let mut snap_a = f
            .cache
            .before_access(&a, account, None)
            .await
            .expect("a reads");
        let snap_b = f
            .cache
            .before_access(&b, account, None)
            .await
            .expect("b reads");
        snap_a
            .cache
            .add(grant("cw", "at-a", "api://x/data.read"), 1000);
        f.cache
            .after_access(&mut a, account, snap_a, &f.sessions, None)
            .await
            .expect("a writes");
        // b writes what it read before a's write, through the app's one
        // read-modify-write, which re-reads on a conflict.
        f.cache
            .update(
                &f.sessions,
                &mut b,
                account,
                Some(snap_b),
                None,
                |cache| cache.add(grant("cw", "at-b", "api://x/data.write"), 1000),
                || {},
            )
            .await
            .expect("b writes");
        let now = f.reload(&session).await;
        let both = f.token(&now, "cw", "api://x/data.read").await.is_some()
            && f.token(&now, "cw", "api://x/data.write").await.is_some();
        assert_eq!(both, expected.concurrent_writes_both_survive);
    }
}

macro_rules! placement {
    ($name:ident, $option:literal, $expected:expr) => {
        mod $name {
            use super::*;

            const EXPECTED: Expected = $expected;

            #[tokio::test]
            async fn round_trip() {
                checks::round_trip(fixture($option)).await;
            }
            #[tokio::test]
            async fn accounts_do_not_see_each_other() {
                checks::accounts_do_not_see_each_other(fixture($option)).await;
            }
            #[tokio::test]
            async fn large_caches() {
                checks::large_caches(fixture($option)).await;
            }
            #[tokio::test]
            async fn logout() {
                checks::logout(fixture($option), &EXPECTED).await;
            }
            #[tokio::test]
            async fn a_new_sessions_cache() {
                checks::a_new_sessions_cache(fixture($option), &EXPECTED).await;
            }
            #[tokio::test]
            async fn concurrent_writers() {
                checks::concurrent_writers(fixture($option), &EXPECTED).await;
            }
        }
    };
}

// Option1: one cache per instance; logout clears the account for every browser.
placement!(
    instance_wide,
    "option1",
    Expected {
        other_browser_keeps_tokens: false,
        concurrent_writes_both_survive: false,
        knows_a_new_sessions_cache: false
    }
);
// Option2: one blob; logout keeps every token; concurrent writers overwrite.
placement!(
    shared_blob,
    "option2",
    Expected {
        other_browser_keeps_tokens: true,
        concurrent_writes_both_survive: false,
        knows_a_new_sessions_cache: false
    }
);
// Option3: inside the session; the whole session is written back, last writer wins.
placement!(
    in_session,
    "option3",
    Expected {
        other_browser_keeps_tokens: true,
        concurrent_writes_both_survive: false,
        knows_a_new_sessions_cache: false
    }
);
// Option4: a partition per session, compare-and-set.
placement!(
    partitioned,
    "option4",
    Expected {
        other_browser_keeps_tokens: true,
        concurrent_writes_both_survive: true,
        knows_a_new_sessions_cache: true
    }
);
