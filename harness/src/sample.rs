//! What the stage holds, over time and at the end: every second each
//! instance's RSS and store figures from its `/metrics`, Redis's memory and
//! keys per prefix (on a Redis Cluster, every node's, [`crate::cluster_sample`]), Postgres's rows and table size, and the CPU seconds of
//! each part so far ([`crate::cpu`]); after the run, what the stores still
//! hold of browsers that logged out.
//!
//! What stays after a logout is read raw, each tier apart
//! ([`crate::store_probe`]), under the key names the app derives from a
//! session id with the secret the harness gave it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use app::msal_model::TokenCache;
use app::store::encrypted::Keyring;
use app::topology::{SessionBackend, TokenPlacement, Topology};
use sqlx::Row;

use crate::check::orphans::{EndedSession, LeftoverSession, Leftovers, Tier, TierLeftover};
use crate::cpu::CpuMeter;
use crate::history::Micros;
use crate::load::browser::InstanceUrl;
use crate::model::sample::{InstanceSample, PostgresSample, RedisNodeSample, RedisSample, Sample};
use crate::stage::stack::InstancePids;
use crate::store_probe::{self, StoreProbe};
use crate::{cluster_sample, redis_nodes};

/// A process's resident memory in bytes, from `/proc/PID/status`.
fn process_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Where the stage's parts are, for looking.
#[derive(Clone, Debug)]
pub struct Place {
    pub instances: Vec<InstanceUrl>,
    pub redis_url: Option<String>,
    /// A Redis Cluster's seed URLs (comma-separated), in place of `redis_url`.
    pub redis_cluster_url: Option<String>,
    pub database_url: Option<String>,
    pub namespace: String,
    /// The reference app's topology; none for an app the harness did not
    /// build, whose store layout it cannot read.
    pub topology: Option<Topology>,
    /// Each instance's pid, when it runs here, for its memory.
    pub pids: InstancePids,
    pub encryption_secret: Vec<u8>,
    pub sqlite_path: PathBuf,
    /// The stage's CPU, its tallies shared by every sampler of the run.
    pub cpu: CpuMeter,
}

/// Takes samples of one stage.
pub struct Sampler {
    place: Place,
    http: reqwest::Client,
    redis: Option<redis::aio::ConnectionManager>,
    postgres: Option<sqlx::PgPool>,
}

impl Sampler {
    /// Connections are made as needed; a store that is down gives no sample.
    pub fn new(place: Place) -> Self {
        let redis = place
            .redis_url
            .as_deref()
            .and_then(|url| redis::Client::open(url).ok())
            .and_then(|client| {
                redis::aio::ConnectionManager::new_lazy_with_config(
                    client,
                    redis::aio::ConnectionManagerConfig::new()
                        .set_response_timeout(Some(Duration::from_secs(2)))
                        .set_connection_timeout(Some(Duration::from_secs(2))),
                )
                .ok()
            });
        let postgres = place.database_url.as_deref().and_then(|url| {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(2))
                .connect_lazy(url)
                .ok()
        });
        Self {
            place,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
            redis,
            postgres,
        }
    }

    /// One sample, `at` micros into the run.
    pub async fn sample(&mut self, at: Micros) -> Sample {
        // First, so the figures are of the moment `at` names.
        let cpu = Some(self.place.cpu.read());
        let mut instances = Vec::with_capacity(self.place.instances.len());
        for (index, instance) in self.place.instances.iter().enumerate() {
            let mut sample = self.instance(instance).await;
            // An app without `/metrics` (or without this figure in it): its
            // process's resident memory, when it runs on this machine.
            if sample.rss_bytes.is_none() {
                sample.rss_bytes = self.place.pids.get(index).and_then(process_rss);
            }
            instances.push(sample);
        }
        let (redis, redis_nodes) = match self.redis {
            Some(_) => (self.redis_sample().await, Vec::new()),
            None => self.cluster_sample().await,
        };
        let postgres = self.postgres_sample().await;
        Sample {
            at,
            instances,
            redis,
            redis_nodes,
            postgres,
            cpu,
        }
    }

    async fn instance(&self, instance: &InstanceUrl) -> InstanceSample {
        let text = match self
            .http
            .get(format!("{}/metrics", instance.base))
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                response.text().await.unwrap_or_default()
            }
            _ => String::new(),
        };
        let metrics = parse_metrics(&text);
        let find = |name: &str, filter: &dyn Fn(&BTreeMap<String, String>) -> bool| {
            metrics
                .iter()
                .filter(|(n, labels, _)| n == name && filter(labels))
                .map(|(_, _, v)| *v as u64)
                .reduce(|a, b| a + b)
        };
        let not_cache = |l: &BTreeMap<String, String>| {
            l.get("store").is_some_and(|s| s != "instance_token_cache")
        };
        InstanceSample {
            id: instance.id.clone(),
            rss_bytes: find("app_process_resident_memory_bytes", &|_| true),
            store_entries: find("app_store_entries", &not_cache),
            store_bytes: find("app_store_bytes", &not_cache),
            token_cache_entries: find("app_store_entries", &|l| {
                l.get("store").is_some_and(|s| s == "instance_token_cache")
            }),
            token_cache_accounts: find("app_token_cache_accounts", &|_| true),
            memory_sessions: find("app_store_entries", &|l| {
                l.get("store").is_some_and(|s| s == "memory")
            }),
        }
    }

    async fn redis_sample(&mut self) -> Option<RedisSample> {
        let connection = self.redis.as_mut()?;
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(connection)
            .await
            .ok()?;
        let used_memory = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let (keys, tombstones) = run_keys(connection, &self.place.namespace).await?;
        Some(RedisSample {
            used_memory,
            keys,
            tombstones,
        })
    }

    /// A Redis Cluster: every node's figures, and the cluster as one store
    /// (memory summed over the masters that serve slots, each master's keys
    /// of this run added up); no store figure when a master is down.
    async fn cluster_sample(&self) -> (Option<RedisSample>, Vec<RedisNodeSample>) {
        let Some(seeds) = self.place.redis_cluster_url.as_deref() else {
            return (None, Vec::new());
        };
        let nodes = cluster_sample::nodes(seeds).await;
        let Some(used_memory) = cluster_sample::masters_memory(&nodes) else {
            return (None, nodes);
        };
        let mut whole = RedisSample {
            used_memory,
            ..RedisSample::default()
        };
        for url in cluster_sample::serving_masters(&nodes) {
            let Ok(mut connection) = redis_nodes::connect(&url).await else {
                return (None, nodes);
            };
            let Some((keys, tombstones)) = run_keys(&mut connection, &self.place.namespace).await
            else {
                return (None, nodes);
            };
            for (prefix, n) in keys {
                *whole.keys.entry(prefix).or_insert(0) += n;
            }
            whole.tombstones += tombstones;
        }
        (Some(whole), nodes)
    }

    async fn postgres_sample(&self) -> Option<PostgresSample> {
        let pool = self.postgres.as_ref()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let rows = sqlx::query(
            "SELECT split_part(key, ':', 1) AS prefix, count(*) AS rows,
                    COALESCE(SUM(LENGTH(data)), 0)::BIGINT AS bytes
             FROM kv_store WHERE ns = $1 AND NOT deleted AND (expires_at IS NULL OR expires_at > $2)
             GROUP BY 1",
        )
        .bind(&self.place.namespace)
        .bind(now)
        .fetch_all(pool)
        .await
        .ok()?;
        let mut sample = PostgresSample::default();
        for row in rows {
            let prefix: String = row.try_get("prefix").ok()?;
            let count: i64 = row.try_get("rows").ok()?;
            let bytes: i64 = row.try_get("bytes").ok()?;
            sample.rows.insert(prefix, count as u64);
            sample.payload_bytes += bytes as u64;
        }
        sample.table_bytes =
            sqlx::query_scalar::<_, i64>("SELECT pg_total_relation_size('kv_store')")
                .fetch_one(pool)
                .await
                .map_or(0, |b| b as u64);
        Some(sample)
    }

    /// What the stores still hold of the sessions browsers logged out of, and
    /// of users with no browser signed in (in an app-wide token blob).
    /// `counted_in_process`: every instance reports the sessions it keeps in
    /// its own memory (then `check::resident` judges those by their counts).
    pub async fn leftovers(
        &self,
        ended: &[EndedSession],
        signed_in_at_end: &HashSet<String>,
        subjects: &HashMap<String, String>,
        counted_in_process: bool,
    ) -> Leftovers {
        let Some(topology) = &self.place.topology else {
            return Leftovers {
                unchecked: Some(
                    "the app under test is not the reference app: its store layout is its own, so what stays stored after a logout cannot be read (store growth is still sampled)"
                        .into(),
                ),
                ..Leftovers::default()
            };
        };
        if topology.session_backend == SessionBackend::Memory {
            if counted_in_process {
                return Leftovers::default();
            }
            return Leftovers {
                unchecked: Some(
                    "sessions live in each instance's memory, which the harness cannot look into"
                        .into(),
                ),
                ..Leftovers::default()
            };
        }
        let tiers =
            store_probe::tiers_of(topology.session_backend, self.place.database_url.is_some());
        let probe = StoreProbe {
            namespace: self.place.namespace.clone(),
            redis_url: (self.place.redis_url.clone())
                .or_else(|| self.place.redis_cluster_url.clone()),
            database_url: self.place.database_url.clone(),
            sqlite_path: self.place.sqlite_path.clone(),
        };
        let unchecked = |tier: Tier, e: String| Leftovers {
            unchecked: Some(format!("{} could not be read: {e}", tier.name())),
            ..Leftovers::default()
        };
        // Each tier's live keys of the two kinds a session leaves, listed
        // once, then each ended session looked for in every list.
        let mut held = Vec::with_capacity(tiers.len());
        for &tier in &tiers {
            match probe.live_keys(tier, &["sess:", "tc:"]).await {
                Ok(keys) => held.push((tier, keys)),
                Err(e) => return unchecked(tier, e),
            }
        }
        // The app stores a session under a keyed hash of its id, with the
        // secret it was given (the harness gave it, and no earlier key ids).
        let store_keys =
            app::store::keys::StoreKeys::derive(&self.place.encryption_secret, KEY_ID, &[]);
        let partitioned = topology.token_cache == TokenPlacement::Partitioned;
        let mut leftovers = Leftovers::default();
        for session in ended {
            let store_id = store_keys.digest(&session.session);
            let record_key = app::session::session_key(&store_id);
            let partition_key = app::tokencache::placement::partition_key(&store_id);
            let found: Vec<TierLeftover> = held
                .iter()
                .map(|(tier, keys)| TierLeftover {
                    tier: *tier,
                    session_record: keys.contains(&record_key),
                    token_partition: partitioned && keys.contains(&partition_key),
                })
                .filter(|t| t.session_record || t.token_partition)
                .collect();
            if !found.is_empty() {
                leftovers.sessions.push(LeftoverSession {
                    session: session.session.clone(),
                    session_record: found.iter().any(|t| t.session_record),
                    token_partition: found.iter().any(|t| t.token_partition),
                    tiers: found,
                });
            }
        }
        if topology.token_cache == TokenPlacement::SharedBlob {
            let keyring = if topology.encrypt {
                let key = Keyring::derive_key(&self.place.encryption_secret, KEY_ID);
                match Keyring::new(&[(KEY_ID, key)], KEY_ID) {
                    Ok(keyring) => Some(keyring),
                    Err(e) => {
                        leftovers.unchecked = Some(format!("the app's key: {e}"));
                        return leftovers;
                    }
                }
            } else {
                None
            };
            let users_by_oid: HashMap<&str, &str> = subjects
                .iter()
                .map(|(user, oid)| (oid.as_str(), user.as_str()))
                .collect();
            let key = app::tokencache::placement::SHARED_BLOB_KEY;
            for &tier in &tiers {
                let record = match probe.live_record(tier, key).await {
                    Ok(Some(record)) => record,
                    Ok(None) => continue,
                    Err(e) => return unchecked(tier, e),
                };
                let data = match &keyring {
                    Some(keyring) => match keyring.open_record(key, record.version, &record.data) {
                        Ok(data) => data,
                        Err(why) => {
                            leftovers.unchecked = Some(format!(
                                "the token blob in {} does not decrypt: {why}",
                                tier.name()
                            ));
                            continue;
                        }
                    },
                    None => record.data,
                };
                let Ok(cache) = TokenCache::from_bytes(&data) else {
                    leftovers.unchecked =
                        Some(format!("the token blob in {} does not parse", tier.name()));
                    continue;
                };
                let mut here: BTreeMap<String, u32> = BTreeMap::new();
                for token in cache.refresh_tokens.values() {
                    let uid = token.home_account_id.split('.').next().unwrap_or_default();
                    if let Some(user) = users_by_oid.get(uid)
                        && !signed_in_at_end.contains(*user)
                    {
                        *here.entry((*user).to_owned()).or_insert(0) += 1;
                    }
                }
                if !here.is_empty() {
                    leftovers.blob_tiers.push(tier);
                }
                for (user, n) in here {
                    let most = leftovers.blob_tokens.entry(user).or_insert(0);
                    *most = (*most).max(n);
                }
            }
        }
        leftovers
    }
}

/// The key id the harness gives the app (and so its store keys' and
/// records' encryption keys).
const KEY_ID: &str = "k1";

/// This run's keys on one server, by prefix, and its tombstones (hashes
/// with a `t` field; only the tiered store writes them); none when the
/// server stops answering.
async fn run_keys(
    connection: &mut impl redis::aio::ConnectionLike,
    namespace: &str,
) -> Option<(BTreeMap<String, u64>, u64)> {
    let pattern = format!("{namespace}:*");
    let mut keys = BTreeMap::new();
    let mut tombstones = 0;
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
            .ok()?;
        let mut pipe = redis::pipe();
        for key in &batch {
            pipe.cmd("HEXISTS").arg(key).arg("t");
        }
        let tombstone: Vec<bool> = if batch.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(connection).await.unwrap_or_default()
        };
        for (i, key) in batch.iter().enumerate() {
            if tombstone.get(i).copied().unwrap_or(false) {
                tombstones += 1;
            } else {
                *keys.entry(prefix_of(key, namespace)).or_insert(0) += 1;
            }
        }
        if next == 0 {
            return Some((keys, tombstones));
        }
        cursor = next;
    }
}

/// The key prefix after the namespace: `run1:sess:abc` -> `sess`.
fn prefix_of(key: &str, namespace: &str) -> String {
    key.strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or("other")
        .to_owned()
}

/// Prometheus text: (name, labels, value) per sample line.
fn parse_metrics(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key.to_owned(), value.trim_matches('"').to_owned()))
                })
                .collect();
            Some((name.to_owned(), labels, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_and_key_prefixes_read_as_the_app_writes_them() {
        let text = "# TYPE x gauge\napp_store_entries{instance=\"app-1\",store=\"redis+postgres\"} 12\n\
                    app_store_entries{instance=\"app-1\",store=\"instance_token_cache\"} 5\n\
                    app_process_resident_memory_bytes{instance=\"app-1\"} 1048576\n";
        let parsed = parse_metrics(text);
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].0, "app_store_entries");
        assert_eq!(
            parsed[0].1.get("store").map(String::as_str),
            Some("redis+postgres")
        );
        assert_eq!(parsed[2].2, 1_048_576.0);
        assert_eq!(prefix_of("run7:sess:abc", "run7"), "sess");
        assert_eq!(prefix_of("run7:lease:tc:abc", "run7"), "lease");
    }
}
