//! A run's whole history on disk (`harness bench --history`), so every
//! count in a results file can be traced to the requests behind it, not only
//! the few example histories the results keep, and the whole verdict made
//! again (`harness analyze`). JSON lines: the first line holds the browsers
//! (index = browser id), the fault steps and the run's facts (the resolved
//! scenario and all that was measured live: [`RunFacts`]), then one event per
//! line in the order the events completed, so `grep '"browser":7,'` or `jq`
//! finds one browser's requests without loading the rest.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::history::{BrowserInfo, Event, FaultStep, History};
use crate::judge::RunFacts;

/// The extension beside the results file's stem (`.json` globs of results
/// files do not pick it up).
pub const EXTENSION: &str = "history.jsonl";

/// The first line.
#[derive(Serialize, Deserialize)]
struct Head {
    browsers: Vec<BrowserInfo>,
    faults: Vec<FaultStep>,
    /// Absent in files written before the verdict could be made again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<Box<RunFacts>>,
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

/// Writes `history` alone (no run facts: it can be read, not judged again).
pub fn write(history: &History, path: &Path) -> Result<(), HistoryFileError> {
    write_run(history, None, path)
}

/// Writes `history` with the facts its verdict rests on.
pub fn write_run(
    history: &History,
    facts: Option<&RunFacts>,
    path: &Path,
) -> Result<(), HistoryFileError> {
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
        run: facts.cloned().map(Box::new),
    };
    serde_json::to_writer(&mut out, &head).map_err(json)?;
    out.write_all(b"\n").map_err(io)?;
    for event in &history.events {
        serde_json::to_writer(&mut out, event).map_err(json)?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// The history of a file (its run facts, if any, left aside).
pub fn read(path: &Path) -> Result<History, HistoryFileError> {
    read_run(path).map(|(history, _)| history)
}

/// The history of a file and the run facts its first line carries.
pub fn read_run(path: &Path) -> Result<(History, Option<RunFacts>), HistoryFileError> {
    let shown = path.display().to_string();
    let io = |source| HistoryFileError::Io {
        path: shown.clone(),
        source,
    };
    // Streamed line by line (a history can be far larger than any other
    // input), so no size cap; but only a regular file: a FIFO would hang the
    // read and `/dev/zero` would grow one endless line. stat does not block.
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(io(std::io::Error::other(
            "not a regular file (a history is a .history.jsonl file)",
        )));
    }
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
    let history = History {
        browsers: head.browsers,
        events,
        faults: head.faults,
    };
    Ok((history, head.run.map(|facts| *facts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_that_is_no_regular_file_is_refused_at_once() {
        let error = read(Path::new("/dev/zero"))
            .expect_err("a device")
            .to_string();
        assert!(error.contains("not a regular file"), "{error}");
        let dir = tempfile::tempdir().expect("dir");
        let error = read(dir.path()).expect_err("a folder").to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }
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
    fn the_run_facts_come_back_with_the_history() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("h.history.jsonl");
        let facts = RunFacts {
            source: "here".into(),
            started_unix_ms: 1_700_000_000_123,
            duration_secs: 8.123_456_789,
            ..RunFacts::default()
        };
        write_run(&sample(), Some(&facts), &path).expect("write");
        assert_eq!(read_run(&path).expect("read"), (sample(), Some(facts)));
        write(&sample(), &path).expect("write without");
        assert_eq!(read_run(&path).expect("read"), (sample(), None));
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
