//! The offline checker (`harness analyze`: read a history file, judge it)
//! on synthetic histories of 100,000 to 1,000,000 events from 10,000
//! browsers: time and peak memory of each, and how time grows with size.
//! Goal: 1,000,000 events in under 10 s and 2 GiB.
//!
//!     cargo bench -p harness --bench analyze
//!
//! Each analysis runs in a process of its own (this bench run again), so
//! its peak resident memory is its own, not the generator's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use harness::history::{
    BrowserId, BrowserInfo, Event, FaultStep, History, Observed, Outcome, Request,
};
use harness::judge::RunFacts;

const BROWSERS: u32 = 10_000;
const SIZES: [usize; 4] = [100_000, 250_000, 500_000, 1_000_000];
/// Set in the child: the history file to analyze.
const CHILD: &str = "ANALYZE_BENCH_FILE";
const STARTED_MS: u64 = 1_700_000_000_000;

fn ok(observed: Observed, instance: &str, version: u64) -> Outcome {
    Outcome::Answered {
        status: 200,
        instance: Some(instance.to_owned()),
        session_version: Some(version),
        error: None,
        observed,
    }
}

/// A history of `events` events: every browser signs in, then reads its
/// profile (cached tokens, a refresh each minute), writes and reads its
/// cart, and now and then logs out and signs in again.
fn synthetic(events: usize) -> History {
    let per_browser = events / BROWSERS as usize;
    let mut history = History {
        browsers: (0..BROWSERS)
            .map(|b| BrowserInfo {
                person: b,
                user: format!("person-{b}"),
            })
            .collect(),
        events: Vec::with_capacity(events),
        faults: vec![FaultStep {
            at: 30_000_000,
            took: 200_000,
            action: "instance-restart app-1".into(),
            ends: None,
            error: None,
            unscheduled: None,
        }],
    };
    let instances = ["app-1", "app-2", "app-3"];
    for b in 0..BROWSERS {
        let user = format!("person-{b}");
        let sub = mock_idp::users::oid_of(&user);
        let instance = instances[b as usize % instances.len()];
        let mut clock = u64::from(b) * 7_919 % 100_000;
        let (mut items, mut next_item, mut version, mut session) = (Vec::new(), 0, 0, 0);
        let mut token_exp = 0;
        for n in 0..per_browser {
            clock += 100_000 + (n as u64 * 7_127 + u64::from(b)) % 50_000;
            let (request, outcome) = match n % 40 {
                0 => {
                    session += 1;
                    items.clear();
                    version = 1;
                    token_exp = STARTED_MS / 1000 + clock / 1_000_000 + 60;
                    (
                        Request::SignIn,
                        ok(
                            Observed::SignedIn {
                                user: Some(user.clone()),
                                session: Some(format!("s{b}-{session}")),
                                idp_sid: Some(format!("sid{b}-{session}")),
                            },
                            instance,
                            version,
                        ),
                    )
                }
                39 => (
                    Request::Logout,
                    ok(
                        Observed::LoggedOut {
                            idp_session_ended: true,
                        },
                        instance,
                        version,
                    ),
                ),
                k if k % 3 == 0 => {
                    let now = STARTED_MS / 1000 + clock / 1_000_000;
                    let source = if now + 10 >= token_exp {
                        token_exp = now + 60;
                        contract::TokenSource::Refresh
                    } else {
                        contract::TokenSource::Cache
                    };
                    (
                        Request::Profile,
                        ok(
                            Observed::Token {
                                user: user.clone(),
                                source,
                                sub: sub.clone(),
                                sid: Some(format!("sid{b}-{session}")),
                                jti: format!("j{b}-{token_exp}"),
                                scopes: None,
                                exp: token_exp,
                            },
                            instance,
                            version,
                        ),
                    )
                }
                k if k % 3 == 1 => {
                    next_item += 1;
                    items.push(next_item);
                    version += 1;
                    (
                        Request::CartWrite { item: next_item },
                        ok(
                            Observed::Cart {
                                version,
                                items: items.clone(),
                                foreign: 0,
                                others: Vec::new(),
                            },
                            instance,
                            version,
                        ),
                    )
                }
                _ => (
                    Request::CartRead,
                    ok(
                        Observed::Cart {
                            version,
                            items: items.clone(),
                            foreign: 0,
                            others: Vec::new(),
                        },
                        instance,
                        version,
                    ),
                ),
            };
            history.events.push(Event {
                browser: BrowserId(b),
                request,
                sent_to: instance.to_owned(),
                invoked: clock,
                completed: clock + 2_000 + (n as u64 * 31) % 5_000,
                outcome,
            });
        }
    }
    // The file holds events in the order they completed.
    history.events.sort_by_key(|e| e.completed);
    history
}

fn facts(history: &History) -> RunFacts {
    let end = history
        .events
        .iter()
        .map(|e| e.completed)
        .max()
        .unwrap_or(0);
    RunFacts {
        instances: vec!["app-1".into(), "app-2".into(), "app-3".into()],
        started_unix_ms: STARTED_MS,
        duration_secs: end as f64 / 1e6,
        look: end + 2_000_000,
        ..RunFacts::default()
    }
}

/// Peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The child: analyze one file, print seconds, peak RSS and anomalies.
fn child(path: &Path) {
    let began = Instant::now();
    let analysis = harness::analyze::analyze(path).expect("analyzes");
    let seconds = began.elapsed().as_secs_f64();
    let anomalies: usize = analysis.findings.anomalies.values().map(Vec::len).sum();
    println!(
        "{seconds} {} {anomalies} {}",
        peak_rss(),
        analysis.history.events.len()
    );
}

fn main() {
    if let Ok(path) = std::env::var(CHILD) {
        child(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("this bench");
    println!("offline checker (read + judge) on synthetic histories, {BROWSERS} browsers:");
    println!(
        "{:>10} {:>9} {:>9} {:>11} {:>10}",
        "events", "file MB", "seconds", "peak RSS MB", "us/event"
    );
    let mut first: Option<(usize, f64)> = None;
    for size in SIZES {
        let history = synthetic(size);
        let path: PathBuf = dir.path().join(format!("h{size}.history.jsonl"));
        harness::history_file::write_run(&history, Some(&facts(&history)), &path).expect("write");
        drop(history);
        let file_mb = std::fs::metadata(&path).map_or(0, |m| m.len()) as f64 / 1e6;
        let output = std::process::Command::new(&exe)
            .env(CHILD, &path)
            .output()
            .expect("child runs");
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<f64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let [seconds, rss, anomalies, events] = fields[..] else {
            panic!("child said {text:?}");
        };
        println!(
            "{:>10} {:>9.0} {:>9.2} {:>11.0} {:>10.2}",
            events,
            file_mb,
            seconds,
            rss / 1048576.0,
            seconds * 1e6 / events
        );
        assert_eq!(anomalies, 0.0, "a clean synthetic history has no anomaly");
        let _ = std::io::stdout().flush();
        match first {
            None => first = Some((size, seconds)),
            Some((base, base_secs)) if size == 1_000_000 => println!(
                "growth: {}x the events took {:.1}x the time (1.0 per x = linear); goal under 10 s and 2048 MB",
                size / base,
                seconds / base_secs
            ),
            _ => {}
        }
        let _ = std::fs::remove_file(&path);
    }
}
