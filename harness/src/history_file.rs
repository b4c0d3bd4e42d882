//! A run's whole history on disk (`harness bench --history`), so every
//! count in a results file can be traced to the requests behind it, not only
//! the few example histories the results keep. JSON lines: the first line
//! holds the browsers (index = browser id) and the fault steps, then one
//! event per line in the order the events completed, so `grep '"browser":7,'`
//! or `jq` finds one browser's requests without loading the rest.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::history::{BrowserInfo, Event, FaultStep, History};

/// The extension beside the results file's stem (`.json` globs of results
/// files do not pick it up).
pub const EXTENSION: &str = "history.jsonl";

/// The first line.
#[derive(Serialize, Deserialize)]
struct Head {
    browsers: Vec<BrowserInfo>,
    faults: Vec<FaultStep>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {source}")]
    Json {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{0}: empty, no browsers line")]
    Empty(String),
}

/// Where the history of the results file `results` goes.
pub fn beside(results: &Path) -> PathBuf {
    results.with_extension(EXTENSION)
}

pub fn write(history: &History, path: &Path) -> Result<(), HistoryFileError> {
    let io = |source| HistoryFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let json = |source| HistoryFileError::Json {
        path: path.display().to_string(),
        line: 0,
        source,
    };
    let mut out = BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let head = Head {
        browsers: history.browsers.clone(),
        faults: history.faults.clone(),
    };
    serde_json::to_writer(&mut out, &head).map_err(json)?;
    out.write_all(b"\n").map_err(io)?;
    for event in &history.events {
        serde_json::to_writer(&mut out, event).map_err(json)?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)
}

pub fn read(path: &Path) -> Result<History, HistoryFileError> {
    let shown = path.display().to_string();
    let io = |source| HistoryFileError::Io {
        path: shown.clone(),
        source,
    };
    let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut lines = reader.lines().enumerate();
    let parse_error = |line: usize| {
        let shown = shown.clone();
        move |source| HistoryFileError::Json {
            path: shown,
            line: line + 1,
            source,
        }
    };
    let (_, first) = lines
        .next()
        .ok_or_else(|| HistoryFileError::Empty(shown.clone()))?;
    let head: Head = serde_json::from_str(&first.map_err(io)?).map_err(parse_error(0))?;
    let mut events = Vec::new();
    for (index, line) in lines {
        let line = line.map_err(io)?;
        if !line.trim().is_empty() {
            events.push(serde_json::from_str::<Event>(&line).map_err(parse_error(index))?);
        }
    }
    Ok(History {
        browsers: head.browsers,
        events,
        faults: head.faults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{BrowserId, NoAnswer, Outcome, Request};

    fn sample() -> History {
        History {
            browsers: vec![BrowserInfo {
                person: 0,
                user: "person-0".into(),
            }],
            events: vec![Event {
                browser: BrowserId(0),
                request: Request::CartRead,
                sent_to: "app-1".into(),
                invoked: 10,
                completed: 20,
                outcome: Outcome::NoAnswer {
                    cause: NoAnswer::Refused,
                    detail: "connection refused".into(),
                },
            }],
            faults: Vec::new(),
        }
    }

    #[test]
    fn a_history_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("dir");
        let path = beside(&dir.path().join("smoke-option4-x.json"));
        assert!(
            path.to_string_lossy()
                .ends_with("smoke-option4-x.history.jsonl")
        );
        write(&sample(), &path).expect("write");
        assert_eq!(read(&path).expect("read"), sample());
        let text = std::fs::read_to_string(&path).expect("text");
        assert_eq!(
            text.lines().count(),
            2,
            "browsers line and one event per line"
        );
    }

    #[test]
    fn a_damaged_line_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.history.jsonl");
        write(&sample(), &path).expect("write");
        let text = std::fs::read_to_string(&path).expect("text") + "{\"browser\": \n";
        std::fs::write(&path, text).expect("damage");
        let error = read(&path).expect_err("damaged").to_string();
        assert!(error.contains(":3:"), "{error}");
    }
}
