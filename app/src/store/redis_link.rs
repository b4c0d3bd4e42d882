//! One multiplexed connection to a Redis server (or a Redis Cluster, see
//! [`super::redis_target`]), made again after it breaks, that knows which
//! server process answers it.
//!
//! Every reply comes with the `run_id` of the server that gave it (read with
//! `INFO server` when the connection was made; it changes whenever a server
//! process starts, so also after a restart from an old snapshot or a failover
//! to a replica). A TCP connection cannot outlive its server, so a reply on
//! a connection is from the process the connection was made to: a cache tier
//! can tell copies kept by a server it knows from those of one that came back
//! with other contents ([`super::tiered`]).
//!
//! redis-rs's `ConnectionManager` reconnects out of sight, which is exactly
//! what must not happen here, so this is a small manager of its own: a
//! connection is dropped on the first error that says the connection (not
//! the command) failed, and the next caller connects anew.
//!
//! Beside a single server's connection the link keeps a direct one to the
//! same process, which an idle instance's requests take
//! ([`super::redis_direct`]: a shorter round trip on a quiet machine).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};

use super::redis_direct::{Direct, DirectSlot};
pub use super::redis_target::Connection;
use super::redis_target::{Target, identify};

/// A live connection and the server process behind it.
#[derive(Clone)]
struct Live {
    connection: Connection,
    server: Arc<str>,
    broken: Arc<AtomicBool>,
}

/// Connects to one Redis URL on demand; see the module doc.
pub struct RedisLink {
    target: Target,
    config: AsyncConnectionConfig,
    timeout: Duration,
    live: Mutex<Option<Live>>,
    /// One connect at a time: callers that find no connection wait for it.
    connecting: tokio::sync::Mutex<()>,
}

impl RedisLink {
    /// A link for `client`; every command and the connect itself are bounded by `timeout`.
    pub fn new(client: redis::Client, timeout: Duration) -> Self {
        Self::to(Target::Server(client), timeout)
    }

    /// A link to the Redis Cluster reached through `seeds`.
    pub fn cluster(seeds: &[String], timeout: Duration) -> RedisResult<Self> {
        Ok(Self::to(Target::cluster(seeds, timeout)?, timeout))
    }

    fn to(target: Target, timeout: Duration) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Self {
            target,
            config,
            timeout,
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether this links to a Redis Cluster: a reply then names its node
    /// only when asked ([`super::redis_target::RUN_ID_SCRIPT`]).
    pub fn is_cluster(&self) -> bool {
        self.target.is_cluster()
    }

    /// Whether it answers (PING); on a cluster, also names its masters anew
    /// (a failover changes them behind the same connection).
    pub async fn check(&self) -> RedisResult<()> {
        let cluster = self.is_cluster();
        let (name, _) = self
            .run(|mut c| async move {
                match cluster {
                    true => identify(&mut c).await.map(Some),
                    false => redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .map(|_| None),
                }
            })
            .await?;
        if let (Some(name), Some(live)) = (name, self.live.lock().as_mut()) {
            live.server = name.into();
        }
        Ok(())
    }

    /// The `run_id` of the server the current connection goes to (on a
    /// cluster, its masters'), if one is up.
    pub fn server(&self) -> Option<Arc<str>> {
        self.live
            .lock()
            .as_ref()
            .filter(|live| !live.broken.load(Ordering::Relaxed))
            .map(|live| live.server.clone())
    }

    /// Runs `work` on the connection (made first if there is none) and
    /// returns its result with the `run_id` of the server that answered.
    pub async fn run<T, F, Fut>(&self, work: F) -> RedisResult<(T, Arc<str>)>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let live = self.live().await?;
        match work(live.connection.clone()).await {
            Ok(value) => Ok((value, live.server)),
            Err(e) => {
                if connection_failed(&e) {
                    live.broken.store(true, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    async fn live(&self) -> RedisResult<Live> {
        if let Some(live) = self.usable() {
            return Ok(live);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(live) = self.usable() {
            return Ok(live);
        }
        let (connection, server) = self.target.connect(&self.config).await?;
        let server: Arc<str> = server.into();
        let connection = match (connection, &self.target) {
            (Connection::Server(shared), Target::Server(client)) => {
                let info = client.get_connection_info();
                match DirectSlot::new(info, server.clone(), self.timeout) {
                    Some(slot) => Connection::Direct(Direct { slot, shared }),
                    None => Connection::Server(shared),
                }
            }
            (connection, _) => connection,
        };
        let live = Live {
            connection,
            server,
            broken: Arc::default(),
        };
        *self.live.lock() = Some(live.clone());
        Ok(live)
    }

    /// Requests the current connection's direct one has answered (0 if
    /// there is none: a cluster, TLS, a Unix socket, RESP3).
    pub fn direct_served(&self) -> u64 {
        match self.live.lock().as_ref().map(|live| &live.connection) {
            Some(Connection::Direct(direct)) => direct.slot.served(),
            _ => 0,
        }
    }

    fn usable(&self) -> Option<Live> {
        self.live
            .lock()
            .as_ref()
            .filter(|live| !live.broken.load(Ordering::Relaxed))
            .cloned()
    }
}

/// Whether an error means the connection, rather than the command, failed.
/// A timeout counts: a server that stopped answering may be another one by
/// the time it answers again on a new connection, and must be identified again.
fn connection_failed(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}
