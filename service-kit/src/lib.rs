//! What every server and binary of the workspace shares: a movable clock,
//! tracing set-up, and shutdown on SIGINT or SIGTERM.
//!
//! # Layout
//! - [`clock`]: wall-clock seconds that tests move forward instead of sleeping.
//! - [`init_tracing`], [`shutdown_signal`]: the two things every `main` does.

pub mod clock;

pub use clock::Clock;

/// Installs the tracing subscriber: `RUST_LOG` (default `info`, with
/// sqlx's per-statement notices at `warn`), on stderr so stdout stays for
/// what a binary announces (URLs, tables).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// A future that completes on SIGINT or SIGTERM. The handlers are registered
/// when this is called, so call it before announcing readiness: a supervisor
/// that stops the process right after reading its URLs gets a clean shutdown.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
