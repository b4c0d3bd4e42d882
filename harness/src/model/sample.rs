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
    pub redis: Option<RedisSample>,
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
