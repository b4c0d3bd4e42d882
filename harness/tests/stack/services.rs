//! Each provider path that runs here: start, restart, pause, kill and cleanup,
//! against real redis-server and postgres processes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::stage::StageError;
use harness::stage::process::alive;
use harness::stage::services::postgres::{Postgres, data_parent};
use harness::stage::services::redis::Redis;
use sqlx::Connection;

use crate::common::{segment_exists, segment_of};

async fn redis_set_get(url: &str, value: Option<&str>) -> Result<Option<String>, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut connection = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let command = async {
        if let Some(value) = value {
            redis::cmd("SET")
                .arg("k")
                .arg(value)
                .query_async::<()>(&mut connection)
                .await?;
        }
        redis::cmd("GET")
            .arg("k")
            .query_async::<Option<String>>(&mut connection)
            .await
    };
    tokio::time::timeout(Duration::from_millis(500), command)
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_redis_starts_restarts_pauses_flushes_and_is_gone_when_dropped() {
    let dir = tempfile::tempdir().expect("dir");
    let started = Instant::now();
    let mut redis = Redis::provide_from(None, dir.path())
        .await
        .expect("private redis");
    println!("private redis ready in {:?}", started.elapsed());
    let url = redis.url();
    let pid = redis.process().expect("private").pid();
    assert_eq!(redis_set_get(&url, Some("v1")).await, Ok(Some("v1".into())));

    redis.pause().expect("pause");
    assert_eq!(
        redis_set_get(&url, None).await,
        Err("timed out".into()),
        "a paused server answers nothing"
    );
    redis.resume().expect("resume");
    assert_eq!(redis_set_get(&url, None).await, Ok(Some("v1".into())));

    redis.flush().await.expect("flush");
    assert_eq!(redis_set_get(&url, None).await, Ok(None));

    redis_set_get(&url, Some("v2")).await.expect("set");
    redis.restart().await.expect("restart");
    assert_eq!(redis.url(), url, "same port after a restart");
    assert_eq!(
        redis_set_get(&url, None).await,
        Ok(None),
        "nothing persisted"
    );
    let restarted_pid = redis.process().expect("private").pid();
    assert_ne!(restarted_pid, pid);
    assert!(!alive(pid), "the old server is gone");

    redis.kill().await.expect("kill");
    assert!(redis_set_get(&url, None).await.is_err(), "killed");
    drop(redis);
    assert!(!alive(restarted_pid));
    assert!(
        std::fs::read_to_string(dir.path().join("redis.log"))
            .expect("log")
            .contains("Ready to accept")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_private_redis_kills_it() {
    let dir = tempfile::tempdir().expect("dir");
    let redis = Redis::start_private(dir.path())
        .await
        .expect("private redis");
    let pid = redis.process().expect("private").pid();
    drop(redis);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "redis {pid} outlived its owner");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_redis_is_used_as_is_and_refuses_private_faults() {
    let dir = tempfile::tempdir().expect("dir");
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut redis = Redis::provide_from(Some(url.clone()), dir.path())
        .await
        .expect("external");
    assert_eq!(redis.url(), url);
    assert!(redis.process().is_none());
    assert!(matches!(
        redis.restart().await,
        Err(StageError::External(..))
    ));
    assert!(
        matches!(redis.flush().await, Err(StageError::External(..))),
        "never FLUSHALL a shared server"
    );
    let error = Redis::provide_from(Some("redis://127.0.0.1:1".into()), dir.path())
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(
        error
            .to_string()
            .contains("REDIS_URL=redis://127.0.0.1:1 does not answer"),
        "{error}"
    );
}

async fn postgres_query(url: &str, sql: &'static str) -> Result<(), String> {
    let mut connection =
        tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect(url))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
    sqlx::query(sql)
        .execute(&mut connection)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_postgres_starts_from_the_template_keeps_data_across_restart_and_dies_with_its_owner()
 {
    let dir = tempfile::tempdir().expect("dir");
    let started = Instant::now();
    let mut postgres = Postgres::provide_from(None, dir.path())
        .await
        .expect("private postgres");
    println!("private postgres ready in {:?}", started.elapsed());
    let url = postgres.url();
    postgres_query(&url, "CREATE TABLE kept (n int)")
        .await
        .expect("create");
    postgres_query(&url, "INSERT INTO kept VALUES (1)")
        .await
        .expect("insert");

    let first_pid = postgres.process().expect("private").pid();
    postgres.restart().await.expect("restart");
    assert_eq!(postgres.url(), url);
    postgres_query(&url, "SELECT n FROM kept")
        .await
        .expect("data survives a restart");
    assert!(!alive(first_pid));

    let pid = postgres.process().expect("private").pid();
    let data = PathBuf::from(postgres_show(&url, "SHOW data_directory").await);
    let shmid = segment_of(&data);
    postgres.kill().await.expect("kill");
    assert!(postgres_query(&url, "SELECT 1").await.is_err());
    assert!(segment_exists(&shmid), "a kill leaves the segment");
    drop(postgres);
    assert!(!alive(pid));
    assert!(!segment_exists(&shmid), "dropping removes it");

    // A second private server copies the cached template: no initdb.
    let again = Instant::now();
    let second = Postgres::start_private(dir.path().join("second").as_path()).await;
    let second = match second {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    println!(
        "second private postgres (from the template) ready in {:?}",
        again.elapsed()
    );
    postgres_query(&second.url(), "SELECT 1")
        .await
        .expect("second answers");
}

async fn postgres_show(url: &str, sql: &'static str) -> String {
    let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(sql)
        .fetch_one(&mut connection)
        .await
        .expect("show")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_private_postgres_leaves_no_data_or_shared_memory_and_abandoned_data_is_swept() {
    let dir = tempfile::tempdir().expect("dir");
    let parent = data_parent(dir.path());
    let dead_pid = {
        let mut child = std::process::Command::new("true").spawn().expect("true");
        child.wait().expect("exits");
        child.id()
    };
    let abandoned = parent.join(format!("harness-pg-{dead_pid}-abandoned"));
    std::fs::create_dir_all(&abandoned).expect("abandoned dir");

    let postgres = Postgres::start_private(dir.path())
        .await
        .expect("private postgres");
    assert!(
        !abandoned.exists(),
        "a dead harness's data dir is swept: {}",
        abandoned.display()
    );
    let url = postgres.url();
    let data = PathBuf::from(postgres_show(&url, "SHOW data_directory").await);
    assert!(
        data.starts_with(&parent),
        "{} in {}",
        data.display(),
        parent.display()
    );
    assert_eq!(
        postgres_show(&url, "SHOW dynamic_shared_memory_type").await,
        "mmap"
    );
    let shmid = segment_of(&data);
    assert!(segment_exists(&shmid), "segment {shmid} in use");

    drop(postgres);
    assert!(!data.exists(), "data dir removed: {}", data.display());
    assert!(
        !segment_exists(&shmid),
        "segment {shmid} removed by the clean shutdown"
    );
}
