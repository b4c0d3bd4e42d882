//! A history as Elle's list-append test reads it (EDN, one operation map a
//! line), so an independent checker (Jepsen's Elle, through `elle-cli`) can
//! judge the cart without this harness's code.
//!
//! - One key per session: each sign-in of each browser starts a new list
//!   (keys are numbered browser by browser, each's sessions in order).
//! - A cart write of item `n` is the transaction `[[:append k n] [:r k ...]]`,
//!   the read being the cart the answer showed; a cart read is `[[:r k ...]]`.
//!   Only the session's own items are in a read (another browser's are this
//!   harness's cross-session-data, and not numbers of this key).
//! - Each request is an `:invoke` at its start and, at its end, `:ok` (2xx),
//!   `:fail` (4xx, or a connection refused: it never arrived) or `:info`
//!   (5xx, a timeout, a connection lost: it may have happened).
//! - The process is the browser. Elle's processes are single-threaded, so a
//!   request a browser sends while another of its own is in flight (a burst,
//!   a race) goes on a process of its own, numbered after the browsers; and a
//!   process whose request ended `:info` is never used again, as Jepsen does.
//! - Times are nanoseconds since the run began.

use std::fmt::Write as _;
use std::io::Write;

use crate::history::{Event, History, Micros, Observed, Outcome, Request};

/// How a request ended, as Elle names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Ok,
    Fail,
    Info,
}

impl Ending {
    fn of(outcome: &Outcome) -> Self {
        if outcome.ok() {
            Ending::Ok
        } else if outcome.indeterminate() {
            Ending::Info
        } else {
            Ending::Fail
        }
    }

    fn keyword(self) -> &'static str {
        match self {
            Ending::Ok => ":ok",
            Ending::Fail => ":fail",
            Ending::Info => ":info",
        }
    }
}

/// One cart request as a transaction on key `key`.
struct Txn<'h> {
    event: &'h Event,
    key: u64,
    process: u64,
}

/// What [`write`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exported {
    /// Transactions (each an invoke and a completion).
    pub transactions: u64,
    /// Keys: sessions that sent a cart request.
    pub keys: u64,
    /// Processes, the browsers' own and the extra ones.
    pub processes: u64,
}

/// Writes `history`'s cart requests to the file at `path` (`analyze --elle`).
pub fn write_file(history: &History, path: &std::path::Path) -> std::io::Result<Exported> {
    let out = std::fs::File::create(path)?;
    let mut out = std::io::BufWriter::new(out);
    let exported = write(history, &mut out)?;
    out.flush()?;
    Ok(exported)
}

/// Writes `history`'s cart requests to `out` as Elle list-append EDN.
pub fn write(history: &History, out: &mut impl Write) -> std::io::Result<Exported> {
    let txns = transactions(history);
    // Invocations and completions in time order; at equal times a
    // completion first (it cannot have overlapped an op that began then).
    let mut entries: Vec<(Micros, bool, usize)> = Vec::with_capacity(txns.len() * 2);
    for (n, txn) in txns.iter().enumerate() {
        entries.push((txn.event.invoked, true, n));
        entries.push((txn.event.completed, false, n));
    }
    entries.sort_unstable_by_key(|&(at, invoke, n)| (at, invoke, n));
    let mut line = String::new();
    for (index, &(at, invoke, n)) in entries.iter().enumerate() {
        let txn = &txns[n];
        line.clear();
        let ending = Ending::of(&txn.event.outcome);
        let kind = if invoke { ":invoke" } else { ending.keyword() };
        let _ = write!(
            line,
            "{{:type {kind}, :f :txn, :value {}, :process {}, :time {}, :index {index}}}",
            value(txn, invoke, ending),
            txn.process,
            at * 1000
        );
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    let keys = txns.iter().map(|t| t.key).max().map_or(0, |k| k + 1);
    let processes = txns.iter().map(|t| t.process).max().map_or(0, |p| p + 1);
    Ok(Exported {
        transactions: txns.len() as u64,
        keys,
        processes,
    })
}

/// The transaction's micro-operations: the append of a write, then the
/// read, whose value is known only at an `:ok` completion.
fn value(txn: &Txn<'_>, invoke: bool, ending: Ending) -> String {
    let read = match (invoke, ending, txn.event.outcome.observed()) {
        (false, Ending::Ok, Some(Observed::Cart { items, .. })) => {
            let items: Vec<String> = items.iter().map(u32::to_string).collect();
            format!("[{}]", items.join(" "))
        }
        _ => "nil".to_owned(),
    };
    match txn.event.request {
        Request::CartWrite { item } => {
            format!("[[:append {} {item}] [:r {} {read}]]", txn.key, txn.key)
        }
        _ => format!("[[:r {} {read}]]", txn.key),
    }
}

/// Every cart request with its key (the browser's session) and process.
fn transactions(history: &History) -> Vec<Txn<'_>> {
    let by_browser = history.by_browser();
    let mut txns = Vec::new();
    let mut next_key = 0u64;
    let mut next_extra = history.browsers.len() as u64;
    for (browser, events) in by_browser.iter().enumerate() {
        let mut key: Option<u64> = None;
        // Each of this browser's processes: when its request ends, and
        // whether it may be used again (not after an `:info`).
        let mut lanes: Vec<(u64, Micros, bool)> = Vec::new();
        for &index in events {
            let event = &history.events[index];
            // A 401 ends the session after the request it answered.
            let ends = crate::check::starts_session(event);
            if !matches!(event.request, Request::CartWrite { .. } | Request::CartRead) {
                if ends {
                    key = None;
                }
                continue;
            }
            let this_key = *key.get_or_insert_with(|| {
                next_key += 1;
                next_key - 1
            });
            if ends {
                key = None;
            }
            let free = lanes
                .iter_mut()
                .find(|(_, busy_until, usable)| *usable && *busy_until <= event.invoked);
            let lane = match free {
                Some(lane) => lane,
                None => {
                    let process = if lanes.is_empty() {
                        browser as u64
                    } else {
                        next_extra += 1;
                        next_extra - 1
                    };
                    lanes.push((process, 0, true));
                    lanes.last_mut().expect("just pushed")
                }
            };
            lane.1 = event.completed;
            lane.2 = Ending::of(&event.outcome) != Ending::Info;
            txns.push(Txn {
                event,
                key: this_key,
                process: lane.0,
            });
        }
    }
    txns
}
