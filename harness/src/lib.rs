//! The harness: brings up services, the IdP and app instances, drives load,
//! injects faults, checks consistency and writes results.
//!
//! # Layout
//! - [`process`]: supervised child processes (process groups, parent-death
//!   signal, logs) and port helpers.
//! - [`services`]: Redis and Postgres, external or private, with their faults.
//! - [`network`]: the fault-injecting TCP proxy between app instances and stores.
//! - [`schedule`]: fault schedules from scenario files, run against a stack.
//! - [`stack`]: the stores, the mock IdP and N app instances of a topology, up and ready.
//! - [`store_links`]: each instance's proxied paths to the stores.
//!
//! Not built yet: load, the checker, results and reports.

pub mod network;
pub mod process;
pub mod schedule;
pub mod services;
pub mod stack;
pub mod store_links;
