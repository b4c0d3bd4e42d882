//! The reference web app under test: an OAuth confidential client whose session
//! store and token-cache placement form the topology being measured.
//!
//! # Layout
//! - [`store`]: the one store trait and its backends (memory, SQLite,
//!   Postgres, Redis) and wrappers (tiered, encrypted).
//!
//! The web server, token cache and topologies are not built yet.

pub mod store;
