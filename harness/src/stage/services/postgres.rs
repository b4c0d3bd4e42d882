//! Postgres: `DATABASE_URL`, or a private server started from a cached template data dir.
//!
//! The first private start runs `initdb` once into a template under the cache
//! folder; later starts copy the template, so bring-up costs a copy and the
//! server's own start, not an `initdb`. Postgres refuses to run as root, so
//! as root the harness runs `initdb` and `postgres` as the `postgres` user.
//!
//! The data dir of a private server is throwaway, so it lives in memory
//! (`/dev/shm`) when it can: copying the template's ~1,000 files costs about
//! 0.7 s on this project's disks and 0.06 s there. Nothing is left behind:
//! dynamic shared memory is kept in the data dir, a dropped server is shut
//! down cleanly (which removes its System V segment; after a kill the harness
//! removes it), and data dirs and segments of harnesses that died without
//! cleaning up are swept at the next start.

use std::ops::{Deref, DerefMut};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Uid, User, chown};
use sqlx::Connection;

use super::{Server, ServerKind, find_program};
use crate::stage::StageError;
use crate::stage::process::{
    ChildSpec, Supervised, abandoned, free_port, owned_prefix, poll_until,
};

pub static KIND: ServerKind = ServerKind {
    name: "postgres",
    label: "Postgres",
    url_env: "DATABASE_URL",
    ready_timeout: Duration::from_secs(20),
    // A fast shutdown: Postgres ends its sessions and removes its shared memory.
    stop_signal: Signal::SIGINT,
    probe: |url| Box::pin(async move { check(&url).await }),
};

/// A Postgres for the run: a [`Server`] and, for a private one, its data dir.
pub struct Postgres {
    server: Server,
    /// The private server's data dir; removed after the server has stopped
    /// (fields drop in order, after [`Postgres`]'s own `drop`).
    home: Option<tempfile::TempDir>,
    /// The pid of a server that died and whose leftovers were cleared.
    cleared: Option<u32>,
}

impl Deref for Postgres {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for Postgres {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// Names private data dirs `harness-pg-<pid of the harness>-…`, so a later
/// start can tell which ones belong to a harness that is gone.
const HOME_PREFIX: &str = "harness-pg-";

/// Where the installed binaries are.
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

fn binaries() -> Result<Binaries, StageError> {
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
        _ => Err(StageError::NotAvailable(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH or under /usr/lib/postgresql: \
             install them (apt-get install postgresql) or set DATABASE_URL"
                .into(),
        )),
    }
}

/// The uid and gid to run Postgres as: ours, or the `postgres` user's when we are root.
fn run_as() -> Result<Option<(u32, u32)>, StageError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .map_err(|e| StageError::Io {
            what: "looking up the postgres user".into(),
            source: e.into(),
        })?
        .ok_or_else(|| {
            StageError::NotAvailable(
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

fn give_to(path: &Path, user: Option<(u32, u32)>) -> Result<(), StageError> {
    if let Some((uid, gid)) = user {
        chown(path, Some(uid.into()), Some(gid.into())).map_err(|e| StageError::Io {
            what: format!("chown {}", path.display()),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// The template data dir, made with `initdb` if the cache has none yet.
/// Concurrent first runs each build their own and the first rename wins.
fn template(initdb: &Path, user: Option<(u32, u32)>, log: &Path) -> Result<PathBuf, StageError> {
    let key = initdb.to_string_lossy().replace('/', "_");
    let root = cache_dir();
    let template = root.join(format!("pg-template{key}"));
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }
    let in_cache = StageError::io(format!("preparing the template cache {}", root.display()));
    std::fs::create_dir_all(&root)
        .and_then(|()| std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)))
        .map_err(in_cache)?;
    let building = tempfile::Builder::new()
        .prefix("pg-building")
        .tempdir_in(&root)
        .map_err(StageError::io(format!("a folder in {}", root.display())))?;
    give_to(building.path(), user)?;
    let data = building.path().join("data");
    let log_file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(StageError::io(format!("opening {}", log.display())))?;
    let err_file = log_file
        .try_clone()
        .map_err(StageError::io(format!("opening {}", log.display())))?;
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
        .stdout(log_file)
        .stderr(err_file);
    if let Some((uid, gid)) = user {
        std::os::unix::process::CommandExt::uid(&mut command, uid);
        std::os::unix::process::CommandExt::gid(&mut command, gid);
    }
    run(&mut command, Some(log))?;
    match std::fs::rename(&data, &template) {
        Ok(()) => Ok(template),
        Err(_) if template.join("PG_VERSION").is_file() => Ok(template),
        Err(source) => Err(StageError::Io {
            what: format!("caching the Postgres template in {}", template.display()),
            source,
        }),
    }
}

/// Runs a program to its end; errors name it.
fn run(command: &mut Command, log: Option<&Path>) -> Result<(), StageError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command.status().map_err(|source| StageError::Program {
        program: program.clone(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    Err(StageError::program_failed(program, status, log))
}

impl Postgres {
    /// `DATABASE_URL` when set (checked with a connection), else a private server in `run_dir`.
    pub async fn provide(run_dir: &Path) -> Result<Self, StageError> {
        Self::provide_from(std::env::var(KIND.url_env).ok(), run_dir).await
    }

    /// As [`Postgres::provide`], with the URL the environment would give.
    pub async fn provide_from(url: Option<String>, run_dir: &Path) -> Result<Self, StageError> {
        let mut home = None;
        let server = Server::provide(&KIND, url, async {
            let (server, data_home) = start_private(run_dir, &data_parent(run_dir)).await?;
            home = Some(data_home);
            Ok(server)
        })
        .await?;
        Ok(Self {
            server,
            home,
            cleared: None,
        })
    }

    /// A private server on a free port, its data dir where [`data_parent`] says.
    pub async fn start_private(run_dir: &Path) -> Result<Self, StageError> {
        Self::start_private_in(run_dir, &data_parent(run_dir)).await
    }

    /// A private server whose data dir goes in `parent`.
    pub async fn start_private_in(run_dir: &Path, parent: &Path) -> Result<Self, StageError> {
        let (server, home) = start_private(run_dir, parent).await?;
        Ok(Self {
            server,
            home: Some(home),
            cleared: None,
        })
    }
}

/// A private server on a free port, its data dir in `parent`, its log in
/// `run_dir`, settings for throwaway data (no fsync, but
/// synchronous commits, so a killed server keeps every acknowledged write).
async fn start_private(
    run_dir: &Path,
    parent: &Path,
) -> Result<(Server, tempfile::TempDir), StageError> {
    std::fs::create_dir_all(run_dir)
        .map_err(StageError::io(format!("creating {}", run_dir.display())))?;
    let bin = binaries()?;
    let user = run_as()?;
    let log = run_dir.join("postgres.log");
    // initdb (first time), the sweep and the copy block, so they run on a
    // blocking thread. The server itself must not be spawned there:
    // blocking threads exit when idle, and the parent-death signal fires
    // when the spawning thread exits. After the await this task is on a worker.
    let prepared = {
        let (bin_initdb, parent, log) = (bin.initdb.clone(), parent.to_owned(), log.clone());
        let run_dir = run_dir.to_owned();
        tokio::task::spawn_blocking(move || -> Result<tempfile::TempDir, StageError> {
            let template = template(&bin_initdb, user, &log)?;
            std::fs::create_dir_all(&parent)
                .map_err(StageError::io(format!("creating {}", parent.display())))?;
            if user.is_some() && parent == run_dir {
                // The postgres user must be able to reach its data dir inside the run folder.
                std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o711)).map_err(
                    StageError::io(format!("opening {} to postgres", parent.display())),
                )?;
            }
            sweep_abandoned(&parent);
            let home = tempfile::Builder::new()
                .prefix(&owned_prefix(HOME_PREFIX))
                .tempdir_in(&parent)
                .map_err(StageError::io(format!(
                    "a data dir in {}",
                    parent.display()
                )))?;
            give_to(home.path(), user)?;
            run(
                Command::new("cp")
                    .arg("-a")
                    .arg(&template)
                    .arg(home.path().join("data")),
                None,
            )?;
            Ok(home)
        })
    };
    let home = prepared.await.map_err(|e| StageError::Io {
        what: "preparing Postgres".into(),
        source: std::io::Error::other(e),
    })??;
    let data = home.path().join("data");
    let port = free_port().map_err(StageError::io("finding a free port"))?;
    let mut spec = ChildSpec::new(KIND.name, bin.postgres, run_dir)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
        .arg(home.path())
        .args([
            // In the data dir rather than /dev/shm/PostgreSQL.*, which a
            // killed server would leave behind.
            "-c",
            "dynamic_shared_memory_type=mmap",
            "-c",
            "fsync=off",
            // A commit the app was told about survives a SIGKILL (the WAL is
            // written before the answer); only the fsync to the disk is skipped,
            // which matters for a machine crash, not a process crash.
            "-c",
            "synchronous_commit=on",
            "-c",
            "full_page_writes=off",
        ]);
    if let Some((uid, gid)) = user {
        spec = spec.user(uid, gid);
    }
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    // On failure the home goes, with the server's data, as this returns.
    let server = Server::private(&KIND, Supervised::spawn(spec)?, url).await?;
    Ok((server, home))
}

impl Postgres {
    /// A crash: SIGKILL to the server's process group, no shutdown. Reaps the
    /// postmaster, waits until its backends are gone too, and clears what a
    /// killed server leaves that would stop a start on the same data dir (its
    /// System V segment, `postmaster.pid`, the socket lock file). Start it
    /// again with [`Server::start_again`] (the `postgres-crash` fault does both).
    pub async fn kill_and_reap(&mut self) -> Result<(), StageError> {
        self.server.require_private("crashed")?;
        let group = self.server.process().map(|p| p.pid());
        self.server.kill().await?;
        let Some(group) = group else {
            return Ok(());
        };
        // The backends were in the same group and got the SIGKILL too; their
        // parent is gone, so init reaps them. Wait (bounded) until none is left.
        let empty = poll_until(Duration::from_secs(5), || async { group_is_empty(group) }).await;
        if !empty {
            tracing::warn!(
                group,
                "processes of a killed Postgres are still there after 5 s"
            );
        }
        self.clear_leftovers().await
    }

    /// Reaps a private server that died on its own or was killed from
    /// outside (so it is not left defunct, its pid still "alive" in its lock
    /// file) and clears its leftovers, once; returns whether it is down.
    pub async fn reap_if_exited(&mut self) -> Result<bool, StageError> {
        if !self.server.has_exited() {
            return Ok(false);
        }
        self.clear_leftovers().await?;
        Ok(true)
    }

    async fn clear_leftovers(&mut self) -> Result<(), StageError> {
        let pid = self.server.process().map(|p| p.pid());
        let Some(home) = self.home.as_ref().map(|h| h.path().to_owned()) else {
            return Ok(());
        };
        if pid.is_some() && self.cleared == pid {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || clear_after_kill(&home))
            .await
            .map_err(|e| StageError::Io {
                what: "clearing after a Postgres kill".into(),
                source: std::io::Error::other(e),
            })?;
        self.cleared = pid;
        Ok(())
    }

    /// Starts a server that was killed again on its port and data dir
    /// (clearing what the dead one left first), waiting until it answers.
    pub async fn start_again(&mut self) -> Result<(), StageError> {
        if self.reap_if_exited().await? {
            self.server.start_again().await?;
        }
        Ok(())
    }
}

/// Whether no live (non-zombie) process is left in process group `group`.
fn group_is_empty(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    !entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // After the command name (which may hold spaces): state, ppid, pgrp.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z") && fields.get(2) == Some(&group.to_string().as_str())
    })
}

/// Removes the segment, pid file and socket lock file a killed server left in `home`.
fn clear_after_kill(home: &Path) {
    let data = home.join("data");
    remove_stale_segment(&data);
    let _ = std::fs::remove_file(data.join("postmaster.pid"));
    if let Ok(entries) = std::fs::read_dir(home) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".s.PGSQL.") && name.ends_with(".lock") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl Drop for Postgres {
    /// A fast shutdown (SIGINT) before the process group's SIGKILL: Postgres
    /// then removes its System V shared-memory segment, which a kill leaves
    /// behind, one per run, until the kernel refuses new segments. Blocks for
    /// the shutdown (tens of milliseconds; at most a few seconds).
    fn drop(&mut self) {
        let Some(home) = &self.home else {
            return;
        };
        let exited = self.server.has_exited();
        let Some(server) = self.server.process() else {
            return;
        };
        if exited || server.signal(Signal::SIGINT).is_err() {
            // Killed earlier (a fault): no shutdown ran to remove the segment.
            remove_stale_segment(&home.path().join("data"));
            return;
        }
        // The postmaster removes its pid file as the last step of a clean shutdown.
        let pid_file = home.path().join("data/postmaster.pid");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pid_file.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Room a private Postgres may grow into in memory: a container's default
/// 64 MiB /dev/shm would fill up under load, so such a one is not used.
const MIN_FREE_IN_MEMORY: u64 = 1 << 30;

/// Where private data dirs go: `HARNESS_PG_DIR`, else `/dev/shm` when it is a
/// writable in-memory folder with at least 1 GiB free, else the run folder.
pub fn data_parent(run_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("HARNESS_PG_DIR") {
        return dir.into();
    }
    let shm = Path::new("/dev/shm");
    let roomy = nix::sys::statvfs::statvfs(shm).is_ok_and(|fs| {
        fs.blocks_available().saturating_mul(fs.fragment_size()) >= MIN_FREE_IN_MEMORY
    });
    let writable = roomy
        && tempfile::Builder::new()
            .prefix(".harness-probe-")
            .tempdir_in(shm)
            .is_ok();
    if writable {
        shm.to_owned()
    } else {
        run_dir.to_owned()
    }
}

/// Removes the data dirs (and segments) of harnesses that are gone; the
/// parent-death signal took their servers along.
pub fn sweep_abandoned(parent: &Path) {
    for home in abandoned(parent, HOME_PREFIX) {
        remove_stale_segment(&home.join("data"));
        let _ = std::fs::remove_dir_all(home);
    }
}

/// Removes the System V segment a killed postmaster of `data` left behind,
/// unless some process is still attached to it (then it is not stale).
fn remove_stale_segment(data: &Path) {
    // Line 7 of postmaster.pid: the segment's key and id.
    let Ok(pid_file) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    let Some(shmid) = pid_file
        .lines()
        .nth(6)
        .and_then(|line| line.split_whitespace().nth(1))
        .map(str::to_owned)
    else {
        return;
    };
    // The killed server's other processes may still be exiting (and attached)
    // for a moment; a segment still attached after that is in use, not stale.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match attached(&shmid) {
            None => return,
            Some(0) => break,
            Some(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(_) => return,
        }
    }
    let _ = Command::new("ipcrm")
        .args(["-m", &shmid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// How many processes are attached to System V segment `shmid`; `None` when
/// there is no such segment.
fn attached(shmid: &str) -> Option<u64> {
    // Columns: key shmid perms size cpid lpid nattch ...
    let table = std::fs::read_to_string("/proc/sysvipc/shm").ok()?;
    table.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        (columns.get(1) == Some(&shmid)).then(|| columns.get(6)?.parse().ok())?
    })
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
