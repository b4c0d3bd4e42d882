//! A Redis Cluster in the report: each node's memory and keys per shard (a
//! master and the replicas that follow it), and the nodes the capacity
//! projection's memory needs. Runs without a cluster show neither.

use std::fmt::Write;

use crate::model::sample::{RedisNodeSample, Sample};

use super::Column;
use super::charts::human_bytes;
use super::escape::escape;
use super::projection::{Projection, SCALES};

/// The first and last samples of a column's first timeline that list nodes.
fn node_samples<'a>(column: &Column<'a>) -> Option<(&'a str, &'a Sample, &'a Sample)> {
    let timeline = column
        .results
        .timelines
        .iter()
        .find(|t| t.samples.iter().any(|s| !s.redis_nodes.is_empty()))?;
    let mut listed = timeline
        .samples
        .iter()
        .filter(|s| !s.redis_nodes.is_empty());
    let first = listed.next()?;
    let last = listed.next_back().unwrap_or(first);
    Some((&timeline.source, first, last))
}

/// The nodes in shard order: each master serving slots (by address), then
/// the replicas that follow it; last, any node that is in no shard (a master
/// without slots, a replica of a master not listed). Each with its shard's
/// number, none for the last kind.
pub fn by_shard(nodes: &[RedisNodeSample]) -> Vec<(Option<usize>, &RedisNodeSample)> {
    let mut masters: Vec<&RedisNodeSample> = nodes
        .iter()
        .filter(|n| n.is_master() && n.has_slots)
        .collect();
    masters.sort_by(|a, b| a.node.cmp(&b.node));
    let mut out = Vec::with_capacity(nodes.len());
    for (index, master) in masters.iter().enumerate() {
        out.push((Some(index + 1), *master));
        let mut replicas: Vec<&RedisNodeSample> = nodes
            .iter()
            .filter(|n| !n.is_master() && n.follows.as_deref() == Some(master.id.as_str()))
            .collect();
        replicas.sort_by(|a, b| a.node.cmp(&b.node));
        out.extend(replicas.into_iter().map(|r| (Some(index + 1), r)));
    }
    for node in nodes {
        if !out.iter().any(|(_, n)| n.id == node.id) {
            out.push((None, node));
        }
    }
    out
}

fn bytes(figure: Option<u64>) -> String {
    figure.map_or_else(|| "-".to_owned(), |b| human_bytes(b as f64))
}

/// The per-shard table of each column that ran on a cluster.
pub fn shards(out: &mut String, columns: &[Column<'_>]) {
    for column in columns {
        let Some((source, first, last)) = node_samples(column) else {
            continue;
        };
        let _ = writeln!(
            out,
            "<h3 id=\"shards-{}\">Redis Cluster of {}, per shard</h3>\n<p class=\"muted\">Source {}: the shards as the \
             cluster stood at the last sample ({:.1} s), each master that serves slots with the replicas that follow it; \
             memory at the first sample (the empty cluster, {:.1} s) and at the last. Store bytes per session on a \
             cluster are the growth of the masters' memory summed (replicas hold copies of the same keys); that \
             growth holds each master's replication backlog too, which fills with the write stream up to \
             <code>repl-backlog-size</code> whatever the sessions, so on a short run it overstates the bytes a \
             session costs. Keys are each node's <code>DBSIZE</code>.</p>",
            column.id,
            escape(&column.label),
            escape(source),
            last.at as f64 / 1e6,
            first.at as f64 / 1e6,
        );
        *out += "<table class=\"shards\"><tr><th>shard</th><th>node</th><th>role</th><th>id</th>\
                 <th>memory, empty</th><th>memory at end</th><th>growth</th><th>of it, replication backlog at end</th><th>keys at end</th><th>maxmemory</th></tr>\n";
        for (shard, node) in by_shard(&last.redis_nodes) {
            let empty = first
                .redis_nodes
                .iter()
                .find(|n| n.id == node.id)
                .and_then(|n| n.used_memory);
            let growth = match (empty, node.used_memory) {
                (Some(a), Some(b)) => human_bytes(b as f64 - a as f64),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                shard.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                escape(&node.node),
                escape(&node.role),
                escape(node.id.get(..8).unwrap_or(&node.id)),
                bytes(empty),
                bytes(node.used_memory),
                growth,
                bytes(node.replication_backlog),
                node.keys.map_or_else(|| "-".to_owned(), |k| k.to_string()),
                match node.maxmemory {
                    Some(0) => "no limit".to_owned(),
                    other => bytes(other),
                },
            );
        }
        *out += "</table>\n";
    }
}

/// The nodes each scale needs, for each column that ran on a cluster.
pub fn nodes_needed(out: &mut String, columns: &[Column<'_>], projections: &[Projection]) {
    let clusters: Vec<_> = columns
        .iter()
        .zip(projections)
        .filter_map(|(c, p)| Some((c, p.cluster.as_ref()?)))
        .collect();
    if clusters.is_empty() {
        return;
    }
    *out += "<h3 id=\"projection-nodes\">Redis Cluster nodes needed</h3>\n<p>The sessions spread over masters \
             that each hold an even share of the slots: masters = the sessions' bytes (bytes per session times \
             sessions) over what one node has left once an empty master's memory and its replication backlog are \
             taken, rounded up, and at least 3 (a failover needs a majority of masters). Bytes per session here are \
             the masters' memory less their replication backlogs, grown from the first sample to the last, per \
             session live at the end: the backlog fills with the write stream up to <code>repl-backlog-size</code> \
             whatever the sessions, so it is a fixed cost of each node, taken as the largest any node held. With replicas: each master with as many replicas as the \
             run gave its masters. Memory per node: <code>--node-memory-mib</code> when given, else the nodes' \
             <code>maxmemory</code> when they all set one, else 1 GiB. Redis needs headroom beyond this \
             (fragmentation, replication buffers, a fork to snapshot): read it as a floor.</p>\n";
    *out += "<table class=\"nodes-needed\"><tr><th>option</th><th>run's cluster</th><th>memory per node</th>";
    for scale in SCALES {
        let _ = write!(
            out,
            "<th>{scale}x: masters</th><th>{scale}x: with replicas</th>"
        );
    }
    *out += "</tr>\n";
    for (column, cluster) in clusters {
        let shape = &cluster.shape;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} masters, {} replicas; empty master {} and a replication backlog of up to {}; \
             {} per session past them</td><td>{} ({})</td>",
            escape(&column.label),
            shape.masters,
            shape.replicas,
            human_bytes(shape.empty_master_bytes),
            human_bytes(shape.backlog_bytes),
            shape
                .per_session
                .map_or_else(|| "-".to_owned(), human_bytes),
            human_bytes(cluster.node_memory as f64),
            escape(cluster.node_memory_from)
        );
        for (_, sessions, masters, nodes) in &cluster.rows {
            let count = |n: &Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
            let _ = write!(
                out,
                "<td class=\"num\">{} for {sessions}</td><td class=\"num\">{}</td>",
                count(masters),
                count(nodes)
            );
        }
        *out += "</tr>\n";
    }
    *out += "</table>\n";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        node: &str,
        id: &str,
        role: &str,
        follows: Option<&str>,
        slots: bool,
    ) -> RedisNodeSample {
        RedisNodeSample {
            node: node.into(),
            id: id.into(),
            role: role.into(),
            follows: follows.map(str::to_owned),
            has_slots: slots,
            ..RedisNodeSample::default()
        }
    }

    #[test]
    fn shards_are_a_master_then_its_replicas_and_strays_last() {
        let nodes = [
            node("h:2", "r-of-b", "replica", Some("b"), false),
            node("h:9", "b", "master", None, true),
            node("h:1", "a", "master", None, true),
            node("h:5", "stray", "master", None, false),
            node("h:3", "r-of-a", "replica", Some("a"), false),
        ];
        let order: Vec<(Option<usize>, &str)> = by_shard(&nodes)
            .into_iter()
            .map(|(s, n)| (s, n.id.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (Some(1), "a"),
                (Some(1), "r-of-a"),
                (Some(2), "b"),
                (Some(2), "r-of-b"),
                (None, "stray")
            ]
        );
    }
}
