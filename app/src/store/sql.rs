//! Postgres and SQLite stores (sqlx): one table of versioned records, schema migrated at first use.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqlSafeStr};
use tokio::sync::OnceCell;

use super::{Expect, Record, Store, StoreError, StoreSize, unix_millis};

fn migrator(blob_type: &'static str) -> Migrator {
    let create = match blob_type {
        "BYTEA" => include_str!("../../migrations/0001_kv_store.postgres.sql"),
        _ => include_str!("../../migrations/0001_kv_store.sqlite.sql"),
    };
    Migrator::with_migrations(vec![Migration::new(
        1,
        "kv store".into(),
        MigrationType::Simple,
        create.into_sql_str(),
        false,
    )])
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// A migration that could not reach the database is an outage; any other failure is a setup error.
fn migration_failed(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
            unavailable(inner)
        }
        other => StoreError::Config(format!("migration failed: {other}")),
    }
}

fn expiry(ttl: Option<Duration>, now: i64) -> Option<i64> {
    ttl.map(|t| now + t.as_millis() as i64)
}

fn record(version: i64, data: Vec<u8>, expires_at: Option<i64>, now: i64) -> Record {
    Record {
        data,
        version: version as u64,
        ttl: expires_at.map(|at| Duration::from_millis((at - now).max(0) as u64)),
    }
}

/// Expired rows are deleted on every this many writes, so the table holds
/// what is live plus at most a little garbage.
const SWEEP_EVERY: u32 = 1024;

const LOAD: &str = "SELECT version, data, expires_at FROM kv_store
    WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)";
const SAVE_ANY: &str = "INSERT INTO kv_store (ns, key, version, data, expires_at) VALUES ($1, $2, 1, $3, $4)
    ON CONFLICT (ns, key) DO UPDATE SET version = kv_store.version + 1, data = excluded.data, expires_at = excluded.expires_at
    RETURNING version";
const SAVE_ABSENT: &str = "INSERT INTO kv_store (ns, key, version, data, expires_at) VALUES ($1, $2, 1, $3, $4)
    ON CONFLICT (ns, key) DO UPDATE SET version = kv_store.version + 1, data = excluded.data, expires_at = excluded.expires_at
    WHERE kv_store.expires_at IS NOT NULL AND kv_store.expires_at <= $5
    RETURNING version";
const SAVE_VERSION: &str = "UPDATE kv_store SET version = version + 1, data = $3, expires_at = $4
    WHERE ns = $1 AND key = $2 AND version = $5 AND (expires_at IS NULL OR expires_at > $6)
    RETURNING version";
const SAVE_IF_NEWER: &str = "INSERT INTO kv_store (ns, key, version, data, expires_at) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (ns, key) DO UPDATE SET version = excluded.version, data = excluded.data, expires_at = excluded.expires_at
    WHERE kv_store.version < excluded.version OR (kv_store.expires_at IS NOT NULL AND kv_store.expires_at <= $6)";
const VERSIONS: &str = "SELECT key, version FROM kv_store
    WHERE ns = $1 AND (expires_at IS NULL OR expires_at > $2)";
const EXPIRE: &str = "UPDATE kv_store SET expires_at = $3
    WHERE ns = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $4)";
const DELETE: &str = "DELETE FROM kv_store WHERE ns = $1 AND key = $2
    RETURNING (expires_at IS NULL OR expires_at > $3) AS live";
const SIZE: &str =
    "SELECT COUNT(*) AS entries, COALESCE(SUM(LENGTH(data)), 0) AS bytes FROM kv_store
    WHERE ns = $1 AND (expires_at IS NULL OR expires_at > $2)";
const SWEEP: &str =
    "DELETE FROM kv_store WHERE ns = $1 AND expires_at IS NOT NULL AND expires_at <= $2";

/// The same SQL runs on both databases; only the pool type and the DDL differ.
macro_rules! sql_store {
    ($name:ident, $pool:ty, $kind:literal, $blob:literal) => {
        /// A namespace of records in the `kv_store` table.
        pub struct $name {
            pool: $pool,
            ns: String,
            schema: OnceCell<()>,
            writes: AtomicU32,
        }

        impl $name {
            /// Migrates the schema on first use, not here, so the app starts (and
            /// answers 503) while the database is down, and recovers when it returns.
            async fn ready(&self) -> Result<&$pool, StoreError> {
                self.schema
                    .get_or_try_init(|| async {
                        migrator($blob)
                            .run(&self.pool)
                            .await
                            .map_err(migration_failed)
                    })
                    .await?;
                Ok(&self.pool)
            }

            async fn current_version(
                &self,
                key: &str,
                now: i64,
            ) -> Result<Option<u64>, StoreError> {
                let row = sqlx::query(LOAD)
                    .bind(&self.ns)
                    .bind(key)
                    .bind(now)
                    .fetch_optional(self.ready().await?)
                    .await
                    .map_err(unavailable)?;
                row.map(|r| r.try_get::<i64, _>("version").map(|v| v as u64))
                    .transpose()
                    .map_err(unavailable)
            }

            async fn note_write(&self, now: i64) -> Result<(), StoreError> {
                if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
                    sqlx::query(SWEEP)
                        .bind(&self.ns)
                        .bind(now)
                        .execute(self.ready().await?)
                        .await
                        .map_err(unavailable)?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Store for $name {
            fn kind(&self) -> String {
                $kind.into()
            }

            async fn load(&self, key: &str) -> Result<Option<Record>, StoreError> {
                let now = unix_millis();
                let row = sqlx::query(LOAD)
                    .bind(&self.ns)
                    .bind(key)
                    .bind(now)
                    .fetch_optional(self.ready().await?)
                    .await
                    .map_err(unavailable)?;
                row.map(|r| -> Result<Record, sqlx::Error> {
                    Ok(record(
                        r.try_get("version")?,
                        r.try_get("data")?,
                        r.try_get("expires_at")?,
                        now,
                    ))
                })
                .transpose()
                .map_err(unavailable)
            }

            async fn save(
                &self,
                key: &str,
                data: &[u8],
                expect: Expect,
                ttl: Option<Duration>,
            ) -> Result<u64, StoreError> {
                let now = unix_millis();
                let pool = self.ready().await?;
                let expires_at = expiry(ttl, now);
                let row = match expect {
                    Expect::Any => {
                        sqlx::query(SAVE_ANY)
                            .bind(&self.ns)
                            .bind(key)
                            .bind(data)
                            .bind(expires_at)
                            .fetch_optional(pool)
                            .await
                    }
                    Expect::Absent => {
                        sqlx::query(SAVE_ABSENT)
                            .bind(&self.ns)
                            .bind(key)
                            .bind(data)
                            .bind(expires_at)
                            .bind(now)
                            .fetch_optional(pool)
                            .await
                    }
                    Expect::Version(v) => {
                        sqlx::query(SAVE_VERSION)
                            .bind(&self.ns)
                            .bind(key)
                            .bind(data)
                            .bind(expires_at)
                            .bind(v as i64)
                            .bind(now)
                            .fetch_optional(pool)
                            .await
                    }
                }
                .map_err(unavailable)?;
                let Some(row) = row else {
                    return Err(StoreError::Conflict {
                        current: self.current_version(key, now).await?,
                    });
                };
                self.note_write(now).await?;
                Ok(row.try_get::<i64, _>("version").map_err(unavailable)? as u64)
            }

            async fn save_if_newer(
                &self,
                key: &str,
                data: &[u8],
                version: u64,
                ttl: Option<Duration>,
            ) -> Result<bool, StoreError> {
                let now = unix_millis();
                let result = sqlx::query(SAVE_IF_NEWER)
                    .bind(&self.ns)
                    .bind(key)
                    .bind(version as i64)
                    .bind(data)
                    .bind(expiry(ttl, now))
                    .bind(now)
                    .execute(self.ready().await?)
                    .await
                    .map_err(unavailable)?;
                self.note_write(now).await?;
                Ok(result.rows_affected() > 0)
            }

            /// Versions only, every key in one query (no data read).
            async fn versions(&self, keys: &[&str]) -> Result<Vec<Option<u64>>, StoreError> {
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                // Only placeholders are spliced in; the keys are bound.
                let placeholders = (0..keys.len())
                    .map(|i| format!("${}", i + 3))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!("{VERSIONS} AND key IN ({placeholders})");
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&self.ns)
                    .bind(unix_millis());
                for key in keys {
                    query = query.bind(*key);
                }
                let rows = query
                    .fetch_all(self.ready().await?)
                    .await
                    .map_err(unavailable)?;
                let mut found = std::collections::HashMap::with_capacity(rows.len());
                for row in rows {
                    let key: String = row.try_get("key").map_err(unavailable)?;
                    let version: i64 = row.try_get("version").map_err(unavailable)?;
                    found.insert(key, version as u64);
                }
                Ok(keys.iter().map(|k| found.get(*k).copied()).collect())
            }

            async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
                let now = unix_millis();
                let result = sqlx::query(EXPIRE)
                    .bind(&self.ns)
                    .bind(key)
                    .bind(expiry(Some(ttl), now))
                    .bind(now)
                    .execute(self.ready().await?)
                    .await
                    .map_err(unavailable)?;
                Ok(result.rows_affected() > 0)
            }

            async fn delete(&self, key: &str) -> Result<bool, StoreError> {
                let row = sqlx::query(DELETE)
                    .bind(&self.ns)
                    .bind(key)
                    .bind(unix_millis())
                    .fetch_optional(self.ready().await?)
                    .await
                    .map_err(unavailable)?;
                row.map_or(Ok(false), |r| r.try_get::<bool, _>("live"))
                    .map_err(unavailable)
            }

            async fn size(&self) -> Result<StoreSize, StoreError> {
                let row = sqlx::query(SIZE)
                    .bind(&self.ns)
                    .bind(unix_millis())
                    .fetch_one(self.ready().await?)
                    .await
                    .map_err(unavailable)?;
                Ok(StoreSize {
                    entries: row.try_get::<i64, _>("entries").map_err(unavailable)? as u64,
                    bytes: row.try_get::<i64, _>("bytes").map_err(unavailable)? as u64,
                })
            }
        }
    };
}

sql_store!(PostgresStore, PgPool, "postgres", "BYTEA");
sql_store!(SqliteStore, SqlitePool, "sqlite", "BLOB");

/// How long a request waits for a pooled connection before the store counts as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

impl PostgresStore {
    /// A store over `url` (`postgres://user@host:port/db`) holding namespace `ns`.
    /// Connects lazily: a database that is down makes operations fail, not this.
    pub fn connect(url: &str, ns: &str) -> Result<Self, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Config(format!(
                "a Postgres URL starts with postgres:// (got {:?})",
                url.split("://").next().unwrap_or_default()
            )));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("bad Postgres URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            ns: ns.to_owned(),
            schema: OnceCell::new(),
            writes: AtomicU32::new(0),
        })
    }
}

impl SqliteStore {
    /// A store in the SQLite file `path` (created if missing) holding namespace `ns`.
    pub fn open(path: &std::path::Path, ns: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            ns: ns.to_owned(),
            schema: OnceCell::new(),
            writes: AtomicU32::new(0),
        })
    }
}
