//! The harness tests that need a Redis Cluster (six nodes of a private
//! cluster, or `harness bench option4-cluster`). One binary, a module a
//! subject. Run one with `cargo nextest run -p harness --test cluster redis_cluster::`.

// The helpers every harness test binary shares (checker.rs and the rest too).
#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod redis_cluster;
