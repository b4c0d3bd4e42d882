//! Postgres and SQLite stores (sqlx): one table of versioned records, schema migrated at first use.
//!
//! A delete leaves a tombstone (the row, marked deleted, data empty, version
//! one past the last) that lives [`TOMBSTONE_TTL`]: versions of a key never
//! go back, so a copy of an older version can always be told from the
//! current one, and a create over a tombstone continues its numbering.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, Row, SqlSafeStr};
use tokio::sync::OnceCell;

use super::{Expect, Fence, Record, Store, StoreError, StoreSize, unix_millis};

/// How long a deleted record's tombstone is kept: far longer than any one
/// request (store calls time out in seconds), so no read that began before
/// the delete can outlive it.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(30);

fn migration(version: i64, description: &str, sql: &'static str) -> Migration {
    Migration::new(
        version,
        description.to_owned().into(),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )
}

/// The Postgres schema: the records, their tombstones, and the cache tier's
/// coherence record and refresh leases.
pub fn postgres_migrator() -> Migrator {
    Migrator::with_migrations(vec![
        migration(
            1,
            "kv store",
            include_str!("../../migrations/0001_kv_store.postgres.sql"),
        ),
        migration(
            2,
            "tombstones",
            include_str!("../../migrations/0002_tombstones.postgres.sql"),
        ),
        migration(
            3,
            "coherence",
            include_str!("../../migrations/0003_coherence.postgres.sql"),
        ),
    ])
}

fn sqlite_migrator() -> Migrator {
    Migrator::with_migrations(vec![
        migration(
            1,
            "kv store",
            include_str!("../../migrations/0001_kv_store.sqlite.sql"),
        ),
        migration(
            2,
            "tombstones",
            include_str!("../../migrations/0002_tombstones.sqlite.sql"),
        ),
    ])
}

pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// A migration that could not reach the database is an outage; any other failure is a setup error.
pub(crate) fn migration_failed(e: MigrateError) -> StoreError {
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

/// What the durable tier holds for a key, tombstones included: what a
/// cache tier needs to make its copy match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durable {
    Live(Record),
    /// Deleted at this version (a tombstone) or expired at it.
    Gone(u64),
    /// Never written, or its tombstone has gone too.
    Unknown,
}

impl Durable {
    pub fn into_record(self) -> Option<Record> {
        match self {
            Durable::Live(record) => Some(record),
            Durable::Gone(_) | Durable::Unknown => None,
        }
    }
}

/// Expired rows (tombstones included) are deleted on every this many
/// writes, so the table holds what is live plus at most a little garbage.
const SWEEP_EVERY: u32 = 1024;

const LOAD: &str = "SELECT version, data, expires_at FROM kv_store
    WHERE ns = $1 AND key = $2 AND NOT deleted AND (expires_at IS NULL OR expires_at > $3)";
const SAVE_ANY: &str =
    "INSERT INTO kv_store (ns, key, version, data, expires_at) VALUES ($1, $2, 1, $3, $4)
    ON CONFLICT (ns, key) DO UPDATE SET version = kv_store.version + 1, data = excluded.data,
        expires_at = excluded.expires_at, deleted = FALSE
    RETURNING version";
const SAVE_ABSENT: &str =
    "INSERT INTO kv_store (ns, key, version, data, expires_at) VALUES ($1, $2, 1, $3, $4)
    ON CONFLICT (ns, key) DO UPDATE SET version = kv_store.version + 1, data = excluded.data,
        expires_at = excluded.expires_at, deleted = FALSE
    WHERE kv_store.deleted OR (kv_store.expires_at IS NOT NULL AND kv_store.expires_at <= $5)
    RETURNING version";
const SAVE_VERSION: &str = "UPDATE kv_store SET version = version + 1, data = $3, expires_at = $4
    WHERE ns = $1 AND key = $2 AND version = $5 AND NOT deleted AND (expires_at IS NULL OR expires_at > $6)
    RETURNING version";
const SAVE_IF_NEWER: &str = "INSERT INTO kv_store (ns, key, version, data, expires_at) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (ns, key) DO UPDATE SET version = excluded.version, data = excluded.data,
        expires_at = excluded.expires_at, deleted = FALSE
    WHERE kv_store.version < excluded.version
        OR (NOT kv_store.deleted AND kv_store.expires_at IS NOT NULL AND kv_store.expires_at <= $6)";
const VERSIONS: &str = "SELECT key, version FROM kv_store
    WHERE ns = $1 AND NOT deleted AND (expires_at IS NULL OR expires_at > $2)";
const EXPIRE: &str = "UPDATE kv_store SET expires_at = $3
    WHERE ns = $1 AND key = $2 AND NOT deleted AND (expires_at IS NULL OR expires_at > $4)";
/// Leaves a tombstone; its data says whether the record was live when
/// deleted (`$5`) or had expired (`$6`, empty), so one statement answers both.
const DELETE: &str = "UPDATE kv_store SET deleted = TRUE, version = version + 1, expires_at = $4,
        data = CASE WHEN expires_at IS NULL OR expires_at > $3 THEN $5 ELSE $6 END
    WHERE ns = $1 AND key = $2 AND NOT deleted
    RETURNING version, data";
const SIZE: &str =
    "SELECT COUNT(*) AS entries, COALESCE(SUM(LENGTH(data)), 0) AS bytes FROM kv_store
    WHERE ns = $1 AND NOT deleted AND (expires_at IS NULL OR expires_at > $2)";
const SWEEP: &str =
    "DELETE FROM kv_store WHERE ns = $1 AND expires_at IS NOT NULL AND expires_at <= $2";
/// The tombstone's data for a record deleted live.
const WAS_LIVE: &[u8] = b"deleted";

/// The same SQL runs on both databases; only the pool type, the schema and
/// what Postgres alone can do in one round trip (`$extra`) differ.
macro_rules! sql_store {
    ($name:ident, $pool:ty, $kind:literal, $migrator:expr, { $($extra:tt)* }) => {
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
                        $migrator.run(&self.pool).await.map_err(migration_failed)
                    })
                    .await?;
                Ok(&self.pool)
            }

            async fn current_version(
                &self,
                key: &str,
                now: i64,
            ) -> Result<Option<u64>, StoreError> {
                Ok(self.load_at(key, now).await?.map(|r| r.version))
            }

            async fn load_at(&self, key: &str, now: i64) -> Result<Option<Record>, StoreError> {
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

            /// Deletes `key`, leaving a tombstone: `Some((its version, whether
            /// the record was live))`, or `None` when there was nothing to delete.
            pub async fn tombstone(&self, key: &str) -> Result<Option<(u64, bool)>, StoreError> {
                let now = unix_millis();
                let row = sqlx::query(DELETE)
                    .bind(&self.ns)
                    .bind(key)
                    .bind(now)
                    .bind(expiry(Some(TOMBSTONE_TTL), now))
                    .bind(WAS_LIVE)
                    .bind(&b""[..])
                    .fetch_optional(self.ready().await?)
                    .await
                    .map_err(unavailable)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                self.note_write(now).await?;
                let version: i64 = row.try_get("version").map_err(unavailable)?;
                let data: Vec<u8> = row.try_get("data").map_err(unavailable)?;
                Ok(Some((version as u64, data == WAS_LIVE)))
            }
        }

        #[async_trait]
        impl Store for $name {
            fn kind(&self) -> String {
                $kind.into()
            }

            async fn load(&self, key: &str) -> Result<Option<Record>, StoreError> {
                self.load_at(key, unix_millis()).await
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
                Ok(self.tombstone(key).await?.is_some_and(|(_, was_live)| was_live))
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

            $($extra)*
        }
    };
}

/// Several keys' rows in one query, tombstones and expired rows included.
const STATES: &str = "SELECT key, version, data, expires_at, deleted FROM kv_store
    WHERE ns = $1 AND key = ANY($2)";
/// A compare-and-set write that also renews the TTL of live companion keys,
/// in one statement. The renewal happens even when the write conflicts: the
/// record is alive either way, written by someone.
const SAVE_VERSION_RENEWING: &str = "WITH renewed AS (
        UPDATE kv_store SET expires_at = $4
        WHERE ns = $1 AND key = ANY($7) AND NOT deleted AND (expires_at IS NULL OR expires_at > $6)
        RETURNING 1)
    UPDATE kv_store SET version = version + 1, data = $3, expires_at = $4
    WHERE ns = $1 AND key = $2 AND version = $5 AND NOT deleted AND (expires_at IS NULL OR expires_at > $6)
    RETURNING version";
/// A compare-and-set write that lands only while the lease `$7` is held by
/// fencing token `$8`: no other holder has taken it over since (its expiry
/// only lets one; see `tokencache::lease`).
const SAVE_VERSION_FENCED: &str = "UPDATE kv_store SET version = version + 1, data = $3, expires_at = $4
    WHERE ns = $1 AND key = $2 AND version = $5 AND NOT deleted AND (expires_at IS NULL OR expires_at > $6)
        AND EXISTS (SELECT 1 FROM refresh_lease AS l
            WHERE l.ns = $1 AND l.key = $7 AND l.token = $8)
    RETURNING version";
const SAVE_ABSENT_FENCED: &str = "INSERT INTO kv_store (ns, key, version, data, expires_at)
    SELECT $1, $2, 1, $3, $4 WHERE EXISTS (SELECT 1 FROM refresh_lease AS l
        WHERE l.ns = $1 AND l.key = $6 AND l.token = $7)
    ON CONFLICT (ns, key) DO UPDATE SET version = kv_store.version + 1, data = excluded.data,
        expires_at = excluded.expires_at, deleted = FALSE
    WHERE kv_store.deleted OR (kv_store.expires_at IS NOT NULL AND kv_store.expires_at <= $5)
    RETURNING version";
const LEASE_HELD: &str = "SELECT EXISTS (SELECT 1 FROM refresh_lease
    WHERE ns = $1 AND key = $2 AND token = $3)";

sql_store!(PostgresStore, PgPool, "postgres", postgres_migrator(), {
    /// Every key in one query.
    async fn load_many(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        Ok(self
            .states(keys)
            .await?
            .into_iter()
            .map(Durable::into_record)
            .collect())
    }

    /// Renews the companions in the same statement as a compare-and-set
    /// write (a session's keep-alive and its token partition's, one round trip).
    async fn save_renewing(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Duration,
        renew: &[&str],
    ) -> Result<u64, StoreError> {
        let Expect::Version(expected) = expect else {
            let version = self.save(key, data, expect, Some(ttl)).await?;
            for companion in renew {
                self.expire(companion, ttl).await?;
            }
            return Ok(version);
        };
        let now = unix_millis();
        let row = sqlx::query(SAVE_VERSION_RENEWING)
            .bind(&self.ns)
            .bind(key)
            .bind(data)
            .bind(expiry(Some(ttl), now))
            .bind(expected as i64)
            .bind(now)
            .bind(renew)
            .fetch_optional(self.ready().await?)
            .await
            .map_err(unavailable)?;
        self.written(key, row, now).await
    }

    async fn save_fenced(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
        fence: &Fence,
    ) -> Result<u64, StoreError> {
        let now = unix_millis();
        let pool = self.ready().await?;
        let row = match expect {
            Expect::Version(expected) => sqlx::query(SAVE_VERSION_FENCED)
                .bind(&self.ns)
                .bind(key)
                .bind(data)
                .bind(expiry(ttl, now))
                .bind(expected as i64)
                .bind(now)
                .bind(&fence.lease_key)
                .bind(fence.token),
            Expect::Absent => sqlx::query(SAVE_ABSENT_FENCED)
                .bind(&self.ns)
                .bind(key)
                .bind(data)
                .bind(expiry(ttl, now))
                .bind(now)
                .bind(&fence.lease_key)
                .bind(fence.token),
            Expect::Any => {
                return Err(StoreError::Config(
                    "a fenced write compares versions".into(),
                ));
            }
        }
        .fetch_optional(pool)
        .await
        .map_err(unavailable)?;
        if row.is_none() && !self.lease_held(fence).await? {
            return Err(StoreError::Fenced);
        }
        self.written(key, row, now).await
    }
});

sql_store!(SqliteStore, SqlitePool, "sqlite", sqlite_migrator(), {});

/// How long a request waits for a pooled connection before the store counts as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A pooled Postgres connection idle longer than this is pinged before use:
/// a connection the server dropped meanwhile (a restart) is found and
/// replaced before a request needs it. Busy connections are not, so a
/// request costs no extra round trip (sqlx pings every checkout by default).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// A store over `url` (`postgres://user@host:port/db`) holding namespace `ns`.
    /// Connects lazily: a database that is down makes operations fail, not this.
    pub fn connect(url: &str, ns: &str) -> Result<Self, StoreError> {
        Ok(Self::on_pool(postgres_pool(url, 16)?, ns))
    }

    /// A store holding namespace `ns` on an existing pool.
    pub fn on_pool(pool: PgPool, ns: &str) -> Self {
        Self {
            pool,
            ns: ns.to_owned(),
            schema: OnceCell::new(),
            writes: AtomicU32::new(0),
        }
    }

    /// The pool, migrated: for the coherence record and the leases beside the records.
    pub async fn pool(&self) -> Result<&PgPool, StoreError> {
        self.ready().await
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// What the table holds for each key, tombstones included, in one query.
    pub async fn states(&self, keys: &[&str]) -> Result<Vec<Durable>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let now = unix_millis();
        let rows = sqlx::query(STATES)
            .bind(&self.ns)
            .bind(keys)
            .fetch_all(self.ready().await?)
            .await
            .map_err(unavailable)?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("key").map_err(unavailable)?;
            let version: i64 = row.try_get("version").map_err(unavailable)?;
            let expires_at: Option<i64> = row.try_get("expires_at").map_err(unavailable)?;
            let deleted: bool = row.try_get("deleted").map_err(unavailable)?;
            let state = if deleted || expires_at.is_some_and(|at| at <= now) {
                Durable::Gone(version as u64)
            } else {
                let data: Vec<u8> = row.try_get("data").map_err(unavailable)?;
                Durable::Live(record(version, data, expires_at, now))
            };
            found.insert(key, state);
        }
        Ok(keys
            .iter()
            .map(|k| found.remove(*k).unwrap_or(Durable::Unknown))
            .collect())
    }

    async fn lease_held(&self, fence: &Fence) -> Result<bool, StoreError> {
        sqlx::query_scalar::<_, bool>(LEASE_HELD)
            .bind(&self.ns)
            .bind(&fence.lease_key)
            .bind(fence.token)
            .fetch_one(self.ready().await?)
            .await
            .map_err(unavailable)
    }

    /// A write's returned row: its version, or the conflict that stopped it.
    async fn written(
        &self,
        key: &str,
        row: Option<sqlx::postgres::PgRow>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let Some(row) = row else {
            return Err(StoreError::Conflict {
                current: self.current_version(key, now).await?,
            });
        };
        self.note_write(now).await?;
        Ok(row.try_get::<i64, _>("version").map_err(unavailable)? as u64)
    }
}

/// A Postgres pool of at most `connections` that connects lazily and pings
/// only connections that sat idle ([`PING_AFTER_IDLE`]).
pub fn postgres_pool(url: &str, connections: u32) -> Result<PgPool, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Config(format!(
            "a Postgres URL starts with postgres:// (got {:?})",
            url.split("://").next().unwrap_or_default()
        )));
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("bad Postgres URL: {e}")))?;
    Ok(PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_AFTER_IDLE {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options))
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
