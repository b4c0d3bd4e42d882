//! The app's integration tests, one binary (one link instead of eight), a
//! module a subject: the stores against real Redis and Postgres, the
//! placements, the binary as a process, the IdP misbehaving, the session
//! timeouts. One subject: `cargo nextest run -p app --test integration tiered::`.

// The helpers these tests share.
#[path = "../common/mod.rs"]
mod common;

mod binary;
mod idp_misbehaving;
mod placement_conformance;
mod redis_direct;
mod redis_tls;
mod session_timeouts;
mod store_conformance;
mod store_failures;
mod tiered;
