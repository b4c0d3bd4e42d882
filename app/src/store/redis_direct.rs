//! A second, unshared connection to the same Redis server process as a
//! link's multiplexed one, written and read by the calling task itself.
//!
//! Why: on a multi-threaded runtime most of a Redis round trip on a quiet
//! machine is not Redis but hand-offs. A multiplexed connection passes each
//! request to its connection task and the reply back through a channel: two
//! more task wake-ups. Measured on the 2-core machine this project runs on
//! (`profile_latency`, an instance with and one without it in the same
//! runs), an idle instance's `/profile` is 6-22 us faster with it, 0.09-0.25
//! of a Redis round trip (`docs/benchmarks.md`). Under load the
//! multiplexed connection wins instead (it coalesces concurrent callers'
//! requests into one write and their replies into one read), so a request
//! goes direct only when it is the link's only one in flight; any other
//! goes to the multiplexed connection: an idle instance gets the short
//! path, a busy one the batching.
//!
//! It must never answer for another server process than the one the link
//! names (the cache tier trusts copies by `run_id`, see
//! [`super::redis_link`]): it is made in the background after the link's
//! connection, asks `INFO server` on itself, and is kept only if the
//! `run_id` is the link's. A TCP connection cannot outlive its server, so
//! from then on its replies are that process's.
//!
//! It is dropped, never reused, after any error, a timeout, or a caller
//! that gave up mid-exchange (its future dropped): a reply left unread
//! would pair with the next request. One the server closed while it sat
//! idle (an idle-client `timeout`: it may idle for long while the instance
//! is busy) is found before it is lent, and the request goes through the
//! multiplexed connection instead of failing. A new one is made on a later call
//! (at most one attempt a second after a failed one). Only plain TCP with
//! RESP2 is served this way; TLS, a Unix socket or RESP3 leave the
//! multiplexed connection serving alone.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, Pipeline, ProtocolVersion, RedisError, RedisFuture,
    RedisResult, Value, ValueCodec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::redis_run_id::run_id;

/// Free buffer space a read may fill.
const READ_ROOM: usize = 16 * 1024;

/// How long after a failed attempt to make the connection the next may start.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A TCP connection speaking RESP2, one request at a time.
struct Plain {
    stream: TcpStream,
    buffer: BytesMut,
    codec: ValueCodec,
}

impl Plain {
    /// Connected, authenticated and on the URL's database, as redis-rs
    /// would make it.
    async fn connect(info: &ConnectionInfo) -> RedisResult<Self> {
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return Err(io::Error::other("a direct connection is plain TCP only").into());
        };
        let stream = TcpStream::connect((host.as_str(), *port)).await?;
        stream.set_nodelay(true)?;
        let mut plain = Self {
            stream,
            buffer: BytesMut::with_capacity(4096),
            codec: ValueCodec::default(),
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = settings.username() {
                auth.arg(username);
            }
            auth.arg(password);
            plain.command(&auth).await?;
        }
        if settings.db() != 0 {
            plain
                .command(redis::cmd("SELECT").arg(settings.db()))
                .await?;
        }
        Ok(plain)
    }

    /// The `run_id` of the server process at the other end.
    async fn server(&mut self) -> RedisResult<String> {
        let info: String =
            redis::from_redis_value(self.command(redis::cmd("INFO").arg("server")).await?)?;
        run_id(&info)
            .map(str::to_owned)
            .ok_or_else(|| io::Error::other("INFO server has no run_id").into())
    }

    async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let mut replies = self.exchange(&cmd.get_packed_command(), 1).await?;
        replies.pop().unwrap_or(Value::Nil).extract_error()
    }

    /// Whether the server closed this connection while it sat idle (its
    /// idle-client `timeout`, a restart): an idle connection has nothing to
    /// read, so anything readable, the end of the stream included, means it
    /// is done. A read only when the socket was last seen readable: after
    /// a whole exchange, one `recv` that finds nothing.
    fn closed_while_idle(&self) -> bool {
        let mut byte = [0u8; 1];
        !matches!(self.stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes `request` and reads `replies` replies (error replies among
    /// them as values, as a multiplexed connection gives them).
    async fn exchange(&mut self, request: &[u8], replies: usize) -> RedisResult<Vec<Value>> {
        self.stream.write_all(request).await?;
        let mut values = Vec::with_capacity(replies);
        while values.len() < replies {
            if let Some(value) = self.codec.decode(&mut self.buffer)? {
                values.push(value);
            } else {
                // Room for a whole reply (a session's copies are a few KB) in
                // one read; without it `read_buf` reads 64 bytes a call.
                self.buffer.reserve(READ_ROOM);
                if self.stream.read_buf(&mut self.buffer).await? == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                }
            }
        }
        Ok(values)
    }
}

enum State {
    Idle(Box<Plain>),
    /// Lent to a caller.
    Busy,
    /// Being made, in the background.
    Connecting,
    /// None; a call may start making one once `retry_at` has passed.
    Gone {
        retry_at: Instant,
    },
}

/// The direct connection of one multiplexed connection, lent to one caller at a time.
pub struct DirectSlot {
    state: Mutex<State>,
    info: ConnectionInfo,
    /// The `run_id` the link's connection reaches: the only one this may.
    server: Arc<str>,
    timeout: Duration,
    served: AtomicU64,
    /// Requests in flight on the link, whichever way they went.
    in_flight: AtomicUsize,
}

impl DirectSlot {
    /// A slot for the server `info` reaches, named `server`; `None` when
    /// `info` is not plain TCP with RESP2 (see the module doc).
    pub fn new(info: &ConnectionInfo, server: Arc<str>, timeout: Duration) -> Option<Arc<Self>> {
        let plain_tcp = matches!(info.addr(), ConnectionAddr::Tcp(..));
        let resp2 = info.redis_settings().protocol() == ProtocolVersion::RESP2;
        (plain_tcp && resp2).then(|| {
            Arc::new(Self {
                state: Mutex::new(State::Gone {
                    retry_at: Instant::now(),
                }),
                info: info.clone(),
                server,
                timeout,
                served: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
            })
        })
    }

    /// Requests this slot's connection has answered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard drops; with the
    /// connection lent if the request is the only one and the connection
    /// idle. Without a connection, starts making one (in the background:
    /// this request goes on without it). With `may_lend` false (a
    /// transaction) it is only counted.
    fn enter(self: &Arc<Self>, may_lend: bool) -> (InFlight, Option<Lease>) {
        let alone = self.in_flight.fetch_add(1, Ordering::Relaxed) == 0;
        let in_flight = InFlight(self.clone());
        (
            in_flight,
            (alone && may_lend).then(|| self.lend()).flatten(),
        )
    }

    fn lend(self: &Arc<Self>) -> Option<Lease> {
        let mut state = self.state.lock();
        match std::mem::replace(&mut *state, State::Busy) {
            State::Idle(plain) if !plain.closed_while_idle() => {
                return Some(Lease {
                    plain: Some(plain),
                    slot: self.clone(),
                });
            }
            // Closed by the server while idle, or none and time to try
            // again: made anew; this request takes the multiplexed connection.
            State::Idle(_) => *state = self.remake(),
            State::Gone { retry_at } if Instant::now() >= retry_at => *state = self.remake(),
            other => *state = other,
        }
        None
    }

    /// Starts making the connection in the background; the state meanwhile.
    fn remake(self: &Arc<Self>) -> State {
        tokio::spawn(self.clone().make());
        State::Connecting
    }

    async fn make(self: Arc<Self>) {
        let made = tokio::time::timeout(self.timeout, async {
            let mut plain = Plain::connect(&self.info).await?;
            let server = plain.server().await?;
            RedisResult::Ok((plain, server))
        })
        .await;
        *self.state.lock() = match made {
            Ok(Ok((plain, server))) if *server == *self.server => State::Idle(Box::new(plain)),
            // Failed, or another process answers now (the link's connection
            // will fail soon, and its successor gets a slot of its own).
            _ => State::Gone {
                retry_at: Instant::now() + RETRY_AFTER,
            },
        };
    }
}

/// One request in flight on the link.
struct InFlight(Arc<DirectSlot>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A lent connection: back to its slot after a whole exchange, dropped
/// (with the slot told to make a new one) otherwise.
struct Lease {
    plain: Option<Box<Plain>>,
    slot: Arc<DirectSlot>,
}

impl Lease {
    /// Writes `request` and returns its replies after the first `skip`.
    async fn exchange(
        mut self,
        request: &[u8],
        skip: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let plain = self.plain.as_mut().expect("a lease holds its connection");
        let mut replies =
            tokio::time::timeout(self.slot.timeout, plain.exchange(request, skip + count))
                .await
                .map_err(|_| RedisError::from(io::Error::from(io::ErrorKind::TimedOut)))??;
        let plain = self.plain.take().expect("a lease holds its connection");
        *self.slot.state.lock() = State::Idle(plain);
        self.slot.served.fetch_add(1, Ordering::Relaxed);
        Ok(replies.split_off(skip))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.plain.is_some() {
            *self.slot.state.lock() = State::Gone {
                retry_at: Instant::now(),
            };
        }
    }
}

/// The multiplexed connection with its direct one: a request goes direct
/// when it is the only one in flight and the direct connection is idle, to
/// the multiplexed connection otherwise.
#[derive(Clone)]
pub struct Direct {
    pub slot: Arc<DirectSlot>,
    pub shared: MultiplexedConnection,
}

impl ConnectionLike for Direct {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (_in_flight, lease) = self.slot.enter(true);
            match lease {
                Some(lease) => {
                    let mut replies = lease.exchange(&cmd.get_packed_command(), 0, 1).await?;
                    Ok(replies.pop().unwrap_or(Value::Nil))
                }
                None => self.shared.req_packed_command(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            // A transaction's queued replies can carry errors the
            // multiplexed connection knows how to gather: it takes those.
            let (_in_flight, lease) = self.slot.enter(!pipeline.is_transaction());
            match lease {
                Some(lease) => {
                    lease
                        .exchange(&pipeline.get_packed_pipeline(), offset, count)
                        .await
                }
                None => {
                    self.shared
                        .req_packed_commands(pipeline, offset, count)
                        .await
                }
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_redis() -> ConnectionInfo {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        redis::Client::open(url)
            .expect("url")
            .get_connection_info()
            .clone()
    }

    /// Lends until the background connect has ended, one way or the other.
    async fn lend_after_connect(slot: &Arc<DirectSlot>) -> Option<Lease> {
        assert!(
            slot.lend().is_none(),
            "the first call only starts a connect"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(*slot.state.lock(), State::Connecting) {
            assert!(Instant::now() < deadline, "connect ended within 5 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        slot.lend()
    }

    #[tokio::test]
    async fn a_connection_to_the_named_server_is_lent_and_one_to_another_never() {
        let info = local_redis();
        let mut probe = Plain::connect(&info).await.expect("redis");
        let server: Arc<str> = probe.server().await.expect("run_id").into();

        let right = DirectSlot::new(&info, server, Duration::from_secs(2)).expect("plain TCP");
        let lease = lend_after_connect(&right).await.expect("lent");
        let pong = lease
            .exchange(&redis::cmd("PING").get_packed_command(), 0, 1)
            .await
            .expect("PING");
        assert_eq!(pong, [Value::SimpleString("PONG".into())]);
        assert_eq!(right.served(), 1);

        // Named after a process that is not the one answering (as after a
        // restart between the link's connect and this one): never lent.
        let wrong = DirectSlot::new(&info, "another-process".into(), Duration::from_secs(2))
            .expect("plain TCP");
        assert!(lend_after_connect(&wrong).await.is_none());
        assert!(wrong.lend().is_none(), "and not retried at once");
    }

    #[test]
    fn only_plain_tcp_with_resp2_gets_a_direct_connection() {
        let slot = |url: &str| {
            let client = redis::Client::open(url).expect("url");
            DirectSlot::new(
                client.get_connection_info(),
                "id".into(),
                Duration::from_secs(1),
            )
            .is_some()
        };
        assert!(slot("redis://127.0.0.1:6379/2"));
        assert!(!slot("rediss://127.0.0.1:6379"));
        assert!(!slot("redis+unix:///tmp/redis.sock"));
        assert!(!slot("redis://127.0.0.1:6379/?protocol=resp3"));
    }
}
