//! What the history keeps instead of a session cookie, an IdP session id or
//! a token id: a keyed hash under a key drawn for the run and never written
//! anywhere. Equal values get equal labels within a run, so one session can
//! be followed through a history and the checker still compares IdP
//! sessions; a label cannot be turned back into the cookie, so a results
//! file, a history or a report passed around holds no working session.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

/// Hex digits kept of the hash: 64 bits, so a run's labels do not collide.
const LABEL_HEX: usize = 16;

/// One run's labeller.
pub struct Labels {
    key: [u8; 32],
    /// Label -> session cookie, in memory only: after the load the stage
    /// looks in the stores for what logged-out sessions left behind, and the
    /// app keys its records by the cookie itself.
    sessions: Mutex<HashMap<String, String>>,
}

impl Default for Labels {
    fn default() -> Self {
        Self::new()
    }
}

impl Labels {
    /// A labeller with a key of its own.
    pub fn new() -> Self {
        Self {
            key: rand::random(),
            sessions: Mutex::default(),
        }
    }

    /// `kind-` and the keyed hash of `value` (`kind` keeps the label's
    /// meaning readable: `session`, `idp`, `jti`).
    pub fn label(&self, kind: &str, value: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut label = String::with_capacity(kind.len() + 1 + LABEL_HEX);
        label.push_str(kind);
        label.push('-');
        for byte in &digest[..LABEL_HEX / 2] {
            label.push_str(&format!("{byte:02x}"));
        }
        label
    }

    /// The label of an app session cookie, remembered so that
    /// [`Self::session_cookie`] can give the cookie back in this process.
    pub fn session(&self, cookie: &str) -> String {
        let label = self.label("session", cookie);
        self.sessions
            .lock()
            .entry(label.clone())
            .or_insert_with(|| cookie.to_owned());
        label
    }

    /// The session cookie behind a label [`Self::session`] gave.
    pub fn session_cookie(&self, label: &str) -> Option<String> {
        self.sessions.lock().get(label).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_within_a_run_and_differ_across_runs_and_kinds() {
        let run = Labels::new();
        let cookie = "IX8DO7n3xQyJ0aF5mS2kLp9tWv1bE4cR";
        let label = run.session(cookie);
        assert_eq!(label, run.session(cookie), "stable within a run");
        assert!(label.starts_with("session-") && label.len() == 8 + LABEL_HEX);
        assert!(!label.contains(cookie));
        assert_eq!(run.session_cookie(&label).as_deref(), Some(cookie));
        assert_ne!(run.label("idp", cookie), run.label("jti", cookie));
        assert_ne!(Labels::new().session(cookie), label, "a key per run");
        assert_eq!(run.session_cookie("session-0000000000000000"), None);
    }
}
