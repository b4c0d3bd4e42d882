//! Topologies: a session backend, a token-cache placement, encryption and concurrency control,
//! as the four named options or a custom combination from a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::session::Concurrency;
use crate::store::breaker::{Breaker, BreakerSettings};
use crate::store::encrypted::{EncryptedStore, Keyring};
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::redis_link::RedisLink;
use crate::store::sql::{PostgresStore, SqliteStore};
use crate::store::tiered::coherence::{Coherence, CoherenceSettings};
use crate::store::tiered::{TierSettings, TieredStore};
use crate::store::{Store, StoreError};
use crate::tokencache::handoff::Handoff;
use crate::tokencache::lease::{PgLeases, RefreshLeases, StoreLeases};
use crate::tokencache::placement::{CacheAccess, InSession, InstanceWide, Partitioned, SharedBlob};

/// Where session records live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionBackend {
    Memory,
    /// Postgres when a database URL is given, else a SQLite file.
    Persisted,
    Sqlite,
    Postgres,
    Redis,
    RedisPostgres,
}

/// Where the token cache lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenPlacement {
    InstanceWide,
    SharedBlob,
    InSession,
    Partitioned,
}

/// One topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub name: String,
    pub session_backend: SessionBackend,
    pub token_cache: TokenPlacement,
    #[serde(default)]
    pub encrypt: bool,
    pub concurrency: Concurrency,
    /// Redis is a Redis Cluster (its seed URLs in [`Backends::redis_cluster_urls`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redis_cluster: bool,
}

/// Which shared servers a topology's instances need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreNeeds {
    /// One Redis server.
    pub redis: bool,
    pub postgres: bool,
    /// A Redis Cluster, in place of one server.
    pub redis_cluster: bool,
}

/// Why a topology could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "unknown topology {0:?}: use option1, option2, option3, option4, option4-cluster or a topology file"
    )]
    Unknown(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML that is not a topology; the message names line and column.
    #[error("invalid topology {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Topology {
    /// The largest topology file read (a real one is a few hundred bytes).
    pub const MAX_FILE_BYTES: u64 = 64 * 1024;

    /// The names of the four options (`all` runs these).
    pub const PRESETS: [&'static str; 4] = ["option1", "option2", "option3", "option4"];

    /// Option4 with its cache tier on a Redis Cluster: a preset too, but
    /// not one of the four (`all` does not bring up a cluster).
    pub const CLUSTER_PRESET: &'static str = "option4-cluster";

    /// The four options of the seed, as docs/architecture.md ("The four
    /// topologies") describes them.
    pub fn preset(name: &str) -> Option<Self> {
        let (session_backend, token_cache, encrypt, concurrency) = match name {
            "option1" => (
                SessionBackend::Memory,
                TokenPlacement::InstanceWide,
                false,
                Concurrency::LastWriterWins,
            ),
            "option2" => (
                SessionBackend::Persisted,
                TokenPlacement::SharedBlob,
                false,
                Concurrency::LastWriterWins,
            ),
            "option3" => (
                SessionBackend::Persisted,
                TokenPlacement::InSession,
                false,
                Concurrency::LastWriterWins,
            ),
            "option4" | "option4-cluster" => (
                SessionBackend::RedisPostgres,
                TokenPlacement::Partitioned,
                true,
                Concurrency::CompareAndSet,
            ),
            _ => return None,
        };
        Some(Self {
            name: name.to_owned(),
            session_backend,
            token_cache,
            encrypt,
            concurrency,
            redis_cluster: name == Self::CLUSTER_PRESET,
        })
    }

    /// A preset by name, or an error that lists the names.
    pub fn named(name: &str) -> Result<Self, TopologyError> {
        Self::preset(name).ok_or_else(|| TopologyError::Unknown(name.to_owned()))
    }

    /// A custom topology from a TOML file; errors name the file, line and column.
    /// Only a regular file of at most [`Self::MAX_FILE_BYTES`] is read: a FIFO
    /// would hang the start, `/dev/zero` would read until memory runs out.
    pub fn from_file(path: &Path) -> Result<Self, TopologyError> {
        use std::io::Read;
        let read_error = |source| TopologyError::Read {
            path: path.to_owned(),
            source,
        };
        let refuse = |why: String| read_error(std::io::Error::other(why));
        // stat does not block on a FIFO, as opening one would.
        let metadata = std::fs::metadata(path).map_err(read_error)?;
        if !metadata.is_file() {
            return Err(refuse("not a regular file".into()));
        }
        if metadata.len() > Self::MAX_FILE_BYTES {
            return Err(refuse(format!(
                "{} bytes; a topology file is at most {} bytes",
                metadata.len(),
                Self::MAX_FILE_BYTES
            )));
        }
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read_error)?
            .take(Self::MAX_FILE_BYTES)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        toml::from_str(&text).map_err(|e| TopologyError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The TOML [`Topology::from_file`] reads back.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The shared servers this topology's stores live on. Persisted
    /// sessions use Postgres when there is one (SQLite is their fallback);
    /// the token cache lives in the session store or in memory, never elsewhere.
    pub fn needs(&self) -> StoreNeeds {
        let (redis, postgres) = match self.session_backend {
            SessionBackend::Memory | SessionBackend::Sqlite => (false, false),
            SessionBackend::Persisted | SessionBackend::Postgres => (false, true),
            SessionBackend::Redis => (true, false),
            SessionBackend::RedisPostgres => (true, true),
        };
        StoreNeeds {
            redis: redis && !self.redis_cluster,
            postgres,
            redis_cluster: redis && self.redis_cluster,
        }
    }
}

/// Where the backends are.
#[derive(Clone, Debug)]
pub struct Backends {
    pub redis_url: Option<String>,
    /// Seed URLs of a Redis Cluster, for a topology with `redis_cluster`.
    pub redis_cluster_urls: Vec<String>,
    /// CA certificate (PEM) to trust for a `rediss://` URL.
    pub redis_ca_pem: Option<Vec<u8>>,
    pub database_url: Option<String>,
    pub sqlite_path: PathBuf,
    /// Keeps one deployment's records apart from another's on shared servers.
    pub namespace: String,
    /// Secret the at-rest keys derive from, and the current key id.
    pub encryption_secret: Vec<u8>,
    pub encryption_key_id: String,
    /// Earlier key ids still accepted for decryption (key rotation).
    pub previous_key_ids: Vec<String>,
    /// How long a Redis or Postgres operation may take before the store
    /// counts as down, and how often a down store is probed.
    pub breaker: BreakerSettings,
    /// Names this instance in the fleet's coherence record (Redis + Postgres).
    pub instance: String,
    pub coherence: CoherenceSettings,
}

/// The stores and the token-cache placement a topology needs.
pub struct Built {
    pub sessions: Arc<dyn Store>,
    pub cache: Arc<dyn CacheAccess>,
    pub encrypted: Option<Arc<EncryptedStore>>,
    /// The breakers in front of Redis and Postgres, for metrics.
    pub breakers: Vec<Arc<Breaker>>,
    /// This instance's side of the cache tier's coherence protocol, for metrics.
    pub coherence: Option<Arc<Coherence>>,
}

impl Topology {
    pub fn build(
        &self,
        backends: &Backends,
        session_lifetime: Duration,
    ) -> Result<Built, StoreError> {
        // Refused rather than ignored: the cluster client would check the
        // nodes' certificates against the system's roots, not this CA.
        if self.redis_cluster && backends.redis_ca_pem.is_some() {
            return Err(StoreError::Config(format!(
                "topology {}: a Redis CA file (--redis-ca-file, REDIS_CA_FILE) is for one Redis server; \
                 a Redis Cluster's rediss:// seeds are checked against the system's roots (unset it)",
                self.name
            )));
        }
        let need = |url: &Option<String>, what: &str| {
            url.clone()
                .ok_or_else(|| StoreError::Config(format!("topology {} needs {what}", self.name)))
        };
        let prefix = format!("{}:", backends.namespace);
        let link = || -> Result<RedisLink, StoreError> {
            if !self.redis_cluster {
                return RedisStore::link(
                    &need(&backends.redis_url, "a Redis URL")?,
                    backends.redis_ca_pem.clone(),
                );
            }
            if backends.redis_cluster_urls.is_empty() {
                return Err(StoreError::Config(format!(
                    "topology {} needs Redis Cluster seed URLs",
                    self.name
                )));
            }
            RedisStore::cluster_link(&backends.redis_cluster_urls)
        };
        let redis = || Ok::<_, StoreError>(RedisStore::on_link(Arc::new(link()?), &prefix));
        let postgres = |url: &str| PostgresStore::connect(url, &backends.namespace);
        let sqlite = || SqliteStore::open(&backends.sqlite_path, &backends.namespace);
        // Networked stores go behind a breaker, so an outage costs one timeout.
        let mut breakers = Vec::new();
        let mut guarded = |store: Arc<dyn Store>| -> Arc<Breaker> {
            let breaker = Breaker::new(store, backends.breaker);
            breakers.push(breaker.clone());
            breaker
        };
        // Refresh leases live in Postgres where the sessions do (fenced
        // writes), else beside the sessions in their own store.
        let mut pg_leases = None;
        let mut coherence = None;
        // Where rotated tokens wait when a lease holder cannot write them to
        // Postgres: the Redis beside it, where there is one.
        let mut handoff_tier: Option<Arc<dyn Store>> = None;
        let plain: Arc<dyn Store> = match self.session_backend {
            SessionBackend::Memory => Arc::new(MemoryStore::new()),
            SessionBackend::Persisted => match &backends.database_url {
                Some(url) => {
                    let postgres = Arc::new(postgres(url)?);
                    let breaker = guarded(postgres.clone());
                    pg_leases = Some(PgLeases::new(postgres, breaker.clone()));
                    Arc::new(breaker)
                }
                None => Arc::new(sqlite()?),
            },
            SessionBackend::Sqlite => Arc::new(sqlite()?),
            SessionBackend::Postgres => {
                let postgres =
                    Arc::new(postgres(&need(&backends.database_url, "a database URL")?)?);
                let breaker = guarded(postgres.clone());
                pg_leases = Some(PgLeases::new(postgres, breaker.clone()));
                Arc::new(breaker)
            }
            SessionBackend::Redis => Arc::new(guarded(Arc::new(redis()?))),
            SessionBackend::RedisPostgres => {
                let tiered = TieredStore::connect(TierSettings {
                    redis: Arc::new(link()?),
                    redis_prefix: &prefix,
                    database_url: &need(&backends.database_url, "a database URL")?,
                    namespace: &backends.namespace,
                    instance: &backends.instance,
                    breaker: backends.breaker,
                    coherence: backends.coherence,
                })?;
                let [cache_breaker, durable_breaker] = tiered.breakers();
                breakers.push(cache_breaker);
                breakers.push(durable_breaker.clone());
                pg_leases = Some(PgLeases::new(tiered.durable().clone(), durable_breaker));
                coherence = Some(tiered.coherence().clone());
                handoff_tier = Some(Arc::new(tiered.cache_tier()));
                Arc::new(tiered)
            }
        };
        let keyring = || {
            let mut keys = vec![(
                backends.encryption_key_id.as_str(),
                Keyring::derive_key(&backends.encryption_secret, &backends.encryption_key_id),
            )];
            for kid in &backends.previous_key_ids {
                keys.push((
                    kid.as_str(),
                    Keyring::derive_key(&backends.encryption_secret, kid),
                ));
            }
            Keyring::new(&keys, &backends.encryption_key_id)
        };
        let (store, encrypted) = if self.encrypt {
            let encrypted = Arc::new(EncryptedStore::new(plain, keyring()?));
            (encrypted.clone() as Arc<dyn Store>, Some(encrypted))
        } else {
            (plain, None)
        };
        // Sealed as the records are: it holds a refresh token.
        let handoff_tier = match handoff_tier {
            Some(tier) if self.encrypt => {
                Some(Arc::new(EncryptedStore::new(tier, keyring()?)) as Arc<dyn Store>)
            }
            other => other,
        };
        let cache: Arc<dyn CacheAccess> = match self.token_cache {
            TokenPlacement::InstanceWide => Arc::new(InstanceWide::default()),
            TokenPlacement::SharedBlob => Arc::new(SharedBlob::new(store.clone())),
            TokenPlacement::InSession => Arc::new(InSession),
            TokenPlacement::Partitioned => {
                let leases: Arc<dyn RefreshLeases> = match pg_leases {
                    Some(leases) => Arc::new(leases),
                    None => Arc::new(StoreLeases::new(store.clone())),
                };
                let partitioned = Partitioned::new(store.clone(), session_lifetime, leases);
                Arc::new(match handoff_tier {
                    Some(tier) => partitioned.with_handoff(Handoff::new(tier, session_lifetime)),
                    None => partitioned,
                })
            }
        };
        Ok(Built {
            sessions: store,
            cache,
            encrypted,
            breakers,
            coherence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topology_file_that_is_no_regular_file_or_too_big_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let fifo = dir.path().join("fifo.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        // Returns at once (a read would block forever on a FIFO nobody writes).
        let error = Topology::from_file(&fifo).expect_err("a FIFO").to_string();
        assert!(error.contains("not a regular file"), "{error}");
        let error = Topology::from_file(Path::new("/dev/zero"))
            .expect_err("a device")
            .to_string();
        assert!(error.contains("not a regular file"), "{error}");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(Topology::MAX_FILE_BYTES as usize + 1)).expect("write");
        let error = Topology::from_file(&big).expect_err("too big").to_string();
        assert!(error.contains("at most 65536 bytes"), "{error}");
        let fine = dir.path().join("fine.toml");
        std::fs::write(&fine, Topology::named("option4").expect("preset").to_toml())
            .expect("write");
        assert_eq!(
            Topology::from_file(&fine).expect("reads"),
            Topology::named("option4").expect("preset")
        );
    }

    #[test]
    fn presets_match_the_design_table() {
        let o1 = Topology::preset("option1").expect("option1");
        assert_eq!(
            (o1.session_backend, o1.token_cache),
            (SessionBackend::Memory, TokenPlacement::InstanceWide)
        );
        let o4 = Topology::preset("option4").expect("option4");
        assert_eq!(
            (
                o4.session_backend,
                o4.token_cache,
                o4.encrypt,
                o4.concurrency
            ),
            (
                SessionBackend::RedisPostgres,
                TokenPlacement::Partitioned,
                true,
                Concurrency::CompareAndSet
            )
        );
        assert!(Topology::preset("option5").is_none());
        assert!(Topology::named("option5").is_err());
    }

    #[test]
    fn a_redis_ca_file_with_a_cluster_is_refused_not_ignored() {
        let dir = tempfile::tempdir().expect("dir");
        let backends = Backends {
            redis_url: None,
            redis_cluster_urls: vec!["rediss://127.0.0.1:1".into()],
            redis_ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            database_url: Some("postgres://127.0.0.1:1/none".into()),
            sqlite_path: dir.path().join("store.db"),
            namespace: "ca".into(),
            encryption_secret: b"secret".to_vec(),
            encryption_key_id: "k1".into(),
            previous_key_ids: Vec::new(),
            breaker: Default::default(),
            instance: "ca".into(),
            coherence: Default::default(),
        };
        let cluster = Topology::named(Topology::CLUSTER_PRESET).expect("preset");
        let Err(error) = cluster.build(&backends, Duration::from_secs(60)) else {
            panic!("built with a CA file it would not use");
        };
        let error = error.to_string();
        assert!(
            error.contains("--redis-ca-file") && error.contains("Redis Cluster"),
            "{error}"
        );
    }

    #[test]
    fn a_topology_says_which_servers_it_needs_and_survives_its_own_toml() {
        let needs = |name: &str| Topology::named(name).expect("preset").needs();
        assert_eq!(needs("option1"), StoreNeeds::default());
        for persisted in ["option2", "option3"] {
            assert_eq!(
                needs(persisted),
                StoreNeeds {
                    redis: false,
                    postgres: true,
                    redis_cluster: false,
                }
            );
        }
        assert_eq!(
            needs("option4"),
            StoreNeeds {
                redis: true,
                postgres: true,
                redis_cluster: false,
            }
        );
        assert_eq!(
            needs("option4-cluster"),
            StoreNeeds {
                redis: false,
                postgres: true,
                redis_cluster: true,
            }
        );
        let custom = Topology {
            name: "redis-only".into(),
            session_backend: SessionBackend::Redis,
            token_cache: TokenPlacement::Partitioned,
            encrypt: true,
            concurrency: Concurrency::CompareAndSet,
            redis_cluster: false,
        };
        assert_eq!(
            custom.needs(),
            StoreNeeds {
                redis: true,
                postgres: false,
                redis_cluster: false,
            }
        );
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("t.toml");
        std::fs::write(&path, custom.to_toml()).expect("write");
        assert_eq!(Topology::from_file(&path).expect("reads back"), custom);
    }

    #[test]
    fn a_custom_topology_file_error_names_line_and_column() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("custom.toml");
        std::fs::write(&path, "name = \"mine\"\nsession_backend = \"redis\"\ntoken_cache = \"everywhere\"\nconcurrency = \"compare-and-set\"\n").expect("write");
        let error = Topology::from_file(&path)
            .expect_err("unknown placement")
            .to_string();
        assert!(
            error.contains("custom.toml") && error.contains("line 3"),
            "{error}"
        );
        std::fs::write(&path, "name = \"mine\"\nsession_backend = \"redis\"\ntoken_cache = \"partitioned\"\nconcurrency = \"compare-and-set\"\n").expect("write");
        assert_eq!(
            Topology::from_file(&path).expect("valid").token_cache,
            TokenPlacement::Partitioned
        );
    }
}
