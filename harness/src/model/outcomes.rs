//! How requests ended, counted: the six outcome counters the driver keeps
//! per series and the results document carries (flattened) per series.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Requests of one series by how they ended. Serialized flat into its
/// owner (`RequestSeries`), so the results document keeps its six fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Outcomes {
    pub ok: u64,
    // 4xx answers. (Plain comments on these two: a doc comment would add a
    // description to `reports/schema.json`, whose text is committed.)
    pub client_errors: u64,
    // 5xx answers.
    pub server_errors: u64,
    /// No connection: the request never arrived.
    pub refused: u64,
    pub timeouts: u64,
    /// The connection failed mid-request.
    pub lost: u64,
}

impl Outcomes {
    /// Requests that got no answer or a 5xx (a 4xx is the app's answer).
    pub fn errors(&self) -> u64 {
        self.server_errors + self.refused + self.timeouts + self.lost
    }

    /// `other`'s counts added into these, as merging two runs' series does.
    pub fn add(&mut self, other: &Outcomes) {
        self.ok += other.ok;
        self.client_errors += other.client_errors;
        self.server_errors += other.server_errors;
        self.refused += other.refused;
        self.timeouts += other.timeouts;
        self.lost += other.lost;
    }
}
