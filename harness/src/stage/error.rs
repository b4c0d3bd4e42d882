//! What can go wrong bringing up or hurting a part of the stage.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::process::ProcessError;
use crate::model::ids::{InstanceId, StoreKind};

/// Why a part of the stage could not be brought up or controlled.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// No way to get the service here; the message says what to install.
    #[error("{0}")]
    NotAvailable(String),
    /// The log's last lines are kept in the error: the run folder holding
    /// the log is gone by the time the error is printed.
    #[error(
        "{service} did not become ready within {seconds} s{}",
        said_tail(log, tail)
    )]
    NotReady {
        service: String,
        seconds: u64,
        log: PathBuf,
        tail: String,
    },
    /// A child exited while the harness waited for it to be ready.
    #[error("{service} exited before it was ready{}", said_tail(log, tail))]
    ExitedEarly {
        service: String,
        log: PathBuf,
        tail: String,
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
    /// A program the harness ran failed (its log's last lines kept, as for `NotReady`).
    #[error("{program} failed ({status}){}", log.as_ref().map(|l| said_tail(l, tail)).unwrap_or_default())]
    ProgramFailed {
        program: String,
        status: std::process::ExitStatus,
        log: Option<PathBuf>,
        tail: String,
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

/// How much of a log an error keeps.
const TAIL_LINES: usize = 15;
const TAIL_BYTES: u64 = 4096;

/// The last lines of a log, or nothing when it cannot be read.
pub fn log_tail(log: &Path) -> String {
    let Ok(mut file) = std::fs::File::open(log) else {
        return String::new();
    };
    let length = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.take(TAIL_BYTES).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

fn said_tail(log: &Path, tail: &str) -> String {
    if tail.is_empty() {
        format!("; its log ({}) was empty", log.display())
    } else {
        let indented: Vec<String> = tail.lines().map(|l| format!("  | {l}")).collect();
        format!(
            "; the last lines of its log ({}):\n{}",
            log.display(),
            indented.join("\n")
        )
    }
}

impl StageError {
    /// A service that did not become ready, with its log's last lines.
    pub fn not_ready(service: impl Into<String>, seconds: u64, log: &Path) -> Self {
        StageError::NotReady {
            service: service.into(),
            seconds,
            log: log.to_owned(),
            tail: log_tail(log),
        }
    }

    /// A program that failed, with its log's last lines when it has one.
    pub fn program_failed(
        program: impl Into<String>,
        status: std::process::ExitStatus,
        log: Option<&Path>,
    ) -> Self {
        StageError::ProgramFailed {
            program: program.into(),
            status,
            log: log.map(Path::to_owned),
            tail: log.map(log_tail).unwrap_or_default(),
        }
    }

    /// File-system work in the run folder failed.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| StageError::Io { what, source }
    }
}
