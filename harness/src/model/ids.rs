//! What names the parts of a stack: instance ids (`app-1`, `app-2`, ...,
//! numbered from 1 in scenario files, logs, the `x-instance` header and the
//! stack alike) and the kinds of store server (`redis`, `postgres`).

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One app instance of a stack. Scenario files write the number (`instance = 2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct InstanceId(NonZeroUsize);

impl InstanceId {
    /// The instance at position `index` (from 0) of a stack.
    pub const fn from_index(index: usize) -> Self {
        Self(NonZeroUsize::MIN.saturating_add(index))
    }

    /// Its position (from 0) in a stack.
    pub fn index(self) -> usize {
        self.0.get() - 1
    }

    pub fn number(self) -> usize {
        self.0.get()
    }

    /// The ids of a stack of `count` instances.
    pub fn all(count: usize) -> impl Iterator<Item = Self> {
        (0..count).map(Self::from_index)
    }

    /// Whether a stack of `count` instances has this one.
    pub fn within(self, count: usize) -> bool {
        self.index() < count
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "app-{}", self.0)
    }
}

impl TryFrom<u64> for InstanceId {
    type Error = String;

    fn try_from(number: u64) -> Result<Self, Self::Error> {
        usize::try_from(number)
            .ok()
            .and_then(NonZeroUsize::new)
            .map(Self)
            .ok_or_else(|| format!("instances are numbered from 1 (app-1), not {number}"))
    }
}

impl From<InstanceId> for u64 {
    fn from(id: InstanceId) -> Self {
        id.0.get() as u64
    }
}

impl FromStr for InstanceId {
    type Err = String;

    /// Reads `app-N`, as the `x-instance` header carries it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.strip_prefix("app-")
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| format!("{text:?} is not an instance id like app-1"))
            .and_then(Self::try_from)
    }
}

/// A store server an instance talks to over the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Redis,
    Postgres,
    /// A Redis Cluster (its seed URLs, comma-separated, stand for its URL).
    #[serde(rename = "redis-cluster")]
    RedisCluster,
}

impl StoreKind {
    /// The app's flag naming this store's URL.
    pub fn url_flag(self) -> &'static str {
        match self {
            StoreKind::Redis => "--redis-url",
            StoreKind::Postgres => "--database-url",
            StoreKind::RedisCluster => "--redis-cluster-urls",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Redis => "redis",
            StoreKind::Postgres => "postgres",
            StoreKind::RedisCluster => "redis-cluster",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_from_one_and_index_from_zero() {
        let third = InstanceId::from_index(2);
        assert_eq!((third.number(), third.index()), (3, 2));
        assert_eq!(third.to_string(), "app-3");
        assert_eq!("app-3".parse::<InstanceId>(), Ok(third));
        assert!("app-0".parse::<InstanceId>().is_err());
        assert!("web-1".parse::<InstanceId>().is_err());
        assert_eq!(InstanceId::try_from(3), Ok(third));
        assert!(InstanceId::try_from(0).is_err());
        assert!(third.within(3) && !third.within(2));
        assert_eq!(
            InstanceId::all(2)
                .map(|i| i.to_string())
                .collect::<Vec<_>>(),
            ["app-1", "app-2"]
        );
    }
}
