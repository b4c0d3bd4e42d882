//! The stage a run plays on: Redis and Postgres, the mock IdP and N app
//! instances as supervised children, the fault proxy between instances and
//! stores, and the faults each part can be hurt with.
//!
//! # Layout
//! - [`process`]: supervised child processes (process groups, parent-death
//!   signal, logs), free ports, and the one readiness poll.
//! - [`services`]: Redis and Postgres, external or private, with their faults.
//! - [`network`]: the fault-injecting TCP proxy.
//! - [`store_links`]: each instance's proxied paths to the stores.
//! - [`error`]: what can go wrong on the stage.
//! - [`launch`]: how one instance starts (the reference app, or a target's command).
//! - [`placeholders`]: a target's command and environment filled in per instance.
//! - [`workdir_lease`]: one target folder shared by many harnesses (installs take turns).
//! - [`stack`]: all of it for one topology, up and ready.

pub mod error;
pub mod launch;
pub mod network;
pub mod placeholders;
pub mod process;
pub mod services;
pub mod stack;
pub mod store_links;
pub mod workdir_lease;

pub use error::StageError;
