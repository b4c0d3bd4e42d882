//! End-to-end tests across the workspace's crates, over real HTTP; the tests live in `tests/`.
//!
//! # Layout
//! - `tests/oidc_client.rs`: a standard OpenID Connect client library against the mock IdP.
