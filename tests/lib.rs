//! End-to-end tests across the workspace's crates, over real HTTP; the tests live in
//! `tests/e2e/` (one binary, a module a subject).
//!
//! # Layout
//! - this file: [`InProcessStack`], a mock IdP and app instances of one
//!   topology in this process on loopback ports (the harness's `Stack` runs
//!   them as child processes), and [`browser`], the contract's browser.
//! - `tests/e2e/oidc_client.rs`: a standard OpenID Connect client library against the mock IdP.
//! - `tests/e2e/topologies.rs`: each option's defining behaviour.
//! - `tests/e2e/app_security.rs`: cookies, ciphertexts, session-id rotation, logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::idp_client::IdpSettings;
use app::session::SessionSettings;
use app::topology::{Backends, Topology};
use app::web::WebSettings;
use app::{AppConfig, default_session_settings};
use contract::{Browser, HttpClient, ProfileReply};
use mock_idp::{Idp, IdpConfig, IdpServer, ServerOptions};
use tokio::task::JoinHandle;

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One running app instance.
pub struct Instance {
    pub addr: SocketAddr,
    pub app: Arc<app::web::App>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A mock IdP and app instances of one topology, in this process, sharing
/// one namespace on the real Redis and Postgres (unique per stack, so tests
/// do not see each other).
pub struct InProcessStack {
    pub idp: IdpServer,
    pub topology: Topology,
    pub namespace: String,
    pub instances: Vec<Instance>,
    sqlite_dir: tempfile::TempDir,
    renewal_offset: u64,
    /// The app instances' clock; moves together with the IdP's (see [`Stack::advance`]).
    clock: app::Clock,
    sessions: SessionSettings,
    redis_url: String,
}

impl InProcessStack {
    pub async fn start(topology: &str, instances: usize) -> Self {
        Self::start_with(
            Topology::preset(topology).expect("preset"),
            IdpConfig::default(),
            instances,
        )
        .await
    }

    /// A stack whose IdP has `idp_config`. The app renews cached tokens 300 s
    /// before expiry, or at half their lifetime when they live shorter.
    pub async fn start_with(topology: Topology, idp_config: IdpConfig, instances: usize) -> Self {
        Self::start_with_sessions(topology, idp_config, instances, default_session_settings()).await
    }

    /// As [`InProcessStack::start_with`], with these cookie and timeout settings.
    pub async fn start_with_sessions(
        topology: Topology,
        idp_config: IdpConfig,
        instances: usize,
        sessions: SessionSettings,
    ) -> Self {
        Self::start_on(topology, idp_config, instances, sessions, redis_url()).await
    }

    /// As [`InProcessStack::start_with_sessions`], on the Redis at `redis_url`
    /// (a private one a test can pause).
    pub async fn start_on(
        topology: Topology,
        idp_config: IdpConfig,
        instances: usize,
        sessions: SessionSettings,
        redis_url: String,
    ) -> Self {
        let renewal_offset = 300.min(idp_config.access_token_lifetime_secs / 2);
        let idp = IdpServer::start(
            Idp::new(idp_config).expect("idp"),
            ServerOptions::http_only(),
        )
        .await
        .expect("idp listens");
        let mut stack = Self {
            idp,
            topology,
            namespace: format!("e2e{}", uuid::Uuid::new_v4().simple()),
            instances: Vec::new(),
            sqlite_dir: tempfile::tempdir().expect("temp dir"),
            renewal_offset,
            clock: app::Clock::system(),
            sessions,
            redis_url,
        };
        for i in 0..instances {
            let instance = stack
                .spawn(
                    &format!("app-{}", i + 1),
                    "127.0.0.1:0".parse().expect("addr"),
                )
                .await;
            stack.instances.push(instance);
        }
        stack
    }

    /// The configuration every instance of this stack shares.
    pub fn config(&self, instance_id: &str, addr: SocketAddr) -> AppConfig {
        let authority = self.idp.http_url().expect("idp url");
        AppConfig {
            topology: self.topology.clone(),
            backends: Backends {
                redis_url: Some(self.redis_url.clone()),
                // On a cluster topology the stack's Redis URL is the seeds, comma-separated.
                redis_cluster_urls: match self.topology.redis_cluster {
                    true => self.redis_url.split(',').map(str::to_owned).collect(),
                    false => Vec::new(),
                },
                redis_ca_pem: None,
                database_url: Some(database_url()),
                sqlite_path: self.sqlite_dir.path().join("store.db"),
                namespace: self.namespace.clone(),
                encryption_secret: b"e2e secret".to_vec(),
                encryption_key_id: "k1".into(),
                previous_key_ids: Vec::new(),
                breaker: Default::default(),
                instance: instance_id.to_owned(),
                coherence: Default::default(),
            },
            sessions: self.sessions.clone(),
            idp: IdpSettings {
                api_url: format!("{authority}/api/me"),
                authority,
                client_id: "harness-app".into(),
                client_secret: "harness-secret".into(),
                timeout: Duration::from_secs(5),
                attempts: 3,
                max_retry_after: Duration::from_secs(2),
                ca_pem: None,
            },
            web: WebSettings {
                instance_id: instance_id.into(),
                public_url: format!("http://{addr}"),
                api_audience: "api://mock-api".into(),
                renewal_offset: self.renewal_offset,
            },
        }
    }

    async fn spawn(&self, instance_id: &str, addr: SocketAddr) -> Instance {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = app::build_with_clock(self.config(instance_id, addr), self.clock.clone())
            .expect("app builds");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app::run(listener, app.clone(), async move {
            let _ = stopped.await;
        }));
        Instance {
            addr,
            app,
            stop: Some(stop),
            task,
        }
    }

    /// Stops instance `i` and starts a fresh process state on the same port.
    pub async fn restart(&mut self, i: usize) {
        let old = &mut self.instances[i];
        if let Some(stop) = old.stop.take() {
            let _ = stop.send(());
        }
        let addr = old.addr;
        let id = old.app.settings.instance_id.clone();
        let old = self.instances.remove(i);
        old.task.await.expect("join").expect("served");
        let fresh = self.spawn(&id, addr).await;
        self.instances.insert(i, fresh);
    }

    /// Moves time forward for the IdP and every app instance alike.
    pub fn advance(&self, secs: i64) {
        self.idp.idp.clock().advance(secs);
        self.clock.advance(secs);
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        self.instances[i].url(path)
    }

    /// Instance `i`'s base URL.
    pub fn base(&self, i: usize) -> String {
        self.url(i, "")
    }
}

/// A browser with its own cookie jar on its own connection pool.
pub fn browser() -> Browser {
    Browser::new(&HttpClient::new(), Duration::from_secs(15))
}

/// Signs `user` in through instance `i`; the home page says who is signed in.
pub async fn sign_in(stack: &InProcessStack, i: usize, user: &str) -> Browser {
    let browser = browser();
    let home = browser
        .sign_in(&stack.base(i), user)
        .await
        .expect("sign-in answers")
        .into_reply()
        .expect("sign-in lands on the home page");
    assert!(home.signed_in, "{home:?}");
    assert_eq!(home.user.as_deref(), Some(user));
    browser
}

/// A GET's status; like a browser, it repeats the GET once when a reused
/// keep-alive connection turns out to have been closed (as after an instance restart).
pub async fn status(browser: &Browser, url: &str) -> u16 {
    match browser.get(url).await {
        Ok(page) => page.status,
        Err(_) => browser.get(url).await.expect("answers on retry").status,
    }
}

/// `/profile` through instance `i`, which must answer with the contract's reply.
pub async fn profile(browser: &Browser, stack: &InProcessStack, i: usize) -> ProfileReply {
    browser
        .profile(&stack.base(i))
        .await
        .expect("answers")
        .into_reply()
        .expect("a profile reply")
}

/// The IdP session id this browser's tokens carry, as the API echoed it.
pub fn echoed_sid(profile: &ProfileReply) -> String {
    profile.api.sid.clone().unwrap_or_default()
}
