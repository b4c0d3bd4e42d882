//! What the stage held at one moment, as the sampler saw it and the results
//! and reports keep it: each instance's memory and store figures, Redis's
//! and Postgres's, and the CPU seconds so far.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cpu::CpuSample;
use checker::check::resident::Held;
use checker::history::Micros;

/// One instance at one moment, from its `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceSample {
    pub id: String,
    pub rss_bytes: Option<u64>,
    /// Entries and bytes of its session store, as it sees it.
    pub store_entries: Option<u64>,
    pub store_bytes: Option<u64>,
    /// Entries of an in-process token cache (option1).
    pub token_cache_entries: Option<u64>,
    /// Accounts (users) that in-process token cache holds tokens for.
    #[serde(default)]
    pub token_cache_accounts: Option<u64>,
    /// Sessions held in the instance's own memory (a `memory` session store).
    #[serde(default)]
    pub memory_sessions: Option<u64>,
}

/// Redis at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RedisSample {
    pub used_memory: u64,
    /// This run's keys by the prefix after the namespace (`sess`, `tc`, ...),
    /// tombstones left out.
    pub keys: BTreeMap<String, u64>,
    /// Tombstones of deleted records (option4's cache tier keeps them a
    /// while, so a late copy cannot bring a record back).
    #[serde(default)]
    pub tombstones: u64,
}

/// One node of a Redis Cluster at one moment: a shard is a master and the
/// replicas that follow it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RedisNodeSample {
    /// `host:port`, as the cluster names it.
    pub node: String,
    /// The cluster's id of the node.
    pub id: String,
    /// `master` or `replica`, as the cluster saw it at the sample.
    pub role: String,
    /// The id of the master a replica follows (its shard); none for a master.
    #[serde(default)]
    pub follows: Option<String>,
    /// Whether the master serves hash slots (a master without slots holds no keys).
    #[serde(default)]
    pub has_slots: bool,
    /// `used_memory` from its `INFO memory`; none when it did not answer.
    pub used_memory: Option<u64>,
    /// Its keys (`DBSIZE`), every namespace's; none when it did not answer.
    pub keys: Option<u64>,
    /// Its `maxmemory` (0: no limit); none when it did not answer.
    #[serde(default)]
    pub maxmemory: Option<u64>,
    /// Of `used_memory`, its replication backlog (`mem_replication_backlog`):
    /// it fills with the write stream up to `repl-backlog-size` (1 MiB by
    /// default) on masters and replicas alike, whatever the sessions.
    #[serde(default)]
    pub replication_backlog: Option<u64>,
}

impl RedisNodeSample {
    pub fn is_master(&self) -> bool {
        self.role == "master"
    }
}

/// Postgres at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PostgresSample {
    /// This run's live rows by key prefix, and their payload bytes.
    pub rows: BTreeMap<String, u64>,
    pub payload_bytes: u64,
    /// The whole table on disk, indexes included (every namespace).
    pub table_bytes: u64,
}

/// The stage at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Sample {
    /// Since the run started.
    pub at: Micros,
    pub instances: Vec<InstanceSample>,
    /// On a Redis Cluster, the whole cluster (memory summed over the
    /// masters that serve slots, this run's keys from each).
    pub redis: Option<RedisSample>,
    /// On a Redis Cluster, every node, masters and replicas (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redis_nodes: Vec<RedisNodeSample>,
    pub postgres: Option<PostgresSample>,
    /// CPU seconds so far (absent in files from before it was read).
    #[serde(default)]
    pub cpu: Option<CpuSample>,
}

impl Sample {
    /// What each instance said it keeps in its own memory, for the instances
    /// that said anything (`check::resident`).
    pub fn held_in_process(&self) -> Vec<Held> {
        self.instances
            .iter()
            .filter(|i| i.memory_sessions.is_some() || i.token_cache_accounts.is_some())
            .map(|i| Held {
                instance: i.id.clone(),
                sessions: i.memory_sessions,
                accounts: i.token_cache_accounts,
            })
            .collect()
    }

    /// Bytes the stores hold for this run: Redis memory when there is a
    /// Redis, else Postgres payload, else what the instances say.
    pub fn store_bytes(&self) -> u64 {
        if let Some(redis) = &self.redis {
            return redis.used_memory;
        }
        if let Some(postgres) = &self.postgres {
            return postgres.payload_bytes;
        }
        self.instances.iter().filter_map(|i| i.store_bytes).sum()
    }

    pub fn rss_bytes(&self) -> u64 {
        self.instances.iter().filter_map(|i| i.rss_bytes).sum()
    }
}
