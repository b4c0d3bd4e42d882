//! Where the tests find the real Redis and Postgres, and names that keep tests apart on them.
#![allow(dead_code)] // each test binary uses a different subset

/// `DATABASE_URL`, or the local Postgres these machines run.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `REDIS_URL`, or the local Redis these machines run.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A name no other test (or test process) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A Redis + Postgres tier as one app instance sees it: namespace `ns`
/// (shared by the instances of one test), this instance's name, Redis at
/// `redis` and Postgres at `database`.
pub fn tiered(
    ns: &str,
    instance: &str,
    redis: &str,
    database: &str,
) -> app::store::tiered::TieredStore {
    use std::sync::Arc;
    app::store::tiered::TieredStore::connect(app::store::tiered::TierSettings {
        redis: Arc::new(app::store::redis::RedisStore::link(redis, None).expect("redis url")),
        redis_prefix: &format!("{ns}:"),
        database_url: database,
        namespace: ns,
        instance,
        breaker: Default::default(),
        coherence: Default::default(),
    })
    .expect("tiered store")
}

/// A loopback Redis URL nothing listens on.
pub fn closed_redis() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("redis://{}", listener.local_addr().expect("addr"))
}

/// A TCP proxy in front of a server that a test can cut (every connection
/// dropped, new ones refused) and restore: a network partition of one client.
pub struct Cuttable {
    pub addr: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Cuttable {
    /// Starts proxying loopback connections to `upstream` (`host:port`).
    pub async fn to(upstream: &str) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let generation = std::sync::Arc::new(tokio::sync::watch::channel(0u64).0);
        let upstream = upstream.to_owned();
        let task = {
            let cut = cut.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection closed
                    }
                    let upstream = upstream.clone();
                    let mut cuts = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cuts.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            cut,
            generation,
            task,
        }
    }

    /// Drops every open connection and refuses new ones until [`Cuttable::restore`].
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` (`scheme://[user@]host:port[/path]`) with its host and port replaced by `addr`.
pub fn via(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"));
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    format!("{scheme}://{}{addr}{path}", user.unwrap_or_default())
}

/// `host:port` of a URL.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, hp)| hp)
        .to_owned()
}

/// Kills the child when the test ends, however it ends.
pub struct Guard(pub std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (at the time of asking), never one
/// this test process was given before: the kernel offers a released port
/// again often enough that two servers of one test would get the same one.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if HANDED_OUT.lock().expect("ports").insert(port) {
            return port;
        }
    }
}

/// Waits (at most 10 s) until something listens on the loopback `port`.
pub fn wait_for_port(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A private redis-server on `port` that keeps nothing on disk, with
/// `extra` arguments; up when this returns.
pub fn redis_server(port: u16, dir: &std::path::Path, extra: &[&str]) -> Guard {
    let child = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed (apt-get install redis-server)");
    wait_for_port(port);
    Guard(child)
}
