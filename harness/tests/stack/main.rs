//! The harness tests that bring a stack up (Redis, Postgres, the mock IdP,
//! app instances as child processes), in process or through the `harness`
//! command. One binary, a module a subject: one link instead of one each.
//! Run one with `cargo nextest run -p harness --test stack bench::`.

// The helpers every harness test binary shares (checker.rs and the rest too).
#[path = "../common/mod.rs"]
mod common;

mod bench;
mod broken_stores;
mod cleanup;
mod cli;
mod containers;
mod contract;
mod cpu;
mod fault_schedule;
mod faults;
mod network;
mod outages;
mod postgres_crash;
mod race;
mod refresh_lease;
mod secrets;
mod services;
mod shards;
mod stage_events;
mod store_breaker;
mod store_probe;
mod targets;
