//! The record of a run, in the manner of a Jepsen history: every request of
//! every simulated browser as an invoke/complete pair (when, where to, what
//! came back and what it showed). The load driver writes it; the checker
//! reads it; nothing else is shared between them.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use contract::TokenSource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Microseconds since the run started.
pub type Micros = u64;

/// One simulated browser (a person may have several, one after another or
/// at once). Index into [`History::browsers`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct BrowserId(pub u32);

impl fmt::Display for BrowserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}", self.0)
    }
}

/// Who a browser belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BrowserInfo {
    pub person: u32,
    /// The user name it signs in as (`login_hint`).
    pub user: String,
}

/// What a request asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    SignIn,
    Profile,
    Data {
        resource: String,
    },
    /// Adds this browser's item number `item` (unique per browser).
    CartWrite {
        item: u32,
    },
    CartRead,
    Logout,
    Health,
    /// A `GET /cart` with only the session cookie this browser held before
    /// its last logout, sent once a while after it from a jar of its own:
    /// a session that answers is resurrected. It is no part of the
    /// browser's current session.
    Replay,
}

impl Request {
    /// Every request type, as latencies are kept under them.
    pub const KINDS: [&'static str; 8] = [
        "sign_in",
        "profile",
        "data",
        "cart_write",
        "cart_read",
        "logout",
        "health",
        "replay",
    ];

    /// Its position in [`Request::KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            Request::SignIn => 0,
            Request::Profile => 1,
            Request::Data { .. } => 2,
            Request::CartWrite { .. } => 3,
            Request::CartRead => 4,
            Request::Logout => 5,
            Request::Health => 6,
            Request::Replay => 7,
        }
    }

    /// The request type latencies are kept under.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// Whether it belongs to the browser's own session (a replay of a
    /// logged-out cookie does not).
    pub fn in_session(&self) -> bool {
        !matches!(self, Request::Replay)
    }

    /// Whether it changes state at the server (its outcome may be unknown).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Request::SignIn | Request::CartWrite { .. } | Request::Logout
        )
    }
}

/// Why no answer came. A refused connection means the request never
/// arrived; the others leave unknown whether it was carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoAnswer {
    Refused,
    Timeout,
    Lost,
}

/// What an answer showed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "saw", rename_all = "snake_case")]
pub enum Observed {
    Nothing,
    /// A sign-in landed: the session cookie it set and the IdP session it joined.
    SignedIn {
        user: Option<String>,
        session: Option<String>,
        idp_sid: Option<String>,
    },
    /// An API call: the token's echo.
    Token {
        user: String,
        source: TokenSource,
        sub: String,
        sid: Option<String>,
        jti: String,
        scopes: Option<String>,
        exp: u64,
    },
    /// The cart: this browser's item numbers in order, and items that are not this browser's.
    Cart {
        version: u64,
        items: Vec<u32>,
        foreign: u32,
        /// The first few of the items not this browser's, as the app named
        /// them (`b7-3`: browser 7's item 3), so their writer can be found.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        others: Vec<String>,
    },
    LoggedOut {
        idp_session_ended: bool,
    },
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Answered {
        status: u16,
        /// `x-instance`.
        instance: Option<String>,
        /// `x-session-version`.
        session_version: Option<u64>,
        /// The contract's error code, for an error answer.
        error: Option<String>,
        observed: Observed,
    },
    NoAnswer {
        cause: NoAnswer,
        detail: String,
    },
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Answered { status, .. } => Some(*status),
            Outcome::NoAnswer { .. } => None,
        }
    }

    /// A 2xx.
    pub fn ok(&self) -> bool {
        self.status().is_some_and(|s| (200..300).contains(&s))
    }

    /// Whether the server may or may not have carried the request out: no
    /// answer (but a refused connection), or a 5xx, which says only that the
    /// request did not complete.
    pub fn indeterminate(&self) -> bool {
        match self {
            Outcome::NoAnswer { cause, .. } => *cause != NoAnswer::Refused,
            Outcome::Answered { status, .. } => *status >= 500,
        }
    }

    pub fn observed(&self) -> Option<&Observed> {
        match self {
            Outcome::Answered { observed, .. } => Some(observed),
            Outcome::NoAnswer { .. } => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Answered { error, .. } => error.as_deref(),
            Outcome::NoAnswer { .. } => None,
        }
    }

    pub fn session_version(&self) -> Option<u64> {
        match self {
            Outcome::Answered {
                session_version, ..
            } => *session_version,
            Outcome::NoAnswer { .. } => None,
        }
    }
}

/// One request: its invocation and its completion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub browser: BrowserId,
    pub request: Request,
    /// The instance it was sent to (`app-N`).
    pub sent_to: String,
    pub invoked: Micros,
    pub completed: Micros,
    pub outcome: Outcome,
}

impl fmt::Display for Event {
    /// Two lines, as a Jepsen history shows an operation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = |us: Micros| us as f64 / 1e6;
        let what = match &self.request {
            Request::Data { resource } => format!("data {resource}"),
            Request::CartWrite { item } => format!("cart_write item {item}"),
            other => other.kind().to_owned(),
        };
        writeln!(
            f,
            "{:>9.3}s {} invoke   {what} -> {}",
            seconds(self.invoked),
            self.browser,
            self.sent_to
        )?;
        write!(
            f,
            "{:>9.3}s {} complete ",
            seconds(self.completed),
            self.browser
        )?;
        match &self.outcome {
            Outcome::NoAnswer { cause, detail } => write!(f, "no answer ({cause:?}): {detail}"),
            Outcome::Answered {
                status,
                instance,
                session_version,
                error,
                observed,
            } => {
                write!(f, "{status} from {}", instance.as_deref().unwrap_or("?"))?;
                if let Some(v) = session_version {
                    write!(f, " v{v}")?;
                }
                if let Some(e) = error {
                    write!(f, " error {e}")?;
                }
                match observed {
                    Observed::Nothing => Ok(()),
                    Observed::SignedIn { user, idp_sid, .. } => write!(
                        f,
                        " signed in as {} (idp sid {})",
                        user.as_deref().unwrap_or("?"),
                        idp_sid.as_deref().unwrap_or("?")
                    ),
                    Observed::Token {
                        source, sub, sid, ..
                    } => write!(
                        f,
                        " token from {} sub {sub} sid {}",
                        source.as_str(),
                        sid.as_deref().unwrap_or("-")
                    ),
                    Observed::Cart {
                        items,
                        foreign,
                        others,
                        ..
                    } => {
                        write!(f, " items {items:?}")?;
                        if *foreign > 0 {
                            write!(f, " and {foreign} not this browser's")?;
                        }
                        if !others.is_empty() {
                            write!(f, " ({})", others.join(", "))?;
                        }
                        Ok(())
                    }
                    Observed::LoggedOut { idp_session_ended } => {
                        write!(f, " logged out (idp session ended: {idp_session_ended})")
                    }
                }
            }
        }
    }
}

/// A fault step as it happened, or an event of the stage's own that no
/// fault asked for (an instance that exited by itself: `instance-exit
/// app-2`, and the supervisor's `instance-start app-2` when the scenario has
/// it start such an instance again), which is put on the timeline as a fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FaultStep {
    /// Since the run started.
    pub at: Micros,
    /// How long carrying it out took.
    pub took: Micros,
    pub action: String,
    /// For an undo step (the end of a `for`, or the supervisor's start of an
    /// instance that exited), the index of the step it ends.
    pub ends: Option<usize>,
    /// Why the step failed; absent when it worked.
    pub error: Option<String>,
    /// Present on the stage's own events: no fault of the scenario asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscheduled: Option<Unscheduled>,
}

/// What the stage saw happen by itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unscheduled {
    /// How it happened: the exit status (`exit status: 3`, `signal: 9
    /// (SIGKILL)`), or who started the instance again.
    pub status: String,
    /// The last lines the instance wrote to its log (stderr and stdout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_output: Vec<String>,
}

impl fmt::Display for FaultStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:.3}s {}", self.at as f64 / 1e6, self.action)?;
        if let Some(unscheduled) = &self.unscheduled {
            write!(f, " (no fault asked for it): {}", unscheduled.status)?;
            if let Some(last) = unscheduled.last_output.last() {
                write!(f, "; last output: {last}")?;
            }
            return Ok(());
        }
        match &self.error {
            None => write!(f, ": ok in {:.0} ms", self.took as f64 / 1e3),
            Some(error) => write!(f, ": FAILED: {error}"),
        }
    }
}

/// The whole record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub browsers: Vec<BrowserInfo>,
    /// In the order they completed.
    pub events: Vec<Event>,
    /// The fault steps, in the order they ran.
    pub faults: Vec<FaultStep>,
}

impl History {
    pub fn browser(&self, id: BrowserId) -> Option<&BrowserInfo> {
        self.browsers.get(id.0 as usize)
    }

    /// Each browser's events in its own sessions, in invocation order (a
    /// browser's own requests mostly run one at a time, but a burst overlaps
    /// them). Replays of a logged-out cookie are left out: they are no part
    /// of the session the browser is in.
    pub fn by_browser(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.browsers.len()];
        for (index, event) in self.events.iter().enumerate() {
            if !event.request.in_session() {
                continue;
            }
            if let Some(list) = out.get_mut(event.browser.0 as usize) {
                list.push(index);
            }
        }
        for list in &mut out {
            list.sort_by_key(|&i| (self.events[i].invoked, i));
        }
        out
    }
}

enum Entry {
    Browser(BrowserId, BrowserInfo),
    Event(Box<Event>),
}

/// Where the driver's tasks record; cheap to clone and to send to.
#[derive(Clone)]
pub struct Recorder {
    entries: mpsc::UnboundedSender<Entry>,
    next_browser: Arc<AtomicU32>,
}

/// Collects what the recorders send; [`Collector::finish`] gives the history.
pub struct Collector {
    entries: mpsc::UnboundedReceiver<Entry>,
    history: History,
}

/// A recorder and the collector its entries go to.
pub fn channel() -> (Recorder, Collector) {
    let (entries, receiver) = mpsc::unbounded_channel();
    (
        Recorder {
            entries,
            next_browser: Arc::default(),
        },
        Collector {
            entries: receiver,
            history: History::default(),
        },
    )
}

impl Recorder {
    /// A new browser of `info`'s person.
    pub fn browser(&self, info: BrowserInfo) -> BrowserId {
        let id = BrowserId(self.next_browser.fetch_add(1, Ordering::Relaxed));
        let _ = self.entries.send(Entry::Browser(id, info));
        id
    }

    pub fn record(&self, event: Event) {
        let _ = self.entries.send(Entry::Event(Box::new(event)));
    }
}

impl Collector {
    /// Takes in what has been recorded so far.
    pub fn drain(&mut self) {
        while let Ok(entry) = self.entries.try_recv() {
            self.take(entry);
        }
    }

    fn take(&mut self, entry: Entry) {
        match entry {
            Entry::Browser(id, info) => {
                let index = id.0 as usize;
                if self.history.browsers.len() <= index {
                    self.history.browsers.resize(
                        index + 1,
                        BrowserInfo {
                            person: 0,
                            user: String::new(),
                        },
                    );
                }
                self.history.browsers[index] = info;
            }
            Entry::Event(event) => self.history.events.push(*event),
        }
    }

    /// How many events have come in.
    pub fn len(&self) -> usize {
        self.history.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.history.events.is_empty()
    }

    /// What has been taken in so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Everything recorded, once every recorder is gone or the caller stops waiting.
    pub fn finish(mut self) -> History {
        self.drain();
        self.history
    }
}
