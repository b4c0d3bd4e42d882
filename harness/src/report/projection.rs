//! The capacity projection: store memory and IdP token calls per second at
//! 10x, 100x and 1000x the run's sessions, from a straight-line fit of what
//! the run measured. The inputs and the fit are shown beside the figures so a
//! reader sees how far the projection stretches the data. On a Redis
//! Cluster, also the nodes (masters, and with their replicas) that memory
//! needs for a stated memory per node.

use crate::model::sample::Sample;
use crate::results::Results;

/// The multiples of the run's sessions projected to.
pub const SCALES: [u64; 3] = [10, 100, 1000];

/// A fit of store bytes against sessions stored: `bytes = base + per_session * sessions`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub base_bytes: f64,
    pub per_session: f64,
    /// How well the line fits the samples (None when it is not a regression).
    pub r_squared: Option<f64>,
    /// Samples the fit used, and the range of sessions they spanned.
    pub points: usize,
    pub sessions_range: (u64, u64),
    /// How the line was had: a least-squares fit over the samples, or the
    /// last sample's bytes over live sessions when the samples do not spread.
    pub method: &'static str,
}

/// One option's projection.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// Live sessions at the end of the run (the 1x point).
    pub sessions: u64,
    pub fit: Option<Fit>,
    pub token_calls: u64,
    pub duration_secs: f64,
    /// Token calls per second per live session, as the run measured.
    pub calls_per_session_second: Option<f64>,
    /// (scale, sessions, store bytes, token calls/s).
    pub rows: Vec<(u64, u64, Option<f64>, Option<f64>)>,
    /// On a Redis Cluster: the nodes each scale needs.
    pub cluster: Option<ClusterProjection>,
}

/// A node's memory when neither the command line nor the nodes say (their
/// `maxmemory` is 0, no limit, as on the private cluster): 1 GiB.
pub const DEFAULT_NODE_MEMORY: u64 = 1 << 30;

/// The fewest masters a cluster runs with: a failover needs a majority of
/// masters to vote, so fewer than three cannot lose one and go on.
pub const MIN_MASTERS: u64 = 3;

/// How the projection is to count nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// The memory one node may use (`--node-memory-mib`); when absent, the
    /// nodes' own `maxmemory` if they all set the same one, else
    /// [`DEFAULT_NODE_MEMORY`].
    pub node_memory: Option<u64>,
}

/// The cluster as the run had it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterShape {
    /// Masters serving slots, and replicas, at the last sample that lists nodes.
    pub masters: u64,
    pub replicas: u64,
    /// An empty master's memory: the first sample's masters' memory over
    /// the masters, its replication backlog left out (counted apart).
    pub empty_master_bytes: f64,
    /// The largest replication backlog any node held at any sample: a
    /// fixed cost of every node (it fills with the write stream up to
    /// `repl-backlog-size`, 1 MiB by default, whatever the sessions).
    pub backlog_bytes: f64,
    /// The masters' memory less their backlogs, grown from the first sample
    /// to the last, per session live at the end: what a session costs a
    /// cluster once the backlog is counted as the fixed cost it is.
    pub per_session: Option<f64>,
    /// The `maxmemory` every node reported at that last sample, when it is one nonzero figure.
    pub maxmemory: Option<u64>,
}

/// The nodes each scale needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterProjection {
    pub shape: ClusterShape,
    pub node_memory: u64,
    /// Where `node_memory` came from, in words.
    pub node_memory_from: &'static str,
    /// (scale, sessions, masters, masters with their replicas); none where
    /// a node cannot hold even an empty master, or there is no fit.
    pub rows: Vec<(u64, u64, Option<u64>, Option<u64>)>,
}

/// The cluster's shape, from the samples of the first timeline that lists
/// nodes; none for a run without a cluster.
pub fn cluster_shape(results: &Results) -> Option<ClusterShape> {
    let samples: Vec<&Sample> = results
        .timelines
        .iter()
        .find(|t| t.samples.iter().any(|s| !s.redis_nodes.is_empty()))?
        .samples
        .iter()
        .filter(|s| !s.redis_nodes.is_empty())
        .collect();
    let (first, last) = (samples.first()?, samples.last()?);
    let masters = last
        .redis_nodes
        .iter()
        .filter(|n| n.is_master() && n.has_slots)
        .count() as u64;
    let replicas = last.redis_nodes.iter().filter(|n| !n.is_master()).count() as u64;
    let serving = |sample: &Sample| {
        sample
            .redis_nodes
            .iter()
            .filter(|n| n.is_master() && n.has_slots)
            .map(|n| Some(n.used_memory? as f64 - n.replication_backlog.unwrap_or(0) as f64))
            .collect::<Option<Vec<f64>>>()
    };
    let first_masters = serving(first)?;
    let empty_master_bytes = first_masters.iter().sum::<f64>() / first_masters.len().max(1) as f64;
    let backlog_bytes = samples
        .iter()
        .flat_map(|s| &s.redis_nodes)
        .filter_map(|n| n.replication_backlog)
        .max()
        .unwrap_or(0) as f64;
    let sessions = results.leaks.live_sessions_at_end;
    let per_session = serving(last)
        .filter(|_| sessions > 0)
        .map(|end| (end.iter().sum::<f64>() - first_masters.iter().sum::<f64>()) / sessions as f64);
    let limits: Vec<Option<u64>> = last.redis_nodes.iter().map(|n| n.maxmemory).collect();
    let maxmemory = match limits.first() {
        Some(&Some(limit)) if limit > 0 && limits.iter().all(|l| *l == Some(limit)) => Some(limit),
        _ => None,
    };
    Some(ClusterShape {
        masters,
        replicas,
        empty_master_bytes,
        backlog_bytes,
        per_session,
        maxmemory,
    })
}

/// Masters that hold `sessions` at `per_session` bytes each when a node may
/// use `node_memory` and an empty master already uses `empty_master_bytes`
/// (each master holds an even share of the slots, so of the sessions);
/// at least [`MIN_MASTERS`]. None when a node cannot hold even an empty
/// master, or the figures are not numbers.
pub fn masters_needed(
    sessions: u64,
    per_session: f64,
    node_memory: u64,
    empty_master_bytes: f64,
) -> Option<u64> {
    let room = node_memory as f64 - empty_master_bytes;
    if !per_session.is_finite() || !room.is_finite() || room <= 0.0 {
        return None;
    }
    // A store that did not grow per session needs no more than the fewest.
    let data = per_session.max(0.0) * sessions as f64;
    let masters = (data / room).ceil();
    if !masters.is_finite() || masters > u64::MAX as f64 {
        return None;
    }
    Some((masters as u64).max(MIN_MASTERS))
}

/// Masters and every replica: the run's replicas per master kept (rounded
/// up, so no master goes without the replicas the run gave its masters).
pub fn nodes_with_replicas(masters: u64, shape: &ClusterShape) -> u64 {
    let per_master = shape.replicas.div_ceil(shape.masters.max(1));
    masters.saturating_mul(1 + per_master)
}

/// The nodes each scale of `rows` needs, for the run's cluster.
fn project_cluster(
    results: &Results,
    fit: Option<&Fit>,
    rows: &[(u64, u64, Option<f64>, Option<f64>)],
    settings: Settings,
) -> Option<ClusterProjection> {
    let shape = cluster_shape(results)?;
    let (node_memory, node_memory_from) = match (settings.node_memory, shape.maxmemory) {
        (Some(bytes), _) => (bytes, "--node-memory-mib"),
        (None, Some(bytes)) => (bytes, "the nodes' maxmemory"),
        (None, None) => (DEFAULT_NODE_MEMORY, "default: the nodes set no maxmemory"),
    };
    // The cluster's own figure when it has one (the backlog apart), else
    // the fit over the samples.
    let per_session = shape.per_session.or(fit.map(|f| f.per_session));
    let rows = rows
        .iter()
        .map(|&(scale, sessions, _, _)| {
            let masters = per_session.and_then(|per_session| {
                masters_needed(
                    sessions,
                    per_session,
                    node_memory,
                    shape.empty_master_bytes + shape.backlog_bytes,
                )
            });
            (
                scale,
                sessions,
                masters,
                masters.map(|m| nodes_with_replicas(m, &shape)),
            )
        })
        .collect();
    Some(ClusterProjection {
        shape,
        node_memory,
        node_memory_from,
        rows,
    })
}

/// Sessions in the store at a sample: the instances' own count of their
/// session store's entries. A shared store is seen whole by every instance
/// (take the largest); per-instance memory is summed.
pub fn sessions_stored(sample: &Sample, shared_store: bool) -> Option<u64> {
    let counts = sample.instances.iter().filter_map(|i| i.store_entries);
    if shared_store {
        counts.max()
    } else {
        counts.reduce(|a, b| a + b)
    }
}

/// The (sessions, store bytes) points of a run's samples, every source's.
pub fn points(results: &Results) -> Vec<(f64, f64)> {
    let shared = results.topology.session_backend != "memory";
    results
        .timelines
        .iter()
        .flat_map(|t| &t.samples)
        .filter_map(|s| Some((sessions_stored(s, shared)? as f64, s.store_bytes() as f64)))
        .collect()
}

/// Least squares through the points, when they spread over at least two
/// session counts; else the last sample's bytes per live session.
pub fn fit(results: &Results) -> Option<Fit> {
    let points = points(results);
    let n = points.len() as f64;
    let lo = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if points.len() >= 3 && hi > lo {
        let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let my = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
        let slope = sxy / sxx;
        // A store can shrink as sessions come and go (Redis frees lazily):
        // a negative slope says the samples do not show the per-session
        // cost, so fall back to the plain ratio rather than project a shrink.
        if slope > 0.0 {
            return Some(Fit {
                base_bytes: my - slope * mx,
                per_session: slope,
                r_squared: (syy > 0.0).then(|| (sxy * sxy) / (sxx * syy)),
                points: points.len(),
                sessions_range: (lo as u64, hi as u64),
                method: "least squares over the samples",
            });
        }
    }
    let per_session = results.leaks.store_bytes_per_session?;
    Some(Fit {
        base_bytes: 0.0,
        per_session,
        r_squared: None,
        points: 1,
        sessions_range: (
            results.leaks.live_sessions_at_end,
            results.leaks.live_sessions_at_end,
        ),
        method: "last sample's store bytes over live sessions",
    })
}

/// The projection of one run.
pub fn project(results: &Results, settings: Settings) -> Projection {
    let sessions = results.leaks.live_sessions_at_end;
    let fit = fit(results);
    let duration_secs = results
        .sources
        .iter()
        .map(|s| s.duration_secs)
        .fold(0.0, f64::max);
    let token_calls = results.idp.token_calls;
    // Merged runs ran side by side: their sessions add and so do their calls,
    // so calls per live session per second stay the per-source figure.
    let calls_per_session_second = (sessions > 0 && duration_secs > 0.0)
        .then(|| token_calls as f64 / sessions as f64 / duration_secs);
    let rows = SCALES
        .iter()
        .map(|&scale| {
            let n = sessions * scale;
            (
                scale,
                n,
                fit.as_ref()
                    .map(|f| f.base_bytes + f.per_session * n as f64),
                calls_per_session_second.map(|c| c * n as f64),
            )
        })
        .collect::<Vec<_>>();
    let cluster = project_cluster(results, fit.as_ref(), &rows, settings);
    Projection {
        sessions,
        fit,
        token_calls,
        duration_secs,
        calls_per_session_second,
        rows,
        cluster,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sample::RedisNodeSample;

    const MIB: u64 = 1 << 20;

    fn shape(masters: u64, replicas: u64) -> ClusterShape {
        ClusterShape {
            masters,
            replicas,
            empty_master_bytes: 2.0 * MIB as f64,
            backlog_bytes: MIB as f64,
            per_session: Some(1024.0),
            maxmemory: None,
        }
    }

    #[test]
    fn masters_are_the_data_over_what_a_node_has_left_rounded_up() {
        // 1,000,000 sessions of 1 KiB: 1,000,000 KiB; a 1 GiB node with a
        // 2 MiB empty master has 1022 MiB for them: 0.955..., so 1, so 3.
        assert_eq!(
            masters_needed(1_000_000, 1024.0, 1 << 30, 2.0 * MIB as f64),
            Some(3)
        );
        // 10 M sessions: 9.55... nodes' worth, so 10.
        assert_eq!(
            masters_needed(10_000_000, 1024.0, 1 << 30, 2.0 * MIB as f64),
            Some(10)
        );
        // Exactly full: 4 nodes of 100 MiB room hold 400 MiB, not 5.
        assert_eq!(
            masters_needed(400, MIB as f64, 102 * MIB, 2.0 * MIB as f64),
            Some(4)
        );
        assert_eq!(
            masters_needed(401, MIB as f64, 102 * MIB, 2.0 * MIB as f64),
            Some(5)
        );
    }

    #[test]
    fn edge_cases_give_the_fewest_masters_or_nothing() {
        let empty = 2.0 * MIB as f64;
        assert_eq!(
            masters_needed(0, 1024.0, 1 << 30, empty),
            Some(MIN_MASTERS),
            "no sessions"
        );
        assert_eq!(
            masters_needed(1000, 0.0, 1 << 30, empty),
            Some(MIN_MASTERS),
            "no growth"
        );
        assert_eq!(
            masters_needed(1000, -50.0, 1 << 30, empty),
            Some(MIN_MASTERS),
            "a shrink is no growth"
        );
        assert_eq!(
            masters_needed(1000, 1024.0, 2 * MIB, empty),
            None,
            "no room past an empty master"
        );
        assert_eq!(
            masters_needed(1000, 1024.0, MIB, empty),
            None,
            "smaller than an empty master"
        );
        assert_eq!(masters_needed(1000, f64::NAN, 1 << 30, empty), None);
        assert_eq!(masters_needed(1000, f64::INFINITY, 1 << 30, empty), None);
        assert_eq!(
            masters_needed(u64::MAX, f64::MAX, 1 << 30, empty),
            None,
            "past any count of nodes"
        );
    }

    fn node(id: &str, master: bool, used: u64, backlog: u64) -> RedisNodeSample {
        RedisNodeSample {
            node: format!("127.0.0.1:{id}"),
            id: id.into(),
            role: if master { "master" } else { "replica" }.into(),
            follows: (!master).then(|| "m1".to_owned()),
            has_slots: master,
            used_memory: Some(used),
            keys: Some(0),
            maxmemory: Some(0),
            replication_backlog: Some(backlog),
        }
    }

    /// A run of the fixture's shape with a cluster of three masters and
    /// three replicas: 2 MiB an empty master, each grown by 1 MiB of
    /// backlog and 100 KiB of sessions by the end, 100 sessions live.
    fn cluster_run() -> Results {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/short-option4.json");
        let mut results = Results::read(&path).expect("fixture");
        results.leaks.live_sessions_at_end = 100;
        let samples = &mut results.timelines[0].samples;
        let last = samples.len() - 1;
        for (index, sample) in samples.iter_mut().enumerate() {
            let grown = if index == last { MIB + 100 * 1024 } else { 0 };
            let backlog = if index == last { MIB } else { 0 };
            sample.redis_nodes = ["m1", "m2", "m3"]
                .iter()
                .map(|id| node(id, true, 2 * MIB + grown, backlog))
                .chain(
                    ["r1", "r2", "r3"]
                        .iter()
                        .map(|id| node(id, false, 2 * MIB + grown, backlog)),
                )
                .collect();
        }
        results
    }

    #[test]
    fn a_clusters_shape_puts_the_backlog_apart_from_the_sessions() {
        let results = cluster_run();
        let shape = cluster_shape(&results).expect("a cluster");
        assert_eq!((shape.masters, shape.replicas), (3, 3));
        assert_eq!(shape.empty_master_bytes, 2.0 * MIB as f64);
        assert_eq!(shape.backlog_bytes, MIB as f64);
        // Three masters grew 100 KiB each past their backlogs: 300 KiB over 100 sessions.
        assert_eq!(shape.per_session, Some(3.0 * 1024.0));
        assert_eq!(shape.maxmemory, None, "0 is no limit");

        // 64 MiB nodes: 61 MiB of room each. 1000x = 100,000 sessions of
        // 3 KiB = 292.97 MiB: 4.8, so 5 masters, 10 nodes.
        let projection = project(
            &results,
            Settings {
                node_memory: Some(64 * MIB),
            },
        );
        let cluster = projection.cluster.expect("nodes projected");
        assert_eq!(cluster.rows[2], (1000, 100_000, Some(5), Some(10)));
        assert_eq!(cluster.rows[0], (10, 1000, Some(3), Some(6)), "the fewest");
        let default = project(&results, Settings::default())
            .cluster
            .expect("nodes");
        assert_eq!(default.node_memory, DEFAULT_NODE_MEMORY);

        let mut without = results.clone();
        for sample in without.timelines.iter_mut().flat_map(|t| &mut t.samples) {
            sample.redis_nodes.clear();
        }
        assert_eq!(cluster_shape(&without), None, "one server: no cluster");
        assert_eq!(project(&without, Settings::default()).cluster, None);
    }

    #[test]
    fn replicas_follow_the_runs_ratio() {
        assert_eq!(nodes_with_replicas(10, &shape(3, 3)), 20);
        assert_eq!(nodes_with_replicas(10, &shape(3, 0)), 10);
        assert_eq!(
            nodes_with_replicas(10, &shape(3, 4)),
            30,
            "rounded up: 2 each"
        );
        assert_eq!(nodes_with_replicas(10, &shape(0, 0)), 10);
    }
}
