//! Counters of what the IdP was asked and answered, as JSON (`/stats`) and Prometheus text (`/metrics`).

use std::collections::BTreeMap;
use std::fmt::Write;

use parking_lot::Mutex;
use serde_json::{Map, Value};

/// A counter with a fixed list of label names, one value per label combination.
pub struct CounterFamily {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl CounterFamily {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds one to the counter for these label values (in the order of the label names).
    pub fn inc(&self, label_values: &[&str]) {
        debug_assert_eq!(label_values.len(), self.labels.len(), "{}", self.name);
        let key: Vec<String> = label_values.iter().map(|v| (*v).to_owned()).collect();
        *self.values.lock().entry(key).or_insert(0) += 1;
    }

    /// The counter for these label values.
    pub fn get(&self, label_values: &[&str]) -> u64 {
        let key: Vec<String> = label_values.iter().map(|v| (*v).to_owned()).collect();
        self.values.lock().get(&key).copied().unwrap_or(0)
    }

    /// The sum over all label values.
    pub fn total(&self) -> u64 {
        self.values.lock().values().sum()
    }

    fn write_prometheus(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        let values = self.values.lock();
        if values.is_empty() && self.labels.is_empty() {
            let _ = writeln!(out, "{} 0", self.name);
        }
        for (key, value) in values.iter() {
            let labels: Vec<String> = self
                .labels
                .iter()
                .zip(key)
                .map(|(name, v)| format!("{name}=\"{}\"", v.replace(['"', '\\', '\n'], "_")))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{} {value}", self.name);
            } else {
                let _ = writeln!(out, "{}{{{}}} {value}", self.name, labels.join(","));
            }
        }
    }

    /// Nested by label value in label order; a family without labels is a number.
    fn to_json(&self) -> Value {
        let values = self.values.lock();
        if self.labels.is_empty() {
            return Value::from(values.values().sum::<u64>());
        }
        let mut root = Map::new();
        for (key, value) in values.iter() {
            let mut node = &mut root;
            for part in &key[..key.len() - 1] {
                node = node
                    .entry(part.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .expect("inner levels are objects");
            }
            node.insert(key[key.len() - 1].clone(), Value::from(*value));
        }
        Value::Object(root)
    }
}

/// Every counter the IdP keeps.
pub struct Stats {
    pub authorize_calls: CounterFamily,
    pub token_calls: CounterFamily,
    pub refresh_reuse: CounterFamily,
    /// The same presentations by the IdP session (`sid`) of their family,
    /// so a client can tell which of its sessions redeemed a token twice.
    pub refresh_reuse_by_session: CounterFamily,
    pub api_calls: CounterFamily,
    pub userinfo_calls: CounterFamily,
    pub logout_calls: CounterFamily,
    pub ended_session_tokens: CounterFamily,
    pub faults_injected: CounterFamily,
    pub refused_requests: CounterFamily,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            authorize_calls: CounterFamily::new(
                "mock_idp_authorize_calls_total",
                "Authorization requests by outcome.",
                &["outcome"],
            ),
            token_calls: CounterFamily::new(
                "mock_idp_token_calls_total",
                "Token endpoint requests by grant type and outcome.",
                &["grant", "outcome"],
            ),
            refresh_reuse: CounterFamily::new(
                "mock_idp_refresh_reuse_total",
                "Presentations of an already rotated refresh token, by the action taken.",
                &["action"],
            ),
            refresh_reuse_by_session: CounterFamily::new(
                "mock_idp_refresh_reuse_by_session_total",
                "Presentations of an already rotated refresh token, by the IdP session of its family and the action taken.",
                &["sid", "action"],
            ),
            api_calls: CounterFamily::new(
                "mock_idp_api_calls_total",
                "Protected API requests by outcome.",
                &["outcome"],
            ),
            userinfo_calls: CounterFamily::new(
                "mock_idp_userinfo_calls_total",
                "UserInfo requests by outcome.",
                &["outcome"],
            ),
            logout_calls: CounterFamily::new(
                "mock_idp_logout_calls_total",
                "End-session requests by outcome.",
                &["outcome"],
            ),
            ended_session_tokens: CounterFamily::new(
                "mock_idp_ended_session_tokens_total",
                "Tokens presented for an IdP session that has ended, by token kind.",
                &["kind"],
            ),
            faults_injected: CounterFamily::new(
                "mock_idp_faults_injected_total",
                "Requests changed by an injected fault, by fault and endpoint.",
                &["fault", "endpoint"],
            ),
            refused_requests: CounterFamily::new(
                "mock_idp_refused_requests_total",
                "Requests refused by a limit before any endpoint saw them, by reason.",
                &["reason"],
            ),
        }
    }
}

impl Stats {
    fn families(&self) -> [(&'static str, &CounterFamily); 10] {
        [
            ("authorize_calls", &self.authorize_calls),
            ("token_calls", &self.token_calls),
            ("refresh_reuse", &self.refresh_reuse),
            ("refresh_reuse_by_session", &self.refresh_reuse_by_session),
            ("api_calls", &self.api_calls),
            ("userinfo_calls", &self.userinfo_calls),
            ("logout_calls", &self.logout_calls),
            ("ended_session_tokens", &self.ended_session_tokens),
            ("faults_injected", &self.faults_injected),
            ("refused_requests", &self.refused_requests),
        ]
    }

    /// All counters as one JSON object.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.families()
                .into_iter()
                .map(|(key, family)| (key.to_owned(), family.to_json()))
                .collect(),
        )
    }

    /// All counters in the Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        for (_, family) in self.families() {
            family.write_prometheus(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_nested_json_and_prometheus_lines() {
        let stats = Stats::default();
        stats.token_calls.inc(&["refresh_token", "ok"]);
        stats.token_calls.inc(&["refresh_token", "ok"]);
        stats.token_calls.inc(&["refresh_token", "invalid_grant"]);
        let json = stats.to_json();
        assert_eq!(json["token_calls"]["refresh_token"]["ok"], 2);
        assert_eq!(json["token_calls"]["refresh_token"]["invalid_grant"], 1);
        let text = stats.to_prometheus();
        assert!(
            text.contains(r#"mock_idp_token_calls_total{grant="refresh_token",outcome="ok"} 2"#),
            "{text}"
        );
        assert_eq!(stats.token_calls.total(), 3);
    }
}
