//! The load driver. Goose runs the simulated browsers (how many, when they
//! start and stop, the run time), configured from code; each goose user is
//! one [`browser::SimBrowser`] whose requests go through the contract's lean
//! browser over one shared hyper connection pool (goose's own per-user
//! reqwest client costs 2.5 times the CPU and about 144 KB a user, so its
//! one shared client is left idle), timed into our own histograms and
//! written to the history.
//!
//! # Layout
//! - [`browser`]: one browser's choices and requests.
//! - [`hopping`]: which instance each request goes to.
//! - [`labels`]: what the history keeps instead of cookies and token ids.
//! - [`latency`]: HDR histograms per request type and instance.

pub mod browser;
pub mod hopping;
pub mod labels;
pub mod latency;

use std::sync::Arc;

use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::prelude::*;

use self::browser::{Shared, SimBrowser};

/// Why the load could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("goose: {0}")]
    Goose(#[from] Box<GooseError>),
    #[error("starting the load's thread: {0}")]
    Thread(std::io::Error),
    #[error("the load's thread ended without an answer (it panicked)")]
    Panicked,
}

impl From<GooseError> for LoadError {
    fn from(error: GooseError) -> Self {
        LoadError::Goose(Box::new(error))
    }
}

/// [`drive`] on a thread of its own, on a single-threaded runtime; the
/// future ends when the load does.
///
/// Why one thread: on a 2-core load machine that also runs the app, the
/// driver must leave CPU to what it measures. On a multi-threaded runtime
/// every request crosses threads (the browser's task and the pooled
/// connection's task wake each other through futexes), which cost the driver
/// 0.41 CPU s per 10,000 `/healthz` requests; on one thread, 0.26, with
/// 20% more requests per second (`driver_overhead` bench). The sampler,
/// the fault runner and the progress line stay on the caller's runtime, so
/// the load's thread does nothing but send requests.
pub fn drive_on_own_thread(shared: Arc<Shared>) -> impl Future<Output = Result<(), LoadError>> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("load".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(LoadError::Thread)
                .and_then(|runtime| runtime.block_on(drive(shared)));
            let _ = done.send(result);
        });
    async move {
        spawned.map_err(LoadError::Thread)?;
        finished.await.unwrap_or(Err(LoadError::Panicked))
    }
}

/// Runs the workload's browsers until its stages are over, or until goose's
/// killswitch (Ctrl-C, or [`stop`]) ends it early.
pub async fn drive(shared: Arc<Shared>) -> Result<(), LoadError> {
    let start = {
        let shared = shared.clone();
        Transaction::new(Arc::new(move |user: &mut GooseUser| {
            let shared = shared.clone();
            Box::pin(async move {
                let mut browser = SimBrowser::new(&shared, user.weighted_users_index);
                browser.sign_in(&shared).await;
                user.set_session_data(browser);
                Ok(())
            })
        }))
        .set_name("sign in")
        .set_on_start()
    };
    let step = {
        let shared = shared.clone();
        Transaction::new(Arc::new(move |user: &mut GooseUser| {
            let shared = shared.clone();
            Box::pin(async move {
                if let Some(browser) = user.get_session_data_mut::<SimBrowser>() {
                    browser.step(&shared).await;
                }
                Ok(())
            })
        }))
        .set_name("step")
    };
    let host = shared
        .instances
        .first()
        .map(|i| i.base.clone())
        .unwrap_or_default();
    GooseAttack::initialize_with_config(GooseConfiguration::default())?
        .register_scenario(
            Scenario::new("browser")
                .register_transaction(start)
                .register_transaction(step),
        )
        // Requests go through the contract's browser; goose keeps one idle client.
        .set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())?
        .set_default(GooseDefault::Host, host.as_str())?
        .set_default(GooseDefault::TestPlan, shared.test_plan().as_str())?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoMetrics, true)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoErrorSummary, true)?
        .set_default(GooseDefault::Quiet, 1)?
        .execute()
        .await?;
    Ok(())
}

/// Ends a running load early, as Ctrl-C does.
pub fn stop(reason: &str) {
    goose::trigger_killswitch(reason);
}

/// Whether the last (or current) load was ended early.
pub fn stopped_early() -> bool {
    goose::is_killswitch_triggered()
}
