# Tasks for the cache-topology harness. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Run the whole test suite (the command CI runs).
test:
    cargo nextest run --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Run the mock OpenID Connect provider (HTTP :9400, HTTPS :9443); extra flags pass through.
idp *ARGS:
    cargo run --release -p mock-idp -- {{ARGS}}

# Measure the mock IdP: refresh grants/s and /api/me calls/s over loopback HTTP.
bench-idp:
    cargo bench -p mock-idp --bench idp_throughput
