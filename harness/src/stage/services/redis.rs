//! Redis: `REDIS_URL`, or a private `redis-server` on a free port with nothing persisted.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Server, ServerKind, find_program};
use crate::stage::StageError;
use crate::stage::process::{ChildSpec, Supervised, free_port};

pub static KIND: ServerKind = ServerKind {
    name: "redis",
    label: "Redis",
    url_env: "REDIS_URL",
    ready_timeout: Duration::from_secs(10),
    stop_signal: Signal::SIGTERM,
    probe: |url| Box::pin(async move { ping(&url).await }),
};

/// A Redis for the run: a [`Server`] that can also be flushed.
pub struct Redis {
    server: Server,
}

impl Deref for Redis {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DerefMut for Redis {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

impl Redis {
    /// `REDIS_URL` when set (checked with PING), else a private server in `run_dir`.
    pub async fn provide(run_dir: &Path) -> Result<Self, StageError> {
        Self::provide_from(std::env::var(KIND.url_env).ok(), run_dir).await
    }

    /// As [`Redis::provide`], with the URL the environment would give.
    pub async fn provide_from(url: Option<String>, run_dir: &Path) -> Result<Self, StageError> {
        let server = Server::provide(&KIND, url, start_private(run_dir)).await?;
        Ok(Self { server })
    }

    /// A private `redis-server` on a free port, data in `run_dir/redis`.
    pub async fn start_private(run_dir: &Path) -> Result<Self, StageError> {
        Ok(Self {
            server: start_private(run_dir).await?,
        })
    }

    /// Empties the server (FLUSHALL). Refused on an external server, which may be shared.
    pub async fn flush(&mut self) -> Result<(), StageError> {
        self.server.require_private("flushed")?;
        self.command("FLUSHALL").await
    }

    /// Saves the dataset to `dump.rdb` in the server's folder (SAVE, which
    /// blocks it for the moment that takes). The private server saves
    /// nothing by itself, but loads that file when it starts: a restart after
    /// a snapshot brings back the snapshot's contents, older than what it
    /// held when it went down. Refused on an external server.
    pub async fn snapshot(&mut self) -> Result<(), StageError> {
        self.server.require_private("snapshotted")?;
        self.command("SAVE").await
    }

    async fn command(&self, name: &str) -> Result<(), StageError> {
        let failed = |reason: String| StageError::Request {
            what: format!("redis {name}"),
            reason,
        };
        let client = ::redis::Client::open(self.url()).map_err(|e| failed(e.to_string()))?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| failed(e.to_string()))?;
        ::redis::cmd(name)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| failed(e.to_string()))
    }
}

async fn start_private(run_dir: &Path) -> Result<Server, StageError> {
    let program = find_program("redis-server", &[]).ok_or_else(|| {
        StageError::NotAvailable(
            "redis-server not found on PATH: install it (apt-get install redis-server) or set REDIS_URL".into(),
        )
    })?;
    let dir = run_dir.join("redis");
    // The run folder too: the server's log goes there.
    std::fs::create_dir_all(&dir).map_err(StageError::io(format!("creating {}", dir.display())))?;
    let port = free_port().map_err(StageError::io("finding a free port"))?;
    let spec = ChildSpec::new(KIND.name, program, run_dir)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(&dir);
    Server::private(
        &KIND,
        Supervised::spawn(spec)?,
        format!("redis://127.0.0.1:{port}"),
    )
    .await
}

async fn ping(url: &str) -> Result<(), String> {
    let client = ::redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut connection = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    ::redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
