//! A scenario file's text and where things are in it: reading it safely
//! (regular files only, size capped) and turning byte offsets into
//! `file:line:column` for every error.

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Larger files are refused: a 100,000-step schedule is about 6 MB.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why a scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    /// A mistake in the file, where it is.
    #[error("{at}: {message}")]
    Invalid { at: Position, message: String },
}

/// A place in a scenario file, shown as `file:line:column` (both from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Reads a scenario file: a regular file of at most [`MAX_FILE_BYTES`],
/// so a device or a FIFO given by mistake neither fills memory nor blocks.
pub fn read(path: &Path) -> Result<String, ScenarioError> {
    let read_error = |source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    };
    // Non-blocking, so opening a FIFO returns at once (and is then refused);
    // it changes nothing for a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(ScenarioError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ScenarioError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// Line starts of a text, so any offset becomes a position in `O(log lines)`.
pub struct Source<'t> {
    pub text: &'t str,
    pub file: Arc<str>,
    line_starts: Vec<usize>,
}

impl<'t> Source<'t> {
    pub fn new(text: &'t str, file: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            text,
            file: file.into(),
            line_starts,
        }
    }

    /// The position of a byte offset.
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |before| before.chars().count())
            + 1;
        Position {
            file: self.file.clone(),
            line,
            column,
        }
    }

    /// An error at the start of `span`.
    pub fn error(&self, span: &Range<usize>, message: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            at: self.position(span.start),
            message: message.into(),
        }
    }

    /// A TOML error, at its own span when it has one (`offset` added, for
    /// errors of a value parsed on its own), else at `fallback`.
    pub fn toml_error(
        &self,
        error: &toml::de::Error,
        offset: usize,
        fallback: &Range<usize>,
    ) -> ScenarioError {
        let at = error
            .span()
            .map_or(fallback.start, |span| span.start + offset);
        ScenarioError::Invalid {
            at: self.position(at),
            message: error.message().trim_end().to_owned(),
        }
    }

    /// Deserializes the value at `span` as `T`, errors at the exact place
    /// inside it. Values that cannot stand alone (a `[table]` section) are
    /// read from `value`, their errors placed at the value's start.
    pub fn value<T: serde::de::DeserializeOwned>(
        &self,
        span: &Range<usize>,
        value: toml::Value,
    ) -> Result<T, ScenarioError> {
        let alone = self
            .text
            .get(span.clone())
            .and_then(|raw| toml::de::ValueDeserializer::parse(raw).ok());
        match alone {
            Some(deserializer) => {
                T::deserialize(deserializer).map_err(|e| self.toml_error(&e, span.start, span))
            }
            None => value
                .try_into()
                .map_err(|e: toml::de::Error| self.toml_error(&e, 0, span)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns_counted_in_characters() {
        let source = Source::new("a = 1\n\nbé = \"x\"\n", "f.toml");
        assert_eq!(source.position(0).to_string(), "f.toml:1:1");
        assert_eq!(source.position(4).to_string(), "f.toml:1:5");
        assert_eq!(source.position(6).to_string(), "f.toml:2:1");
        // "bé = " is 5 characters and 6 bytes.
        assert_eq!(source.position(13).to_string(), "f.toml:3:6");
        assert_eq!(source.position(999).line, 4);
    }

    #[test]
    fn devices_and_fifos_are_refused_without_reading_them() {
        let error = read(Path::new("/dev/zero")).expect_err("not a file");
        assert!(matches!(error, ScenarioError::NotAFile { .. }), "{error}");
        let dir = tempfile::tempdir().expect("dir");
        let fifo = dir.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        // No writer ever comes: a blocking open would hang here.
        let error = read(&fifo).expect_err("not a file");
        assert!(matches!(error, ScenarioError::NotAFile { .. }), "{error}");
        assert!(matches!(
            read(&dir.path().join("absent.toml")),
            Err(ScenarioError::Read { .. })
        ));
    }
}
