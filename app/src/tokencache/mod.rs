//! The token cache: MSAL's model, where each topology keeps it, and how tokens are acquired from it.

pub mod acquire;
pub mod model;
pub mod placement;
