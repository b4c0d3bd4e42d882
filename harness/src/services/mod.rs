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

use crate::process::wait_for_port;

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
pub(crate) async fn wait_until_answering<F, Fut>(
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
