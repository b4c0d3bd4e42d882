//! The observable contract between the harness and any app under test
//! (docs/architecture.md, "The contract between harness and app"): the
//! replies, the header names, and a browser that speaks it.
//!
//! The reference app produces its replies from these types and the harness
//! reads every app's replies with them, so an external app that speaks the
//! contract is read exactly as the reference app is.
//!
//! # Layout
//! - [`reply`]: the reply bodies and header names.
//! - [`browser`]: a cookie-keeping client over a shared hyper connection pool
//!   that signs in through the IdP by following redirects and calls the
//!   contract's endpoints with typed answers.

pub mod browser;
pub mod reply;

pub use browser::{Answer, Browser, BrowserError, HttpClient, Outcome, Page, TrustError, Witness};
pub use reply::*;
