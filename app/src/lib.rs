//! The reference web app under test: an OAuth confidential client whose session
//! store and token-cache placement form the topology being measured.
//!
//! Nothing is built here yet; the workspace reserves the crate so the layout
//! matches `DESIGN.md`. It exports nothing and claims nothing.
