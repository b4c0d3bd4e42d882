//! The shared vocabulary of the harness, with no I/O: what the scenario
//! reader, the stage, the driver, the results and the report all speak of.
//! Everything here is data and the rules on it; the layers that do I/O
//! (`stage`, `load`, `sample`) and the pure ones (`scenario`, `results`,
//! `report`) depend on it, never the other way.
//!
//! - [`ids`]: instance ids (`app-1`, numbered from 1 everywhere) and store kinds.
//! - [`app`]: the app under test (the reference app, a launched or a remote
//!   target), what the harness must know of it, and the placeholders.
//! - [`idp`]: the mock IdP's token settings for a run.
//! - [`network`]: the network faults a proxy link applies.
//! - [`sample`]: what the stage held at one moment.
//! - [`cpu`]: the stage's CPU seconds at one moment, and component names.
//! - [`latency`]: the one shape of latency histogram; the reference round
//!   trips' names.
//! - [`outcomes`]: how a series' requests ended, counted.

pub mod app;
pub mod cpu;
pub mod idp;
pub mod ids;
pub mod latency;
pub mod network;
pub mod outcomes;
pub mod sample;
