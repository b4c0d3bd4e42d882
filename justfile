# Tasks for the cache-topology harness. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Run the whole test suite (the command CI runs).
test:
    cargo nextest run --workspace --all-features

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# Run the mock OpenID Connect provider (HTTP :9400, HTTPS :9443); extra flags pass through.
idp *ARGS:
    cargo run --release -p mock-idp -- {{ARGS}}

# Run one app instance (default option4 on :8080; needs `just idp`); extra flags pass through.
app *ARGS:
    cargo run --release -p app -- --redis-url "${REDIS_URL:-redis://127.0.0.1:6379}" --database-url "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}" {{ARGS}}

# Measure GET /profile per option (p50/p99, throughput) beside a Redis round trip.
bench-app:
    cargo bench -p e2e-tests --bench profile_latency

# Measure the mock IdP: refresh grants/s and /api/me calls/s over loopback HTTP.
bench-idp:
    cargo bench -p mock-idp --bench idp_throughput

# Bring a topology up by hand (default option4 x 3), e.g. `just up --faults scenarios/faults-option4.toml`.
up *ARGS:
    cargo build --release --bins
    ./target/release/harness up {{ARGS}}

# Time `harness up --topology option4 --instances 3` to every component ready (target 3 s).
bench-up:
    cargo build --release --bins
    cargo bench -p harness --bench bring_up
