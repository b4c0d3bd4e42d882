//! Postgres: `DATABASE_URL`, or a private server started from a cached template data dir.
//!
//! The first private start runs `initdb` once into a template under the cache
//! folder; later starts copy the template, so bring-up costs a copy and the
//! server's own start, not an `initdb`. Postgres refuses to run as root, so
//! as root the harness runs `initdb` and `postgres` as the `postgres` user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Uid, User, chown};
use sqlx::Connection;

use super::{Provision, ServiceError, find_program};
use crate::process::{ChildSpec, Supervised, free_port};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A Postgres for the run.
pub struct Postgres {
    provision: Provision,
}

/// Where the installed binaries are.
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

fn binaries() -> Result<Binaries, ServiceError> {
    // Debian and Ubuntu install under /usr/lib/postgresql/<major>/bin; prefer the newest.
    let mut extra: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    extra.sort();
    extra.reverse();
    let find = |name| find_program(name, &extra);
    match (find("initdb"), find("postgres")) {
        (Some(initdb), Some(postgres)) => Ok(Binaries { initdb, postgres }),
        _ => Err(ServiceError::NotAvailable(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH or under /usr/lib/postgresql: \
             install them (apt-get install postgresql) or set DATABASE_URL"
                .into(),
        )),
    }
}

/// The uid and gid to run Postgres as: ours, or the `postgres` user's when we are root.
fn run_as() -> Result<Option<(u32, u32)>, ServiceError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .map_err(|e| ServiceError::Failed(format!("looking up the postgres user: {e}")))?
        .ok_or_else(|| {
            ServiceError::NotAvailable(
                "running as root, Postgres needs an unprivileged 'postgres' user to run as (apt-get install postgresql creates one)"
                    .into(),
            )
        })?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// The cache of template data dirs: `HARNESS_CACHE_DIR`, or a folder under
/// /var/tmp (kept across runs, and reachable by the postgres user, which a
/// root home directory is not).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HARNESS_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/cache-topology-harness"))
}

fn give_to(path: &Path, user: Option<(u32, u32)>) -> Result<(), ServiceError> {
    if let Some((uid, gid)) = user {
        chown(path, Some(uid.into()), Some(gid.into()))
            .map_err(|e| ServiceError::Failed(format!("chown {}: {e}", path.display())))?;
    }
    Ok(())
}

/// The template data dir, made with `initdb` if the cache has none yet.
/// Concurrent first runs each build their own and the first rename wins.
fn template(initdb: &Path, user: Option<(u32, u32)>, log: &Path) -> Result<PathBuf, ServiceError> {
    let key = initdb.to_string_lossy().replace('/', "_");
    let root = cache_dir();
    let template = root.join(format!("pg-template{key}"));
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }
    std::fs::create_dir_all(&root)?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
    let building = tempfile::Builder::new()
        .prefix("pg-building")
        .tempdir_in(&root)?;
    give_to(building.path(), user)?;
    let data = building.path().join("data");
    let log_file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = Command::new(initdb);
    command
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    if let Some((uid, gid)) = user {
        std::os::unix::process::CommandExt::uid(&mut command, uid);
        std::os::unix::process::CommandExt::gid(&mut command, gid);
    }
    let status = command.status()?;
    if !status.success() {
        return Err(ServiceError::Failed(format!(
            "initdb failed ({status}); see {}",
            log.display()
        )));
    }
    match std::fs::rename(&data, &template) {
        Ok(()) => Ok(template),
        Err(_) if template.join("PG_VERSION").is_file() => Ok(template),
        Err(e) => Err(ServiceError::Failed(format!(
            "caching the Postgres template: {e}"
        ))),
    }
}

impl Postgres {
    /// `DATABASE_URL` when set (checked with a connection), else a private server in `run_dir`.
    pub async fn provide(run_dir: &Path) -> Result<Self, ServiceError> {
        Self::provide_from(std::env::var("DATABASE_URL").ok(), run_dir).await
    }

    /// As [`Postgres::provide`], with the URL the environment would give.
    pub async fn provide_from(url: Option<String>, run_dir: &Path) -> Result<Self, ServiceError> {
        match url {
            Some(url) if !url.is_empty() => {
                check(&url).await.map_err(|e| {
                    ServiceError::NotAvailable(format!("DATABASE_URL={url} does not answer: {e}"))
                })?;
                Ok(Self {
                    provision: Provision::External { url },
                })
            }
            _ => match Self::start_private(run_dir).await {
                #[cfg(feature = "containers")]
                Err(ServiceError::NotAvailable(without_binaries)) => {
                    let (handle, url) = super::containers::postgres().await.map_err(|e| {
                        ServiceError::NotAvailable(format!("{without_binaries}; and {e}"))
                    })?;
                    Ok(Self {
                        provision: Provision::Container {
                            url,
                            _handle: handle,
                        },
                    })
                }
                other => other,
            },
        }
    }

    /// A private server on a free port, data in `run_dir/postgres`, settings
    /// for throwaway data (no fsync, no synchronous commit).
    pub async fn start_private(run_dir: &Path) -> Result<Self, ServiceError> {
        std::fs::create_dir_all(run_dir)?;
        let bin = binaries()?;
        let user = run_as()?;
        let log = run_dir.join("postgres.log");
        if user.is_some() {
            // The postgres user must be able to reach its data dir inside the run folder.
            std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o711))?;
        }
        let home = run_dir.join("postgres");
        let data = home.join("data");
        // initdb (first time) and the copy block, so they run on a blocking
        // thread. The server itself must not be spawned there: blocking
        // threads exit when idle, and the parent-death signal fires when the
        // spawning thread exits. After the await this task is on a worker.
        let prepared = {
            let (bin_initdb, home, data) = (bin.initdb.clone(), home.clone(), data.clone());
            tokio::task::spawn_blocking(move || -> Result<(), ServiceError> {
                let template = template(&bin_initdb, user, &log)?;
                std::fs::create_dir_all(&home)?;
                give_to(&home, user)?;
                let copied = Command::new("cp")
                    .arg("-a")
                    .arg(&template)
                    .arg(&data)
                    .status()?;
                if !copied.success() {
                    return Err(ServiceError::Failed(format!(
                        "copying the Postgres template failed ({copied})"
                    )));
                }
                Ok(())
            })
        };
        prepared
            .await
            .map_err(|e| ServiceError::Failed(format!("preparing Postgres: {e}")))??;
        let port = free_port()?;
        let mut spec = ChildSpec::new("postgres", bin.postgres, run_dir)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(&home)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        if let Some((uid, gid)) = user {
            spec = spec.user(uid, gid);
        }
        let server = Box::new(Supervised::spawn(spec)?);
        let postgres = Self {
            provision: Provision::Private {
                url: private_url(port),
                server,
                port,
            },
        };
        postgres.wait_ready().await?;
        Ok(postgres)
    }

    pub fn url(&self) -> String {
        self.provision.url()
    }

    /// The server process, when the harness runs it.
    pub fn process(&self) -> Option<&Supervised> {
        self.provision.process()
    }

    async fn wait_ready(&self) -> Result<(), ServiceError> {
        self.provision
            .wait_ready("postgres", READY_TIMEOUT, |url| async move {
                check(&url).await.is_ok()
            })
            .await
    }

    fn private(&mut self, action: &'static str) -> Result<&mut Supervised, ServiceError> {
        self.provision.private("Postgres", action)
    }

    /// Fast shutdown (SIGINT) and a start on the same port and data: data survives.
    pub async fn restart(&mut self) -> Result<(), ServiceError> {
        let server = self.private("restarted")?;
        server.stop(Signal::SIGINT, Duration::from_secs(10)).await?;
        server.respawn()?;
        self.wait_ready().await
    }

    /// Kills the server (SIGKILL to its process group) without starting it again.
    pub async fn kill(&mut self) -> Result<(), ServiceError> {
        self.private("killed")?.kill().await?;
        Ok(())
    }
}

fn private_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

async fn check(url: &str) -> Result<(), String> {
    let mut connection =
        tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect(url))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
    let _ = sqlx::query("SELECT 1")
        .execute(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
    let _ = connection.close().await;
    Ok(())
}
