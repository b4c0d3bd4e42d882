//! One multiplexed connection to a Redis server, made again after it breaks,
//! that knows which server process answers it.
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

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};

/// A live connection and the server process behind it.
#[derive(Clone)]
struct Live {
    connection: MultiplexedConnection,
    server: Arc<str>,
    broken: Arc<AtomicBool>,
}

/// Connects to one Redis URL on demand; see the module doc.
pub struct RedisLink {
    client: redis::Client,
    config: AsyncConnectionConfig,
    live: Mutex<Option<Live>>,
    /// One connect at a time: callers that find no connection wait for it.
    connecting: tokio::sync::Mutex<()>,
}

impl RedisLink {
    /// A link for `client`; every command and the connect itself are bounded by `timeout`.
    pub fn new(client: redis::Client, timeout: Duration) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Self {
            client,
            config,
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The `run_id` of the server the current connection goes to, if one is up.
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
        F: FnOnce(MultiplexedConnection) -> Fut,
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
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await?;
        let server = run_id(&info).ok_or_else(|| {
            RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "INFO server has no run_id",
            ))
        })?;
        let live = Live {
            connection,
            server: server.into(),
            broken: Arc::default(),
        };
        *self.live.lock() = Some(live.clone());
        Ok(live)
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

/// The `run_id` line of `INFO server`.
fn run_id(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(str::trim)
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_id_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:3f1e9c\r\ntcp_port:6379\r\n";
        assert_eq!(run_id(info), Some("3f1e9c"));
        assert_eq!(run_id("# Server\r\nredis_version:7.0.15\r\n"), None);
        assert_eq!(run_id("run_id:\r\n"), None);
    }
}
