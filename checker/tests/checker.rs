//! The checker on hand-written histories: each anomaly family
//! (docs/architecture.md, "Anomalies") is found with the events that prove
//! it, and indeterminate outcomes (timeouts, lost connections, 5xx) never are.

use std::collections::HashMap;
use std::time::Duration;

use checker::check::orphans::{LeftoverSession, Leftovers, Tier, TierLeftover};
use checker::check::{self, Kind, Settings, resident};
use checker::history::{
    BrowserId, BrowserInfo, Event, History, NoAnswer, Observed, Outcome, Request,
};
use contract::TokenSource;

/// Builds a history one request at a time, one second apart unless told.
struct Script {
    history: History,
    clock: u64,
}

const STARTED_MS: u64 = 1_700_000_000_000;

fn settings() -> Settings {
    Settings {
        idle_timeout: Duration::from_secs(1800),
        absolute_timeout: None,
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
                    others: Vec::new(),
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
                    others: Vec::new(),
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

/// An acknowledged logout on app-1; returns its index.
fn logout(s: &mut Script, b: BrowserId) -> usize {
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
    )
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
    logout(&mut s, b);
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
    logout(&mut s, b);
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
    let confirming = s.read(b, &[2], 4);
    let findings = s.findings();
    let lost = only(&findings, Kind::LostUpdate);
    assert_eq!(
        lost.len(),
        1,
        "reported once, at the first read that lacks it"
    );
    assert_eq!(lost[0].evidence, [acked, missing, confirming]);
    assert!(lost[0].summary.contains("item 1"));
    // The read shows item 2, written after item 1 was acknowledged.
    assert_eq!(lost[0].facet.as_deref(), Some("monotonic-writes"));
}

#[test]
fn a_miss_by_the_sessions_last_read_is_stale_not_lost() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let acked = s.write(b, 1, &[1], 2);
    let last = s.read(b, &[], 2);
    logout(&mut s, b);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [acked, last]);
    assert_eq!(stale[0].facet.as_deref(), Some("read-your-writes"));
    assert!(
        stale[0].summary.contains("cannot be told"),
        "{}",
        stale[0].summary
    );
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
    // A write that timed out, and one that got a 503: either may have
    // happened; the second did (a read shows it) and stays.
    s.at(b, Request::CartWrite { item: 1 }, lost());
    s.at(
        b,
        Request::CartWrite { item: 2 },
        failed(503, "store_unavailable"),
    );
    s.read(b, &[2], 3);
    s.read(b, &[2], 3);
    // Two writes in flight together: neither reply need show the other.
    s.clock += 1_000_000;
    let start = s.clock;
    for (item, items) in [(3, vec![2, 3]), (4, vec![2, 4])] {
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
                    others: Vec::new(),
                },
                Some(4),
                "app-1",
            ),
        });
    }
    s.clock = start + 600_000;
    let later = s.read(b, &[2, 3, 4], 5);
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
    // But reads that lack one of the two acknowledged items lose it.
    s.history.events[later].outcome = ok(
        Observed::Cart {
            version: 5,
            items: vec![2, 4],
            foreign: 0,
            others: Vec::new(),
        },
        Some(5),
        "app-1",
    );
    s.read(b, &[2, 4], 5);
    assert_eq!(s.findings().count(Kind::LostUpdate), 1);
}

#[test]
fn an_item_of_an_indeterminate_write_is_known_once_seen_and_lost_when_it_vanishes() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.at(b, Request::CartWrite { item: 1 }, lost());
    let seen = s.read(b, &[1], 2);
    let gone = s.read(b, &[], 3);
    let confirming = s.read(b, &[], 3);
    let findings = s.findings();
    let lost = only(&findings, Kind::LostUpdate);
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].evidence, [seen, gone, confirming]);
    assert_eq!(lost[0].facet.as_deref(), Some("monotonic-reads"));
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

    let logged_out = logout(&mut s, a2);
    let after = s.token(a1, TokenSource::Cache, "sub-alice", "sid-a2", 60);
    let findings = s.findings();
    let after_logout = findings
        .anomalies
        .get(&Kind::TokenAfterLogout)
        .expect("found");
    assert_eq!(after_logout.len(), 1);
    assert_eq!(after_logout[0].evidence, [logged_out, after]);
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
fn a_waiter_showing_the_token_a_concurrent_refresh_got_makes_it_no_extra_call() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.clock += 55 * 1_000_000;
    // Two instances at once: one waited on the other's lease and shows the
    // very token the refresh got (same jti); it was invoked a moment earlier.
    let exp = STARTED_MS / 1000 + s.clock / 1_000_000 + 62;
    let token = |source| {
        ok(
            Observed::Token {
                user: "alice".into(),
                source,
                sub: "sub-alice".into(),
                sid: Some("sid-1".into()),
                jti: "same".into(),
                scopes: None,
                exp,
            },
            None,
            "app-1",
        )
    };
    s.clock += 1_000_000;
    for (at, source) in [
        (s.clock, TokenSource::Cache),
        (s.clock + 50, TokenSource::Refresh),
    ] {
        s.history.events.push(Event {
            browser: b,
            request: Request::Profile,
            sent_to: "app-1".into(),
            invoked: at,
            completed: at + 300_000,
            outcome: token(source),
        });
    }
    let findings = s.findings();
    assert_eq!(
        findings.count(Kind::ExtraIdpCalls),
        0,
        "{:?}",
        findings.anomalies
    );
}

#[test]
fn every_refresh_token_reuse_the_idp_counted_is_an_extra_call_of_the_browser_in_that_session() {
    let mut s = Script::new();
    let alice = s.browser("alice");
    let bob = s.browser("bob");
    let signed_in = s.sign_in(alice, "sid-a", "s1");
    s.sign_in(bob, "sid-b", "s2");
    let refreshed = s.token(alice, TokenSource::Refresh, "sub-alice", "sid-a", 60);
    s.token(bob, TokenSource::Cache, "sub-bob", "sid-b", 60);
    let counted = std::collections::BTreeMap::from([
        (
            "sid-a".to_owned(),
            std::collections::BTreeMap::from([("allowed".to_owned(), 2)]),
        ),
        (
            "sid-unknown".to_owned(),
            std::collections::BTreeMap::from([("family_revoked".to_owned(), 1)]),
        ),
    ]);
    let (found, unattributed) =
        check::idp_calls::reuse(&s.history, &s.history.by_browser(), &counted);
    assert_eq!(found.len(), 2, "one per reuse counted: {found:?}");
    assert!(found.iter().all(|a| a.browser == alice
        && a.kind == Kind::ExtraIdpCalls
        && a.facet.as_deref() == Some(check::idp_calls::REFRESH_TOKEN_REUSE)
        && a.evidence == [signed_in, refreshed]));
    assert_eq!(unattributed, 1, "a session no sign-in names is said apart");
}

#[test]
fn stores_that_kept_a_logged_out_session_hold_orphans() {
    let mut s = Script::new();
    let b = s.browser("alice");
    let signed = s.sign_in(b, "sid-1", "s1");
    let logged_out = logout(&mut s, b);
    let ended = check::orphans::ended_sessions(&s.history);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].session, "s1");
    let gone = resident::Standings::new(&s.history, 60_000_000, IDLE).gone_users();
    assert_eq!(gone["alice"].evidence, [signed, logged_out]);
    let clean = check::orphans::check(&s.history, &ended, &Leftovers::default(), &gone);
    assert!(clean.is_empty());
    let leftovers = Leftovers {
        sessions: vec![LeftoverSession {
            session: "s1".into(),
            session_record: false,
            token_partition: true,
            // A file from before tiers were read apart.
            tiers: Vec::new(),
        }],
        blob_tokens: [("alice".to_owned(), 2)].into(),
        blob_tiers: Vec::new(),
        unchecked: None,
    };
    let orphans = check::orphans::check(&s.history, &ended, &leftovers, &gone);
    assert_eq!(orphans.len(), 2);
    assert!(orphans.iter().all(|o| o.evidence == [signed, logged_out]));
    assert!(orphans[0].summary.contains("its tokens"));
    assert_eq!(orphans[0].facet.as_deref(), Some("session"));
    assert!(orphans[1].summary.contains("2 refresh token"));

    // Read tier by tier: one orphan per tier that still holds something,
    // its facet the tier.
    let leftovers = Leftovers {
        sessions: vec![LeftoverSession {
            session: "s1".into(),
            session_record: true,
            token_partition: true,
            tiers: vec![
                TierLeftover {
                    tier: Tier::Redis,
                    session_record: true,
                    token_partition: true,
                },
                TierLeftover {
                    tier: Tier::Postgres,
                    session_record: false,
                    token_partition: true,
                },
            ],
        }],
        blob_tokens: [("alice".to_owned(), 1)].into(),
        blob_tiers: vec![Tier::Postgres],
        unchecked: None,
    };
    let orphans = check::orphans::check(&s.history, &ended, &leftovers, &gone);
    let facets: Vec<_> = orphans.iter().map(|o| o.facet.as_deref()).collect();
    assert_eq!(facets, [Some("redis"), Some("postgres"), Some("blob")]);
    assert!(
        orphans[0]
            .summary
            .contains("Redis still holds its session record and its tokens"),
        "{}",
        orphans[0].summary
    );
    assert!(
        orphans[1]
            .summary
            .contains("Postgres still holds its tokens")
    );
    assert!(orphans[2].summary.contains("(in Postgres)"));
}

// --- state kept in an instance's own memory (check::resident) ---

const IDLE: Duration = Duration::from_secs(10);

/// Alice signs in on app-1 and walks away at 2 s; Bob keeps using app-1
/// until 30 s. Looked at, at 40 s, with a 10 s idle timeout.
fn alice_left_bob_stayed() -> (Script, BrowserId, Vec<usize>, u64) {
    let mut s = Script::new();
    let (alice, bob) = (s.browser("alice"), s.browser("bob"));
    let alice_events = vec![
        s.sign_in(alice, "sid-a", "sa"),
        s.token(alice, TokenSource::Refresh, "sub-alice", "sid-a", 60),
    ];
    s.sign_in(bob, "sid-b", "sb");
    while s.clock < 30_000_000 {
        s.token(bob, TokenSource::Cache, "sub-bob", "sid-b", 60);
    }
    (s, alice, alice_events, 40_000_000)
}

fn held(instance: &str, sessions: Option<u64>, accounts: Option<u64>) -> resident::Held {
    resident::Held {
        instance: instance.into(),
        sessions,
        accounts,
    }
}

#[test]
fn tokens_kept_in_memory_for_a_user_whose_sessions_all_expired_are_orphans() {
    let (s, alice, alice_events, look) = alice_left_bob_stayed();
    // Two accounts, one user (Bob) who could still be signed in there.
    let found =
        resident::Standings::new(&s.history, look, IDLE).check(&[held("app-1", None, Some(2))]);
    assert_eq!(found.len(), 1, "{found:?}");
    let orphan = &found[0];
    assert_eq!(orphan.kind, Kind::Orphan);
    assert_eq!(orphan.browser, alice);
    assert_eq!(orphan.facet.as_deref(), Some(resident::TOKEN_CACHE));
    assert_eq!(orphan.evidence, alice_events);
    assert!(
        orphan
            .summary
            .contains("holds tokens of 2 accounts in memory, 1 more than the 1 users"),
        "{}",
        orphan.summary
    );
    assert!(
        orphan.summary.contains("had expired by"),
        "{}",
        orphan.summary
    );
    let endings = resident::Standings::new(&s.history, look, IDLE).endings();
    assert_eq!(
        (endings.live, endings.logged_out, endings.expired),
        (1, 0, 1)
    );
}

#[test]
fn what_live_browsers_account_for_is_no_orphan() {
    let (s, _, _, look) = alice_left_bob_stayed();
    assert!(
        resident::Standings::new(&s.history, look, IDLE)
            .check(&[held("app-1", Some(1), Some(1))])
            .is_empty()
    );
    // Looked at before Alice's session can have expired, she may be back: both are hers to keep.
    let early = 2_100_000 + resident::certainly_expired_after(IDLE).as_micros() as u64 - 1;
    assert!(
        resident::Standings::new(&s.history, early, IDLE)
            .check(&[held("app-1", Some(2), Some(2))])
            .is_empty()
    );
    assert_eq!(
        resident::Standings::new(&s.history, early, IDLE)
            .endings()
            .live,
        2
    );
}

#[test]
fn sessions_kept_in_memory_past_their_end_are_orphans_one_per_session() {
    let (s, alice, _, look) = alice_left_bob_stayed();
    // Three sessions where only Bob's browser could still be signed in.
    let found =
        resident::Standings::new(&s.history, look, IDLE).check(&[held("app-1", Some(3), None)]);
    assert_eq!(found.len(), 2, "{found:?}");
    for orphan in &found {
        assert_eq!(orphan.facet.as_deref(), Some(resident::MEMORY_SESSIONS));
        assert_eq!(orphan.browser, alice, "the one ended browser app-1 served");
    }
}

#[test]
fn a_logout_on_one_instance_leaves_tokens_on_the_other() {
    let mut s = Script::new();
    let alice = s.browser("alice");
    let sign_in = s.sign_in(alice, "sid-a", "sa");
    let hop = s.token(alice, TokenSource::Refresh, "sub-alice", "sid-a", 60);
    let out = logout(&mut s, alice);
    for index in [hop, out] {
        s.history.events[index].sent_to = "app-2".into();
    }
    // app-2 dropped Alice's account at her logout; app-1 still holds it.
    let instances = [held("app-1", None, Some(1)), held("app-2", None, Some(0))];
    let found = resident::Standings::new(&s.history, 5_000_000, IDLE).check(&instances);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].summary.starts_with("app-1 holds"),
        "{}",
        found[0].summary
    );
    assert!(
        found[0].summary.contains("logged out at"),
        "{}",
        found[0].summary
    );
    assert_eq!(found[0].evidence, vec![sign_in, out]);
    let endings = resident::Standings::new(&s.history, 5_000_000, IDLE).endings();
    assert_eq!(
        (endings.live, endings.logged_out, endings.expired),
        (0, 1, 0)
    );
}

#[test]
fn a_browser_told_its_session_is_unknown_holds_nothing_live() {
    let mut s = Script::new();
    let alice = s.browser("alice");
    s.sign_in(alice, "sid-a", "sa");
    s.at(alice, Request::Profile, failed(401, "not_signed_in"));
    let endings = resident::Standings::new(&s.history, 3_000_000, IDLE).endings();
    assert_eq!(
        (endings.live, endings.logged_out, endings.expired),
        (0, 0, 0)
    );
    // Its session is gone; a session still held for it is beyond the bound.
    let found = resident::Standings::new(&s.history, 3_000_000, IDLE).check(&[held(
        "app-1",
        Some(1),
        None,
    )]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].summary.contains("no browser it served has ended"),
        "{}",
        found[0].summary
    );
}

#[test]
fn blob_tokens_of_a_user_who_left_without_logout_are_orphans_once_their_session_expired() {
    let (s, alice, alice_events, look) = alice_left_bob_stayed();
    let leftovers = Leftovers {
        blob_tokens: [("alice".to_owned(), 1), ("bob".to_owned(), 1)].into(),
        ..Leftovers::default()
    };
    let gone = resident::Standings::new(&s.history, look, IDLE).gone_users();
    assert_eq!(
        gone.keys().collect::<Vec<_>>(),
        ["alice"],
        "Bob is still here"
    );
    let orphans = check::orphans::check(&s.history, &[], &leftovers, &gone);
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0].browser, alice);
    assert_eq!(orphans[0].evidence, alice_events);
    assert!(
        orphans[0].summary.contains("left without logout"),
        "{}",
        orphans[0].summary
    );
    // Before her session can have expired she is not gone.
    assert!(
        resident::Standings::new(&s.history, 5_000_000, IDLE)
            .gone_users()
            .is_empty()
    );
}

#[test]
fn a_restart_wipes_what_an_instance_held_of_browsers_it_served_before() {
    let (mut s, alice, _, look) = alice_left_bob_stayed();
    s.history.faults.push(checker::history::FaultStep {
        at: 20_000_000,
        took: 50_000,
        action: "instance-restart app-1".into(),
        ends: None,
        error: None,
        unscheduled: None,
    });
    let found =
        resident::Standings::new(&s.history, look, IDLE).check(&[held("app-1", None, Some(2))]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_ne!(
        found[0].browser, alice,
        "Alice's tokens went with the restart"
    );
    assert!(
        found[0].summary.contains("no browser it served has ended"),
        "{}",
        found[0].summary
    );
}

#[test]
fn an_instance_is_fresh_only_once_its_restart_is_done() {
    // Alice's last request (2 s) came while app-1's restart (1.5 s to
    // 2.5 s) was under way: the instance started afresh after it.
    let (mut s, alice, _, look) = alice_left_bob_stayed();
    s.history.faults.push(checker::history::FaultStep {
        at: 1_500_000,
        took: 1_000_000,
        action: "instance-restart app-1".into(),
        ends: None,
        error: None,
        unscheduled: None,
    });
    let found =
        resident::Standings::new(&s.history, look, IDLE).check(&[held("app-1", None, Some(2))]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_ne!(
        found[0].browser, alice,
        "served before the restart was done"
    );
}

#[test]
fn a_session_loss_is_tied_to_a_restart_only_when_its_instance_went_down_in_between() {
    let mut s = Script::new();
    let alice = s.browser("alice");
    s.sign_in(alice, "sid-a", "sa");
    s.token(alice, TokenSource::Cache, "sub-alice", "sid-a", 60);
    s.at(alice, Request::Profile, failed(401, "not_signed_in"));
    let findings = s.findings();
    let losses = only(&findings, Kind::SessionLoss);
    assert_eq!(losses.len(), 1);
    let step = |action: &str, at: u64| checker::history::FaultStep {
        at,
        took: 20_000,
        action: action.into(),
        ends: None,
        error: None,
        unscheduled: None,
    };
    // Nothing went down: a loss, but not a restart's.
    assert!(!check::sessions::across_instance_down(
        &s.history, losses[0]
    ));
    // Another instance restarted in between: still not.
    s.history
        .faults
        .push(step("instance-restart app-2", 2_500_000));
    assert!(!check::sessions::across_instance_down(
        &s.history, losses[0]
    ));
    // Its own instance restarted before the last good answer: not either.
    s.history
        .faults
        .push(step("instance-restart app-1", 500_000));
    assert!(!check::sessions::across_instance_down(
        &s.history, losses[0]
    ));
    // Its instance exited by itself (no fault asked) in between: it went down.
    let mut exited = s.history.clone();
    exited.faults.push(step("instance-exit app-1", 2_500_000));
    assert!(check::sessions::across_instance_down(&exited, losses[0]));
    // Its instance crashed between the last good answer (2.1 s) and the loss (3 s).
    s.history
        .faults
        .push(step("instance-crash app-1 (down until started)", 2_500_000));
    assert!(check::sessions::across_instance_down(&s.history, losses[0]));
}

#[test]
fn a_busy_session_past_its_absolute_timeout_has_ended() {
    let mut s = Script::new();
    let alice = s.browser("alice");
    s.sign_in(alice, "sid-a", "sa");
    for _ in 0..20 {
        s.read(alice, &[], 1);
    }
    // Used a second ago, so idle it is live; begun 21 s ago, past a 15 s
    // absolute timeout (and its slack), it has ended.
    let look = s.clock + 1_000_000;
    let live = resident::Standings::with_timeouts(&s.history, look, IDLE, None).endings();
    assert_eq!((live.live, live.expired), (1, 0));
    let ended =
        resident::Standings::with_timeouts(&s.history, look, IDLE, Some(Duration::from_secs(15)))
            .endings();
    assert_eq!((ended.live, ended.expired), (0, 1));
}

#[test]
fn live_sessions_over_time_follow_sign_ins_logouts_401s_and_timeouts() {
    let mut s = Script::new();
    let (alice, bob, carol) = (s.browser("alice"), s.browser("bob"), s.browser("carol"));
    s.sign_in(alice, "sid-a", "sa"); // 1 s
    s.sign_in(bob, "sid-b", "sb"); // 2 s
    logout(&mut s, alice); // 3 s
    s.sign_in(carol, "sid-c", "sc"); // 4 s
    s.at(bob, Request::CartRead, failed(401, "not_signed_in")); // 5 s
    let second = |n: u64| n * 1_000_000 + 150_000;
    let times = [
        0,
        second(1),
        second(2),
        second(3),
        second(4),
        second(5),
        second(40),
    ];
    let live = resident::live_at(&s.history, &times, IDLE, None);
    assert_eq!(
        live,
        [0, 1, 2, 1, 2, 1, 0],
        "carol idle 36 s past a 10 s timeout"
    );
    // As many as the standings count live at the same look.
    let look = second(5);
    assert_eq!(
        resident::live_at(&s.history, &[look], IDLE, None),
        [resident::Standings::new(&s.history, look, IDLE)
            .endings()
            .live]
    );
    // An absolute timeout of 2 s ends carol's (begun at 4 s) by 8 s, its
    // slack included, though idle it would live to 16 s.
    let absolute = resident::live_at(
        &s.history,
        &[second(5), second(9)],
        IDLE,
        Some(Duration::from_secs(2)),
    );
    assert_eq!(absolute, [1, 0]);
}

// Edges that mutation testing (`cargo mutants`, .cargo/mutants.toml) showed
// no other test pinned: each fails if one comparison or branch of the
// checker is changed.

/// Moves event `index` to `invoked`, keeping it 100 ms long.
fn retime(s: &mut Script, index: usize, invoked: u64) {
    let event = &mut s.history.events[index];
    event.invoked = invoked;
    event.completed = invoked + 100_000;
}

/// An acknowledged cart write whose answer shows no cart.
fn blind_write(s: &mut Script, b: BrowserId, item: u32) -> usize {
    s.at(
        b,
        Request::CartWrite { item },
        ok(Observed::Nothing, Some(2), "app-1"),
    )
}

#[test]
fn a_read_begun_the_moment_an_item_became_known_need_not_show_it() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let acked = s.write(b, 1, &[1], 2);
    let at_once = s.read(b, &[], 2);
    let known = s.history.events[acked].completed;
    retime(&mut s, at_once, known);
    s.read(b, &[1], 2);
    let findings = s.findings();
    assert!(only(&findings, Kind::StaleRead).is_empty());
}

#[test]
fn an_item_written_twice_is_known_from_its_first_acknowledgement() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let first = blind_write(&mut s, b, 1);
    let missing = s.read(b, &[], 2);
    blind_write(&mut s, b, 1);
    let back = s.read(b, &[1], 2);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [first, missing, back]);
    assert_eq!(stale[0].facet.as_deref(), Some("read-your-writes"));
}

#[test]
fn a_read_missing_several_items_names_the_first_and_counts_them() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let first = s.write(b, 1, &[1], 2);
    s.write(b, 2, &[1, 2], 3);
    let both = s.read(b, &[], 3);
    s.sign_in(b, "sid-2", "s2");
    let one = s.write(b, 3, &[3], 2);
    let lacks_one = s.read(b, &[], 2);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 2, "{stale:?}");
    assert_eq!(stale[0].evidence, [first, both]);
    assert!(
        stale[0].summary.contains("item 1,") && stale[0].summary.contains("(2 items so)"),
        "{}",
        stale[0].summary
    );
    assert_eq!(stale[1].evidence, [one, lacks_one]);
    assert!(
        !stale[1].summary.contains("items so"),
        "{}",
        stale[1].summary
    );
}

#[test]
fn a_version_regression_names_the_first_answer_of_the_higher_version() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let first = s.write(b, 1, &[1], 5);
    s.read(b, &[1], 5);
    let behind = s.read(b, &[1], 4);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [first, behind]);
    assert_eq!(stale[0].facet.as_deref(), Some("monotonic-reads"));
}

#[test]
fn a_version_regression_is_judged_against_the_highest_version_before() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.write(b, 1, &[1], 1);
    let higher = s.write(b, 2, &[1, 2], 2);
    let behind = s.read(b, &[1, 2], 1);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [higher, behind]);
}

#[test]
fn a_read_begun_the_moment_a_miss_completed_does_not_bring_the_item_back() {
    // Concurrent with the miss (it did not begin after it), the read that
    // shows the item cannot say the item came back: the later misses make
    // it lost from the first miss on, and no read is stale.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.write(b, 1, &[1], 2);
    let missed = s.read(b, &[], 3);
    let shown = s.read(b, &[1], 3);
    let completed = s.history.events[missed].completed;
    s.history.events[shown].invoked = completed;
    let confirmed = s.read(b, &[], 3);
    s.read(b, &[], 3);
    let findings = s.findings();
    let lost = only(&findings, Kind::LostUpdate);
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        lost[0].evidence.contains(&missed) && lost[0].evidence.contains(&confirmed),
        "{lost:?}"
    );
}

#[test]
fn another_browsers_item_after_a_refused_sign_in_names_no_sign_in() {
    let mut s = Script::new();
    let (alice, bob) = (s.browser("alice"), s.browser("bob"));
    s.sign_in(alice, "sid-a", "sa");
    refused_sign_in(&mut s, alice, "sid-a2");
    s.sign_in(bob, "sid-b", "sb");
    let bobs = s.write(bob, 1, &[1], 2);
    let read = s.at(
        alice,
        Request::CartRead,
        ok(
            Observed::Cart {
                version: 3,
                items: vec![],
                foreign: 1,
                others: vec!["b1-1".into()],
            },
            Some(3),
            "app-1",
        ),
    );
    let findings = s.findings();
    let found = only(&findings, Kind::CrossSessionData);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].evidence, [bobs, read]);
}

#[test]
fn a_401_at_the_edge_of_the_absolute_timeout() {
    let mut s = Script::new();
    let b = s.browser("alice");
    // Begun 5 s (the 6 s absolute timeout less its second of slack) before
    // the 401: ended, however busy.
    s.sign_in(b, "sid-1", "s1");
    for _ in 0..4 {
        s.read(b, &[], 1);
    }
    s.at(b, Request::CartRead, failed(401, "not_signed_in"));
    // Begun 2 s before: a loss.
    let signed = s.sign_in(b, "sid-2", "s2");
    let used = s.read(b, &[], 1);
    let lost = s.at(b, Request::CartRead, failed(401, "not_signed_in"));
    let mut timeouts = settings();
    timeouts.absolute_timeout = Some(Duration::from_secs(6));
    let findings = check::check(&s.history, &timeouts);
    let losses = only(&findings, Kind::SessionLoss);
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].evidence, [signed, used, lost]);
}

#[test]
fn a_401_at_the_edge_of_the_idle_timeout() {
    let mut s = Script::new();
    let b = s.browser("alice");
    // Idle exactly 3/4 of the 30 min idle timeout: the app may not have
    // ended the session yet, so a loss; a microsecond more, and it may have.
    let idle = |s: &mut Script, extra: u64| {
        let signed = s.sign_in(b, "sid-1", "s1");
        let used = s.read(b, &[], 1);
        let lost = s.at(b, Request::CartRead, failed(401, "not_signed_in"));
        let quiet = s.history.events[used].completed;
        retime(s, lost, quiet + 1_350_000_000 + extra);
        s.clock = s.history.events[lost].invoked;
        [signed, used, lost]
    };
    let at_edge = idle(&mut s, 0);
    idle(&mut s, 1);
    let findings = s.findings();
    let losses = only(&findings, Kind::SessionLoss);
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].evidence, at_edge);
}

#[test]
fn a_session_loss_is_tied_to_a_store_loss_only_in_between_and_when_it_worked() {
    let mut s = Script::new();
    let alice = s.browser("alice");
    s.sign_in(alice, "sid-a", "sa");
    // The last good answer completes at 2.1 s, the loss is sent at 3 s.
    s.token(alice, TokenSource::Cache, "sub-alice", "sid-a", 60);
    s.at(alice, Request::Profile, failed(401, "not_signed_in"));
    let findings = s.findings();
    let losses = only(&findings, Kind::SessionLoss);
    assert_eq!(losses.len(), 1);
    let step = |action: &str, at: u64| checker::history::FaultStep {
        at,
        took: 100_000,
        action: action.into(),
        ends: None,
        error: None,
        unscheduled: None,
    };
    let across = |fault: checker::history::FaultStep| {
        let mut history = s.history.clone();
        history.faults.push(fault);
        check::sessions::across_store_loss(&history, losses[0])
    };
    assert!(!check::sessions::across_store_loss(&s.history, losses[0]));
    assert!(across(step("redis-flush", 2_500_000)));
    // Done just as the last good answer came, or just as the loss was sent.
    assert!(across(step("postgres-restart", 2_000_000)));
    assert!(across(step("redis-restart", 3_000_000)));
    assert!(!across(step("redis-restart", 1_999_999)), "before");
    assert!(!across(step("redis-restart", 3_000_001)), "after");
    assert!(!across(step("redis-pause", 2_500_000)), "no loss of data");
    let failed_step = checker::history::FaultStep {
        error: Some("redis would not restart".into()),
        ..step("redis-restart", 2_500_000)
    };
    assert!(!across(failed_step), "a step that failed lost nothing");
    let undo = checker::history::FaultStep {
        ends: Some(0),
        ..step("postgres-crash", 2_500_000)
    };
    assert!(!across(undo), "an undo step is no new fault");
}

#[test]
fn the_evidence_of_a_refresh_token_reuse_is_the_sessions_sign_in_refreshes_and_failed_calls() {
    let mut s = Script::new();
    let alice = s.browser("alice");
    let signed_in = s.sign_in(alice, "sid-a", "s1");
    s.token(alice, TokenSource::Cache, "sub-alice", "sid-a", 60);
    let refreshed = s.token(alice, TokenSource::Refresh, "sub-alice", "sid-a", 60);
    s.at(alice, Request::CartRead, failed(503, "store_unavailable"));
    let refused = s.at(alice, Request::Profile, failed(502, "idp_unavailable"));
    // A sign-in the app refused ends the IdP session's part of the history.
    refused_sign_in(&mut s, alice, "sid-c");
    s.token(alice, TokenSource::Refresh, "sub-alice", "sid-a", 60);
    logout(&mut s, alice);
    // After the logout the IdP session is over: nothing here is its.
    s.token(alice, TokenSource::Refresh, "sub-alice", "sid-a", 60);
    // A sign-in the app refused joined no IdP session.
    let bob = s.browser("bob");
    refused_sign_in(&mut s, bob, "sid-b");
    s.token(bob, TokenSource::Refresh, "sub-bob", "sid-b", 60);
    let counted = std::collections::BTreeMap::from([
        (
            "sid-a".to_owned(),
            std::collections::BTreeMap::from([("family_revoked".to_owned(), 1)]),
        ),
        (
            "sid-b".to_owned(),
            std::collections::BTreeMap::from([("allowed".to_owned(), 1)]),
        ),
    ]);
    let (found, unattributed) =
        check::idp_calls::reuse(&s.history, &s.history.by_browser(), &counted);
    assert_eq!(unattributed, 1);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].evidence, [signed_in, refreshed, refused]);
    assert!(
        found[0].summary.contains("revoked its whole family"),
        "{}",
        found[0].summary
    );
}

#[test]
fn the_minimum_counts_a_refresh_only_once_the_ideal_token_clearly_ran_out() {
    let minimum = |used_at: u64| {
        let mut s = Script::new();
        let b = s.browser("alice");
        // Signed in at 1.1 s: the ideal token (60 s, renewed 10 s early)
        // serves to 51 s, and a second more for slack.
        s.sign_in(b, "sid-1", "s1");
        let used = s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
        retime(&mut s, used, used_at);
        check::idp_calls::minimum_token_calls(
            &s.history,
            &s.history.by_browser(),
            &settings(),
            Duration::from_secs(60),
        )
    };
    assert_eq!(minimum(51_000_000), 1, "still good");
    assert_eq!(minimum(51_999_999), 1, "within the slack");
    assert_eq!(minimum(52_000_000), 2, "run out: one refresh");
    // The refresh's ideal token serves the next call a second later.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.clock += 100 * 1_000_000;
    s.token(b, TokenSource::Refresh, "sub-alice", "sid-1", 60);
    s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    let calls = check::idp_calls::minimum_token_calls(
        &s.history,
        &s.history.by_browser(),
        &settings(),
        Duration::from_secs(60),
    );
    assert_eq!(calls, 2, "the code exchange and one refresh");
    // After a logout nothing is cached: a call needs a token of its own.
    // A sign-in the app refused exchanged no code.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    logout(&mut s, b);
    s.token(b, TokenSource::Refresh, "sub-alice", "sid-1", 60);
    refused_sign_in(&mut s, b, "sid-2");
    let calls = check::idp_calls::minimum_token_calls(
        &s.history,
        &s.history.by_browser(),
        &settings(),
        Duration::from_secs(60),
    );
    assert_eq!(calls, 2);
}

/// Shows a token with the given expiry (seconds after the run started),
/// answered at `invoked` (microseconds).
fn token_at(s: &mut Script, b: BrowserId, source: TokenSource, invoked: u64, exp: u64) -> usize {
    let index = s.token(b, source, "sub-alice", "sid-1", 60);
    retime(s, index, invoked);
    if let Outcome::Answered {
        observed: Observed::Token { exp: shown, .. },
        ..
    } = &mut s.history.events[index].outcome
    {
        *shown = STARTED_MS / 1000 + exp;
    }
    index
}

#[test]
fn the_minimum_holds_the_real_tokens_the_history_shows() {
    let minimum = |s: &Script| {
        check::idp_calls::minimum_token_calls(
            &s.history,
            &s.history.by_browser(),
            &settings(),
            Duration::from_secs(60),
        )
    };
    // The code was exchanged at 0.95 s (its token stamped at 0 s, so due at
    // 50 s) and the sign-in answered at 1.1 s: the estimate says 51 s. The
    // first cached answer shows the real token; a refresh at 50.5 s is then
    // needed, as a perfect client would make it.
    let mut s = Script::new();
    let b = s.browser("alice");
    let signed_in = s.sign_in(b, "sid-1", "s1");
    s.history.events[signed_in].invoked = 900_000;
    token_at(&mut s, b, TokenSource::Cache, 2_000_000, 60);
    token_at(&mut s, b, TokenSource::Refresh, 50_500_000, 110);
    assert_eq!(minimum(&s), 2, "due at 50 s, refreshed at 50.5 s");
    // Never shown from the cache, the sign-in's token is estimated, with a
    // second of slack: 50.5 s is within it.
    let mut s = Script::new();
    let b = s.browser("alice");
    let signed_in = s.sign_in(b, "sid-1", "s1");
    s.history.events[signed_in].invoked = 900_000;
    token_at(&mut s, b, TokenSource::Refresh, 50_500_000, 110);
    assert_eq!(
        minimum(&s),
        1,
        "the estimate (51 s, and slack) still serves"
    );
    // A refreshed token's expiry is the one shown: due exactly then.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    token_at(&mut s, b, TokenSource::Refresh, 100_000_000, 160);
    token_at(&mut s, b, TokenSource::Cache, 149_900_000, 160);
    assert_eq!(minimum(&s), 2, "still good at 149.9 s");
    token_at(&mut s, b, TokenSource::Refresh, 150_100_000, 210);
    assert_eq!(minimum(&s), 3, "due at 150 s, refreshed at 150.1 s");
    // A refresh the ideal client did not need is not its token: it goes on
    // with the one it held, due at 50 s.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    token_at(&mut s, b, TokenSource::Cache, 2_000_000, 61);
    token_at(&mut s, b, TokenSource::Refresh, 30_000_000, 90);
    assert_eq!(minimum(&s), 1, "refreshed early: not needed");
    token_at(&mut s, b, TokenSource::Cache, 51_500_000, 90);
    assert_eq!(minimum(&s), 2, "the ideal token ran out at 51 s");
}

/// A `/data` call showing a token for `scopes` with the given expiry
/// (seconds after the run started), answered at `invoked` (microseconds).
fn scoped_at(
    s: &mut Script,
    b: BrowserId,
    source: TokenSource,
    scopes: &str,
    invoked: u64,
    exp: u64,
) -> usize {
    let index = scoped(s, b, source, scopes);
    retime(s, index, invoked);
    if let Outcome::Answered {
        observed: Observed::Token { exp: shown, .. },
        ..
    } = &mut s.history.events[index].outcome
    {
        *shown = STARTED_MS / 1000 + exp;
    }
    index
}

#[test]
fn the_minimum_estimates_only_what_no_answer_shows_and_pins_only_its_own_estimate() {
    let minimum = |s: &Script| {
        check::idp_calls::minimum_token_calls(
            &s.history,
            &s.history.by_browser(),
            &settings(),
            Duration::from_secs(60),
        )
    };
    // Refreshed at 100 s (due at 150 s) and again at 150.5 s: with no
    // cached answer between, the first refresh's shown expiry decides.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    token_at(&mut s, b, TokenSource::Refresh, 100_000_000, 160);
    token_at(&mut s, b, TokenSource::Refresh, 150_500_000, 210);
    assert_eq!(
        minimum(&s),
        3,
        "due at 150 s: the second refresh was needed"
    );
    // The ideal client needs a token where the app served its own (it had
    // refreshed early): the ideal one is estimated from that moment (51.5 s,
    // so due at 101 s, a second of slack after).
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    token_at(&mut s, b, TokenSource::Cache, 2_000_000, 61);
    token_at(&mut s, b, TokenSource::Refresh, 30_000_000, 90);
    token_at(&mut s, b, TokenSource::Cache, 51_500_000, 90);
    assert_eq!(minimum(&s), 2);
    token_at(&mut s, b, TokenSource::Refresh, 100_500_000, 160);
    assert_eq!(minimum(&s), 2, "the estimate serves to 102 s");
    token_at(&mut s, b, TokenSource::Cache, 102_500_000, 160);
    assert_eq!(minimum(&s), 3, "and no longer");
    // A token the history showed is not pinned again by an older one.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    token_at(&mut s, b, TokenSource::Refresh, 100_000_000, 160);
    token_at(&mut s, b, TokenSource::Cache, 120_000_000, 140);
    token_at(&mut s, b, TokenSource::Cache, 140_000_000, 160);
    assert_eq!(minimum(&s), 2, "the refresh's token is due at 150 s");
    // A cached answer for one scope set pins no token of another.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    token_at(&mut s, b, TokenSource::Refresh, 100_000_000, 160);
    scoped_at(
        &mut s,
        b,
        TokenSource::Refresh,
        "orders.read",
        100_500_000,
        170,
    );
    token_at(&mut s, b, TokenSource::Cache, 120_000_000, 160);
    scoped_at(
        &mut s,
        b,
        TokenSource::Cache,
        "orders.read",
        155_000_000,
        170,
    );
    assert_eq!(minimum(&s), 3, "the orders token is due at 160 s");
}

#[test]
fn a_sign_in_with_no_answer_may_have_landed_so_its_browser_may_be_live() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.at(b, Request::SignIn, lost());
    let look = 3_000_000;
    let endings = resident::Standings::new(&s.history, look, IDLE).endings();
    assert_eq!((endings.live, endings.expired), (1, 0));
    assert_eq!(resident::live_at(&s.history, &[look], IDLE, None), [1]);
    // A sign-in the app refused signed nobody in.
    let mut refused = Script::new();
    let b = refused.browser("alice");
    refused.at(b, Request::SignIn, failed(400, "bad_request"));
    let endings = resident::Standings::new(&refused.history, look, IDLE).endings();
    assert_eq!(endings, resident::Endings::default());
    assert_eq!(
        resident::live_at(&refused.history, &[look], IDLE, None),
        [0]
    );
}

/// A replay of the cookie a browser held before its logout, answered 200 by `instance`.
fn replay(s: &mut Script, b: BrowserId, instance: &str) -> usize {
    s.at(
        b,
        Request::Replay,
        ok(
            Observed::Cart {
                version: 2,
                items: Vec::new(),
                foreign: 0,
                others: Vec::new(),
            },
            Some(2),
            instance,
        ),
    )
}

#[test]
fn a_resurrected_session_names_the_sign_in_that_began_it_and_where_it_answered() {
    let mut s = Script::new();
    let b = s.browser("alice");
    let signed_in = s.sign_in(b, "sid-1", "s1");
    // A second sign-in the app refused began no session.
    s.at(b, Request::SignIn, failed(502, "idp_unavailable"));
    let out = logout(&mut s, b);
    let same = replay(&mut s, b, "app-1");
    let other = replay(&mut s, b, "app-2");
    let findings = s.findings();
    let found = only(&findings, Kind::SessionResurrected);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].evidence, [signed_in, out, same]);
    assert_eq!(found[0].facet.as_deref(), Some("same-instance"));
    assert_eq!(found[1].evidence, [signed_in, out, other]);
    assert_eq!(found[1].facet.as_deref(), Some("other-instance"));
}

#[test]
fn a_refused_replay_or_one_after_a_failed_logout_resurrects_nothing() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    logout(&mut s, b);
    // The logged-out cookie refused: what the contract asks.
    s.at(b, Request::Replay, failed(401, "not_signed_in"));
    // A logout that failed ended nothing: its cookie may still be answered.
    let other = s.browser("bob");
    s.sign_in(other, "sid-2", "s2");
    s.at(other, Request::Logout, failed(503, "store_unavailable"));
    replay(&mut s, other, "app-1");
    let findings = s.findings();
    assert_eq!(findings.count(Kind::SessionResurrected), 0, "{findings:?}");
}

#[test]
fn a_401_that_says_signin_required_is_a_loss_of_tokens() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    let lost = s.at(b, Request::Profile, failed(401, "signin_required"));
    let findings = s.findings();
    let losses = only(&findings, Kind::SessionLoss);
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].facet.as_deref(), Some("tokens-lost"));
    assert!(losses[0].evidence.contains(&lost), "{losses:?}");
}

/// A sign-in answered 500 though its answer names an IdP session `sid`.
fn refused_sign_in(s: &mut Script, b: BrowserId, sid: &str) -> usize {
    let index = s.sign_in(b, sid, "s-refused");
    if let Outcome::Answered { status, .. } = &mut s.history.events[index].outcome {
        *status = 500;
    }
    index
}

#[test]
fn a_sign_in_the_app_did_not_acknowledge_sets_no_idp_session_to_compare_tokens_with() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    refused_sign_in(&mut s, b, "sid-2");
    s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    // Nor does a logout after it end that IdP session.
    logout(&mut s, b);
    s.token(b, TokenSource::Cache, "sub-alice", "sid-2", 60);
    s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    let findings = s.findings();
    assert_eq!(findings.count(Kind::CrossSessionToken), 0, "{findings:?}");
    assert_eq!(findings.count(Kind::TokenAfterLogout), 0, "{findings:?}");
}

#[test]
fn a_read_lacking_an_item_acknowledged_after_the_writes_it_shows_breaks_read_your_writes() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.write(b, 1, &[1], 2);
    let later = s.write(b, 2, &[1, 2], 3);
    let lacks = s.read(b, &[1], 3);
    let back = s.read(b, &[1, 2], 3);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [later, lacks, back]);
    assert_eq!(stale[0].facet.as_deref(), Some("read-your-writes"));
}

#[test]
fn a_miss_is_confirmed_only_by_a_read_begun_after_the_first_miss_completed() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.write(b, 1, &[1], 2);
    let first = s.read(b, &[], 2);
    let second = s.read(b, &[], 2);
    let first_done = s.history.events[first].completed;
    retime(&mut s, second, first_done);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 2, "neither is told lost: {stale:?}");
}

#[test]
fn an_item_acknowledged_twice_at_once_is_known_from_the_first_write() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let first = blind_write(&mut s, b, 1);
    let again = blind_write(&mut s, b, 1);
    let same_time = s.history.events[first].invoked;
    retime(&mut s, again, same_time);
    let missing = s.read(b, &[], 2);
    let back = s.read(b, &[1], 2);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [first, missing, back]);
}

#[test]
fn a_cart_showing_its_own_earlier_item_and_anothers_is_two_findings() {
    let mut s = Script::new();
    let (alice, bob) = (s.browser("alice"), s.browser("bob"));
    s.sign_in(alice, "sid-a", "sa");
    let own = s.write(alice, 1, &[1], 2);
    logout(&mut s, alice);
    s.sign_in(bob, "sid-b", "sb");
    let bobs = s.write(bob, 1, &[1], 2);
    let again = s.sign_in(alice, "sid-a2", "sa2");
    let both = s.at(
        alice,
        Request::CartRead,
        ok(
            Observed::Cart {
                version: 3,
                items: vec![1],
                foreign: 1,
                others: vec!["b1-1".into()],
            },
            Some(3),
            "app-1",
        ),
    );
    let findings = s.findings();
    let found = only(&findings, Kind::CrossSessionData);
    let seen: Vec<(Option<&str>, &[usize])> = found
        .iter()
        .map(|a| (a.facet.as_deref(), &a.evidence[..]))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("own-earlier-session"), &[again, own, both][..]),
            (Some("other-user"), &[again, bobs, both][..]),
        ]
    );
}

#[test]
fn a_sign_in_the_app_refused_ends_the_browsers_live_session() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.at(b, Request::SignIn, failed(400, "bad_request"));
    let look = 4_000_000;
    let endings = resident::Standings::new(&s.history, look, IDLE).endings();
    assert_eq!(endings, resident::Endings::default());
    assert_eq!(resident::live_at(&s.history, &[look], IDLE, None), [0]);
}

#[test]
fn only_a_restart_of_the_instance_itself_that_worked_wipes_what_it_held() {
    let restarted = |action: &str, error: Option<&str>| {
        let (mut s, _, _, look) = alice_left_bob_stayed();
        s.history.faults.push(checker::history::FaultStep {
            at: 20_000_000,
            took: 50_000,
            action: action.into(),
            ends: None,
            error: error.map(str::to_owned),
            unscheduled: None,
        });
        let found =
            resident::Standings::new(&s.history, look, IDLE).check(&[held("app-1", None, Some(2))]);
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].browser
    };
    let (_, alice, _, _) = alice_left_bob_stayed();
    assert_eq!(restarted("instance-restart app-2", None), alice);
    assert_eq!(
        restarted("instance-restart app-1", Some("it would not stop")),
        alice
    );
    assert_ne!(restarted("instance-start app-1", None), alice);
}

#[test]
fn an_instance_down_just_as_the_last_good_answer_came_or_the_loss_was_sent_counts() {
    let mut s = Script::new();
    let alice = s.browser("alice");
    s.sign_in(alice, "sid-a", "sa");
    // The last good answer completes at 2.1 s, the loss is sent at 3 s.
    s.token(alice, TokenSource::Cache, "sub-alice", "sid-a", 60);
    s.at(alice, Request::Profile, failed(401, "not_signed_in"));
    let findings = s.findings();
    let losses = only(&findings, Kind::SessionLoss);
    assert_eq!(losses.len(), 1);
    let across = |at: u64| {
        let mut history = s.history.clone();
        history.faults.push(checker::history::FaultStep {
            at,
            took: 100_000,
            action: "instance-restart app-1".into(),
            ends: None,
            error: None,
            unscheduled: None,
        });
        check::sessions::across_instance_down(&history, losses[0])
    };
    assert!(across(2_000_000));
    assert!(across(3_000_000));
    assert!(!across(1_999_999));
    assert!(!across(3_000_001));
}

#[test]
fn a_token_is_after_a_logout_only_when_sent_after_the_logout_completed() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let out = logout(&mut s, b);
    let at_once = s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    let ended = s.history.events[out].completed;
    retime(&mut s, at_once, ended);
    let after = s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    let findings = s.findings();
    let found = only(&findings, Kind::TokenAfterLogout);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].evidence, [out, after]);
}

#[test]
fn a_logout_that_kept_the_idp_session_leaves_nothing_for_a_later_one_to_end() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.at(
        b,
        Request::Logout,
        ok(
            Observed::LoggedOut {
                idp_session_ended: false,
            },
            None,
            "app-1",
        ),
    );
    logout(&mut s, b);
    s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    let findings = s.findings();
    assert_eq!(findings.count(Kind::TokenAfterLogout), 0, "{findings:?}");
}

/// A `/data` call that showed a token for `scopes`, got from `source`.
fn scoped(s: &mut Script, b: BrowserId, source: TokenSource, scopes: &str) -> usize {
    let exp = STARTED_MS / 1000 + s.clock / 1_000_000 + 61;
    s.at(
        b,
        Request::Data {
            resource: "orders".into(),
        },
        ok(
            Observed::Token {
                user: "alice".into(),
                source,
                sub: "sub-alice".into(),
                sid: Some("sid-1".into()),
                jti: format!("j{}", s.clock),
                scopes: Some(scopes.into()),
                exp,
            },
            None,
            "app-1",
        ),
    )
}

#[test]
fn a_token_served_from_the_cache_evicts_no_token_of_other_scopes() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let profile = s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    scoped(&mut s, b, TokenSource::Refresh, "orders.read");
    scoped(&mut s, b, TokenSource::Cache, "orders.read");
    // The profile token is still cached and good: refreshing it is extra.
    let extra = s.token(b, TokenSource::Refresh, "sub-alice", "sid-1", 60);
    let findings = s.findings();
    let extras = only(&findings, Kind::ExtraIdpCalls);
    assert_eq!(extras.len(), 1, "{extras:?}");
    assert_eq!(extras[0].evidence, [profile, extra]);
}

#[test]
fn a_refresh_is_extra_only_when_a_token_for_its_own_scopes_was_cached() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    // The profile token does not serve the API's scopes: a needed refresh.
    let first = scoped(&mut s, b, TokenSource::Refresh, "orders.read orders.write");
    // A token for both serves one of them.
    let extra = scoped(&mut s, b, TokenSource::Refresh, "orders.read");
    // Storing it dropped the token for both: this refresh was needed.
    scoped(&mut s, b, TokenSource::Refresh, "orders.write");
    let findings = s.findings();
    let extras = only(&findings, Kind::ExtraIdpCalls);
    assert_eq!(extras.len(), 1, "{extras:?}");
    assert_eq!(extras[0].evidence, [first, extra]);
}

#[test]
fn an_item_is_known_from_the_read_that_completed_first_not_the_one_begun_first() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.at(b, Request::CartWrite { item: 1 }, lost());
    let slow = s.read(b, &[1], 2);
    s.history.events[slow].completed = 8_000_000;
    let quick = s.read(b, &[1], 2);
    let missing = s.read(b, &[], 2);
    let back = s.read(b, &[1], 2);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [quick, missing, back]);
    assert_eq!(stale[0].facet.as_deref(), Some("monotonic-reads"));
}

#[test]
fn a_token_shown_by_a_failed_answer_counts_for_no_needed_refresh_nor_an_extra_one() {
    let failed_refresh = |s: &mut Script, b: BrowserId| {
        let index = s.token(b, TokenSource::Refresh, "sub-alice", "sid-1", 60);
        if let Outcome::Answered { status, .. } = &mut s.history.events[index].outcome {
            *status = 500;
        }
    };
    // Long after the ideal token ran out, but the answer was a 500.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.clock += 100 * 1_000_000;
    failed_refresh(&mut s, b);
    let minimum = check::idp_calls::minimum_token_calls(
        &s.history,
        &s.history.by_browser(),
        &settings(),
        Duration::from_secs(60),
    );
    assert_eq!(minimum, 1, "the code exchange only");
    // While a good token was cached: no extra call either.
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
    failed_refresh(&mut s, b);
    assert_eq!(s.findings().count(Kind::ExtraIdpCalls), 0);
}

#[test]
fn a_read_lacking_an_item_seen_before_a_later_write_breaks_writes_follow_reads() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.at(b, Request::CartWrite { item: 1 }, lost());
    let seen = s.read(b, &[1], 2);
    let later = s.write(b, 2, &[2], 3);
    let back = s.read(b, &[1, 2], 3);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [seen, later, back]);
    assert_eq!(stale[0].facet.as_deref(), Some("writes-follow-reads"));
}

#[test]
fn a_cart_read_after_an_acknowledged_logout_owes_nothing_to_the_session_before() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.write(b, 1, &[1], 2);
    logout(&mut s, b);
    s.read(b, &[], 1);
    let findings = s.findings();
    for kind in Kind::ALL {
        assert_eq!(findings.count(kind), 0, "{kind}: {:?}", findings.anomalies);
    }
}

#[test]
fn a_cached_token_serves_a_refresh_only_while_it_has_a_second_to_spare() {
    // Expiring at 62 s, renewed 10 s early: good to 52 s.
    let extras = |refreshed_by: u64| {
        let mut s = Script::new();
        let b = s.browser("alice");
        s.sign_in(b, "sid-1", "s1");
        s.token(b, TokenSource::Cache, "sub-alice", "sid-1", 60);
        let refresh = s.token(b, TokenSource::Refresh, "sub-alice", "sid-1", 60);
        let event = &mut s.history.events[refresh];
        event.completed = refreshed_by;
        event.invoked = refreshed_by - 100_000;
        s.findings().count(Kind::ExtraIdpCalls)
    };
    assert_eq!(extras(50_999_999), 1, "just over a second to spare");
    assert_eq!(extras(51_000_000), 0, "a second to spare is not enough");
}

#[test]
fn a_user_is_gone_when_the_last_of_their_browsers_ended() {
    let mut s = Script::new();
    let (first, second) = (s.browser("alice"), s.browser("alice"));
    s.sign_in(first, "sid-1", "s1");
    let signed_in = s.sign_in(second, "sid-2", "s2");
    s.read(second, &[], 1);
    logout(&mut s, first);
    let last = logout(&mut s, second);
    // Bob left one browser and still uses the other: not gone.
    let (bob_left, bob_stayed) = (s.browser("bob"), s.browser("bob"));
    s.sign_in(bob_left, "sid-3", "s3");
    s.sign_in(bob_stayed, "sid-4", "s4");
    logout(&mut s, bob_left);
    let gone = resident::Standings::new(&s.history, 10_000_000, IDLE).gone_users();
    assert!(!gone.contains_key("bob"), "{gone:?}");
    let alice = &gone["alice"];
    assert_eq!(alice.browser, second);
    assert_eq!(alice.ended_at, s.history.events[last].completed);
    assert!(alice.logged_out);
    assert_eq!(alice.evidence, [signed_in, last]);
}

#[test]
fn a_logout_after_a_refused_sign_in_ends_no_session_the_stores_must_drop() {
    let mut s = Script::new();
    let b = s.browser("alice");
    let signed_in = s.sign_in(b, "sid-1", "s1");
    let out = logout(&mut s, b);
    s.sign_in(b, "sid-2", "s2");
    refused_sign_in(&mut s, b, "sid-3");
    logout(&mut s, b);
    // Nor does a logout the app did not acknowledge.
    s.sign_in(b, "sid-4", "s4");
    s.at(b, Request::Logout, failed(503, "store_unavailable"));
    let ended = check::orphans::ended_sessions(&s.history);
    assert_eq!(
        ended,
        [check::orphans::EndedSession {
            session: "s1".into(),
            sign_in: signed_in,
            logout: out,
        }]
    );
}

#[test]
fn an_item_shown_the_moment_it_became_known_does_not_stand_for_one_missing() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let first = s.write(b, 1, &[1], 2);
    let second = s.write(b, 2, &[1, 2], 3);
    let lacks_first = s.read(b, &[2], 3);
    let known = s.history.events[second].completed;
    retime(&mut s, lacks_first, known);
    let back = s.read(b, &[1, 2], 3);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [first, lacks_first, back]);
}

#[test]
fn of_two_reads_completing_together_the_one_begun_first_made_an_item_known() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.at(b, Request::CartWrite { item: 1 }, lost());
    let begun_first = s.read(b, &[1], 2);
    let together = s.read(b, &[1], 2);
    s.history.events[begun_first].completed = s.history.events[together].completed;
    let missing = s.read(b, &[], 2);
    let back = s.read(b, &[1], 2);
    let findings = s.findings();
    let stale = only(&findings, Kind::StaleRead);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].evidence, [begun_first, missing, back]);
}

#[test]
fn a_logout_with_no_good_answer_leaves_the_browser_possibly_signed_in() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    s.at(b, Request::Logout, failed(503, "store_unavailable"));
    let look = 4_000_000;
    let endings = resident::Standings::new(&s.history, look, IDLE).endings();
    assert_eq!((endings.live, endings.logged_out), (1, 0));
    assert_eq!(resident::live_at(&s.history, &[look], IDLE, None), [1]);
}

#[test]
fn a_401_straight_after_a_sign_in_is_a_loss_shown_with_that_sign_in() {
    let mut s = Script::new();
    let b = s.browser("alice");
    let signed = s.sign_in(b, "sid-1", "s1");
    let lost = s.at(b, Request::CartRead, failed(401, "not_signed_in"));
    let findings = s.findings();
    let losses = only(&findings, Kind::SessionLoss);
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].evidence, [signed, lost]);
}

#[test]
fn a_token_shown_by_a_failed_answer_is_not_judged() {
    let mut s = Script::new();
    let b = s.browser("alice");
    s.sign_in(b, "sid-1", "s1");
    let failed_call = s.token(b, TokenSource::Cache, "sub-bob", "sid-2", 60);
    if let Outcome::Answered { status, .. } = &mut s.history.events[failed_call].outcome {
        *status = 500;
    }
    let findings = s.findings();
    for kind in Kind::ALL {
        assert_eq!(findings.count(kind), 0, "{kind}: {:?}", findings.anomalies);
    }
}
