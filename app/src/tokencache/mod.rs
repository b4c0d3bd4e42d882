//! The token cache: where each topology keeps it, and how tokens are acquired from it.

pub mod acquire;
pub mod handoff;
pub mod lease;
pub mod placement;
