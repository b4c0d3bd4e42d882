//! A file's text and where things are in it: the one guarded reader for
//! every file the harness reads (scenario, topology, target and results
//! files: regular files only, size capped, UTF-8 with the position of the
//! first byte that is not), and byte offsets turned into `file:line:column`
//! for every error.

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Scenario, topology and target files: larger ones are refused (a
/// 100,000-step schedule is about 6 MB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Results files and baselines: a claims run's is about 2.5 MiB; files
/// merged from many machines' runs are larger, but not by this much.
pub const MAX_RESULTS_BYTES: u64 = 512 << 20;

/// Why a file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The OS said no (the reason is its own, once).
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a regular file (it is a {what})")]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("{path} is larger than the {cap} bytes read of a file like it")]
    TooLarge { path: PathBuf, cap: u64 },
    #[error("{at}: not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8")]
    NotUtf8 { at: Position, byte: u8 },
}

/// Why a scenario, topology or target file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Unreadable(#[from] ReadError),
    /// A mistake in the file, where it is.
    #[error("{at}: {message}")]
    Invalid { at: Position, message: String },
    /// A command-line value past a bound (no file to point into).
    #[error("{0}")]
    Bound(String),
}

/// A place in a file, shown as `file:line:column` (both from 1).
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

/// Reads a scenario, topology or target file (see [`read_text`]).
pub fn read(path: &Path) -> Result<String, ScenarioError> {
    Ok(read_text(path, MAX_FILE_BYTES)?)
}

/// Reads a file as text: a regular file of at most `cap` bytes, so a
/// device, a folder or a FIFO given by mistake neither fills memory nor
/// blocks; UTF-8, else the position of the first byte that is not. A
/// leading byte-order mark is dropped, so it shifts no column.
pub fn read_text(path: &Path, cap: u64) -> Result<String, ReadError> {
    let io = |error| ReadError::Io {
        path: path.to_owned(),
        error,
    };
    // Non-blocking, so opening a FIFO returns at once (and is then refused);
    // it changes nothing for a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(io)?;
    let kind = file.metadata().map_err(io)?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "folder"
        } else if kind.is_fifo() {
            "FIFO"
        } else if kind.is_char_device() {
            "character device"
        } else if kind.is_block_device() {
            "block device"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(ReadError::NotAFile {
            path: path.to_owned(),
            what,
        });
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            cap,
        });
    }
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let byte = e.as_bytes()[valid];
        let before = String::from_utf8_lossy(&e.as_bytes()[..valid]);
        let at = Source::new(&before, &path.display().to_string()).position(valid);
        ReadError::NotUtf8 { at, byte }
    })
}

/// A serde or TOML message with the Rust type names it may carry
/// (`expected usize`, `struct Topology`) said as a file's author would.
fn in_user_words(message: &str) -> String {
    const WORDS: [(&str, &str); 6] = [
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected struct Topology",
            "expected a preset's name (\"option4\") or a topology table",
        ),
        (
            "wanted string or table",
            "expected one of this key's names, in quotes",
        ),
    ];
    let mut message = message.to_owned();
    for (rust, user) in WORDS {
        message = message.replace(rust, user);
    }
    message
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
            message: in_user_words(error.message().trim_end()),
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
        let error = read_text(Path::new("/dev/zero"), 10).expect_err("not a file");
        assert!(
            matches!(
                error,
                ReadError::NotAFile {
                    what: "character device",
                    ..
                }
            ),
            "{error}"
        );
        let dir = tempfile::tempdir().expect("dir");
        let fifo = dir.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        // No writer ever comes: a blocking open would hang here.
        let error = read_text(&fifo, 10).expect_err("not a file");
        assert!(
            matches!(error, ReadError::NotAFile { what: "FIFO", .. }),
            "{error}"
        );
        let error = read_text(dir.path(), 10).expect_err("not a file");
        assert!(
            matches!(error, ReadError::NotAFile { what: "folder", .. }),
            "{error}"
        );
        assert!(matches!(
            read_text(&dir.path().join("absent.toml"), 10),
            Err(ReadError::Io { .. })
        ));
    }

    #[test]
    fn a_byte_order_mark_shifts_no_column_and_bad_bytes_are_placed() {
        let dir = tempfile::tempdir().expect("dir");
        let bom = dir.path().join("bom.toml");
        std::fs::write(&bom, b"\xEF\xBB\xBFa = 1\n").expect("write");
        assert_eq!(read_text(&bom, 100).expect("reads"), "a = 1\n");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, b"a = 1\nb = \"\xC3\xA9\xFF\"\n").expect("write");
        let error = read_text(&bad, 100).expect_err("not UTF-8").to_string();
        assert!(
            error.starts_with(&format!(
                "{}:2:7: not UTF-8 text (byte 0xff)",
                bad.display()
            )),
            "{error}"
        );
        let big = dir.path().join("big.toml");
        std::fs::write(&big, [b'#'; 11]).expect("write");
        assert!(matches!(
            read_text(&big, 10),
            Err(ReadError::TooLarge { cap: 10, .. })
        ));
    }
}
