//! A Redis store (redis-rs, async, one multiplexed connection): one hash per record, writes as Lua scripts.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, RedisError, RedisResult, Script};

use super::redis_link::{Connection, RedisLink};
use super::{Expect, Record, Store, StoreError, StoreSize};

/// Compare-and-set write: `ARGV = mode (any|absent|version), expected, data, ttl_ms`.
/// Returns `{1, new_version}` or `{0, current_version_or_-1}`.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HGET', KEYS[1], 'v')
local curv = cur and tonumber(cur) or nil
local mode = ARGV[1]
if mode == 'absent' and curv then return {0, curv} end
if mode == 'version' and curv ~= tonumber(ARGV[2]) then return {0, curv or -1} end
local newv = (curv or 0) + 1
redis.call('HSET', KEYS[1], 'v', newv, 'd', ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) else redis.call('PERSIST', KEYS[1]) end
return {1, newv}
",
    )
});

/// Replication write: `ARGV = version, data, ttl_ms`; writes only over an older version.
static SAVE_IF_NEWER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) else redis.call('PERSIST', KEYS[1]) end
return 1
",
    )
});

/// How long one command may take before Redis counts as down (a paused
/// server never answers; the app should say 503, not hang).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Records under `{prefix}{key}`, each a hash of version `v` and data `d`.
pub struct RedisStore {
    link: Arc<RedisLink>,
    prefix: String,
}

pub(crate) fn failed(e: RedisError) -> StoreError {
    if e.kind() == redis::ErrorKind::UnexpectedReturnType || e.kind() == redis::ErrorKind::Parse {
        StoreError::Corrupt(e.to_string())
    } else {
        StoreError::Unavailable(format!("redis: {e}"))
    }
}

fn ttl_millis(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |t| (t.as_millis() as u64).max(1))
}

impl RedisStore {
    /// A store at `url` (`redis://` or `rediss://` for TLS) with keys under `prefix`.
    /// Connects lazily and again after a failure ([`RedisLink`]), so a Redis
    /// that is down makes operations fail (503 upstream), and one that
    /// returns is used again.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with_ca(url, prefix, None)
    }

    /// As [`RedisStore::connect`]; for a `rediss://` URL, `ca_pem` (when given)
    /// is the only CA trusted, instead of the system's roots.
    pub fn connect_with_ca(
        url: &str,
        prefix: &str,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, StoreError> {
        Ok(Self::on_link(Arc::new(Self::link(url, ca_pem)?), prefix))
    }

    /// A link to the server at `url` (see [`RedisStore::connect_with_ca`]), to share between stores.
    pub fn link(url: &str, ca_pem: Option<Vec<u8>>) -> Result<RedisLink, StoreError> {
        let bad_url = |e: RedisError| StoreError::Config(format!("bad Redis URL: {e}"));
        let client = match ca_pem {
            Some(root_cert) if url.starts_with("rediss://") => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
            .map_err(bad_url)?,
            _ => redis::Client::open(url).map_err(bad_url)?,
        };
        Ok(RedisLink::new(client, RESPONSE_TIMEOUT))
    }

    /// A link to the Redis Cluster reached through any of `seeds`, to share between stores.
    pub fn cluster_link(seeds: &[String]) -> Result<RedisLink, StoreError> {
        RedisLink::cluster(seeds, RESPONSE_TIMEOUT)
            .map_err(|e| StoreError::Config(format!("bad Redis Cluster URLs: {e}")))
    }

    /// A store with keys under `prefix`, over an existing link.
    pub fn on_link(link: Arc<RedisLink>, prefix: &str) -> Self {
        Self {
            link,
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs one command or pipeline; which server process answers does not
    /// matter to a store of its own (it does to a cache tier's copies).
    async fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.link
            .run(work)
            .await
            .map(|(value, _)| value)
            .map_err(failed)
    }
}

type Loaded = (Option<String>, Option<Vec<u8>>);

fn to_record(loaded: Loaded, pttl: i64) -> Result<Option<Record>, StoreError> {
    match loaded {
        (Some(version), Some(data)) => Ok(Some(Record {
            data,
            version: version
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("version {version:?} is not a number")))?,
            ttl: (pttl > 0).then(|| Duration::from_millis(pttl as u64)),
        })),
        _ => Ok(None),
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> String {
        "redis".into()
    }

    async fn load(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.load_many(&[key]).await?.pop().flatten())
    }

    /// Every key in one pipelined round trip.
    async fn load_many(&self, keys: &[&str]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut pipe = redis::pipe();
        for key in keys {
            let key = self.key(key);
            pipe.cmd("HMGET")
                .arg(&key)
                .arg("v")
                .arg("d")
                .cmd("PTTL")
                .arg(&key);
        }
        let replies: Vec<(Loaded, i64)> = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        replies
            .into_iter()
            .map(|(loaded, pttl)| to_record(loaded, pttl))
            .collect()
    }

    async fn save(
        &self,
        key: &str,
        data: &[u8],
        expect: Expect,
        ttl: Option<Duration>,
    ) -> Result<u64, StoreError> {
        let (mode, expected) = match expect {
            Expect::Any => ("any", 0),
            Expect::Absent => ("absent", 0),
            Expect::Version(v) => ("version", v),
        };
        let mut save = SAVE.prepare_invoke();
        save.key(self.key(key))
            .arg(mode)
            .arg(expected)
            .arg(data)
            .arg(ttl_millis(ttl));
        let (written, version): (i64, i64) = self
            .run(|mut c| async move { save.invoke_async(&mut c).await })
            .await?;
        if written == 1 {
            Ok(version as u64)
        } else {
            Err(StoreError::Conflict {
                current: (version >= 0).then_some(version as u64),
            })
        }
    }

    async fn save_if_newer(
        &self,
        key: &str,
        data: &[u8],
        version: u64,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut save = SAVE_IF_NEWER.prepare_invoke();
        save.key(self.key(key))
            .arg(version)
            .arg(data)
            .arg(ttl_millis(ttl));
        let written: i64 = self
            .run(|mut c| async move { save.invoke_async(&mut c).await })
            .await?;
        Ok(written == 1)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(self.key(key)).arg(ttl_millis(Some(ttl)));
        let set: i64 = self
            .run(|mut c| async move { expire.query_async(&mut c).await })
            .await?;
        Ok(set == 1)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let key = self.key(key);
        let removed: i64 = self.run(|mut c| async move { c.del(key).await }).await?;
        Ok(removed > 0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    /// Walks the prefix with SCAN (never KEYS, which blocks the server). SCAN
    /// may return a key twice while Redis resizes its table, so this is a
    /// close count, as metrics need, not an exact one.
    async fn size(&self) -> Result<StoreSize, StoreError> {
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let mut cursor: u64 = 0;
        let mut size = StoreSize::default();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self
                .run(|mut c| async move { scan.query_async(&mut c).await })
                .await?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("HSTRLEN").arg(key).arg("d");
                }
                let lengths: Vec<u64> = self
                    .run(|mut c| async move { pipe.query_async(&mut c).await })
                    .await?;
                size.entries += keys.len() as u64;
                size.bytes += lengths.iter().sum::<u64>();
            }
            if next == 0 {
                return Ok(size);
            }
            cursor = next;
        }
    }
}

/// Escapes the glob characters of a literal prefix for SCAN MATCH.
fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
