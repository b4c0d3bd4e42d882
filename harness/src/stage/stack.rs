//! A running deployment: the stores a topology needs, the mock IdP and N app
//! instances as child processes on free ports, each checked ready, logs in the run folder.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use app::topology::Topology;
use mock_idp::config::ReusePolicy;
use mock_idp::faults::FaultConfig;
use nix::sys::signal::Signal;
use parking_lot::Mutex;

use super::StageError;
use super::launch::{self, IdpListeners, RunValues, executable};
use super::process::{ChildSpec, Supervised, free_port, poll_until};
use super::services::postgres::Postgres;
use super::services::redis::Redis;
use super::services::redis_cluster::RedisCluster;
use super::store_links::StoreLinks;
use super::workdir_lease::{WorkdirLease, install_then_hold};
use crate::model::app::AppUnderTest;
use crate::model::idp::IdpOptions;
use crate::model::ids::{InstanceId, StoreKind};
use crate::model::network::NetworkFaults;

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long instances and an IdP running elsewhere get to answer: they are
/// meant to be up before the harness starts.
const REMOTE_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an answer came from another instance than the one asked for, if it
/// did: its `x-instance` names a different instance. A port taken by
/// someone else between the harness choosing it and the instance binding it
/// would otherwise pass for this instance's readiness (and the instance,
/// unable to bind, dies unseen).
fn answered_as_another(
    response: &reqwest::Response,
    expected: Option<InstanceId>,
) -> Option<String> {
    let expected = expected?;
    let named: InstanceId = response
        .headers()
        .get(contract::INSTANCE_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    (named != expected).then(|| {
        format!(
            "{} answered as {named}: another process holds its port",
            response.url()
        )
    })
}

/// Why a readiness probe got no 2xx, in the user's words: connection
/// refused, timed out, TLS, not HTTP, or the status that came.
fn why_not_ready(answer: &Result<reqwest::Response, reqwest::Error>) -> String {
    let error = match answer {
        Ok(response) => return format!("answered {}, not 2xx", response.status()),
        Err(error) => error,
    };
    let mut chain = error.to_string();
    let mut refused = false;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        chain = format!("{chain}: {cause}");
        source = cause.source();
    }
    let lower = chain.to_lowercase();
    if refused || lower.contains("connection refused") {
        "connection refused: nothing listens there".into()
    } else if error.is_timeout() {
        "timed out: no answer within 1 s".into()
    } else if lower.contains("tls") || lower.contains("certificate") || lower.contains("handshake")
    {
        format!("TLS failed: {chain}")
    } else if lower.contains("invalid http") || lower.contains("parse") {
        format!(
            "the answer was not HTTP (an https:// server? the harness speaks plain HTTP to apps): {chain}"
        )
    } else if lower.contains("dns") || lower.contains("resolve") {
        format!("the host name does not resolve: {chain}")
    } else {
        format!("cannot connect: {chain}")
    }
}

/// What to bring up.
#[derive(Clone, Debug)]
pub struct StackSpec {
    /// The reference app in a topology, a target the harness starts, or
    /// instances running elsewhere (then `instances` is their number).
    pub app: AppUnderTest,
    pub instances: NonZeroUsize,
    pub run_dir: PathBuf,
    /// Route each instance's store connections through its own fault proxy,
    /// so network faults can be injected (costs one loopback hop per request).
    pub network_proxy: bool,
    pub idp: IdpOptions,
    /// The session idle timeout handed to the app (the reference app's
    /// `--idle-timeout-secs`, a target's `{session_idle_timeout_secs}`);
    /// absent: the app's own.
    pub session_idle_timeout: Option<Duration>,
    /// The absolute session timeout handed to the app (the reference app's
    /// `--absolute-timeout-secs`, a target's `{session_absolute_timeout_secs}`);
    /// absent: the app's own.
    pub session_absolute_timeout: Option<Duration>,
}

impl StackSpec {
    /// The reference app in `topology`, with defaults for the rest.
    pub fn reference(topology: Topology, instances: NonZeroUsize, run_dir: &Path) -> Self {
        Self {
            app: AppUnderTest::Reference(topology),
            instances,
            run_dir: run_dir.to_owned(),
            network_proxy: false,
            idp: IdpOptions::default(),
            session_idle_timeout: None,
            session_absolute_timeout: None,
        }
    }
}

/// How many lines of an exited instance's log the timeline keeps.
const EXIT_LOG_LINES: usize = 10;

/// One app instance.
pub struct Instance {
    pub id: InstanceId,
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// The child, when the harness started it; none for a remote instance.
    pub process: Option<Supervised>,
}

impl Instance {
    pub fn url(&self) -> String {
        self.base.clone()
    }
}

/// Each instance's current pid, shared with the sampler, which reads an
/// app's memory from `/proc` when the app does not report it (a restart
/// changes the pid, so the stack keeps this up to date).
#[derive(Clone, Debug, Default)]
pub struct InstancePids(Arc<Mutex<Vec<Option<u32>>>>);

impl InstancePids {
    /// The pid of the instance at `index` (0 is `app-1`), if it runs here.
    pub fn get(&self, index: usize) -> Option<u32> {
        self.0.lock().get(index).copied().flatten()
    }

    fn set(&self, index: usize, pid: Option<u32>) {
        let mut pids = self.0.lock();
        if pids.len() <= index {
            pids.resize(index + 1, None);
        }
        pids[index] = pid;
    }
}

/// Everything a run needs, up and ready.
pub struct Stack {
    pub app: AppUnderTest,
    pub redis: Option<Redis>,
    pub postgres: Option<Postgres>,
    pub redis_cluster: Option<RedisCluster>,
    /// The mock IdP, when the harness runs it (a remote target brings its own).
    pub idp: Option<Supervised>,
    idp_base: String,
    /// Its HTTPS listener and CA file, when a launched target needs HTTPS.
    pub idp_listeners: Option<IdpListeners>,
    pub instances: Vec<Instance>,
    /// The proxied store paths; empty without `network_proxy`.
    pub links: StoreLinks,
    pub run_dir: PathBuf,
    /// Keeps this run's keys and rows apart on shared Redis and Postgres servers.
    pub namespace: String,
    /// The secret every instance derives its at-rest keys from (one per run).
    pub encryption_secret: String,
    /// The path that answers 2xx once an instance is ready.
    ready_path: String,
    pids: InstancePids,
    http: reqwest::Client,
    /// Keeps other harnesses from installing in a launched target's folder
    /// while this run's instances use it; declared last, so it is released
    /// after the instances stop.
    _workdir_lease: Option<WorkdirLease>,
}

impl Stack {
    pub async fn up(spec: &StackSpec) -> Result<Self, StageError> {
        let run_dir = &spec.run_dir;
        std::fs::create_dir_all(run_dir)
            .map_err(StageError::io(format!("creating {}", run_dir.display())))?;
        let needs = spec.app.needs();
        let install = async {
            match &spec.app {
                AppUnderTest::Launched(launch) if launch.install.is_some() => {
                    install_then_hold(&launch.workdir, launch::install(launch, run_dir))
                        .await
                        .map(Some)
                }
                _ => Ok(None),
            }
        };
        let (redis, postgres, redis_cluster, installed) = tokio::join!(
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
            },
            async {
                match needs.redis_cluster {
                    // Network faults on a cluster are aimed at its nodes' own proxies.
                    true => RedisCluster::provide(run_dir, spec.network_proxy)
                        .await
                        .map(Some),
                    false => Ok(None),
                }
            },
            install
        );
        let (redis, postgres, redis_cluster) = (redis?, postgres?, redis_cluster?);
        let workdir_lease = installed?;

        let (idp, idp_listeners) = match &spec.app {
            AppUnderTest::Remote(_) => (None, None),
            app => {
                let https = matches!(app, AppUnderTest::Launched(_));
                let (process, listeners) = start_idp(&spec.idp, run_dir, https)?;
                (Some(process), Some(listeners))
            }
        };
        let idp_base = match (&spec.app, &idp_listeners) {
            (AppUnderTest::Remote(remote), _) => remote.idp.trim_end_matches('/').to_owned(),
            (_, Some(listeners)) => listeners.http_url(),
            (_, None) => unreachable!("the harness starts an IdP for every app it starts"),
        };
        // A launched app reads the IdP's CA file when it starts (Node reads
        // NODE_EXTRA_CA_CERTS once), so the IdP must have written it first.
        if let (Some(process), Some(ca)) =
            (&idp, idp_listeners.as_ref().and_then(IdpListeners::ca_file))
            && !poll_until(READY_TIMEOUT, || async { ca.is_file() }).await
        {
            return Err(StageError::not_ready(
                format!("{} (its CA file {})", process.name(), ca.display()),
                READY_TIMEOUT.as_secs(),
                process.log(),
            ));
        }
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
        let mut links = StoreLinks::default();
        let mut instances = Vec::new();
        match (&spec.app, &idp_listeners) {
            (AppUnderTest::Remote(remote), _) => {
                for (id, base) in InstanceId::all(remote.instances.len()).zip(&remote.instances) {
                    instances.push(Instance {
                        id,
                        base: base.trim_end_matches('/').to_owned(),
                        process: None,
                    });
                }
            }
            (app, Some(listeners)) => {
                // Every reference instance reads the topology from one file,
                // so a custom combination reaches them exactly as given.
                let topology_file = run_dir.join("topology.toml");
                if let AppUnderTest::Reference(topology) = app {
                    std::fs::write(&topology_file, topology.to_toml()).map_err(StageError::io(
                        format!("writing {}", topology_file.display()),
                    ))?;
                }
                let values = RunValues {
                    run_dir,
                    namespace: &namespace,
                    encryption_secret: &encryption_secret,
                    idp: listeners,
                    session_idle_timeout: spec.session_idle_timeout,
                    session_absolute_timeout: spec.session_absolute_timeout,
                };
                for id in InstanceId::all(spec.instances.get()) {
                    let port = free_port().map_err(StageError::io("finding a free port"))?;
                    let mut stores = BTreeMap::new();
                    for (store, url) in [
                        (StoreKind::Redis, redis.as_ref().map(|r| r.url())),
                        (StoreKind::Postgres, postgres.as_ref().map(|p| p.url())),
                        (
                            StoreKind::RedisCluster,
                            redis_cluster.as_ref().map(|c| c.url()),
                        ),
                    ] {
                        let Some(mut url) = url else { continue };
                        // A cluster's nodes send clients to the addresses
                        // they announce (MOVED), past a proxy per instance:
                        // a proxied cluster has one in front of each node
                        // instead, shared by every instance.
                        if spec.network_proxy && store != StoreKind::RedisCluster {
                            url = links.route(id, store, &url).await?;
                        }
                        stores.insert(store, url);
                    }
                    let child = match app {
                        AppUnderTest::Reference(_) => {
                            let mut child = launch::reference_instance(
                                id,
                                port,
                                &topology_file,
                                spec.idp.renewal_offset(),
                                &values,
                            )?;
                            for (store, url) in &stores {
                                child = launch::with_store(child, *store, url);
                            }
                            child
                        }
                        AppUnderTest::Launched(target) => {
                            launch::target_instance(target, id, port, &stores, &values)?
                        }
                        AppUnderTest::Remote(_) => unreachable!("matched above"),
                    };
                    instances.push(Instance {
                        id,
                        base: format!("http://127.0.0.1:{port}"),
                        process: Some(Supervised::spawn(child)?),
                    });
                }
            }
            (_, None) => unreachable!("the harness starts an IdP for every app it starts"),
        }
        let ready_path = match &spec.app {
            AppUnderTest::Launched(target) => target.ready.clone(),
            _ => "/healthz".to_owned(),
        };
        let pids = InstancePids::default();
        for (index, instance) in instances.iter().enumerate() {
            pids.set(index, instance.process.as_ref().map(Supervised::pid));
        }
        let stack = Self {
            pids,
            app: spec.app.clone(),
            redis,
            postgres,
            redis_cluster,
            idp,
            idp_base,
            idp_listeners,
            instances,
            links,
            run_dir: run_dir.clone(),
            namespace,
            encryption_secret,
            ready_path,
            http: reqwest::Client::new(),
            _workdir_lease: workdir_lease,
        };
        stack.wait_http_ready().await?;
        Ok(stack)
    }

    async fn wait_http_ready(&self) -> Result<(), StageError> {
        // The IdP too, the harness's own or a remote target's (its mock IdP).
        let idp = Some((
            "the IdP".to_owned(),
            format!("{}/healthz", self.idp_base),
            self.idp.as_ref(),
            None,
        ));
        let instances = self.instances.iter().map(|i| {
            (
                i.id.to_string(),
                format!("{}{}", i.base, self.ready_path),
                i.process.as_ref(),
                // Only an instance the harness started is known to be
                // this one; a remote target's may number itself otherwise.
                i.process.as_ref().map(|_| i.id),
            )
        });
        for (who, url, process, expected) in idp.into_iter().chain(instances) {
            // A server of someone else's is meant to be up already: a short
            // wait, then what stood in the way, in words.
            let timeout = if process.is_some() {
                READY_TIMEOUT
            } else {
                REMOTE_READY_TIMEOUT
            };
            let last = Mutex::new(String::new());
            let exited = std::sync::atomic::AtomicBool::new(false);
            let healthy = poll_until(timeout, || async {
                // One that exited will never answer: say so now, not at the deadline.
                if process.is_some_and(|p| super::process::exited(p.pid())) {
                    exited.store(true, std::sync::atomic::Ordering::Relaxed);
                    return true;
                }
                let answer = self
                    .http
                    .get(&url)
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
                let another = answer
                    .as_ref()
                    .ok()
                    .and_then(|response| answered_as_another(response, expected));
                match (answer, another) {
                    (_, Some(why)) => {
                        *last.lock() = why;
                        false
                    }
                    (Ok(response), None) if response.status().is_success() => true,
                    (other, None) => {
                        *last.lock() = why_not_ready(&other);
                        false
                    }
                }
            })
            .await;
            if let (true, Some(process)) = (exited.into_inner(), process) {
                return Err(StageError::ExitedEarly {
                    service: process.name().to_owned(),
                    log: process.log().to_owned(),
                    tail: super::error::log_tail(process.log()),
                });
            }
            if healthy {
                continue;
            }
            return Err(match process {
                Some(process) => {
                    StageError::not_ready(process.name(), timeout.as_secs(), process.log())
                }
                None => StageError::Request {
                    what: format!("{who}: GET {url}"),
                    reason: format!(
                        "{} (for {} s; is it running, and is this its address?)",
                        last.into_inner(),
                        timeout.as_secs()
                    ),
                },
            });
        }
        Ok(())
    }

    /// The mock IdP's HTTP base URL (the harness's own or a remote target's).
    pub fn idp_url(&self) -> String {
        self.idp_base.clone()
    }

    /// The IdP as browsers reach it: over HTTPS when it has that listener
    /// (a launched app sends its browsers there), else over HTTP.
    pub fn idp_browser_url(&self) -> String {
        self.idp_listeners
            .as_ref()
            .and_then(IdpListeners::https_url)
            .unwrap_or_else(|| self.idp_base.clone())
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

    /// The child behind an instance; a remote instance has none, so faults
    /// on it are refused with the reason.
    fn instance_process(
        &mut self,
        id: InstanceId,
        action: &'static str,
    ) -> Result<&mut Supervised, StageError> {
        let instances = self.instances.len();
        let target = self.app.name().to_owned();
        self.instances
            .get_mut(id.index())
            .ok_or(StageError::NoSuchInstance { id, instances })?
            .process
            .as_mut()
            .ok_or(StageError::NotOurs { action, target })
    }

    /// The instances' pids as they change, for the sampler.
    pub fn instance_pids(&self) -> InstancePids {
        self.pids.clone()
    }

    /// Every child's name and pid, the private servers included.
    pub fn processes(&self) -> Vec<(&str, u32)> {
        let children = self
            .idp
            .iter()
            .chain(self.instances.iter().filter_map(|i| i.process.as_ref()));
        let mut out: Vec<_> = children.map(|p| (p.name(), p.pid())).collect();
        let servers = [
            self.redis.as_ref().and_then(|r| r.process()),
            self.postgres.as_ref().and_then(|p| p.process()),
        ];
        out.extend(servers.into_iter().flatten().map(|p| (p.name(), p.pid())));
        let nodes = self.redis_cluster.iter().flat_map(|c| c.processes());
        out.extend(nodes.map(|p| (p.name(), p.pid())));
        out
    }

    /// Graceful restart of an instance (SIGTERM, drain), on the same port.
    pub async fn restart_instance(&mut self, id: InstanceId) -> Result<(), StageError> {
        let process = self.instance_process(id, "an instance restart")?;
        process
            .stop(Signal::SIGTERM, Duration::from_secs(10))
            .await?;
        process.respawn()?;
        let pid = process.pid();
        self.pids.set(id.index(), Some(pid));
        self.wait_http_ready().await
    }

    /// Crash of an instance (SIGKILL), started again on the same port.
    pub async fn crash_instance(&mut self, id: InstanceId) -> Result<(), StageError> {
        self.kill_instance(id).await?;
        self.start_instance(id).await
    }

    /// Kills an instance (SIGKILL) and leaves it down.
    pub async fn kill_instance(&mut self, id: InstanceId) -> Result<(), StageError> {
        self.instance_process(id, "killing an instance")?
            .kill()
            .await?;
        self.pids.set(id.index(), None);
        Ok(())
    }

    /// Starts a killed instance again on its port.
    pub async fn start_instance(&mut self, id: InstanceId) -> Result<(), StageError> {
        let process = self.instance_process(id, "starting an instance")?;
        process.respawn()?;
        let pid = process.pid();
        self.pids.set(id.index(), Some(pid));
        self.wait_http_ready().await
    }

    /// The app instances that exited by themselves (not stopped or killed
    /// by the harness) since the last call: their id, exit status and the
    /// last lines of their log.
    pub fn instances_exited(&mut self) -> Vec<(InstanceId, String, Vec<String>)> {
        let mut exited = Vec::new();
        for instance in &mut self.instances {
            let Some(process) = instance.process.as_mut() else {
                continue;
            };
            if let Some(status) = process.exited_by_itself() {
                let tail = crate::stage::process::log_tail(process.log(), EXIT_LOG_LINES);
                exited.push((instance.id, status.to_string(), tail));
                self.pids.set(instance.id.index(), None);
            }
        }
        exited
    }

    /// Reaps children that exited on their own or were killed from outside
    /// (none is left defunct; a dead Postgres's lock files are cleared so it
    /// can start again); returns the names of those down now.
    pub async fn reap_exited(&mut self) -> Vec<String> {
        let mut down = Vec::new();
        let idp = self.idp.iter_mut();
        let children = idp.chain(self.instances.iter_mut().filter_map(|i| i.process.as_mut()));
        for process in children {
            if process.has_exited() {
                down.push(process.name().to_owned());
            }
        }
        if let Some(redis) = &mut self.redis
            && redis.has_exited()
        {
            down.push("redis".to_owned());
        }
        if let Some(cluster) = &mut self.redis_cluster {
            down.extend(cluster.exited());
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

    pub fn redis_cluster(&mut self) -> Result<&mut RedisCluster, StageError> {
        self.redis_cluster
            .as_mut()
            .ok_or(StageError::NoStore(StoreKind::RedisCluster))
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

    /// Network faults on the proxy of Redis Cluster node `node` (every
    /// node when none), which all its clients share.
    pub fn set_cluster_network(
        &mut self,
        node: Option<usize>,
        faults: &NetworkFaults,
    ) -> Result<usize, StageError> {
        self.redis_cluster()?.set_network(node, faults)
    }

    /// Resets the open connections through that node's proxy (or every node's).
    pub fn reset_cluster_network(&mut self, node: Option<usize>) -> Result<usize, StageError> {
        self.redis_cluster()?.reset_network(node)
    }
}

/// Starts the mock IdP on free ports: HTTP always, HTTPS too (its CA
/// written to `idp-ca.pem` in the run folder) when `https`.
fn start_idp(
    options: &IdpOptions,
    run_dir: &Path,
    https: bool,
) -> Result<(Supervised, IdpListeners), StageError> {
    let http_port = free_port().map_err(StageError::io("finding a free port"))?;
    let reuse = match options.refresh_reuse {
        ReusePolicy::Allow => "allow",
        ReusePolicy::RevokeFamily => "revoke-family",
    };
    let mut child = ChildSpec::new("mock-idp", executable("mock-idp")?, run_dir)
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .args([
            "--access-token-lifetime",
            &options.access_token_lifetime.as_secs().to_string(),
            "--refresh-token-lifetime",
            &options.refresh_token_lifetime.as_secs().to_string(),
            "--refresh-reuse",
            reuse,
        ])
        .env("RUST_LOG", "warn");
    let https = if https {
        let port = free_port().map_err(StageError::io("finding a free port"))?;
        let ca = run_dir.join("idp-ca.pem");
        child = child
            .args(["--https", &format!("127.0.0.1:{port}")])
            .arg("--ca-file")
            .arg(&ca);
        Some((port, ca))
    } else {
        child = child.arg("--no-https");
        None
    };
    Ok((Supervised::spawn(child)?, IdpListeners { http_port, https }))
}

#[cfg(test)]
mod tests {
    use super::answered_as_another;
    use crate::model::ids::InstanceId;

    fn answer(instance: Option<&str>) -> reqwest::Response {
        let mut builder = hyper::Response::builder().status(200);
        if let Some(instance) = instance {
            builder = builder.header(contract::INSTANCE_HEADER, instance);
        }
        reqwest::Response::from(builder.body("ok").expect("response"))
    }

    #[test]
    fn an_answer_naming_another_instance_is_not_this_ones_readiness() {
        let app2: InstanceId = "app-2".parse().expect("id");
        let why = answered_as_another(&answer(Some("app-1")), Some(app2)).expect("refused");
        assert!(why.contains("answered as app-1"), "{why}");
        // Its own name, no name, a name of the target's own making, or an
        // instance the harness did not start: taken as they come.
        assert_eq!(
            answered_as_another(&answer(Some("app-2")), Some(app2)),
            None
        );
        assert_eq!(answered_as_another(&answer(None), Some(app2)), None);
        assert_eq!(
            answered_as_another(&answer(Some("express-4001")), Some(app2)),
            None
        );
        assert_eq!(answered_as_another(&answer(Some("app-1")), None), None);
    }
}
