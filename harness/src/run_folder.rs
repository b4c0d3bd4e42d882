//! Run folders: where a run's logs (and, when memory is short, Postgres's
//! data) go. A temporary one is named after the harness's pid, so the next
//! run can sweep what a SIGKILLed harness could not clean.

use std::path::{Path, PathBuf};

use crate::stage::StageError;
use crate::stage::process::{abandoned, owned_prefix};
use crate::stage::services::postgres;

/// Temporary run folders are `harness-run-<pid>-…` in the temp dir.
pub const RUN_PREFIX: &str = "harness-run-";

/// The folder of one run.
pub struct RunFolder {
    path: PathBuf,
    /// Set for a temporary folder, removed when this goes.
    temp: Option<tempfile::TempDir>,
}

impl RunFolder {
    /// `chosen`, or a new temporary folder, after sweeping the temporary
    /// folders of harnesses that are gone.
    pub fn new(chosen: Option<PathBuf>) -> Result<Self, StageError> {
        if let Some(path) = chosen {
            return Ok(Self { path, temp: None });
        }
        let parent = std::env::temp_dir();
        sweep_abandoned(&parent);
        let temp = tempfile::Builder::new()
            .prefix(&owned_prefix(RUN_PREFIX))
            .tempdir()
            .map_err(StageError::io(format!(
                "a run folder in {}",
                parent.display()
            )))?;
        Ok(Self {
            path: temp.path().to_owned(),
            temp: Some(temp),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the folder after the run; returns where it is.
    pub fn keep(self) -> PathBuf {
        match self.temp {
            Some(temp) => temp.keep(),
            None => self.path,
        }
    }
}

/// Removes the run folders of dead harnesses. A Postgres data dir inside one
/// is swept first: its pid file names the System V segment its killed server
/// left, which must go before the file does.
pub fn sweep_abandoned(parent: &Path) {
    for folder in abandoned(parent, RUN_PREFIX) {
        postgres::sweep_abandoned(&folder);
        let _ = std::fs::remove_dir_all(folder);
    }
}
