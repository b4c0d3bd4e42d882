//! What can go wrong bringing up or hurting a part of the stage.

use std::path::PathBuf;

use super::ids::{InstanceId, StoreKind};
use super::process::ProcessError;

/// Why a part of the stage could not be brought up or controlled.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// No way to get the service here; the message says what to install.
    #[error("{0}")]
    NotAvailable(String),
    #[error("{service} did not become ready within {seconds} s (log: {log})")]
    NotReady {
        service: String,
        seconds: u64,
        log: PathBuf,
    },
    /// The action needs a server the harness runs itself.
    #[error("{0} needs a private server; an external one (from the environment) cannot be {1}")]
    External(&'static str, &'static str),
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A program the harness runs (cp, initdb, ipcrm) could not be started.
    #[error("cannot run {program}: {source}")]
    Program {
        program: String,
        source: std::io::Error,
    },
    /// A program the harness ran failed.
    #[error("{program} failed ({status}){}", log.as_ref().map(|l| format!("; see {}", l.display())).unwrap_or_default())]
    ProgramFailed {
        program: String,
        status: std::process::ExitStatus,
        log: Option<PathBuf>,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("there is no {id}: the stack has {instances} instances")]
    NoSuchInstance { id: InstanceId, instances: usize },
    #[error("this stack runs without {0}")]
    NoStore(StoreKind),
    /// The target's instances run elsewhere: the harness cannot restart or kill them.
    #[error(
        "{action} needs instances the harness started; target {target} runs its instances elsewhere (given as URLs), so only store and IdP faults apply"
    )]
    NotOurs {
        action: &'static str,
        target: String,
    },
    #[error("network faults need the stack brought up with its network proxy")]
    NoProxy,
    #[error("cannot proxy {store} for network faults: {reason}")]
    Unproxyable { store: StoreKind, reason: String },
    /// A request to a server of the stage failed (a Redis command, the IdP's admin API).
    #[error("{what}: {reason}")]
    Request { what: String, reason: String },
}

impl StageError {
    /// File-system work in the run folder failed.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| StageError::Io { what, source }
    }
}
