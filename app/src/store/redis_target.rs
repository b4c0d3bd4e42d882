//! What a [`super::redis_link::RedisLink`] reaches: one Redis server, or a
//! Redis Cluster (redis-rs's cluster client, which follows `MOVED` and `ASK`
//! itself), and the one connection type both give.
//!
//! On a cluster, "which server process answered" (what the cache tier's
//! coherence protocol trusts or not) is per node: each read asks the node
//! that serves its slot for its `run_id` in the same round trip
//! ([`RUN_ID_SCRIPT`]), and the cluster as a whole is named by the sorted
//! `run_id`s of its masters. A promoted replica, or a master that came back
//! empty, has a `run_id` that name does not hold.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::redis_direct::Direct;
use super::redis_run_id::run_id;

/// Answers the `run_id` of the node that runs it; sent with a key, a
/// cluster client sends it to the node serving that key's slot.
pub const RUN_ID_SCRIPT: &str = "return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')";

/// One server or a cluster.
// One per link, made once: the clients' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    Server(redis::Client),
    Cluster(ClusterClient),
}

/// A connection to either; cheap to clone (all multiplex).
#[derive(Clone)]
pub enum Connection {
    Server(MultiplexedConnection),
    /// A server's multiplexed connection with a direct one beside it
    /// ([`super::redis_direct`]).
    Direct(Direct),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(c) => c.req_packed_command(cmd),
            Connection::Direct(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(c) => c.get_db(),
            Connection::Direct(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

impl Target {
    /// A cluster reached through any of `seeds`; every command, and each
    /// connect to a node, bounded by `timeout`. A command follows a
    /// redirection (`MOVED`, `ASK`) at once, and is tried at most three times
    /// within a few hundred milliseconds when its node does not answer: a
    /// failover takes seconds, and the caller's breaker (Postgres behind it)
    /// decides what to do meanwhile, rather than the request waiting out
    /// the client's default backoff (over a second a retry).
    pub fn cluster(seeds: &[String], timeout: Duration) -> RedisResult<Self> {
        ClusterClient::builder(seeds.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .build()
            .map(Target::Cluster)
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// A new connection and the name of what it reaches: the server's
    /// `run_id`, or the cluster's masters' `run_id`s (see the module doc).
    pub async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<(Connection, String)> {
        let mut connection = match self {
            Target::Server(client) => Connection::Server(
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?,
            ),
            Target::Cluster(client) => Connection::Cluster(client.get_async_connection().await?),
        };
        let name = identify(&mut connection).await?;
        Ok((connection, name))
    }
}

/// What `connection` reaches, named as [`Target::connect`] says.
pub async fn identify(connection: &mut Connection) -> RedisResult<String> {
    match connection {
        Connection::Server(c) | Connection::Direct(Direct { shared: c, .. }) => {
            let info: String = redis::cmd("INFO").arg("server").query_async(c).await?;
            run_id(&info).map(str::to_owned).ok_or_else(no_run_id)
        }
        Connection::Cluster(c) => {
            let mut info = redis::cmd("INFO");
            info.arg("server");
            let replies = c
                .route_command(
                    info,
                    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
                )
                .await?;
            let mut texts = Vec::new();
            collect_text(replies, &mut texts);
            let mut ids: Vec<&str> = texts.iter().filter_map(|t| run_id(t)).collect();
            if ids.is_empty() {
                return Err(no_run_id());
            }
            ids.sort_unstable();
            ids.dedup();
            Ok(ids.join(","))
        }
    }
}

/// Every text in a reply, however nested (one per node of a multi-node reply).
fn collect_text(value: Value, out: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => out.push(String::from_utf8_lossy(&bytes).into_owned()),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => out.push(text),
        Value::Array(values) | Value::Set(values) => {
            for v in values {
                collect_text(v, out);
            }
        }
        Value::Map(pairs) => {
            for (_, v) in pairs {
                collect_text(v, out);
            }
        }
        _ => {}
    }
}

fn no_run_id() -> RedisError {
    RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "INFO server has no run_id",
    ))
}

/// Whether a reply from the server process `server` comes from what
/// `named` names: that process, or a cluster whose masters include it.
pub fn names(named: &str, server: &str) -> bool {
    named == server || named.split(',').any(|id| id == server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_name_holds_its_masters_and_no_other() {
        assert!(names("a1", "a1"));
        assert!(!names("a1", "a2"));
        assert!(names("a1,b2,c3", "b2"));
        assert!(!names("a1,b2,c3", "d4"));
        assert!(!names("a1,b2,c3", "b"));
    }

    #[test]
    fn multi_node_replies_give_every_text() {
        let reply = Value::Map(vec![
            (
                Value::SimpleString("127.0.0.1:1".into()),
                Value::BulkString(b"run_id:b\r\n".to_vec()),
            ),
            (
                Value::SimpleString("127.0.0.1:2".into()),
                Value::VerbatimString {
                    format: redis::VerbatimFormat::Text,
                    text: "run_id:a\r\n".into(),
                },
            ),
        ]);
        let mut texts = Vec::new();
        collect_text(reply, &mut texts);
        let ids: Vec<_> = texts.iter().filter_map(|t| run_id(t)).collect();
        assert_eq!(ids, ["b", "a"]);
    }
}
