//! Redis Cluster: the seed URLs of an existing cluster (`REDIS_CLUSTER_URLS`,
//! comma-separated), or a private one the harness starts from `redis-server`:
//! three masters and three replicas on free ports, nothing persisted, the
//! slots split evenly over the masters and each replica following one master.
//! Its faults are a cluster's own: a master killed (its replica is promoted),
//! a graceful failover, and a share of one master's slots moved to another
//! under load ([`super::cluster_reshard`]).
//!
//! The nodes are [`Supervised`] children like every server of the run (they
//! die with the harness, however it ends), and each node's folder
//! (`nodes.conf`) lies in the run folder, which the next harness sweeps when
//! this one was killed.
//!
//! For network faults aimed at one node, a private cluster is started
//! proxied: each node announces (`cluster-announce-port`) a fault-proxy
//! [`Link`] in front of its port, so the addresses the cluster hands out
//! (`MOVED`, `CLUSTER SLOTS`, a replica's master) all lead through that
//! node's proxy. The cluster bus stays direct: the nodes keep seeing each
//! other, so a partitioned master is not failed over.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cluster_reshard::{Master, Moved, move_slots, slots_to_move};
use super::find_program;
use crate::model::network::NetworkFaults;
use crate::stage::StageError;
use crate::stage::network::Link;
use crate::stage::process::{ChildSpec, Supervised, free_port, poll_until};

/// The environment variable naming an existing cluster's seed URLs.
pub const URLS_ENV: &str = "REDIS_CLUSTER_URLS";

/// Masters of a private cluster; each has one replica.
pub const MASTERS: usize = 3;

/// Nodes of a private cluster: `redis-cluster-1` to `-3` start as the
/// masters, `-4` to `-6` as their replicas (`-4` follows `-1`, and so on).
pub const NODES: usize = MASTERS * 2;

/// All hash slots of a cluster.
const SLOTS: u16 = 16384;

/// How long a master may be silent before the others mark it failed and its
/// replica takes over: short, so a killed master costs seconds in a run.
const NODE_TIMEOUT_MS: u64 = 2000;

/// How long the cluster gets to form, or to settle after a fault.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One node of a private cluster.
struct Node {
    process: Supervised,
    port: u16,
    /// The cluster bus port, which nodes gossip on.
    bus: u16,
    /// The fault proxy in front of `port` that the node announces, when
    /// the cluster was started proxied.
    proxy: Option<Link>,
}

impl Node {
    /// The port the cluster hands out for this node: its proxy's, or its own.
    fn announced(&self) -> u16 {
        self.proxy.as_ref().map_or(self.port, |p| p.addr().port())
    }
}

enum Provision {
    External { seeds: Vec<String> },
    Private { nodes: Vec<Node> },
}

/// One node as `CLUSTER NODES` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub master: bool,
    /// Marked failed (`fail`) by the cluster.
    pub failed: bool,
    /// The master a replica follows.
    pub follows: Option<String>,
    /// Whether it serves any slot.
    pub has_slots: bool,
    /// The slots it serves, as inclusive ranges (slots being imported or
    /// migrated, `[slot->-id]`, left out).
    pub slots: Vec<(u16, u16)>,
}

impl NodeState {
    /// How many slots it serves.
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|(a, b)| usize::from(*b) - usize::from(*a) + 1)
            .sum()
    }

    /// Whether it serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

/// The Redis Cluster of a run, however it was provided.
pub struct RedisCluster {
    provision: Provision,
}

impl RedisCluster {
    /// `REDIS_CLUSTER_URLS` when set (checked with `CLUSTER INFO`), else a
    /// private cluster in `run_dir`, each node behind a fault proxy when
    /// `proxied` (a scenario with network faults).
    pub async fn provide(run_dir: &Path, proxied: bool) -> Result<Self, StageError> {
        Self::provide_from(std::env::var(URLS_ENV).ok(), run_dir, proxied).await
    }

    /// As [`RedisCluster::provide`], with the seed URLs the environment would give.
    pub async fn provide_from(
        seeds: Option<String>,
        run_dir: &Path,
        proxied: bool,
    ) -> Result<Self, StageError> {
        let seeds: Vec<String> = seeds
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if seeds.is_empty() {
            return Self::start(run_dir, proxied).await;
        }
        if proxied {
            // Its nodes announce their own addresses, which no proxy of ours sits in front of.
            return Err(StageError::Unproxyable {
                store: crate::model::ids::StoreKind::RedisCluster,
                reason: format!(
                    "{URLS_ENV} names an existing cluster, whose nodes send clients to their own addresses; \
                     network faults on a cluster need the private one (unset {URLS_ENV})"
                ),
            });
        }
        for seed in &seeds {
            let state = cluster_state(seed).await.map_err(|e| {
                StageError::NotAvailable(format!("{URLS_ENV}: {seed} does not answer: {e}"))
            })?;
            if state != "ok" {
                return Err(StageError::NotAvailable(format!(
                    "{URLS_ENV}: {seed} says cluster_state:{state}, not ok"
                )));
            }
        }
        Ok(Self {
            provision: Provision::External { seeds },
        })
    }

    /// A private cluster of [`MASTERS`] masters and as many replicas, each
    /// node on free ports with its folder in `run_dir/redis-cluster`;
    /// returns once every node says `cluster_state:ok` and every replica
    /// has its master's data.
    pub async fn start_private(run_dir: &Path) -> Result<Self, StageError> {
        Self::start(run_dir, false).await
    }

    /// [`RedisCluster::start_private`] with each node behind a fault proxy
    /// that it announces, for [`RedisCluster::set_network`].
    pub async fn start_private_proxied(run_dir: &Path) -> Result<Self, StageError> {
        Self::start(run_dir, true).await
    }

    async fn start(run_dir: &Path, proxied: bool) -> Result<Self, StageError> {
        let program = find_program("redis-server", &[]).ok_or_else(|| {
            StageError::NotAvailable(
                format!("redis-server not found on PATH: install it (apt-get install redis-server) or set {URLS_ENV}"),
            )
        })?;
        let mut taken = HashSet::new();
        let mut nodes = Vec::new();
        for index in 0..NODES {
            // The cluster bus needs a port of its own: by default port+10000,
            // which may not exist or be taken, so it is picked free too.
            let port = distinct_free_port(&mut taken)?;
            let bus = distinct_free_port(&mut taken)?;
            let proxy = match proxied {
                true => {
                    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                    let link = Link::start(node_name(index), upstream)
                        .await
                        .map_err(StageError::io(format!("a proxy for {}", node_name(index))))?;
                    Some(link)
                }
                false => None,
            };
            let announce = proxy.as_ref().map(|p| p.addr().port());
            let spec = node_spec(&program, run_dir, index, port, bus, announce)?;
            nodes.push(Node {
                process: Supervised::spawn(spec)?,
                port,
                bus,
                proxy,
            });
        }
        let cluster = Self {
            provision: Provision::Private { nodes },
        };
        cluster.form().await?;
        Ok(cluster)
    }

    /// Every node's URL (for a private cluster, as the cluster announces
    /// it: through its proxy when proxied) or the seeds given.
    pub fn seeds(&self) -> Vec<String> {
        match &self.provision {
            Provision::External { seeds } => seeds.clone(),
            Provision::Private { nodes } => nodes.iter().map(|n| node_url(n.announced())).collect(),
        }
    }

    /// The seed URLs as one comma-separated value, as the app takes them.
    pub fn url(&self) -> String {
        self.seeds().join(",")
    }

    /// How it was provided, in words.
    pub fn provided_as(&self) -> &'static str {
        match &self.provision {
            Provision::External { .. } => "an external cluster",
            Provision::Private { .. } => "a private cluster",
        }
    }

    /// The node processes, when the harness runs them.
    pub fn processes(&self) -> Vec<&Supervised> {
        match &self.provision {
            Provision::External { .. } => Vec::new(),
            Provision::Private { nodes } => nodes.iter().map(|n| &n.process).collect(),
        }
    }

    /// The names of nodes whose process has ended (killed, crashed).
    pub fn exited(&mut self) -> Vec<String> {
        match &mut self.provision {
            Provision::External { .. } => Vec::new(),
            Provision::Private { nodes } => nodes
                .iter_mut()
                .filter_map(|n| n.process.has_exited().then(|| n.process.name().to_owned()))
                .collect(),
        }
    }

    fn nodes(&mut self, action: &'static str) -> Result<&mut Vec<Node>, StageError> {
        match &mut self.provision {
            Provision::Private { nodes } => Ok(nodes),
            Provision::External { .. } => Err(StageError::External("Redis Cluster", action)),
        }
    }

    /// The cluster as a live node sees it.
    pub async fn states(&self) -> Result<Vec<NodeState>, StageError> {
        let mut last = String::from("no node answers");
        for seed in self.seeds() {
            match command::<String>(&seed, redis::cmd("CLUSTER").arg("NODES")).await {
                Ok(text) => return Ok(parse_nodes(&text)),
                Err(e) => last = format!("{seed}: {e}"),
            }
        }
        Err(request_failed("CLUSTER NODES", last))
    }

    /// Kills one master that has a live replica (SIGKILL, no chance to hand
    /// over), waits until that replica has been promoted and the cluster is
    /// whole again, then starts the killed node again on its port and
    /// folder: it rejoins as the new master's replica. Returns the port of
    /// the master that was killed.
    pub async fn kill_master(&mut self) -> Result<u16, StageError> {
        self.nodes("master-killed")?;
        let states = self.states().await?;
        let victim = states
            .iter()
            .find(|s| {
                s.master
                    && s.has_slots
                    && !s.failed
                    && states
                        .iter()
                        .any(|r| r.follows.as_deref() == Some(&s.id) && !r.failed)
            })
            .cloned()
            .ok_or_else(|| request_failed("killing a master", "no master has a live replica"))?;
        let nodes = self.nodes("master-killed")?;
        let node = nodes
            .iter_mut()
            .find(|n| n.announced() == victim.port)
            .ok_or_else(|| request_failed("killing a master", "its node is not ours"))?;
        node.process.kill().await?;
        // Promotion: another node now serves slots, and none that serves is
        // the dead one (it keeps its id while it is marked failed).
        let promoted = poll_until(SETTLE_TIMEOUT, || async {
            self.states().await.is_ok_and(|states| {
                states
                    .iter()
                    .any(|s| s.id == victim.id && (s.failed || !s.master))
                    && states
                        .iter()
                        .filter(|s| s.master && s.has_slots && !s.failed)
                        .count()
                        == MASTERS
            })
        })
        .await;
        if !promoted {
            return Err(request_failed(
                "killing a master",
                format!(
                    "no replica of the master on port {} was promoted within {} s",
                    victim.port,
                    SETTLE_TIMEOUT.as_secs()
                ),
            ));
        }
        let nodes = self.nodes("master-killed")?;
        if let Some(node) = nodes.iter_mut().find(|n| n.announced() == victim.port) {
            node.process.respawn()?;
        }
        self.settle().await?;
        Ok(victim.port)
    }

    /// A graceful failover: one replica takes over its master's slots
    /// (`CLUSTER FAILOVER`, which waits until the replica has every write
    /// the master took), the master becomes its replica. Returns the port of
    /// the replica promoted.
    pub async fn failover(&mut self) -> Result<u16, StageError> {
        self.nodes("failed over")?;
        let states = self.states().await?;
        let replica = states
            .iter()
            .find(|s| !s.master && !s.failed && s.follows.is_some())
            .cloned()
            .ok_or_else(|| request_failed("a failover", "no live replica"))?;
        command::<String>(
            &node_url(replica.port),
            redis::cmd("CLUSTER").arg("FAILOVER"),
        )
        .await
        .map_err(|e| request_failed("CLUSTER FAILOVER", e))?;
        let promoted = poll_until(SETTLE_TIMEOUT, || async {
            self.states()
                .await
                .is_ok_and(|states| states.iter().any(|s| s.id == replica.id && s.master))
        })
        .await;
        if !promoted {
            return Err(request_failed(
                "CLUSTER FAILOVER",
                format!(
                    "the replica on port {} was not promoted within {} s",
                    replica.port,
                    SETTLE_TIMEOUT.as_secs()
                ),
            ));
        }
        self.settle().await?;
        Ok(replica.port)
    }

    /// Moves `share` (0 < share <= 1) of the slots of the master that
    /// serves the most to the one that serves the fewest, keys and all,
    /// while the cluster serves; waits until every node agrees on the new
    /// owners. Returns what moved.
    pub async fn reshard(&mut self, share: f64) -> Result<Moved, StageError> {
        self.nodes("resharded")?;
        if !(share > 0.0 && share <= 1.0) {
            return Err(request_failed(
                "resharding",
                format!("share {share} is not within (0, 1]"),
            ));
        }
        let states = self.states().await?;
        let mut masters: Vec<&NodeState> = states
            .iter()
            .filter(|s| s.master && s.has_slots && !s.failed)
            .collect();
        masters.sort_by_key(|m| (m.slot_count(), m.port));
        let (Some(target), Some(source)) = (masters.first(), masters.last()) else {
            return Err(request_failed("resharding", "no master serves slots"));
        };
        if source.id == target.id {
            return Err(request_failed(
                "resharding",
                "one master serves every slot: there is none to move them to",
            ));
        }
        let count = slots_to_move(source.slot_count(), share);
        // The highest slots: a contiguous run off the end of the source's ranges.
        let mut slots: Vec<u16> = source.slots.iter().flat_map(|(a, b)| *a..=*b).collect();
        let slots = slots.split_off(slots.len() - count);
        let as_master = |s: &NodeState| Master {
            id: s.id.clone(),
            host: s.host.clone(),
            port: s.port,
        };
        let others: Vec<Master> = masters[1..masters.len() - 1]
            .iter()
            .map(|s| as_master(s))
            .collect();
        let moved = move_slots(&as_master(source), &as_master(target), &others, &slots)
            .await
            .map_err(|e| request_failed("resharding", e))?;
        let (source_id, target_id) = (source.id.clone(), target.id.clone());
        let (first, last) = (slots[0], slots[slots.len() - 1]);
        // Every node (replicas too) must learn the owners before clients
        // that ask any of them are sent the right way.
        let agreed = poll_until(SETTLE_TIMEOUT, || async {
            self.states().await.is_ok_and(|states| {
                states
                    .iter()
                    .any(|s| s.id == target_id && s.serves(first) && s.serves(last))
                    && states
                        .iter()
                        .any(|s| s.id == source_id && !s.serves(first) && !s.serves(last))
            })
        })
        .await;
        if !agreed {
            return Err(request_failed(
                "resharding",
                format!(
                    "the cluster did not show slots {first}-{last} on their new master within {} s",
                    SETTLE_TIMEOUT.as_secs()
                ),
            ));
        }
        self.settle().await?;
        Ok(moved)
    }

    /// Network faults on the proxy of node `node` (1 to [`NODES`], as
    /// `redis-cluster-N`), or of every node when none; every client of
    /// that node goes through it: each instance, the harness, and its
    /// replica's replication. [`NetworkFaults::default`] clears them.
    /// Returns how many proxies were set.
    pub fn set_network(
        &mut self,
        node: Option<usize>,
        faults: &NetworkFaults,
    ) -> Result<usize, StageError> {
        let chosen = self.proxies(node)?;
        for link in &chosen {
            link.set(faults.clone());
        }
        Ok(chosen.len())
    }

    /// Resets (TCP RST) the open connections through those proxies.
    pub fn reset_network(&mut self, node: Option<usize>) -> Result<usize, StageError> {
        let chosen = self.proxies(node)?;
        for link in &chosen {
            link.reset_connections();
        }
        Ok(chosen.len())
    }

    fn proxies(&mut self, node: Option<usize>) -> Result<Vec<&Link>, StageError> {
        let nodes = self.nodes("aimed at by network faults")?;
        if nodes.iter().any(|n| n.proxy.is_none()) {
            return Err(StageError::NoProxy);
        }
        match node {
            None => Ok(nodes.iter().filter_map(|n| n.proxy.as_ref()).collect()),
            Some(number) => nodes
                .get(number.wrapping_sub(1))
                .and_then(|n| n.proxy.as_ref())
                .map(|link| vec![link])
                .ok_or_else(|| {
                    request_failed(
                        "a network fault",
                        format!(
                            "there is no node {number}: the cluster has nodes 1 to {}",
                            nodes.len()
                        ),
                    )
                }),
        }
    }

    /// Forms a fresh private cluster: slots to the masters, every node
    /// introduced to the first, each replica set to follow its master.
    async fn form(&self) -> Result<(), StageError> {
        let Provision::Private { nodes } = &self.provision else {
            return Ok(());
        };
        let log = nodes[0].process.log().to_owned();
        for node in nodes {
            let url = node_url(node.port);
            if !poll_until(SETTLE_TIMEOUT, || async {
                command::<String>(&url, &redis::cmd("PING")).await.is_ok()
            })
            .await
            {
                return Err(StageError::not_ready(
                    node.process.name(),
                    SETTLE_TIMEOUT.as_secs(),
                    node.process.log(),
                ));
            }
        }
        let mut ids = Vec::new();
        for node in nodes {
            let id: String = command(&node_url(node.port), redis::cmd("CLUSTER").arg("MYID"))
                .await
                .map_err(|e| request_failed("CLUSTER MYID", e))?;
            ids.push(id);
        }
        for (index, node) in nodes.iter().take(MASTERS).enumerate() {
            let (first, last) = slot_range(index);
            command::<String>(
                &node_url(node.port),
                redis::cmd("CLUSTER")
                    .arg("ADDSLOTSRANGE")
                    .arg(first)
                    .arg(last),
            )
            .await
            .map_err(|e| request_failed("CLUSTER ADDSLOTSRANGE", e))?;
        }
        let (first_port, first_bus) = (nodes[0].port, nodes[0].bus);
        for node in &nodes[1..] {
            command::<String>(
                &node_url(node.port),
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(first_port)
                    .arg(first_bus),
            )
            .await
            .map_err(|e| request_failed("CLUSTER MEET", e))?;
        }
        // A replica can follow a master only once it knows it (gossip takes a moment).
        for (offset, node) in nodes[MASTERS..].iter().enumerate() {
            let url = node_url(node.port);
            let master = &ids[offset];
            let followed = poll_until(SETTLE_TIMEOUT, || async {
                command::<String>(&url, redis::cmd("CLUSTER").arg("REPLICATE").arg(master))
                    .await
                    .is_ok()
            })
            .await;
            if !followed {
                return Err(StageError::not_ready(
                    format!("{} (following its master)", node.process.name()),
                    SETTLE_TIMEOUT.as_secs(),
                    &log,
                ));
            }
        }
        self.settle().await
    }

    /// Waits until every node says `cluster_state:ok` and knows every
    /// other, and every replica is in sync with its master.
    pub async fn settle(&self) -> Result<(), StageError> {
        let Provision::Private { nodes } = &self.provision else {
            return Ok(());
        };
        let urls: Vec<String> = nodes.iter().map(|n| node_url(n.port)).collect();
        let whole = poll_until(SETTLE_TIMEOUT, || async {
            for url in &urls {
                let Ok(info) = command::<String>(url, redis::cmd("CLUSTER").arg("INFO")).await
                else {
                    return false;
                };
                let known = field(&info, "cluster_known_nodes").and_then(|n| n.parse().ok());
                if field(&info, "cluster_state") != Some("ok")
                    || known != Some(urls.len())
                    || field(&info, "cluster_slots_ok") != Some("16384")
                {
                    return false;
                }
                let Ok(replication) =
                    command::<String>(url, redis::cmd("INFO").arg("replication")).await
                else {
                    return false;
                };
                if field(&replication, "role") == Some("slave")
                    && field(&replication, "master_link_status") != Some("up")
                {
                    return false;
                }
            }
            true
        })
        .await;
        if whole {
            return Ok(());
        }
        Err(StageError::not_ready(
            "redis-cluster (every node ok, every replica in sync)",
            SETTLE_TIMEOUT.as_secs(),
            nodes[0].process.log(),
        ))
    }
}

fn node_name(index: usize) -> String {
    format!("redis-cluster-{}", index + 1)
}

/// How one node starts: cluster mode, its bus port, its folder, nothing
/// persisted; announcing `announce` (its proxy's port) as its own when given.
fn node_spec(
    program: &Path,
    run_dir: &Path,
    index: usize,
    port: u16,
    bus: u16,
    announce: Option<u16>,
) -> Result<ChildSpec, StageError> {
    let name = node_name(index);
    let dir: PathBuf = run_dir.join("redis-cluster").join(&name);
    std::fs::create_dir_all(&dir).map_err(StageError::io(format!("creating {}", dir.display())))?;
    let announced: Vec<String> = match announce {
        // The bus port is not announced apart, so it stays the direct one.
        Some(proxy) => vec![
            "--cluster-announce-ip".into(),
            "127.0.0.1".into(),
            "--cluster-announce-port".into(),
            proxy.to_string(),
        ],
        None => Vec::new(),
    };
    Ok(ChildSpec::new(&name, program, run_dir)
        .args(announced)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus.to_string(),
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &NODE_TIMEOUT_MS.to_string(),
            // A replica may always take over, however long it was cut off:
            // a run measures availability, and Postgres holds the truth.
            "--cluster-replica-validity-factor",
            "0",
            // Slots of a dead master fail alone, not the whole cluster.
            "--cluster-require-full-coverage",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(&dir))
}

fn distinct_free_port(taken: &mut HashSet<u16>) -> Result<u16, StageError> {
    loop {
        let port = free_port().map_err(StageError::io("finding a free port"))?;
        if taken.insert(port) {
            return Ok(port);
        }
    }
}

fn node_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// The first and last slot of master `index`.
fn slot_range(index: usize) -> (u16, u16) {
    let share = |i: usize| (usize::from(SLOTS) * i / MASTERS) as u16;
    (share(index), share(index + 1) - 1)
}

/// A `name:value` line of an INFO-style reply.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// `CLUSTER NODES`: `id ip:port@bus flags master ping pong epoch link slots...`.
pub fn parse_nodes(text: &str) -> Vec<NodeState> {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [id, address, flags, master, _, _, _, _, slots @ ..] = words.as_slice() else {
                return None;
            };
            let (host, port) = address.split(['@', ',']).next()?.rsplit_once(':')?;
            let port = port.parse().ok()?;
            let flags: Vec<&str> = flags.split(',').collect();
            Some(NodeState {
                id: (*id).to_owned(),
                host: host.to_owned(),
                port,
                master: flags.contains(&"master"),
                failed: flags.contains(&"fail"),
                follows: (*master != "-").then(|| (*master).to_owned()),
                has_slots: !slots.is_empty(),
                slots: slots.iter().filter_map(|s| parse_slots(s)).collect(),
            })
        })
        .collect()
}

/// `5461-10922` or `42`; none for `[42->-id]` (a slot being moved).
fn parse_slots(text: &str) -> Option<(u16, u16)> {
    if text.starts_with('[') {
        return None;
    }
    match text.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => {
            let slot = text.parse().ok()?;
            Some((slot, slot))
        }
    }
}

async fn cluster_state(url: &str) -> Result<String, String> {
    let info: String = command(url, redis::cmd("CLUSTER").arg("INFO")).await?;
    Ok(field(&info, "cluster_state")
        .unwrap_or("unknown")
        .to_owned())
}

/// One command to one node on a new connection, all within two seconds.
async fn command<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> Result<T, String> {
    let work = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        cmd.query_async::<T>(&mut connection)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .map_err(|_| "timed out".to_owned())?
}

fn request_failed(what: &str, reason: impl Into<String>) -> StageError {
    StageError::Request {
        what: format!("redis cluster: {what}"),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_existing_cluster_is_refused_for_network_faults_before_it_is_asked() {
        let dir = tempfile::tempdir().expect("dir");
        // Nothing listens on port 1: the refusal comes before any connection.
        let refused =
            RedisCluster::provide_from(Some("redis://127.0.0.1:1".into()), dir.path(), true)
                .await
                .err()
                .expect("refused")
                .to_string();
        assert!(
            refused.contains(URLS_ENV) && refused.contains("private"),
            "{refused}"
        );
    }

    #[test]
    fn slots_are_split_evenly_and_wholly() {
        assert_eq!(slot_range(0), (0, 5460));
        assert_eq!(slot_range(1), (5461, 10921));
        assert_eq!(slot_range(2), (10922, 16383));
    }

    #[test]
    fn cluster_nodes_are_parsed() {
        let text = "\
07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected
e7d1 127.0.0.1:30001@31001,host myself,master - 0 0 1 connected 0-5460
292f 127.0.0.1:30002@31002 master,fail - 1426238316232 1426238315228 2 disconnected 5461-10922
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].follows.as_deref(), Some("e7d1"));
        assert!(!nodes[0].master && !nodes[0].has_slots);
        assert_eq!(
            (nodes[1].host.as_str(), nodes[1].port),
            ("127.0.0.1", 30001)
        );
        assert!(nodes[1].master && nodes[1].has_slots && !nodes[1].failed);
        assert!(nodes[2].failed && nodes[2].master);
        assert_eq!(
            field(
                "cluster_state:ok\r\ncluster_known_nodes:6\r\n",
                "cluster_state"
            ),
            Some("ok")
        );
    }
}
