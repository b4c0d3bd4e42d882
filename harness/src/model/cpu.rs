//! The stage's CPU seconds at one moment, and the names its components go
//! by in results and reports.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The stage's CPU figures at one moment: cumulative seconds since each
/// component first ran (across its restarts).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CpuSample {
    /// Each instance the harness runs, by id.
    pub instances: BTreeMap<String, f64>,
    /// The private Redis (absent without one, or when it is not the harness's).
    pub redis: Option<f64>,
    /// The private Postgres, backends included.
    pub postgres: Option<f64>,
    /// The harness process itself: the load driver, sampler and checker.
    pub harness: f64,
}

/// Component names, as results and reports use them.
pub const REDIS: &str = "redis";
pub const POSTGRES: &str = "postgres";
/// Every instance together.
pub const APP: &str = "app";
pub const HARNESS: &str = "harness";
