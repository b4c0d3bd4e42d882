//! The `containers` path: with no container engine (as on this project's
//! machines) it fails at once with an error that says what to do instead.
#![cfg(feature = "containers")]

use std::time::{Duration, Instant};

use harness::stage::StageError;
use harness::stage::services::{containers, postgres, redis};

fn engine_present() -> bool {
    std::env::var_os("DOCKER_HOST").is_some()
        || std::path::Path::new("/var/run/docker.sock").exists()
}

#[tokio::test]
async fn without_an_engine_the_container_path_says_what_to_install() {
    let started = Instant::now();
    for (service, result, variable) in [
        (
            "Redis",
            containers::start(&redis::KIND).await.map(|(_, url)| url),
            "REDIS_URL",
        ),
        (
            "Postgres",
            containers::start(&postgres::KIND).await.map(|(_, url)| url),
            "DATABASE_URL",
        ),
    ] {
        match result {
            Ok(url) => assert!(
                engine_present(),
                "{service} started at {url} with no engine?"
            ),
            Err(StageError::NotAvailable(message)) => {
                assert!(!engine_present(), "an engine is present but: {message}");
                assert!(message.contains("no container engine"), "{message}");
                assert!(message.contains(variable), "{message}");
            }
            Err(other) => panic!("{service}: unexpected error {other}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails at once: {:?}",
        started.elapsed()
    );
}
