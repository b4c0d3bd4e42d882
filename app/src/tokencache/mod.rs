//! The token cache: MSAL's model, and where each topology keeps it.

pub mod model;
pub mod placement;
