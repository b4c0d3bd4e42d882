//! The harness tests that launch nothing: files in, files out (results,
//! reports, comparisons, scenario and history files, the `harness` command
//! on bad input). One binary, a module a subject: one link instead of one
//! each. Run one with `cargo nextest run -p harness --test offline report::`.

// The helpers every harness test binary shares (checker.rs and the rest too).
#[path = "../common/mod.rs"]
mod common;

mod compare;
mod elle;
mod malformed;
mod report;
mod report_browser;
mod results_schema;
mod scenario_files;
