# Tasks for the cache-topology harness. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The main job: build, then bench OPTION (option1..option4, or all) with its
# default scenario (built-in smoke); extra flags go to `harness bench`
# (e.g. `just bench all --scenario scenarios/claims.toml`). Prints the
# summary table, the results files and the HTML report's path.
bench OPTION *FLAGS:
    cargo build --release --bins
    ./target/release/harness bench {{OPTION}} {{FLAGS}}

# The seed's own stack (targets/express-msal, Express + MSAL Node) beside the
# reference app: SCENARIO (default claims) on the four options of both, one
# report whose "Reference app and targets side by side" table marks every
# verdict that differs. Needs Node 20 and `npm ci` in targets/express-msal.
fidelity SCENARIO="scenarios/claims.toml":
    cargo build --release --bins
    ./target/release/harness bench all --scenario {{SCENARIO}} --out reports/fidelity \
        --target targets/express-msal/option1.toml --target targets/express-msal/option2.toml \
        --target targets/express-msal/option3.toml --target targets/express-msal/option4.toml \
        --report reports/fidelity/report.html

# The HTML report of results files: `just report reports/runs/a.json reports/runs/b.json -o reports/ab.html`.
report *ARGS:
    cargo build --release -p harness --bin harness
    ./target/release/harness report {{ARGS}}

# Compare a results file with a baseline (exit 1 on a regression):
# `just compare reports/baselines/smoke-option4.json reports/runs/X.json --markdown`.
compare BASELINE CURRENT *FLAGS:
    cargo build --release -p harness --bin harness
    ./target/release/harness compare {{BASELINE}} {{CURRENT}} {{FLAGS}}

# Refresh the committed baselines: the smoke scenario on all four options,
# one file per option in reports/baselines/ (commit them with the reason).
baselines:
    cargo build --release --bins
    rm -rf target/baselines && mkdir -p target/baselines
    ./target/release/harness bench all --scenario scenarios/smoke.toml --out target/baselines --report target/baselines/report.html
    for option in option1 option2 option3 option4; do cp target/baselines/smoke-$option-*.json reports/baselines/smoke-$option.json; done

# What CI runs (installs what is missing, lints, tests, smoke against the baselines).
ci:
    .ci/run

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

# Run one local app instance (default option4 on :8080, the built-in dev secret; needs `just idp`); extra flags pass through.
app *ARGS:
    cargo run --release -p app -- --dev --redis-url "${REDIS_URL:-redis://127.0.0.1:6379}" --database-url "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}" {{ARGS}}

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
