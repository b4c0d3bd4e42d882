//! A running deployment: the stores a topology needs, the mock IdP and N app
//! instances as child processes on free ports, each checked ready, logs in the run folder.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use app::topology::Topology;
use mock_idp::config::ReusePolicy;
use mock_idp::faults::FaultConfig;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::network::NetworkFaults;
use super::process::{ChildSpec, Supervised, free_port, poll_until};
use super::services::postgres::Postgres;
use super::services::redis::Redis;
use super::store_links::StoreLinks;
use super::{InstanceId, StageError, StoreKind};

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

fn executable(name: &str) -> Result<PathBuf, StageError> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(StageError::NotAvailable(format!(
            "{} not found: build it first (cargo build --release --bins) or set HARNESS_BIN_DIR",
            path.display()
        )))
    }
}

/// The IdP's token settings for a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IdpOptions {
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub access_token_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub refresh_token_lifetime: Duration,
    /// `allow` (as Entra ID) or `revoke-family` (a reused refresh token revokes its family).
    #[schemars(with = "String")]
    pub refresh_reuse: ReusePolicy,
}

impl Default for IdpOptions {
    fn default() -> Self {
        Self {
            access_token_lifetime: Duration::from_secs(3600),
            refresh_token_lifetime: Duration::from_secs(24 * 3600),
            refresh_reuse: ReusePolicy::Allow,
        }
    }
}

impl IdpOptions {
    /// When the app renews a cached token: 300 s before expiry (MSAL's
    /// default), or at half the lifetime of shorter-lived tokens, so short
    /// test lifetimes still leave most of each token's life to the cache.
    pub fn renewal_offset(&self) -> Duration {
        Duration::from_secs(300).min(self.access_token_lifetime / 2)
    }
}

/// What to bring up.
#[derive(Clone, Debug)]
pub struct StackSpec {
    pub topology: Topology,
    pub instances: NonZeroUsize,
    pub run_dir: PathBuf,
    /// Route each instance's store connections through its own fault proxy,
    /// so network faults can be injected (costs one loopback hop per request).
    pub network_proxy: bool,
    pub idp: IdpOptions,
}

/// One app instance.
pub struct Instance {
    pub id: InstanceId,
    pub port: u16,
    pub process: Supervised,
}

impl Instance {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Everything a run needs, up and ready.
pub struct Stack {
    pub topology: Topology,
    pub redis: Option<Redis>,
    pub postgres: Option<Postgres>,
    pub idp: Supervised,
    pub idp_port: u16,
    pub instances: Vec<Instance>,
    /// The proxied store paths; empty without `network_proxy`.
    pub links: StoreLinks,
    pub run_dir: PathBuf,
    /// Keeps this run's keys and rows apart on shared Redis and Postgres servers.
    pub namespace: String,
    /// The secret every instance derives its at-rest keys from (one per run).
    pub encryption_secret: String,
    http: reqwest::Client,
}

impl Stack {
    pub async fn up(spec: &StackSpec) -> Result<Self, StageError> {
        let run_dir = &spec.run_dir;
        std::fs::create_dir_all(run_dir)
            .map_err(StageError::io(format!("creating {}", run_dir.display())))?;
        let needs = spec.topology.needs();
        let (redis, postgres) = tokio::join!(
            async {
                match needs.redis {
                    true => Redis::provide(run_dir).await.map(Some),
                    false => Ok(None),
                }
            },
            async {
                match needs.postgres {
                    true => Postgres::provide(run_dir).await.map(Some),
                    false => Ok(None),
                }
            }
        );
        let (redis, postgres) = (redis?, postgres?);

        let idp_port = free_port().map_err(StageError::io("finding a free port"))?;
        let reuse = match spec.idp.refresh_reuse {
            ReusePolicy::Allow => "allow",
            ReusePolicy::RevokeFamily => "revoke-family",
        };
        let idp = Supervised::spawn(
            ChildSpec::new("mock-idp", executable("mock-idp")?, run_dir)
                .args(["--http", &format!("127.0.0.1:{idp_port}"), "--no-https"])
                .args([
                    "--access-token-lifetime",
                    &spec.idp.access_token_lifetime.as_secs().to_string(),
                    "--refresh-token-lifetime",
                    &spec.idp.refresh_token_lifetime.as_secs().to_string(),
                    "--refresh-reuse",
                    reuse,
                ])
                .env("RUST_LOG", "warn"),
        )?;
        // Every instance reads the topology from one file, so a custom
        // combination reaches them exactly as given.
        let topology_file = run_dir.join("topology.toml");
        std::fs::write(&topology_file, spec.topology.to_toml()).map_err(StageError::io(
            format!("writing {}", topology_file.display()),
        ))?;
        let namespace = format!(
            "run{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default()
        );
        let encryption_secret = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        };
        let app = executable("app")?;
        let mut instances = Vec::new();
        let mut links = StoreLinks::default();
        for id in InstanceId::all(spec.instances.get()) {
            let name = id.to_string();
            let port = free_port().map_err(StageError::io("finding a free port"))?;
            let mut child = ChildSpec::new(&name, &app, run_dir)
                .args([
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--instance-id",
                    &name,
                ])
                .arg("--topology-file")
                .arg(&topology_file)
                .args([
                    "--authority",
                    &format!("http://127.0.0.1:{idp_port}"),
                    "--namespace",
                    &namespace,
                ])
                .args([
                    "--renewal-offset-secs",
                    &spec.idp.renewal_offset().as_secs().to_string(),
                ])
                .arg("--sqlite-path")
                .arg(run_dir.join("app-store.db"))
                // In the environment, not the arguments `ps` shows.
                .env("APP_ENCRYPTION_SECRET", &encryption_secret)
                .env("RUST_LOG", "warn");
            for (store, url) in [
                (StoreKind::Redis, redis.as_ref().map(|r| r.url())),
                (StoreKind::Postgres, postgres.as_ref().map(|p| p.url())),
            ] {
                let Some(mut url) = url else { continue };
                if spec.network_proxy {
                    url = links.route(id, store, &url).await?;
                }
                child = child.args([store.url_flag(), &url]);
            }
            instances.push(Instance {
                id,
                port,
                process: Supervised::spawn(child)?,
            });
        }
        let stack = Self {
            topology: spec.topology.clone(),
            redis,
            postgres,
            idp,
            idp_port,
            instances,
            links,
            run_dir: run_dir.clone(),
            namespace,
            encryption_secret,
            http: reqwest::Client::new(),
        };
        stack.wait_http_ready().await?;
        Ok(stack)
    }

    async fn wait_http_ready(&self) -> Result<(), StageError> {
        let targets = std::iter::once((self.idp_port, &self.idp))
            .chain(self.instances.iter().map(|i| (i.port, &i.process)));
        for (port, process) in targets {
            let url = format!("http://127.0.0.1:{port}/healthz");
            let healthy = poll_until(READY_TIMEOUT, || async {
                self.http
                    .get(&url)
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await;
            if !healthy {
                return Err(StageError::NotReady {
                    service: process.name().to_owned(),
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

    /// The instance with this id.
    pub fn instance(&self, id: InstanceId) -> Result<&Instance, StageError> {
        self.instances
            .get(id.index())
            .ok_or(StageError::NoSuchInstance {
                id,
                instances: self.instances.len(),
            })
    }

    fn instance_mut(&mut self, id: InstanceId) -> Result<&mut Instance, StageError> {
        let instances = self.instances.len();
        self.instances
            .get_mut(id.index())
            .ok_or(StageError::NoSuchInstance { id, instances })
    }

    /// Every child's name and pid, the private servers included.
    pub fn processes(&self) -> Vec<(&str, u32)> {
        let mut out = vec![(self.idp.name(), self.idp.pid())];
        out.extend(
            self.instances
                .iter()
                .map(|i| (i.process.name(), i.process.pid())),
        );
        let servers = [
            self.redis.as_ref().and_then(|r| r.process()),
            self.postgres.as_ref().and_then(|p| p.process()),
        ];
        out.extend(servers.into_iter().flatten().map(|p| (p.name(), p.pid())));
        out
    }

    /// Graceful restart of an instance (SIGTERM, drain), on the same port.
    pub async fn restart_instance(&mut self, id: InstanceId) -> Result<(), StageError> {
        let process = &mut self.instance_mut(id)?.process;
        process
            .stop(Signal::SIGTERM, Duration::from_secs(10))
            .await?;
        process.respawn()?;
        self.wait_http_ready().await
    }

    /// Crash of an instance (SIGKILL), started again on the same port.
    pub async fn crash_instance(&mut self, id: InstanceId) -> Result<(), StageError> {
        self.kill_instance(id).await?;
        self.start_instance(id).await
    }

    /// Kills an instance (SIGKILL) and leaves it down.
    pub async fn kill_instance(&mut self, id: InstanceId) -> Result<(), StageError> {
        self.instance_mut(id)?.process.kill().await?;
        Ok(())
    }

    /// Starts a killed instance again on its port.
    pub async fn start_instance(&mut self, id: InstanceId) -> Result<(), StageError> {
        self.instance_mut(id)?.process.respawn()?;
        self.wait_http_ready().await
    }

    /// Reaps children that exited on their own or were killed from outside
    /// (none is left defunct; a dead Postgres's lock files are cleared so it
    /// can start again); returns the names of those down now.
    pub async fn reap_exited(&mut self) -> Vec<String> {
        let mut down = Vec::new();
        for instance in &mut self.instances {
            if instance.process.has_exited() {
                down.push(instance.process.name().to_owned());
            }
        }
        if let Some(redis) = &mut self.redis
            && redis.has_exited()
        {
            down.push("redis".to_owned());
        }
        if let Some(postgres) = &mut self.postgres {
            match postgres.reap_if_exited().await {
                Ok(false) => {}
                Ok(true) => down.push("postgres".to_owned()),
                Err(e) => down.push(format!("postgres ({e})")),
            }
        }
        down
    }

    pub fn redis(&mut self) -> Result<&mut Redis, StageError> {
        self.redis
            .as_mut()
            .ok_or(StageError::NoStore(StoreKind::Redis))
    }

    pub fn postgres(&mut self) -> Result<&mut Postgres, StageError> {
        self.postgres
            .as_mut()
            .ok_or(StageError::NoStore(StoreKind::Postgres))
    }

    /// Replaces the IdP's faults through its admin endpoint; the default clears them.
    pub async fn set_idp_faults(&self, faults: &FaultConfig) -> Result<(), StageError> {
        let url = format!("{}/admin/faults", self.idp_url());
        let failed = |reason: String| StageError::Request {
            what: format!("PUT {url}"),
            reason,
        };
        let response = self
            .http
            .put(&url)
            .json(faults)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Err(failed(format!("{status}: {body}")))
    }

    /// Network faults on the paths from `instances` (every instance when
    /// empty) to `store`; [`NetworkFaults::default`] clears them.
    pub fn set_network(
        &self,
        store: StoreKind,
        instances: &[InstanceId],
        faults: &NetworkFaults,
    ) -> Result<usize, StageError> {
        self.links.set(store, instances, faults)
    }

    /// Resets (TCP RST) the open connections on those paths.
    pub fn reset_network(
        &self,
        store: StoreKind,
        instances: &[InstanceId],
    ) -> Result<usize, StageError> {
        self.links.reset(store, instances)
    }
}
