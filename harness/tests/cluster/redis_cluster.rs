//! A private Redis Cluster against real `redis-server` processes: it forms
//! (three masters with every slot, three replicas in sync), takes its faults,
//! and goes away with nothing left (processes, ports, folders), also when the
//! harness that started it is SIGKILLed. Started proxied, every address it
//! hands out is a node's fault proxy, and a network fault on one node's
//! proxy cuts off that node's slots only.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::model::network::NetworkFaults;
use harness::run_folder::{RunFolder, sweep_abandoned};
use harness::stage::process::exited;
use harness::stage::services::redis_cluster::{MASTERS, RedisCluster};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Set in the child this file's SIGKILL test starts (this same test binary).
const CHILD_ENV: &str = "REDIS_CLUSTER_TEST_CHILD";

/// Nothing listens on `port`. (Whether it can be bound again is no test:
/// under parallel tests another process's outgoing connection may hold it.)
fn port_free(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

fn gone_within(pids: &[u32], ports: &[u16], within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let alive_pids: Vec<_> = pids.iter().filter(|p| !exited(**p)).collect();
        let taken: Vec<_> = ports.iter().filter(|p| !port_free(**p)).collect();
        if alive_pids.is_empty() && taken.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("alive: {alive_pids:?}, ports taken: {taken:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ports_of(cluster: &RedisCluster) -> Vec<u16> {
    cluster
        .seeds()
        .iter()
        .map(|url| url.rsplit(':').next().expect("port").parse().expect("port"))
        .collect()
}

/// A key in each master's slots is written and read back through the
/// cluster client (redirections followed), so every master serves.
async fn write_and_read_everywhere(cluster: &RedisCluster, value: &str) {
    let client = redis::cluster::ClusterClient::new(cluster.seeds()).expect("client");
    let mut connection = client.get_async_connection().await.expect("connects");
    for key in ["{a}k", "{b}k", "{c}k", "{d}k", "{e}k"] {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut connection)
            .await
            .expect("set");
        let read: String = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("get");
        assert_eq!(read, value);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_cluster_forms_takes_its_faults_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cluster = RedisCluster::start_private(dir.path())
        .await
        .expect("cluster up");
    let states = cluster.states().await.expect("nodes");
    assert_eq!(states.len(), MASTERS * 2);
    assert_eq!(states.iter().filter(|s| s.master && s.has_slots).count(), 3);
    assert_eq!(
        states
            .iter()
            .filter(|s| !s.master && s.follows.is_some())
            .count(),
        3
    );
    write_and_read_everywhere(&cluster, "before").await;
    let unproxied = cluster
        .set_network(Some(1), &NetworkFaults::default())
        .expect_err("no proxy to set")
        .to_string();
    assert!(unproxied.contains("proxy"), "{unproxied}");

    let killed = cluster
        .kill_master()
        .await
        .expect("master killed, replica promoted");
    let states = cluster.states().await.expect("nodes");
    let back = states
        .iter()
        .find(|s| s.port == killed)
        .expect("killed node rejoined");
    assert!(
        !back.master && !back.failed,
        "it came back as a replica: {back:?}"
    );
    write_and_read_everywhere(&cluster, "after-kill").await;

    let promoted = cluster.failover().await.expect("graceful failover");
    let states = cluster.states().await.expect("nodes");
    assert!(states.iter().any(|s| s.port == promoted && s.master));
    write_and_read_everywhere(&cluster, "after-failover").await;

    let pids: Vec<u32> = cluster.processes().iter().map(|p| p.pid()).collect();
    let ports = ports_of(&cluster);
    assert_eq!(pids.len(), 6);
    assert!(
        dir.path()
            .join("redis-cluster/redis-cluster-1/nodes.conf")
            .is_file()
    );
    drop(cluster);
    gone_within(&pids, &ports, Duration::from_secs(10)).expect("every node gone with it");
}

/// One command to the node (or proxy) on `port`.
async fn on_port<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("answers");
    cmd.query_async(&mut connection).await.expect("command")
}

fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("{name} in {info}"))
}

/// Started proxied, the cluster hands out each node's proxy as its address
/// (`CLUSTER NODES`, a replica's master), while each node listens on a
/// port of its own; a blackhole on node 1's proxy stops the commands of
/// node 1's slots and no other's, until it is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_cluster_sends_every_client_through_a_node_proxy_a_fault_can_cut() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cluster = RedisCluster::start_private_proxied(dir.path())
        .await
        .expect("cluster up");
    let announced = ports_of(&cluster);
    let mut listed: Vec<u16> = cluster
        .states()
        .await
        .expect("nodes")
        .iter()
        .map(|s| s.port)
        .collect();
    listed.sort_unstable();
    let mut seeds = announced.clone();
    seeds.sort_unstable();
    assert_eq!(
        listed, seeds,
        "the cluster names its nodes by their proxies"
    );
    for port in &announced {
        let info: String = on_port(*port, redis::cmd("INFO").arg("server")).await;
        assert_ne!(
            info_field(&info, "tcp_port"),
            port.to_string(),
            "the node behind {port} listens elsewhere"
        );
        let replication: String = on_port(*port, redis::cmd("INFO").arg("replication")).await;
        if info_field(&replication, "role") == "slave" {
            let master: u16 = info_field(&replication, "master_port")
                .parse()
                .expect("port");
            assert!(
                announced.contains(&master),
                "a replica follows its master through the master's proxy: {master} of {announced:?}"
            );
        }
    }
    write_and_read_everywhere(&cluster, "before").await;

    // Node 1 serves slots 0-5460 as formed: one key there, one elsewhere.
    let mut on_node_1 = None;
    let mut elsewhere = None;
    for n in 0..100 {
        let key = format!("{{k{n}}}v");
        let slot: u16 = on_port(announced[0], redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key)).await;
        match slot <= 5460 {
            true => on_node_1 = on_node_1.or(Some(key)),
            false => elsewhere = elsewhere.or(Some(key)),
        }
    }
    let (on_node_1, elsewhere) = (on_node_1.expect("a key"), elsewhere.expect("a key"));
    let client = redis::cluster::ClusterClient::builder(cluster.seeds())
        .connection_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .retries(1)
        .build()
        .expect("client");
    let mut connection = client.get_async_connection().await.expect("connects");
    for key in [&on_node_1, &elsewhere] {
        redis::cmd("SET")
            .arg(key)
            .arg("x")
            .query_async::<()>(&mut connection)
            .await
            .expect("set");
    }
    let blackhole = NetworkFaults {
        blackhole: true,
        ..NetworkFaults::default()
    };
    assert_eq!(cluster.set_network(Some(1), &blackhole).expect("set"), 1);
    let get = |key: String| {
        let mut connection = connection.clone();
        async move {
            redis::cmd("GET")
                .arg(&key)
                .query_async::<String>(&mut connection)
                .await
        }
    };
    let cut = get(on_node_1.clone()).await;
    assert!(cut.is_err(), "node 1's slots are cut off: {cut:?}");
    assert_eq!(
        get(elsewhere.clone()).await.expect("another node answers"),
        "x"
    );
    cluster
        .set_network(Some(1), &NetworkFaults::default())
        .expect("cleared");
    // What the blackhole swallowed never gets an answer, so the old
    // connection's replies would pair with the wrong requests: a client
    // connects anew after a timeout (as the app's Redis link does).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = async {
            let mut connection = client.get_async_connection().await?;
            redis::cmd("GET")
                .arg(&on_node_1)
                .query_async::<String>(&mut connection)
                .await
        };
        match fresh.await {
            Ok(value) => {
                assert_eq!(value, "x");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "node 1 back once cleared: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let no_node = cluster
        .set_network(Some(7), &blackhole)
        .expect_err("no node 7")
        .to_string();
    assert!(no_node.contains("no node 7"), "{no_node}");
}

async fn dbsize(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("node answers");
    redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .expect("dbsize")
}

/// A share of one master's slots moves to another while a reader reads
/// every key through the cluster client: no read fails or comes back wrong,
/// during or after; the slots are the target's in every node's view, and
/// the keys left the source for the target (their `DBSIZE`s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_moves_slots_and_their_keys_and_every_key_stays_readable() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let dir = tempfile::tempdir().expect("dir");
    let mut cluster = RedisCluster::start_private(dir.path())
        .await
        .expect("cluster up");
    let client = redis::cluster::ClusterClient::new(cluster.seeds()).expect("client");
    let mut connection = client.get_async_connection().await.expect("connects");
    let keys: Vec<String> = (0..2000).map(|i| format!("{{k{i}}}v")).collect();
    for key in &keys {
        redis::cmd("SET")
            .arg(key)
            .arg(format!("value of {key}"))
            .query_async::<()>(&mut connection)
            .await
            .expect("set");
    }
    let before = cluster.states().await.expect("nodes");
    let masters = |states: &[harness::stage::services::redis_cluster::NodeState]| {
        let mut m: Vec<_> = states
            .iter()
            .filter(|s| s.master && s.has_slots)
            .cloned()
            .collect();
        m.sort_by_key(|s| (s.slot_count(), s.port));
        m
    };
    let (target, source) = {
        let m = masters(&before);
        (m[0].clone(), m[m.len() - 1].clone())
    };
    let (source_keys, target_keys) = (dbsize(source.port).await, dbsize(target.port).await);

    let stop = Arc::new(AtomicBool::new(false));
    let (reads, passes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (stop, reads, passes, keys) =
            (stop.clone(), reads.clone(), passes.clone(), keys.clone());
        let mut connection = client.get_async_connection().await.expect("connects");
        tokio::spawn(async move {
            let mut wrong = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for key in &keys {
                    let read: Result<Option<String>, _> = redis::cmd("GET")
                        .arg(key)
                        .query_async(&mut connection)
                        .await;
                    reads.fetch_add(1, Ordering::SeqCst);
                    match read {
                        Ok(Some(value)) if value == format!("value of {key}") => {}
                        other => wrong.push(format!("{key}: {other:?}")),
                    }
                }
                passes.fetch_add(1, Ordering::SeqCst);
            }
            wrong
        })
    };
    // The reader is under way before the move starts.
    while reads.load(Ordering::SeqCst) < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let moved = cluster.reshard(0.25).await.expect("resharded");
    let took = started.elapsed();
    let reads_during = reads.load(Ordering::SeqCst);
    // At least one whole pass over every key after the move.
    let passes_then = passes.load(Ordering::SeqCst);
    while passes.load(Ordering::SeqCst) < passes_then + 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let wrong = reader.await.expect("reader");
    assert!(
        wrong.is_empty(),
        "{} reads failed or wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    println!(
        "reshard: {} slots and {} keys moved in {:.2} s; {reads_during} reads meanwhile, none failed",
        moved.slots,
        moved.keys,
        took.as_secs_f64()
    );

    // A quarter of the fullest master's 5462 slots (16384 split in three), rounded.
    assert_eq!(source.slot_count(), 5462);
    assert_eq!(moved.slots, 1366);
    assert!(moved.keys > 0, "the moved slots held keys");
    let after = cluster.states().await.expect("nodes");
    let find = |id: &str| after.iter().find(|s| s.id == id).expect("node").clone();
    assert_eq!(
        find(&source.id).slot_count(),
        source.slot_count() - moved.slots
    );
    assert_eq!(
        find(&target.id).slot_count(),
        target.slot_count() + moved.slots
    );
    // Every node's own view (replicas too) has the new owner.
    for seed in cluster.seeds() {
        let client = redis::Client::open(seed.as_str()).expect("url");
        let mut node = client
            .get_multiplexed_async_connection()
            .await
            .expect("node");
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut node)
            .await
            .expect("nodes");
        let view = harness::stage::services::redis_cluster::parse_nodes(&text);
        let owner = view
            .iter()
            .find(|s| s.id == target.id)
            .expect("target known");
        assert_eq!(
            owner.slot_count(),
            target.slot_count() + moved.slots,
            "{seed}"
        );
    }
    assert_eq!(dbsize(source.port).await, source_keys - moved.keys as u64);
    assert_eq!(dbsize(target.port).await, target_keys + moved.keys as u64);
    write_and_read_everywhere(&cluster, "after-reshard").await;

    let bad = cluster.reshard(0.0).await.expect_err("a share of nothing");
    assert!(bad.to_string().contains("not within (0, 1]"), "{bad}");
}

/// The child: a cluster in a temporary run folder; prints its pids, ports
/// and folder, then waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_holding_a_cluster() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let folder = RunFolder::new(None).expect("run folder");
    let cluster = RedisCluster::start_private(folder.path())
        .await
        .expect("cluster up");
    for process in cluster.processes() {
        println!("pid {}", process.pid());
    }
    for port in ports_of(&cluster) {
        println!("port {port}");
    }
    println!("folder {}", folder.path().display());
    println!("ready");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// The name the test binary knows a test of this module by: its module path
/// without the crate (`redis_cluster::NAME`), so `--exact` still finds it
/// wherever this module sits.
fn sibling_test(name: &str) -> String {
    let path = module_path!();
    let module = path
        .split_once("::")
        .map_or(path, |(_crate, module)| module);
    format!("{module}::{name}")
}

#[test]
fn sigkill_of_the_harness_leaves_no_node_port_or_folder() {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            &sibling_test("child_holding_a_cluster"),
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let (mut pids, mut ports, mut folder) = (Vec::new(), Vec::new(), String::new());
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        match line.split_once(' ') {
            Some(("pid", pid)) => pids.push(pid.parse::<u32>().expect("pid")),
            Some(("port", port)) => ports.push(port.parse::<u16>().expect("port")),
            Some(("folder", path)) => folder = path.to_owned(),
            _ if line == "ready" => break,
            _ => {}
        }
    }
    assert_eq!((pids.len(), ports.len()), (6, 6), "the child's cluster");
    assert!(Path::new(&folder).join("redis-cluster").is_dir());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill the child");
    child.wait().expect("reaped");
    gone_within(&pids, &ports, Duration::from_secs(10)).expect("nodes die with their harness");
    // The folder (each node's nodes.conf) goes with the next harness's sweep.
    sweep_abandoned(&std::env::temp_dir());
    assert!(!Path::new(&folder).exists(), "swept: {folder}");
}
