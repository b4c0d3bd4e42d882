//! What each store tier holds, read raw and apart: Redis by `SCAN` of the
//! run's namespace prefix (on each master of a Redis Cluster), Postgres and SQLite by `SELECT` on the app's
//! `kv_store` table in a read-only transaction. Never through the app's
//! store layer: a tiered read hides a Redis copy it does not trust and
//! repairs what it reads (a copy back, or a tombstone over a stale copy),
//! so a leftover could be invisible, or removed by the very look for it.
//! Nothing here writes.
//!
//! The formats are the app's (`app::store`): a Redis record is a hash with
//! a version `v` and data `d` under `{namespace}:{key}`; the cache tier's
//! tombstone has `t` instead of `d`. A row is live when not `deleted` and
//! not past `expires_at`; a tombstone row (`deleted`) is a delete done, not
//! a record left.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use app::topology::SessionBackend;
use sqlx::{Connection, Row};

use crate::check::orphans::Tier;

/// How long one tier may take to answer the whole probe.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The tiers a session backend keeps records in; none for one in each
/// instance's memory.
pub fn tiers_of(backend: SessionBackend, has_postgres: bool) -> Vec<Tier> {
    match backend {
        SessionBackend::Memory => Vec::new(),
        SessionBackend::Persisted if has_postgres => vec![Tier::Postgres],
        SessionBackend::Persisted | SessionBackend::Sqlite => vec![Tier::Sqlite],
        SessionBackend::Postgres => vec![Tier::Postgres],
        SessionBackend::Redis => vec![Tier::Redis],
        SessionBackend::RedisPostgres => vec![Tier::Redis, Tier::Postgres],
    }
}

/// A live record as a tier holds it (encrypted when the topology encrypts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    pub version: u64,
    pub data: Vec<u8>,
}

/// Where the tiers are.
#[derive(Clone, Debug)]
pub struct StoreProbe {
    pub namespace: String,
    /// One Redis server, or a Redis Cluster's seeds (comma-separated).
    pub redis_url: Option<String>,
    pub database_url: Option<String>,
    pub sqlite_path: PathBuf,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

const LIVE_KEYS: &str = "SELECT key FROM kv_store WHERE ns = $1 AND NOT deleted
    AND (expires_at IS NULL OR expires_at > $2)";
const LIVE_RECORD: &str = "SELECT version, data FROM kv_store WHERE ns = $1 AND key = $2
    AND NOT deleted AND (expires_at IS NULL OR expires_at > $3)";

impl StoreProbe {
    /// The live keys (after the namespace) `tier` holds that start with one
    /// of `prefixes`; tombstones left out.
    pub async fn live_keys(
        &self,
        tier: Tier,
        prefixes: &[&str],
    ) -> Result<BTreeSet<String>, String> {
        let keys = tokio::time::timeout(TIMEOUT, async {
            match tier {
                Tier::Redis => self.redis_keys(prefixes).await,
                Tier::Postgres => self.postgres_keys().await,
                Tier::Sqlite => self.sqlite_keys().await,
            }
        })
        .await
        .map_err(|_| format!("{} did not answer within {TIMEOUT:?}", tier.name()))??;
        Ok(keys
            .into_iter()
            .filter(|k| prefixes.iter().any(|p| k.starts_with(p)))
            .collect())
    }

    /// The live record `tier` holds under `key`.
    pub async fn live_record(&self, tier: Tier, key: &str) -> Result<Option<RawRecord>, String> {
        tokio::time::timeout(TIMEOUT, async {
            match tier {
                Tier::Redis => self.redis_record(key).await,
                Tier::Postgres => self.postgres_record(key).await,
                Tier::Sqlite => self.sqlite_record(key).await,
            }
        })
        .await
        .map_err(|_| format!("{} did not answer within {TIMEOUT:?}", tier.name()))?
    }

    /// The servers holding the keys: the one server, or each cluster master.
    async fn redis_masters(&self) -> Result<Vec<String>, String> {
        let url = self.redis_url.as_deref().ok_or("no Redis URL")?;
        crate::redis_nodes::masters(url).await
    }

    async fn redis_keys(&self, prefixes: &[&str]) -> Result<Vec<String>, String> {
        let mut live = Vec::new();
        for master in self.redis_masters().await? {
            let mut connection = crate::redis_nodes::connect(&master).await?;
            live.extend(self.redis_keys_on(&mut connection, prefixes).await?);
        }
        Ok(live)
    }

    async fn redis_keys_on(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
        prefixes: &[&str],
    ) -> Result<Vec<String>, String> {
        let failed = |e: redis::RedisError| format!("redis: {e}");
        let mut live = Vec::new();
        for prefix in prefixes {
            let pattern = format!("{}:{}*", glob_escape(&self.namespace), glob_escape(prefix));
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(connection)
                    .await
                    .map_err(failed)?;
                if !batch.is_empty() {
                    // A record has data `d`; a tombstone has `t`. A key that
                    // expired since the SCAN answers neither.
                    let mut pipe = redis::pipe();
                    for key in &batch {
                        pipe.cmd("HEXISTS").arg(key).arg("d");
                        pipe.cmd("HEXISTS").arg(key).arg("t");
                    }
                    let flags: Vec<bool> = pipe.query_async(connection).await.map_err(failed)?;
                    for (key, pair) in batch.iter().zip(flags.chunks(2)) {
                        if pair == [true, false] {
                            live.push(self.unprefixed(key));
                        }
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(live)
    }

    async fn redis_record(&self, key: &str) -> Result<Option<RawRecord>, String> {
        let mut hmget = redis::cmd("HMGET");
        hmget
            .arg(format!("{}:{key}", self.namespace))
            .arg("v")
            .arg("d")
            .arg("t");
        let masters = self.redis_masters().await?;
        let (version, data, tombstone) = if masters.len() == 1 {
            let mut connection = crate::redis_nodes::connect(&masters[0]).await?;
            hmget.query_async(&mut connection).await
        } else {
            // A cluster: its client finds the node that serves the key's slot.
            let client =
                redis::cluster::ClusterClient::new(masters).map_err(|e| format!("redis: {e}"))?;
            let mut connection = client
                .get_async_connection()
                .await
                .map_err(|e| format!("redis: {e}"))?;
            hmget.query_async(&mut connection).await
        }
        .map_err(|e| format!("redis: {e}"))?;
        let (version, data, tombstone): (Option<String>, Option<Vec<u8>>, Option<String>) =
            (version, data, tombstone);
        Ok(
            match (version.and_then(|v| v.parse().ok()), data, tombstone) {
                (Some(version), Some(data), None) => Some(RawRecord { version, data }),
                _ => None,
            },
        )
    }

    fn unprefixed(&self, key: &str) -> String {
        key.strip_prefix(&self.namespace)
            .and_then(|k| k.strip_prefix(':'))
            .unwrap_or(key)
            .to_owned()
    }

    async fn postgres(&self) -> Result<sqlx::PgConnection, String> {
        let url = self.database_url.as_deref().ok_or("no database URL")?;
        let mut connection = sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| format!("postgres: {e}"))?;
        // Belt and braces: the session cannot write, whatever runs on it.
        sqlx::query("SET default_transaction_read_only = on")
            .execute(&mut connection)
            .await
            .map_err(|e| format!("postgres: {e}"))?;
        Ok(connection)
    }

    async fn postgres_keys(&self) -> Result<Vec<String>, String> {
        let mut connection = self.postgres().await?;
        let rows = sqlx::query(LIVE_KEYS)
            .bind(&self.namespace)
            .bind(now_ms())
            .fetch_all(&mut connection)
            .await;
        keys_of(rows, "postgres")
    }

    async fn postgres_record(&self, key: &str) -> Result<Option<RawRecord>, String> {
        let mut connection = self.postgres().await?;
        let row = sqlx::query(LIVE_RECORD)
            .bind(&self.namespace)
            .bind(key)
            .bind(now_ms())
            .fetch_optional(&mut connection)
            .await;
        record_of(row, "postgres")
    }

    /// The app's SQLite file opened read-only; none yet: nothing stored.
    async fn sqlite(&self) -> Result<Option<sqlx::SqliteConnection>, String> {
        if !Path::new(&self.sqlite_path).exists() {
            return Ok(None);
        }
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&format!(
            "sqlite://{}",
            self.sqlite_path.display()
        ))
        .map_err(|e| format!("sqlite: {e}"))?
        .read_only(true);
        sqlx::SqliteConnection::connect_with(&options)
            .await
            .map(Some)
            .map_err(|e| format!("sqlite: {e}"))
    }

    async fn sqlite_keys(&self) -> Result<Vec<String>, String> {
        let Some(mut connection) = self.sqlite().await? else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(LIVE_KEYS)
            .bind(&self.namespace)
            .bind(now_ms())
            .fetch_all(&mut connection)
            .await;
        keys_of(rows, "sqlite")
    }

    async fn sqlite_record(&self, key: &str) -> Result<Option<RawRecord>, String> {
        let Some(mut connection) = self.sqlite().await? else {
            return Ok(None);
        };
        let row = sqlx::query(LIVE_RECORD)
            .bind(&self.namespace)
            .bind(key)
            .bind(now_ms())
            .fetch_optional(&mut connection)
            .await;
        record_of(row, "sqlite")
    }
}

/// A table the app never created (it wrote nothing) holds nothing.
fn no_table(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("42P01") || d.message().contains("no such table")
    })
}

fn keys_of<R: Row>(rows: Result<Vec<R>, sqlx::Error>, tier: &str) -> Result<Vec<String>, String>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    match rows {
        Ok(rows) => rows
            .iter()
            .map(|r| {
                r.try_get::<String, _>("key")
                    .map_err(|e| format!("{tier}: {e}"))
            })
            .collect(),
        Err(e) if no_table(&e) => Ok(Vec::new()),
        Err(e) => Err(format!("{tier}: {e}")),
    }
}

fn record_of<R: Row>(
    row: Result<Option<R>, sqlx::Error>,
    tier: &str,
) -> Result<Option<RawRecord>, String>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let failed = |e: sqlx::Error| format!("{tier}: {e}");
    match row {
        Ok(Some(row)) => Ok(Some(RawRecord {
            version: row.try_get::<i64, _>("version").map_err(failed)? as u64,
            data: row.try_get("data").map_err(failed)?,
        })),
        Ok(None) => Ok(None),
        Err(e) if no_table(&e) => Ok(None),
        Err(e) => Err(failed(e)),
    }
}

/// `prefix` as a literal in a Redis glob pattern.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_session_backend_and_globs_are_literal() {
        assert_eq!(
            tiers_of(SessionBackend::RedisPostgres, true),
            [Tier::Redis, Tier::Postgres]
        );
        assert_eq!(tiers_of(SessionBackend::Persisted, true), [Tier::Postgres]);
        assert_eq!(tiers_of(SessionBackend::Persisted, false), [Tier::Sqlite]);
        assert!(tiers_of(SessionBackend::Memory, true).is_empty());
        assert_eq!(glob_escape("sess:"), "sess:");
        assert_eq!(glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]");
    }
}
