//! End-to-end tests across the workspace's crates, over real HTTP; the tests live in `tests/`.
//!
//! # Layout
//! - this file: [`Stack`], a mock IdP and app instances of one topology on
//!   loopback ports, and [`Browser`], a cookie-keeping client.
//! - `tests/oidc_client.rs`: a standard OpenID Connect client library against the mock IdP.
//! - `tests/topologies.rs`: each option's defining behaviour.
//! - `tests/app_security.rs`: cookies, ciphertexts, session-id rotation, logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::idp_client::IdpSettings;
use app::topology::{Backends, Topology};
use app::web::WebSettings;
use app::{AppConfig, default_session_settings};
use mock_idp::{Idp, IdpConfig, IdpServer, ServerOptions};
use serde_json::Value;
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

/// A mock IdP and app instances of one topology, sharing one namespace on the
/// real Redis and Postgres (unique per stack, so tests do not see each other).
pub struct Stack {
    pub idp: IdpServer,
    pub topology: Topology,
    pub namespace: String,
    pub instances: Vec<Instance>,
    sqlite_dir: tempfile::TempDir,
    renewal_offset: u64,
    /// The app instances' clock; moves together with the IdP's (see [`Stack::advance`]).
    clock: app::clock::Clock,
}

impl Stack {
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
            clock: app::clock::Clock::system(),
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
                redis_url: Some(redis_url()),
                redis_ca_pem: None,
                database_url: Some(database_url()),
                sqlite_path: self.sqlite_dir.path().join("store.db"),
                namespace: self.namespace.clone(),
                encryption_secret: b"e2e secret".to_vec(),
                encryption_key_id: "k1".into(),
                previous_key_ids: Vec::new(),
            },
            sessions: default_session_settings(),
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
}

/// A browser: its own cookie jar, follows redirects (so sign-in completes with no form).
pub struct Browser {
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .expect("client"),
        }
    }

    /// Signs `user` in through instance `i`; returns the home page's JSON.
    pub async fn sign_in(&self, stack: &Stack, i: usize, user: &str) -> Value {
        let response = self
            .http
            .get(stack.url(i, "/login"))
            .query(&[("login_hint", user)])
            .send()
            .await
            .expect("sign-in answers");
        assert_eq!(response.status(), 200, "sign-in lands on the home page");
        response.json().await.expect("home json")
    }

    /// GET, returning status and JSON body (Null when not JSON). Like a
    /// browser, it repeats a GET once when a reused keep-alive connection
    /// turns out to have been closed (as after an instance restart).
    pub async fn get(&self, url: &str) -> (u16, Value) {
        let response = match self.http.get(url).send().await {
            Ok(response) => response,
            Err(e) if e.is_request() => self.http.get(url).send().await.expect("answers on retry"),
            Err(e) => panic!("{url}: {e}"),
        };
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn add_to_cart(&self, url: &str, item: &str) -> (u16, Value) {
        let response = self
            .http
            .post(url)
            .json(&serde_json::json!({ "item": item }))
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// The IdP session id this browser's tokens carry, as the API echoed it.
pub fn echoed_sid(profile: &Value) -> String {
    profile["api"]["sid"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
