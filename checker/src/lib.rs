//! A run's history and the checker that judges it: the record of every
//! request of every simulated browser ([`history`]), and the anomalies
//! found in it ([`check`]). Pure: no I/O, no clock, no stack.
//!
//! Its own crate so that nothing else can creep in (the harness's stage,
//! load driver and stores sit above it, never below), and so that mutation
//! testing (`cargo mutants --package checker`, `.cargo/mutants.toml`)
//! rebuilds and tests only this, in seconds a mutant.

pub mod check;
pub mod history;
