//! The Redis servers behind a URL, for looking at what they hold: the
//! server itself, or, when the URL is a Redis Cluster's seeds
//! (comma-separated) or names a cluster node, every master of that cluster,
//! each of which holds its own share of the keys.

use std::time::Duration;

use crate::stage::services::redis_cluster::parse_nodes;

/// The URLs of the servers that hold the keys: `url` itself for one
/// server; every master (that serves slots) for a cluster.
pub async fn masters(url: &str) -> Result<Vec<String>, String> {
    let seeds: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut last = String::from("no URL");
    for seed in &seeds {
        let mut connection = match connect(seed).await {
            Ok(connection) => connection,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut connection)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        if !info.lines().any(|l| l.trim() == "cluster_enabled:1") {
            return Ok(vec![(*seed).to_owned()]);
        }
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut connection)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        return Ok(parse_nodes(&nodes)
            .into_iter()
            .filter(|n| n.master && n.has_slots && !n.failed)
            .map(|n| format!("redis://{}:{}", n.host, n.port))
            .collect());
    }
    Err(last)
}

/// A connection to one server, made within two seconds.
pub async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis: {e}"))?;
    tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| format!("redis: {url} did not answer within 2 s"))?
    .map_err(|e| format!("redis: {e}"))
}
