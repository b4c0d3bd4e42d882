//! The reference app refuses a cart write past its limit with 409
//! `cart_full` (contract::CART_MAX_ITEMS): the write did not happen, and
//! the checker must not count the item's absence from later reads, nor the
//! refusal itself, as an anomaly.

use std::collections::HashMap;
use std::time::Duration;

use checker::check::{self, Settings};
use checker::history::{BrowserId, BrowserInfo, Event, History, Observed, Outcome, Request};

fn answered(status: u16, error: Option<&str>, version: Option<u64>, observed: Observed) -> Outcome {
    Outcome::Answered {
        status,
        instance: Some("app-1".into()),
        session_version: version,
        error: error.map(str::to_owned),
        observed,
    }
}

#[test]
fn a_cart_full_refusal_is_no_anomaly() {
    let mut history = History::default();
    history.browsers.push(BrowserInfo {
        person: 0,
        user: "alice".into(),
    });
    let b = BrowserId(0);
    let cart = |version: u64, items: Vec<u32>| Observed::Cart {
        version,
        items,
        foreign: 0,
        others: Vec::new(),
    };
    let steps = [
        (
            Request::SignIn,
            answered(
                200,
                None,
                Some(1),
                Observed::SignedIn {
                    user: Some("alice".into()),
                    session: Some("session-0123456789abcdef".into()),
                    idp_sid: Some("idp-0123456789abcdef".into()),
                },
            ),
        ),
        (
            Request::CartWrite { item: 1 },
            answered(200, None, Some(2), cart(2, vec![1])),
        ),
        (
            Request::CartWrite { item: 2 },
            answered(409, Some("cart_full"), Some(2), Observed::Nothing),
        ),
        (
            Request::CartRead,
            answered(200, None, Some(2), cart(2, vec![1])),
        ),
    ];
    for (n, (request, outcome)) in steps.into_iter().enumerate() {
        let at = (n as u64 + 1) * 1_000_000;
        history.events.push(Event {
            browser: b,
            request,
            sent_to: "app-1".into(),
            invoked: at,
            completed: at + 100_000,
            outcome,
        });
    }
    let settings = Settings {
        idle_timeout: Duration::from_secs(1800),
        absolute_timeout: None,
        renewal_offset: Duration::from_secs(10),
        started_unix_ms: 1_700_000_000_000,
        subjects: HashMap::from([("alice".to_owned(), "sub-alice".to_owned())]),
    };
    let findings = check::check(&history, &settings);
    let found: usize = findings.anomalies.values().map(Vec::len).sum();
    assert_eq!(found, 0, "{:?}", findings.anomalies);
}
