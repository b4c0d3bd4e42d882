//! The harness: brings up services, the IdP and app instances, drives load,
//! injects faults, checks consistency and writes results.
//!
//! Nothing is built here yet; the workspace reserves the crate so the layout
//! matches `DESIGN.md`. It exports nothing and claims nothing.
