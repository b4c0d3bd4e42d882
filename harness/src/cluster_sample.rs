//! What each node of a Redis Cluster holds at one moment: its role and
//! shard as the cluster names them, its memory and its keys; and the
//! cluster as one store (memory summed over the masters that serve slots),
//! which is what the run's store bytes per session are measured against.

use std::time::Duration;

use crate::model::sample::RedisNodeSample;
use crate::redis_nodes::connect;
use crate::stage::services::redis_cluster::parse_nodes;

/// How long one node gets to answer its figures: a sample every second
/// must not wait long on a node that is down or being failed over.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Every node the cluster behind `seeds` (comma-separated URLs) knows,
/// each with its figures (none for a node that does not answer); empty when
/// no seed answers.
pub async fn nodes(seeds: &str) -> Vec<RedisNodeSample> {
    let Some(text) = cluster_nodes(seeds).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for node in parse_nodes(&text) {
        let address = format!("{}:{}", node.host, node.port);
        let figures = figures(&address).await;
        out.push(RedisNodeSample {
            node: address,
            id: node.id,
            role: if node.master { "master" } else { "replica" }.to_owned(),
            follows: node.follows,
            has_slots: node.has_slots,
            used_memory: figures.map(|f| f.used_memory),
            keys: figures.map(|f| f.keys),
            maxmemory: figures.map(|f| f.maxmemory),
            replication_backlog: figures.and_then(|f| f.replication_backlog),
        });
    }
    out
}

/// The URLs of the masters that serve slots (the ones that hold keys).
pub fn serving_masters(nodes: &[RedisNodeSample]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.is_master() && n.has_slots)
        .map(|n| format!("redis://{}", n.node))
        .collect()
}

/// The cluster's memory as one store: the sum over the masters that serve
/// slots (replicas hold copies of the same keys, so adding them would count
/// every session twice); none when such a master did not answer, since a
/// partial sum would read as the store shrinking.
pub fn masters_memory(nodes: &[RedisNodeSample]) -> Option<u64> {
    let masters: Vec<&RedisNodeSample> = nodes
        .iter()
        .filter(|n| n.is_master() && n.has_slots)
        .collect();
    if masters.is_empty() {
        return None;
    }
    masters.iter().map(|n| n.used_memory).sum()
}

/// `CLUSTER NODES` from the first seed that answers.
async fn cluster_nodes(seeds: &str) -> Option<String> {
    for seed in seeds.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Ok(mut connection) = connect(seed).await else {
            continue;
        };
        let reply = tokio::time::timeout(
            ANSWER_WITHIN,
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async::<String>(&mut connection),
        )
        .await;
        if let Ok(Ok(text)) = reply {
            return Some(text);
        }
    }
    None
}

/// One node's figures.
#[derive(Clone, Copy)]
struct Figures {
    used_memory: u64,
    maxmemory: u64,
    keys: u64,
    replication_backlog: Option<u64>,
}

/// One node's figures, in one round trip.
async fn figures(address: &str) -> Option<Figures> {
    let mut connection = connect(&format!("redis://{address}")).await.ok()?;
    let (info, keys): (String, u64) = tokio::time::timeout(
        ANSWER_WITHIN,
        redis::pipe()
            .cmd("INFO")
            .arg("memory")
            .cmd("DBSIZE")
            .query_async(&mut connection),
    )
    .await
    .ok()?
    .ok()?;
    Some(Figures {
        used_memory: info_number(&info, "used_memory")?,
        maxmemory: info_number(&info, "maxmemory").unwrap_or(0),
        keys,
        replication_backlog: info_number(&info, "mem_replication_backlog"),
    })
}

/// A numeric `name:value` line of an INFO reply.
fn info_number(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(role: &str, has_slots: bool, used: Option<u64>) -> RedisNodeSample {
        RedisNodeSample {
            role: role.into(),
            has_slots,
            used_memory: used,
            ..RedisNodeSample::default()
        }
    }

    #[test]
    fn the_cluster_store_is_its_serving_masters() {
        let nodes = [
            node("master", true, Some(100)),
            node("master", true, Some(200)),
            node("replica", false, Some(1_000)),
            node("master", false, Some(5_000)),
        ];
        assert_eq!(
            masters_memory(&nodes),
            Some(300),
            "replicas and slotless masters left out"
        );
        let down = [node("master", true, Some(100)), node("master", true, None)];
        assert_eq!(masters_memory(&down), None, "no partial sum");
        assert_eq!(masters_memory(&[]), None);
    }

    #[test]
    fn info_numbers_are_read_by_exact_name() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\nmaxmemory:0\r\n";
        assert_eq!(info_number(info, "used_memory"), Some(1024));
        assert_eq!(info_number(info, "maxmemory"), Some(0));
        assert_eq!(info_number(info, "used_memory_peak"), None);
    }
}
