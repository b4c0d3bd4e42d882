//! The harness: brings up services, the IdP and app instances, drives load,
//! injects faults, checks consistency and writes results.
//!
//! # Layout
//! Dependencies point down this list only.
//! - [`cli`]: the command line's grammar (the binary dispatches it).
//! - [`up`]: one app's stack brought up by hand, its faults run, until a signal.
//! - [`bench`]: one scenario on one or more topologies; the summary table.
//! - [`analyze`]: a saved history file judged again, offline.
//! - [`shards`]: the histories of one scenario's shards made one.
//! - [`run`]: one run: stage up -> faults, load and sampler side by side ->
//!   the facts measured beside the history -> the verdict.
//! - [`judge`]: history and run facts -> findings and the results document
//!   (the one path from a history to a verdict, live or offline).
//! - [`report`]: results files -> the HTML report; `compare` against baselines.
//! - [`progress`]: the live progress bar.
//! - [`reference`]: reference round trips (healthz, Redis PING) beside the load.
//! - [`results`]: the results document, its schema, the merge of several.
//! - [`sample`]: RSS, `/metrics`, store sizes over time; what stores keep.
//! - [`cluster_sample`]: each Redis Cluster node's role, memory and keys at a sample.
//! - [`store_probe`]: each store tier's raw contents, read apart, never written.
//! - [`cpu`]: CPU seconds of the instances, Redis, Postgres and the harness.
//! - [`load`]: the goose driver and the simulated browsers.
//! - [`elle`]: a history as Elle's list-append EDN, for an independent checker.
//! - [`history_file`]: a run's whole history as JSON lines (`bench --history`).
//! - [`faults`]: runs a scenario's fault schedule against a stack.
//! - [`shard`]: `--shard I/N`: a scenario's browsers cut into slices for
//!   several machines, and `--start-at`.
//! - [`deployment`]: which apps a command runs, with how many instances.
//! - [`host`]: this machine's facts, and the refusal of a run it cannot hold.
//! - [`scenario`]: scenario files as a model (pure: read, validate, no stack).
//! - [`run_folder`]: where a run's logs go, and the sweep of dead runs' leftovers.
//! - [`stage`]: supervised children, Redis and Postgres, the fault proxy, the
//!   stack of one topology up and ready.
//! - [`model`]: the shared vocabulary (ids, the app under test, IdP and
//!   network fault settings, samples, CPU, latency shapes): data, no I/O.
//! - [`outage`]: history -> the requests that failed after each fault, and
//!   over what span (pure).
//! - [`check`] and [`history`], from the `checker` crate below all of this:
//!   invoke/complete events and fault steps (what the driver writes), and
//!   history -> anomalies, one file per family (pure).

pub use checker::{check, history};

pub mod analyze;
pub mod bench;
pub mod cli;
pub mod cluster_sample;
pub mod cpu;
pub mod deployment;
pub mod elle;
pub mod faults;
pub mod history_file;
pub mod host;
pub mod judge;
pub mod load;
pub mod model;
pub mod outage;
pub mod progress;
pub mod redis_nodes;
pub mod reference;
pub mod report;
pub mod results;
pub mod run;
pub mod run_folder;
pub mod sample;
pub mod scenario;
pub mod shard;
pub mod shards;
pub mod stage;
pub mod store_probe;
pub mod up;
