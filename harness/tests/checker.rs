//! The checker on hand-written histories: each anomaly of DESIGN.md's table
//! is found with the events that prove it, and indeterminate outcomes
//! (timeouts, lost connections, 5xx) never are.

use std::collections::HashMap;
use std::time::Duration;

use contract::TokenSource;
use harness::check::orphans::{LeftoverSession, Leftovers};
use harness::check::{self, Kind, Settings};
use harness::history::{
    BrowserId, BrowserInfo, Event, History, NoAnswer, Observed, Outcome, Request,
};

/// Builds a history one request at a time, one second apart unless told.
struct Script {
    history: History,
    clock: u64,
}

const STARTED_MS: u64 = 1_700_000_000_000;

fn settings() -> Settings {
    Settings {
        idle_timeout: Duration::from_secs(1800),
        renewal_offset: Duration::from_secs(10),
        started_unix_ms: STARTED_MS,
        subjects: HashMap::from([
            ("alice".to_owned(), "sub-alice".to_owned()),
            ("bob".to_owned(), "sub-bob".to_owned()),
        ]),
    }
}

fn ok(observed: Observed, version: Option<u64>, instance: &str) -> Outcome {
    Outcome::Answered {
        status: 200,
        instance: Some(instance.into()),
        session_version: version,
        error: None,
        observed,
    }
}

fn failed(status: u16, code: &str) -> Outcome {
    Outcome::Answered {
        status,
        instance: Some("app-1".into()),
        session_version: None,
        error: Some(code.into()),
        observed: Observed::Nothing,
    }
}

fn lost() -> Outcome {
    Outcome::NoAnswer {
        cause: NoAnswer::Timeout,
        detail: "no answer within 10s".into(),
    }
}

impl Script {
    fn new() -> Self {
        Self {
            history: History::default(),
            clock: 0,
        }
    }

    fn browser(&mut self, user: &str) -> BrowserId {
        self.history.browsers.push(BrowserInfo {
            person: self.history.browsers.len() as u32,
            user: user.into(),
        });
        BrowserId(self.history.browsers.len() as u32 - 1)
    }

    /// One request taking 100 ms, a second after the last; returns its index.
    fn at(&mut self, browser: BrowserId, request: Request, outcome: Outcome) -> usize {
        self.clock += 1_000_000;
        self.history.events.push(Event {
            browser,
            request,
            sent_to: "app-1".into(),
            invoked: self.clock,
            completed: self.clock + 100_000,
            outcome,
        });
        self.history.events.len() - 1
    }

    fn sign_in(&mut self, b: BrowserId, sid: &str, session: &str) -> usize {
        let user = self.history.browsers[b.0 as usize].user.clone();
        self.at(
            b,
            Request::SignIn,
            ok(
                Observed::SignedIn {
                    user: Some(user),
                    session: Some(session.into()),
                    idp_sid: Some(sid.into()),
                },
                Some(1),
                "app-1",
            ),
        )
    }

    fn token(
        &mut self,
        b: BrowserId,
        source: TokenSource,
        sub: &str,
        sid: &str,
        exp_in: u64,
    ) -> usize {
        let exp = STARTED_MS / 1000 + self.clock / 1_000_000 + 1 + exp_in;
        self.at(
            b,
            Request::Profile,
            ok(
                Observed::Token {
                    user: "whoever".into(),
                    source,
                    sub: sub.into(),
                    sid: Some(sid.into()),
                    jti: format!("j{}", self.clock),
                    scopes: None,
                    exp,
                },
                None,
                "app-1",
            ),
        )
    }

    fn write(&mut self, b: BrowserId, item: u32, items: &[u32], version: u64) -> usize {
        self.at(
            b,
            Request::CartWrite { item },
            ok(
                Observed::Cart {
                    version,
                    items: items.to_vec(),
                    foreign: 0,
                },
                Some(version),
                "app-1",
            ),
        )
    }

    fn read(&mut self, b: BrowserId, items: &[u32], version: u64) -> usize {
        self.at(
            b,
            Request::CartRead,
            ok(
                Observed::Cart {
                    version,
                    items: items.to_vec(),
                    foreign: 0,
                },
                Some(version),
                "app-1",
            ),
        )
    }

    fn findings(&self) -> check::Findings {
        check::check(&self.history, &settings())
    }
}

fn only(findings: &check::Findings, kind: Kind) -> Vec<&check::Anomaly> {
    for other in Kind::ALL {
        if other != kind && other != Kind::Orphan {
            assert_eq!(
                findings.count(other),
                0,
                "no {other} expected: {:?}",
                findings.anomalies.get(&other)
            );
        }
    }
    findings
        .anomalies
        .get(&kind)
        .map(|v| v.iter().collect())
        .unwrap_or_default()
}

#[test]
fn a_clean_history_has_no_anomaly() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    s.write(b, 1, &[1], 2);
    s.read(b, &[1], 2);
    s.at(
        b,
        Request::Logout,
        ok(
            Observed::LoggedOut {
                idp_session_ended: true,
            },
            None,
            "app-1",
        ),
    );
    let findings = s.findings();
    for kind in Kind::ALL {
        assert_eq!(findings.count(kind), 0, "{kind}: {:?}", findings.anomalies);
    }
}

#[test]
fn a_401_for_a_signed_in_browser_is_a_session_loss_and_a_hop_is_told_apart() {
    let mut s = Script::new();
    let b = s.browser("alice");
    let signed = s.sign_in(b, "sid-1", "s1");
    let good = s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    let mut on_app_2 = failed(401, "not_signed_in");
    if let Outcome::Answered { instance, .. } = &mut on_app_2 {
        *instance = Some("app-2".into());
    }
    let lost = s.at(b, Request::CartRead, on_app_2);
    let findings = s.findings();
    let losses = only(&findings, Kind::SessionLoss);
    assert_eq!(losses.len(), 1);
    assert_eq!(losses[0].evidence, [signed, good, lost]);
    assert_eq!(losses[0].facet.as_deref(), Some("hop"));
    assert!(losses[0].summary.contains("app-2") && losses[0].summary.contains("app-1"));
}

#[test]
fn no_session_loss_after_a_logout_an_unknown_sign_in_or_a_long_idle() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.at(
        b,
        Request::Logout,
        ok(
            Observed::LoggedOut {
                idp_session_ended: true,
            },
            None,
            "app-1",
        ),
    );
    s.at(b, Request::Profile, failed(401, "not_signed_in"));
    // A sign-in whose answer never came: signed in or not, nobody knows.
    s.at(b, Request::SignIn, lost());
    s.at(b, Request::Profile, failed(401, "not_signed_in"));
    // Idle longer than the app keeps sessions.
    s.sign_in(b, "sid-2", "s2");
    s.clock += 3600 * 1_000_000;
    s.at(b, Request::Profile, failed(401, "not_signed_in"));
    let findings = s.findings();
    assert!(only(&findings, Kind::SessionLoss).is_empty());
}

#[test]
fn an_acknowledged_item_missing_from_every_later_read_is_a_lost_update() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let acked = s.write(b, 1, &[1], 2);
    s.write(b, 2, &[1, 2], 3);
    let missing = s.read(b, &[2], 4);
    s.read(b, &[2], 4);
    let findings = s.findings();
    let lost = only(&findings, Kind::LostUpdate);
    assert_eq!(
        lost.len(),
        1,
        "reported once, at the first read that lacks it"
    );
    assert_eq!(lost[0].evidence, [acked, missing]);
    assert!(lost[0].summary.contains("item 1"));
}

#[test]
fn an_item_missing_then_back_is_a_stale_read_and_versions_may_not_go_back() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let acked = s.write(b, 1, &[1], 5);
    let stale = s.read(b, &[], 4);
    let back = s.read(b, &[1], 5);
    let findings = s.findings();
    let stale_reads = only(&findings, Kind::StaleRead);
    assert_eq!(stale_reads.len(), 2, "{stale_reads:?}");
    assert!(
        stale_reads
            .iter()
            .any(|a| a.evidence == [acked, stale, back])
    );
    assert!(
        stale_reads
            .iter()
            .any(|a| a.summary.contains("version 4, after version 5"))
    );
}

#[test]
fn indeterminate_writes_and_concurrent_writes_are_not_anomalies() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    // A write that timed out, and one that got a 503: either may have happened.
    s.at(b, Request::CartWrite { item: 1 }, lost());
    s.at(
        b,
        Request::CartWrite { item: 2 },
        failed(503, "store_unavailable"),
    );
    s.read(b, &[2], 3);
    s.read(b, &[], 3);
    // Two writes in flight together: neither reply need show the other.
    s.clock += 1_000_000;
    let start = s.clock;
    for (item, items) in [(3, vec![3]), (4, vec![4])] {
        s.history.events.push(Event {
            browser: b,
            request: Request::CartWrite { item },
            sent_to: "app-1".into(),
            invoked: start,
            completed: start + 500_000,
            outcome: ok(
                Observed::Cart {
                    version: 4,
                    items,
                    foreign: 0,
                },
                Some(4),
                "app-1",
            ),
        });
    }
    s.clock = start + 600_000;
    let later = s.read(b, &[3, 4], 5);
    let findings = s.findings();
    assert_eq!(
        findings.count(Kind::LostUpdate),
        0,
        "{:?}",
        findings.anomalies
    );
    assert_eq!(
        findings.count(Kind::StaleRead),
        0,
        "{:?}",
        findings.anomalies
    );
    // But a later read that lacks one of the two acknowledged items loses it.
    s.history.events[later].outcome = ok(
        Observed::Cart {
            version: 5,
            items: vec![4],
            foreign: 0,
        },
        Some(5),
        "app-1",
    );
    assert_eq!(s.findings().count(Kind::LostUpdate), 1);
}

#[test]
fn tokens_of_another_session_or_user_and_after_logout_are_found() {
    let mut s = Script::new();
    let a1 = s.browser("alice");
    let a2 = s.browser("alice");
    let b = s.browser("bob");
    let signed = s.sign_in(a1, "sid-a1", "s1");
    s.sign_in(a2, "sid-a2", "s2");
    s.sign_in(b, "sid-b", "s3");
    let crossed = s.token(a1, TokenSource::Cache, "sub-alice", "sid-a2", 60);
    let findings = s.findings();
    let cross = only(&findings, Kind::CrossSessionToken);
    assert_eq!(cross.len(), 1);
    assert_eq!(cross[0].evidence, [signed, crossed]);

    let foreign = s.token(b, TokenSource::Cache, "sub-alice", "sid-a1", 60);
    let findings = s.findings();
    let users = findings
        .anomalies
        .get(&Kind::CrossUserToken)
        .expect("found");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].evidence.last(), Some(&foreign));

    let logout = s.at(
        a2,
        Request::Logout,
        ok(
            Observed::LoggedOut {
                idp_session_ended: true,
            },
            None,
            "app-1",
        ),
    );
    let after = s.token(a1, TokenSource::Cache, "sub-alice", "sid-a2", 60);
    let findings = s.findings();
    let after_logout = findings
        .anomalies
        .get(&Kind::TokenAfterLogout)
        .expect("found");
    assert_eq!(after_logout.len(), 1);
    assert_eq!(after_logout[0].evidence, [logout, after]);
}

#[test]
fn a_refresh_while_a_good_token_was_cached_is_an_extra_idp_call() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let cached = s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    let extra = s.token(b, TokenSource::Refresh, "sub-alice", "sid-1", 60);
    // Past its renewal point (60 s life, 10 s offset): a needed refresh.
    s.clock += 55 * 1_000_000;
    s.token(b, TokenSource::Refresh, "sub-alice", "sid-1", 60);
    let findings = s.findings();
    let extras = only(&findings, Kind::ExtraIdpCalls);
    assert_eq!(extras.len(), 1, "{extras:?}");
    assert_eq!(extras[0].evidence, [cached, extra]);
    let by_browser = s.history.by_browser();
    let minimum = check::idp_calls::minimum_token_calls(
        &s.history,
        &by_browser,
        &settings(),
        Duration::from_secs(60),
    );
    assert_eq!(
        minimum, 2,
        "one code exchange and one refresh past the renewal point"
    );
}

#[test]
fn stores_that_kept_a_logged_out_session_hold_orphans() {
    let mut s = Script::new();
    let b = s.browser("alice");
    let signed = s.sign_in(b, "sid-1", "s1");
    let logout = s.at(
        b,
        Request::Logout,
        ok(
            Observed::LoggedOut {
                idp_session_ended: true,
            },
            None,
            "app-1",
        ),
    );
    let ended = check::orphans::ended_sessions(&s.history);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].session, "s1");
    let clean = check::orphans::check(&s.history, &ended, &Leftovers::default());
    assert!(clean.is_empty());
    let leftovers = Leftovers {
        sessions: vec![LeftoverSession {
            session: "s1".into(),
            session_record: false,
            token_partition: true,
        }],
        blob_tokens: [("alice".to_owned(), 2)].into(),
        unchecked: None,
    };
    let orphans = check::orphans::check(&s.history, &ended, &leftovers);
    assert_eq!(orphans.len(), 2);
    assert!(orphans.iter().all(|o| o.evidence == [signed, logout]));
    assert!(orphans[0].summary.contains("its tokens"));
    assert!(orphans[1].summary.contains("2 refresh token"));
}
