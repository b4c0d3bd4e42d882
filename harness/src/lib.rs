//! The harness: brings up services, the IdP and app instances, drives load,
//! injects faults, checks consistency and writes results.
//!
//! # Layout
//! - [`process`]: supervised child processes (process groups, parent-death
//!   signal, logs) and port helpers.
//! - [`services`]: Redis and Postgres, external or private, with their faults.
//!
//! Not built yet: IdP and app instances as children, the network proxy, load,
//! checker, results and reports.

pub mod process;
pub mod services;
