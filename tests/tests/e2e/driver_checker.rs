//! The harness's driver and checker catch an app that hands one user's
//! token to another. The broken variant is made here, for this test only
//! (a token-cache placement that serves whatever it last stored to anyone);
//! it is not a topology anyone can pick. Driver, history and checker are the
//! ones `harness bench` runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::idp_client::IdpClient;
use app::metrics::Metrics;
use app::msal_model::TokenCache;
use app::session::{Concurrency, LoadedSession, Sessions};
use app::store::memory::MemoryStore;
use app::store::{Fence, Record, StoreError};
use app::tokencache::acquire::TokenAcquirer;
use app::tokencache::placement::{CacheAccess, CacheSnapshot};
use app::web::App;
use async_trait::async_trait;
use e2e_tests::InProcessStack;
use harness::check::{self, Kind, Settings};
use harness::history;
use harness::load::browser::{InstanceUrl, Shared, SharedSpec};
use harness::load::latency::Latencies;
use harness::scenario::Scenario;
use parking_lot::Mutex;

/// Serves the last cache it stored to every account, relabelled as theirs.
#[derive(Default)]
struct Leaky {
    cache: Mutex<TokenCache>,
}

#[async_trait]
impl CacheAccess for Leaky {
    fn kind(&self) -> &'static str {
        "leaky (test only)"
    }

    async fn before_access(
        &self,
        _: &LoadedSession,
        account: &str,
        _: Option<&[Option<Record>]>,
    ) -> Result<CacheSnapshot, StoreError> {
        let mut cache = self.cache.lock().clone();
        for token in cache.access_tokens.values_mut() {
            token.home_account_id = account.to_owned();
        }
        for token in cache.refresh_tokens.values_mut() {
            token.home_account_id = account.to_owned();
        }
        Ok(CacheSnapshot {
            cache,
            version: None,
        })
    }

    async fn after_access(
        &self,
        _: &mut LoadedSession,
        _: &str,
        snapshot: CacheSnapshot,
        _: &Sessions,
        _: Option<&Fence>,
    ) -> Result<(), StoreError> {
        *self.cache.lock() = snapshot.cache;
        Ok(())
    }

    async fn on_logout(&self, _: &LoadedSession, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One instance of the broken app, beside the stack's IdP.
async fn leaky_instance(stack: &InProcessStack) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = stack.config("app-1", addr);
    let metrics = Arc::new(Metrics::default());
    let idp = Arc::new(IdpClient::new(config.idp, metrics.clone()).expect("idp client"));
    let app = Arc::new(App {
        sessions: Sessions::new(
            Arc::new(MemoryStore::new()),
            config.sessions,
            Concurrency::LastWriterWins,
            app::Clock::system(),
        ),
        tokens: TokenAcquirer::new(
            Arc::new(Leaky::default()),
            idp.clone(),
            metrics.clone(),
            "app-1".into(),
            config.web.renewal_offset,
        ),
        settings: config.web,
        idp,
        metrics,
        encrypted: None,
        breakers: Vec::new(),
        coherence: None,
    });
    let task = tokio::spawn(async move {
        let _ = app::run(listener, app, std::future::pending()).await;
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_hands_one_users_token_to_another_is_caught_as_cross_user_token() {
    let stack = InProcessStack::start("option1", 0).await;
    let (addr, server) = leaky_instance(&stack).await;
    let scenario = Scenario::from_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/leaky.toml"),
    )
    .expect("scenario");
    let (recorder, collector) = history::channel();
    let start = tokio::time::Instant::now();
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let shared = Arc::new(
        Shared::new(SharedSpec {
            instances: vec![InstanceUrl {
                id: "app-1".into(),
                base: format!("http://{addr}"),
            }],
            idp_base: stack.idp.http_url().expect("idp url"),
            session_cookie: "app_session".into(),
            recorder,
            latencies: Arc::new(Latencies::new(25_000, vec!["app-1".into()])),
            workload: scenario.workload.clone(),
            seed: scenario.seed,
            start,
        })
        .expect("shared"),
    );
    harness::load::drive(shared).await.expect("load runs");
    let history = collector.finish();
    server.abort();
    assert!(history.events.len() > 20, "{} events", history.events.len());
    let findings = check::check(
        &history,
        &Settings {
            idle_timeout: Duration::from_secs(1800),
            absolute_timeout: None,
            renewal_offset: Duration::from_secs(300),
            started_unix_ms,
            subjects: harness::run::subjects(scenario.workload.people.get()),
        },
    );
    let crossed = findings
        .anomalies
        .get(&Kind::CrossUserToken)
        .expect("cross-user-token found");
    assert!(!crossed.is_empty());
    let example = &crossed[0];
    let last = &history.events[*example.evidence.last().expect("evidence")];
    let user = &history.browsers[last.browser.0 as usize].user;
    match last.outcome.observed() {
        Some(history::Observed::Token { sub, .. }) => {
            assert_ne!(
                Some(sub),
                harness::run::subjects(4).get(user),
                "{example:?}"
            )
        }
        other => panic!("the evidence ends in a token: {other:?}"),
    }
}
