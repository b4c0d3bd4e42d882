//! Redis and Postgres for a run, tried in this order: an existing server from
//! `REDIS_URL` / `DATABASE_URL`; a private one the harness starts on a free
//! port; with the `containers` feature, a container. When none works, one
//! error says what to install.
//!
//! What the two have in common (how they were provided, readiness,
//! restart, kill, pause) is [`Server`]; [`redis`] and [`postgres`] hold only
//! what differs: how a private one starts, and their own faults.

pub mod cluster_reshard;
#[cfg(feature = "containers")]
pub mod containers;
pub mod postgres;
pub mod redis;
pub mod redis_cluster;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::StageError;
use super::process::{Supervised, poll_until};

/// A check that a server answers a real request (PING, SELECT 1).
pub type Probe = fn(String) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What tells Redis and Postgres apart where [`Server`] needs to know.
pub struct ServerKind {
    /// Process and log name (`redis`).
    pub name: &'static str,
    /// For messages (`Redis`).
    pub label: &'static str,
    /// The environment variable naming an external server.
    pub url_env: &'static str,
    pub ready_timeout: Duration,
    /// What asks the server to stop for a restart (Postgres: SIGINT, a fast shutdown).
    pub stop_signal: Signal,
    pub probe: Probe,
}

/// How a server was provided.
pub enum Provision {
    /// An existing server from the environment, used as is.
    External { url: String },
    /// A container the harness started (the `containers` feature); it goes with this value.
    Container {
        url: String,
        _handle: Box<dyn std::any::Any + Send + Sync>,
    },
    /// A server the harness runs itself, so it can restart, kill and pause it.
    Private {
        server: Box<Supervised>,
        url: String,
    },
}

/// A Redis or Postgres of the run, however it was provided.
pub struct Server {
    kind: &'static ServerKind,
    provision: Provision,
}

impl Server {
    /// The external server named by `url` (checked with the probe), or else
    /// what `private` starts, or else (with the `containers` feature) a container.
    pub async fn provide(
        kind: &'static ServerKind,
        url: Option<String>,
        private: impl Future<Output = Result<Server, StageError>>,
    ) -> Result<Self, StageError> {
        if let Some(url) = url.filter(|u| !u.is_empty()) {
            (kind.probe)(url.clone()).await.map_err(|e| {
                StageError::NotAvailable(format!("{}={url} does not answer: {e}", kind.url_env))
            })?;
            return Ok(Self {
                kind,
                provision: Provision::External { url },
            });
        }
        match private.await {
            #[cfg(feature = "containers")]
            Err(StageError::NotAvailable(without_binaries)) => {
                let (handle, url) = containers::start(kind).await.map_err(|e| {
                    StageError::NotAvailable(format!("{without_binaries}; and {e}"))
                })?;
                Ok(Self {
                    kind,
                    provision: Provision::Container {
                        url,
                        _handle: handle,
                    },
                })
            }
            other => other,
        }
    }

    /// A private server just spawned; returns once it answers.
    pub async fn private(
        kind: &'static ServerKind,
        server: Supervised,
        url: String,
    ) -> Result<Self, StageError> {
        let server = Self {
            kind,
            provision: Provision::Private {
                server: Box::new(server),
                url,
            },
        };
        server.wait_ready().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        match &self.provision {
            Provision::External { url }
            | Provision::Container { url, .. }
            | Provision::Private { url, .. } => url.clone(),
        }
    }

    /// How it was provided, in words (`an external server`, ...).
    pub fn provided_as(&self) -> &'static str {
        match &self.provision {
            Provision::External { .. } => "an external server",
            Provision::Container { .. } => "a container",
            Provision::Private { .. } => "a private server",
        }
    }

    /// The server process, when the harness runs it.
    pub fn process(&self) -> Option<&Supervised> {
        match &self.provision {
            Provision::Private { server, .. } => Some(server),
            _ => None,
        }
    }

    /// The private server, for an action only such a server allows.
    fn own(&mut self, action: &'static str) -> Result<&mut Supervised, StageError> {
        match &mut self.provision {
            Provision::Private { server, .. } => Ok(server),
            _ => Err(StageError::External(self.kind.label, action)),
        }
    }

    /// Refuses an action on a server the harness does not run.
    pub(super) fn require_private(&mut self, action: &'static str) -> Result<(), StageError> {
        self.own(action).map(drop)
    }

    /// For a private server: waits until it answers the probe.
    async fn wait_ready(&self) -> Result<(), StageError> {
        let Provision::Private { server, url } = &self.provision else {
            return Ok(());
        };
        let probe = self.kind.probe;
        if poll_until(self.kind.ready_timeout, || async {
            probe(url.clone()).await.is_ok()
        })
        .await
        {
            return Ok(());
        }
        Err(StageError::not_ready(
            self.kind.name,
            self.kind.ready_timeout.as_secs(),
            server.log(),
        ))
    }

    /// Asks the server to stop and starts it again on the same port.
    pub async fn restart(&mut self) -> Result<(), StageError> {
        let signal = self.kind.stop_signal;
        let server = self.own("restarted")?;
        server.stop(signal, Duration::from_secs(10)).await?;
        server.respawn()?;
        self.wait_ready().await
    }

    /// Kills the server (SIGKILL to its process group) without starting it again.
    pub async fn kill(&mut self) -> Result<(), StageError> {
        self.own("killed")?.kill().await?;
        Ok(())
    }

    /// Starts a server that was killed again, same spec (port, data), and
    /// waits until it answers.
    pub async fn start_again(&mut self) -> Result<(), StageError> {
        let server = self.own("started")?;
        if !server.has_exited() {
            return Ok(());
        }
        server.respawn()?;
        self.wait_ready().await
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&mut self) -> Result<(), StageError> {
        Ok(self.own("paused")?.signal(Signal::SIGSTOP)?)
    }

    pub fn resume(&mut self) -> Result<(), StageError> {
        Ok(self.own("resumed")?.signal(Signal::SIGCONT)?)
    }

    /// Whether the private server's process has ended (killed, crashed).
    pub fn has_exited(&mut self) -> bool {
        match &mut self.provision {
            Provision::Private { server, .. } => server.has_exited(),
            _ => false,
        }
    }
}

/// Finds a program on `PATH`, then in extra folders (Postgres's usual install folders).
pub fn find_program(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
