//! The harness: brings up services, the IdP and app instances, drives load,
//! injects faults, checks consistency and writes results.
//!
//! # Layout
//! Dependencies point down this list only.
//! - [`scenario`]: scenario files as a model (pure: read, validate, no stack).
//! - [`faults`]: runs a scenario's fault schedule against a stack; the timeline.
//! - [`stage`]: supervised children, Redis and Postgres, the fault proxy, the
//!   stack of one topology up and ready.
//! - [`run_folder`]: where a run's logs go, and the sweep of dead runs' leftovers.
//!
//! Not built yet: load, the checker, results and reports.

pub mod bench;
pub mod check;
pub mod faults;
pub mod history;
pub mod load;
pub mod progress;
pub mod results;
pub mod run;
pub mod run_folder;
pub mod sample;
pub mod scenario;
pub mod stage;
