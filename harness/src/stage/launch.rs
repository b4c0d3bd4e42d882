//! How one app instance is started: the reference app with its topology
//! file and flags, or a target's command with its placeholders filled for
//! that instance (its port, its store paths, the IdP's listeners). Both end
//! as a [`ChildSpec`], so a launched app is supervised, restarted and
//! crashed exactly as the reference app is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::StageError;
use super::placeholders::fill;
use super::process::ChildSpec;
use crate::model::app::LaunchSpec;
use crate::model::ids::{InstanceId, StoreKind};

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

pub(super) fn executable(name: &str) -> Result<PathBuf, StageError> {
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

/// The client the mock IdP knows by default; every instance signs in as it.
pub const CLIENT_ID: &str = "harness-app";
pub const CLIENT_SECRET: &str = "harness-secret";

/// What every instance of one run shares.
pub struct RunValues<'a> {
    pub run_dir: &'a Path,
    pub namespace: &'a str,
    pub encryption_secret: &'a str,
    pub idp: &'a IdpListeners,
    /// The scenario's session idle timeout, when it sets one.
    pub session_idle_timeout: Option<Duration>,
    /// The scenario's absolute session timeout, when it sets one.
    pub session_absolute_timeout: Option<Duration>,
}

/// Where the mock IdP listens: always HTTP; HTTPS, with the CA that signs
/// its certificate written to a file, when a launched app needs it (MSAL
/// refuses an authority that is not HTTPS).
#[derive(Clone, Debug)]
pub struct IdpListeners {
    pub http_port: u16,
    pub https: Option<(u16, PathBuf)>,
}

impl IdpListeners {
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn https_url(&self) -> Option<String> {
        self.https
            .as_ref()
            .map(|(port, _)| format!("https://127.0.0.1:{port}"))
    }

    pub fn ca_file(&self) -> Option<&Path> {
        self.https.as_ref().map(|(_, ca)| ca.as_path())
    }
}

/// The reference app, instance `id` on `port`, reading its topology from
/// `topology_file`; store URLs are added by the caller (they may be proxied).
pub fn reference_instance(
    id: InstanceId,
    port: u16,
    topology_file: &Path,
    renewal_offset: Duration,
    values: &RunValues<'_>,
) -> Result<ChildSpec, StageError> {
    let name = id.to_string();
    let mut child = ChildSpec::new(&name, executable("app")?, values.run_dir).args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--instance-id",
        &name,
    ]);
    if let Some(idle) = values.session_idle_timeout {
        child = child.args(["--idle-timeout-secs", &idle.as_secs().to_string()]);
    }
    if let Some(absolute) = values.session_absolute_timeout {
        child = child.args(["--absolute-timeout-secs", &absolute.as_secs().to_string()]);
    }
    Ok(child
        .arg("--topology-file")
        .arg(topology_file)
        .args([
            "--authority",
            &values.idp.http_url(),
            "--namespace",
            values.namespace,
        ])
        .args([
            "--renewal-offset-secs",
            &renewal_offset.as_secs().to_string(),
        ])
        .arg("--sqlite-path")
        .arg(values.run_dir.join("app-store.db"))
        // In the environment, not the arguments `ps` shows.
        .env("APP_ENCRYPTION_SECRET", values.encryption_secret)
        .env("RUST_LOG", "warn"))
}

/// Adds the store URLs to a reference instance's flags.
pub fn with_store(child: ChildSpec, store: StoreKind, url: &str) -> ChildSpec {
    child.args([store.url_flag(), url])
}

/// A target's instance `id` on `port`, `stores` holding the URL of each
/// store the stack runs (as this instance reaches it).
pub fn target_instance(
    spec: &LaunchSpec,
    id: InstanceId,
    port: u16,
    stores: &BTreeMap<StoreKind, String>,
    values: &RunValues<'_>,
) -> Result<ChildSpec, StageError> {
    let mut filled = BTreeMap::from([
        ("port", port.to_string()),
        ("instance", id.to_string()),
        ("idp_issuer", values.idp.http_url()),
        ("idp_api", format!("{}/api/me", values.idp.http_url())),
        ("client_id", CLIENT_ID.to_owned()),
        ("client_secret", CLIENT_SECRET.to_owned()),
        ("namespace", values.namespace.to_owned()),
        ("encryption_secret", values.encryption_secret.to_owned()),
        ("run_dir", values.run_dir.display().to_string()),
        (
            "session_idle_timeout_secs",
            values
                .session_idle_timeout
                .unwrap_or(spec.contract.idle_timeout)
                .as_secs()
                .to_string(),
        ),
        (
            "session_absolute_timeout_secs",
            values
                .session_absolute_timeout
                .or(spec.contract.absolute_timeout)
                .unwrap_or(app::session::DEFAULT_ABSOLUTE_TIMEOUT)
                .as_secs()
                .to_string(),
        ),
    ]);
    if let (Some(https), Some(ca)) = (values.idp.https_url(), values.idp.ca_file()) {
        filled.insert("idp_api_https", format!("{https}/api/me"));
        filled.insert("idp_issuer_https", https);
        filled.insert("idp_ca_file", ca.display().to_string());
    }
    if let Some(url) = stores.get(&StoreKind::Redis) {
        filled.insert("redis_url", url.clone());
    }
    if let Some(url) = stores.get(&StoreKind::Postgres) {
        filled.insert("database_url", url.clone());
    }
    if let Some(urls) = stores.get(&StoreKind::RedisCluster) {
        filled.insert("redis_cluster_urls", urls.clone());
    }
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| StageError::NotAvailable(format!("{}: `command` is empty", spec.name)))?;
    let mut child =
        ChildSpec::new(&id.to_string(), fill(program, &filled)?, values.run_dir).dir(&spec.workdir);
    for arg in args {
        child = child.arg(fill(arg, &filled)?);
    }
    for (key, value) in &spec.env {
        child = child.env(key, &fill(value, &filled)?);
    }
    Ok(child)
}

/// Runs a target's install step once, in its folder, its output in
/// `install.log` of the run folder; a failure stops the bring-up and says
/// the log's last lines (the run folder goes with the failed run).
/// The stack runs it under the folder's install lock ([`super::workdir_lease`]),
/// so harnesses started side by side take turns instead of wiping each
/// other's `node_modules`.
pub async fn install(spec: &LaunchSpec, run_dir: &Path) -> Result<(), StageError> {
    let Some((program, args)) = spec.install.as_ref().and_then(|i| i.split_first()) else {
        return Ok(());
    };
    let log_path = run_dir.join("install.log");
    let log = std::fs::File::create(&log_path)
        .map_err(StageError::io(format!("creating {}", log_path.display())))?;
    let err_log = log
        .try_clone()
        .map_err(StageError::io(format!("opening {}", log_path.display())))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(&spec.workdir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .kill_on_drop(true);
    let shown = spec.install.as_deref().unwrap_or_default().join(" ");
    // An install fetches packages; ten minutes is generous and still ends.
    let status = tokio::time::timeout(Duration::from_secs(600), command.status())
        .await
        .map_err(|_| StageError::NotAvailable(format!("`{shown}` took over 600 s")))?
        .map_err(|source| StageError::Program {
            program: shown.clone(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(StageError::program_failed(shown, status, Some(&log_path)))
    }
}
