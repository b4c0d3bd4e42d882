//! Redis and Postgres for a run, tried in this order: an existing server from
//! `REDIS_URL` / `DATABASE_URL`; a private one the harness starts on a free
//! port; with the `containers` feature, a container. When none works, one
//! error says what to install.

#[cfg(feature = "containers")]
pub mod containers;
pub mod postgres;
pub mod redis;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{Supervised, wait_for_port};

/// Why a service could not be provided or controlled.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No way to get the service here; the message says what to install.
    #[error("{0}")]
    NotAvailable(String),
    #[error("{service} did not become ready within {seconds} s (log: {log})")]
    NotReady {
        service: &'static str,
        seconds: u64,
        log: PathBuf,
    },
    /// The action needs a server the harness runs itself.
    #[error("{0} needs a private server; an external one (from the environment) cannot be {1}")]
    External(&'static str, &'static str),
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Failed(String),
}

/// How a service was provided; Redis and Postgres share this shape.
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
        port: u16,
        url: String,
    },
}

impl Provision {
    pub fn url(&self) -> String {
        match self {
            Self::External { url } | Self::Container { url, .. } | Self::Private { url, .. } => {
                url.clone()
            }
        }
    }

    /// The server process, when the harness runs it.
    pub fn process(&self) -> Option<&Supervised> {
        match self {
            Self::External { .. } | Self::Container { .. } => None,
            Self::Private { server, .. } => Some(server),
        }
    }

    /// The private server, for an action only such a server allows.
    fn private(
        &mut self,
        service: &'static str,
        action: &'static str,
    ) -> Result<&mut Supervised, ServiceError> {
        match self {
            Self::External { .. } | Self::Container { .. } => {
                Err(ServiceError::External(service, action))
            }
            Self::Private { server, .. } => Ok(server),
        }
    }

    /// For a private server: waits until it accepts connections and `answers(url)` succeeds.
    async fn wait_ready<F, Fut>(
        &self,
        service: &'static str,
        timeout: Duration,
        answers: F,
    ) -> Result<(), ServiceError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = bool>,
    {
        let Self::Private { server, port, url } = self else {
            return Ok(());
        };
        wait_until_answering(service, *port, server.log(), timeout, || {
            answers(url.clone())
        })
        .await
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

/// Waits until a private server accepts connections on `port` and then
/// `answers` (a real request: PING, SELECT 1) succeeds.
async fn wait_until_answering<F, Fut>(
    service: &'static str,
    port: u16,
    log: &Path,
    timeout: Duration,
    answers: F,
) -> Result<(), ServiceError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    if wait_for_port(port, timeout).await {
        while tokio::time::Instant::now() < deadline {
            if answers().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Err(ServiceError::NotReady {
        service,
        seconds: timeout.as_secs(),
        log: log.to_owned(),
    })
}
