//! A running deployment: the stores a topology needs, the mock IdP and N app
//! instances as child processes on free ports, each checked ready, logs in the run folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mock_idp::faults::FaultConfig;
use nix::sys::signal::Signal;

use crate::network::NetworkFaults;
use crate::process::{ChildSpec, Supervised, free_port};
use crate::services::ServiceError;
use crate::services::postgres::Postgres;
use crate::services::redis::Redis;
use crate::store_links::{Store, StoreLinks};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the `mock-idp` and `app` executables are: `HARNESS_BIN_DIR`, else
/// beside the running executable (`target/<profile>/`, also from `deps/`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HARNESS_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

fn executable(name: &str) -> Result<PathBuf, ServiceError> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ServiceError::NotAvailable(format!(
            "{} not found: build it first (cargo build --release --bins) or set HARNESS_BIN_DIR",
            path.display()
        )))
    }
}

/// Whether a topology preset needs (Redis, Postgres).
pub fn stores_needed(topology: &str) -> Result<(bool, bool), ServiceError> {
    match topology {
        "option1" => Ok((false, false)),
        "option2" | "option3" => Ok((false, true)),
        "option4" => Ok((true, true)),
        other => Err(ServiceError::Failed(format!(
            "unknown topology {other:?}: option1, option2, option3 or option4"
        ))),
    }
}

/// What to bring up.
#[derive(Clone, Debug)]
pub struct StackSpec {
    pub topology: String,
    pub instances: usize,
    pub run_dir: PathBuf,
    /// Route each instance's store connections through its own fault proxy,
    /// so network faults can be injected (costs one loopback hop per request).
    pub network_proxy: bool,
}

/// One app instance.
pub struct Instance {
    pub id: String,
    pub port: u16,
    pub process: Supervised,
}

/// Everything a run needs, up and ready.
pub struct Stack {
    pub redis: Option<Redis>,
    pub postgres: Option<Postgres>,
    pub idp: Supervised,
    pub idp_port: u16,
    pub instances: Vec<Instance>,
    /// The proxied store paths; empty without `network_proxy`.
    pub links: StoreLinks,
    pub run_dir: PathBuf,
}

impl Stack {
    pub async fn up(spec: &StackSpec) -> Result<Self, ServiceError> {
        std::fs::create_dir_all(&spec.run_dir)?;
        let (needs_redis, needs_postgres) = stores_needed(&spec.topology)?;
        let (redis, postgres) = tokio::join!(
            async {
                match needs_redis {
                    true => Redis::provide(&spec.run_dir).await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match needs_postgres {
                    true => Postgres::provide(&spec.run_dir).await.map(Some),
                    false => Ok(None),
                }
            }
        );
        let (redis, postgres) = (redis?, postgres?);

        let idp_port = free_port()?;
        let idp = Supervised::spawn(
            ChildSpec::new("mock-idp", executable("mock-idp")?, &spec.run_dir)
                .args(["--http", &format!("127.0.0.1:{idp_port}"), "--no-https"])
                .env("RUST_LOG", "warn"),
        )?;
        let namespace = format!(
            "run{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default()
        );
        let app = executable("app")?;
        let mut instances = Vec::new();
        let mut links = StoreLinks::default();
        for i in 0..spec.instances {
            let id = format!("app-{}", i + 1);
            let port = free_port()?;
            let mut child = ChildSpec::new(&id, &app, &spec.run_dir)
                .args([
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--instance-id",
                    &id,
                    "--topology",
                    &spec.topology,
                ])
                .args([
                    "--authority",
                    &format!("http://127.0.0.1:{idp_port}"),
                    "--namespace",
                    &namespace,
                ])
                .arg("--sqlite-path")
                .arg(spec.run_dir.join("app-store.db"))
                .env("RUST_LOG", "warn");
            if let Some(redis) = &redis {
                let mut url = redis.url();
                if spec.network_proxy {
                    url = links.route(i, Store::Redis, &url).await?;
                }
                child = child.args(["--redis-url", &url]);
            }
            if let Some(postgres) = &postgres {
                let mut url = postgres.url();
                if spec.network_proxy {
                    url = links.route(i, Store::Postgres, &url).await?;
                }
                child = child.args(["--database-url", &url]);
            }
            instances.push(Instance {
                id,
                port,
                process: Supervised::spawn(child)?,
            });
        }
        let stack = Self {
            redis,
            postgres,
            idp,
            idp_port,
            instances,
            links,
            run_dir: spec.run_dir.clone(),
        };
        stack.wait_http_ready().await?;
        Ok(stack)
    }

    async fn wait_http_ready(&self) -> Result<(), ServiceError> {
        let http = reqwest::Client::new();
        let targets = std::iter::once((self.idp_port, &self.idp))
            .chain(self.instances.iter().map(|i| (i.port, &i.process)));
        for (port, process) in targets {
            if !healthy(&http, port, READY_TIMEOUT).await {
                return Err(ServiceError::NotReady {
                    service: "http child",
                    seconds: READY_TIMEOUT.as_secs(),
                    log: process.log().to_owned(),
                });
            }
        }
        Ok(())
    }

    pub fn idp_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.idp_port)
    }

    /// Every child's name and pid, the private servers included.
    pub fn processes(&self) -> Vec<(&str, u32)> {
        let mut out = vec![(self.idp.name(), self.idp.pid())];
        out.extend(
            self.instances
                .iter()
                .map(|i| (i.process.name(), i.process.pid())),
        );
        out.extend(
            self.redis
                .as_ref()
                .and_then(Redis::process)
                .map(|p| (p.name(), p.pid())),
        );
        out.extend(
            self.postgres
                .as_ref()
                .and_then(Postgres::process)
                .map(|p| (p.name(), p.pid())),
        );
        out
    }

    /// Graceful restart of instance `i` (SIGTERM, drain), on the same port.
    pub async fn restart_instance(&mut self, i: usize) -> Result<(), ServiceError> {
        let instance = &mut self.instances[i];
        instance
            .process
            .stop(Signal::SIGTERM, Duration::from_secs(10))
            .await?;
        instance.process.respawn()?;
        self.wait_http_ready().await
    }

    /// Crash of instance `i` (SIGKILL), started again on the same port.
    pub async fn crash_instance(&mut self, i: usize) -> Result<(), ServiceError> {
        let instance = &mut self.instances[i];
        instance.process.kill().await?;
        instance.process.respawn()?;
        self.wait_http_ready().await
    }

    /// Replaces the IdP's faults through its admin endpoint; the default clears them.
    pub async fn set_idp_faults(&self, faults: &FaultConfig) -> Result<(), ServiceError> {
        let url = format!("{}/admin/faults", self.idp_url());
        let response = reqwest::Client::new()
            .put(&url)
            .json(faults)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| ServiceError::Failed(format!("PUT {url}: {e}")))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Err(ServiceError::Failed(format!("PUT {url}: {status}: {body}")))
    }

    /// Network faults on the paths from `instances` (indexes; every instance
    /// when empty) to `store`; [`NetworkFaults::default`] clears them.
    pub fn set_network(
        &self,
        store: Store,
        instances: &[usize],
        faults: &NetworkFaults,
    ) -> Result<usize, ServiceError> {
        self.links.set(store, instances, faults)
    }

    /// Resets (TCP RST) the open connections on those paths.
    pub fn reset_network(&self, store: Store, instances: &[usize]) -> Result<usize, ServiceError> {
        self.links.reset(store, instances)
    }
}

async fn healthy(http: &reqwest::Client, port: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let url = format!("http://127.0.0.1:{port}/healthz");
    while tokio::time::Instant::now() < deadline {
        if let Ok(response) = http.get(&url).timeout(Duration::from_secs(1)).send().await
            && response.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
