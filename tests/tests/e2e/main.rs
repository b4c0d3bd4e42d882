//! The end-to-end tests, one binary (one link instead of eight), a module a
//! subject. One subject: `cargo nextest run -p e2e-tests --test e2e topologies::`.

mod app_security;
mod cart_limit;
mod docs_links;
mod driver_checker;
mod oidc_client;
mod option4_hardening;
mod round_trips;
mod topologies;
