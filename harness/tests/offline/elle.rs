//! The Elle export's shape (elle-cli itself needs a JVM and Clojure
//! libraries no registry here serves, so it is not run): EDN operation maps,
//! one a line, that a list-append checker accepts: every invoke completed
//! once by the same process with the same transaction, a process never with
//! two operations in flight nor used after an `:info`, one key per session,
//! and each write's read showing what the answer showed.

use std::collections::HashMap;

use harness::history::{
    BrowserId, BrowserInfo, Event, History, NoAnswer, Observed, Outcome, Request,
};

fn answered(status: u16, observed: Observed) -> Outcome {
    Outcome::Answered {
        status,
        instance: Some("app-1".into()),
        session_version: None,
        error: None,
        observed,
    }
}

fn cart(items: &[u32]) -> Observed {
    Observed::Cart {
        version: 1,
        items: items.to_vec(),
        foreign: 0,
        others: Vec::new(),
    }
}

fn signed_in() -> Outcome {
    answered(
        200,
        Observed::SignedIn {
            user: None,
            session: None,
            idp_sid: None,
        },
    )
}

/// (browser, request, invoked ms, completed ms, outcome)
fn history(events: Vec<(u32, Request, u64, u64, Outcome)>) -> History {
    History {
        browsers: (0..2)
            .map(|p| BrowserInfo {
                person: p,
                user: format!("person-{p}"),
            })
            .collect(),
        events: events
            .into_iter()
            .map(|(b, request, from, to, outcome)| Event {
                browser: BrowserId(b),
                request,
                sent_to: "app-1".into(),
                invoked: from * 1000,
                completed: to * 1000,
                outcome,
            })
            .collect(),
        faults: Vec::new(),
    }
}

/// One EDN line as its fields.
#[derive(Debug)]
struct Op {
    kind: String,
    value: String,
    process: u64,
    time: u64,
    index: usize,
}

fn parse(line: &str) -> Op {
    let inner = line
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .unwrap_or_else(|| panic!("a map: {line}"));
    let mut fields = HashMap::new();
    for field in inner.split(", ") {
        let (key, value) = field
            .split_once(' ')
            .unwrap_or_else(|| panic!("`:key value`: {field} in {line}"));
        fields.insert(key.to_owned(), value.to_owned());
    }
    assert_eq!(fields.len(), 6, "{line}");
    assert_eq!(fields[":f"], ":txn", "{line}");
    let number = |key: &str| -> u64 {
        fields[key]
            .parse()
            .unwrap_or_else(|_| panic!("{key} in {line}"))
    };
    Op {
        kind: fields[":type"].clone(),
        value: fields[":value"].clone(),
        process: number(":process"),
        time: number(":time"),
        index: number(":index") as usize,
    }
}

fn export(history: &History) -> (Vec<Op>, harness::elle::Exported) {
    let mut out = Vec::new();
    let exported = harness::elle::write(history, &mut out).expect("written");
    let text = String::from_utf8(out).expect("utf-8");
    (text.lines().map(parse).collect(), exported)
}

#[test]
fn cart_requests_become_list_append_transactions_elle_can_read() {
    use Request::*;
    let h = history(vec![
        (0, SignIn, 0, 10, signed_in()),
        (0, CartWrite { item: 1 }, 20, 30, answered(200, cart(&[1]))),
        // A burst: two writes in flight at once.
        (
            0,
            CartWrite { item: 2 },
            40,
            60,
            answered(200, cart(&[1, 2])),
        ),
        (
            0,
            CartWrite { item: 3 },
            45,
            55,
            answered(200, cart(&[1, 3])),
        ),
        // Unknown outcome: the process is not used again.
        (
            0,
            CartWrite { item: 4 },
            70,
            80,
            Outcome::NoAnswer {
                cause: NoAnswer::Timeout,
                detail: "10s".into(),
            },
        ),
        (0, CartRead, 90, 95, answered(200, cart(&[1, 2, 3]))),
        // Never arrived: a definite failure.
        (
            0,
            CartRead,
            100,
            101,
            Outcome::NoAnswer {
                cause: NoAnswer::Refused,
                detail: "refused".into(),
            },
        ),
        (0, CartRead, 110, 111, answered(503, Observed::Nothing)),
        (0, Logout, 120, 121, answered(200, Observed::Nothing)),
        // A new session: a new key.
        (0, SignIn, 130, 140, signed_in()),
        (0, CartRead, 150, 151, answered(200, cart(&[]))),
        (0, CartRead, 160, 161, answered(401, Observed::Nothing)),
        (1, SignIn, 0, 10, signed_in()),
        (1, CartRead, 40, 42, answered(200, cart(&[]))),
        // Not cart requests: not in the export.
        (1, Profile, 50, 52, answered(200, Observed::Nothing)),
    ]);
    let (ops, exported) = export(&h);
    assert_eq!(exported.transactions, 10);
    assert_eq!(exported.keys, 3, "two sessions of b0, one of b1");
    assert_eq!(ops.len(), 20, "an invoke and a completion each");

    // Ordered by time, indexed from 0.
    for (n, op) in ops.iter().enumerate() {
        assert_eq!(op.index, n);
        assert!(["invoke", "ok", "fail", "info"].contains(&op.kind.trim_start_matches(':')));
    }
    assert!(ops.windows(2).all(|w| w[0].time <= w[1].time));

    // Per process: one operation in flight at most, completed by a matching
    // completion; nothing after an :info.
    let mut open: HashMap<u64, &Op> = HashMap::new();
    let mut retired: Vec<u64> = Vec::new();
    for op in &ops {
        assert!(
            !retired.contains(&op.process),
            "process {} used after :info",
            op.process
        );
        if op.kind == ":invoke" {
            assert!(
                open.insert(op.process, op).is_none(),
                "two in flight: {op:?}"
            );
            continue;
        }
        let invoke = open.remove(&op.process).expect("completes an invoke");
        let micro_ops = |v: &str| v.split("] [").count();
        assert_eq!(
            micro_ops(&invoke.value),
            micro_ops(&op.value),
            "{invoke:?} {op:?}"
        );
        assert!(
            invoke.value.contains(":r ") && invoke.value.ends_with(" nil]]"),
            "{invoke:?}"
        );
        if op.kind == ":info" {
            retired.push(op.process);
        }
    }
    assert!(open.is_empty());

    // The write's answer shows its read; an unknown outcome leaves it nil.
    let value = |kind: &str, needle: &str| {
        ops.iter()
            .find(|o| o.kind == kind && o.value.contains(needle))
            .map(|o| o.value.clone())
    };
    assert_eq!(
        value(":ok", "[:append 0 1]").as_deref(),
        Some("[[:append 0 1] [:r 0 [1]]]")
    );
    assert_eq!(
        value(":info", "[:append 0 4]").as_deref(),
        Some("[[:append 0 4] [:r 0 nil]]")
    );
    assert_eq!(
        value(":ok", "[:r 0 [1 2 3]]").as_deref(),
        Some("[[:r 0 [1 2 3]]]")
    );
    // Refused and 401: :fail; 503: :info.
    assert_eq!(ops.iter().filter(|o| o.kind == ":fail").count(), 2);
    assert_eq!(ops.iter().filter(|o| o.kind == ":info").count(), 2);
    // b0's second session is key 1 (keys go browser by browser); b1's is 2.
    assert!(value(":ok", "[:r 1 []]").is_some(), "{ops:#?}");
    assert!(value(":ok", "[:r 2 []]").is_some(), "{ops:#?}");
    // The burst's second write went on a process of its own, after the browsers'.
    let burst = ops
        .iter()
        .find(|o| o.kind == ":invoke" && o.value.contains("[:append 0 3]"))
        .expect("burst write");
    assert!(burst.process >= 2, "{burst:?}");
    assert_eq!(
        ops.iter()
            .find(|o| o.value.contains("[:append 0 1]"))
            .map(|o| o.process),
        Some(0),
        "a browser's own requests are its process"
    );
}

#[test]
fn the_corpus_exports_too() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/histories");
    let history =
        harness::history_file::read(&dir.join("lost-update.history.jsonl")).expect("reads");
    let (ops, exported) = export(&history);
    assert_eq!(exported.keys, 4, "four browsers, a session each");
    assert_eq!(ops.len() as u64, exported.transactions * 2);
}
