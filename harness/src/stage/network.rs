//! A fault-injecting TCP proxy between app instances and a store: added latency
//! with jitter, a bandwidth limit, a blackhole and connection resets, the core of
//! Toxiproxy's toxics, changed at run time and felt by connections already open.
//!
//! Hand-written on purpose. Toxiproxy is a Go server, not a crate; its Rust port
//! `noxious` 1.0.4 was tried first and dropped: removing all toxics did not reach
//! open connections, a worker panicked with "overflow when subtracting
//! durations" under bandwidth changes (killing the link), it has no reset, and it
//! pulls tokio-util 0.6. What is needed here is one relay loop per direction.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::model::network::{MAX_LATENCY, NetworkFaults};

/// How long a chunk is held under `faults`: their latency, varied
/// uniformly within the jitter (never below zero).
fn hold(faults: &NetworkFaults) -> Duration {
    if faults.jitter.is_zero() {
        return faults.latency;
    }
    let jitter = faults.jitter.as_micros() as i128;
    let offset = rand::random_range(-jitter..=jitter);
    let micros = (faults.latency.as_micros() as i128 + offset).max(0);
    Duration::from_micros(micros as u64)
}

/// What every connection of a link watches.
#[derive(Clone, Debug, Default)]
struct LinkState {
    faults: NetworkFaults,
    /// Bumped by [`Link::reset_connections`]: connections older than the
    /// current value reset themselves.
    generation: u64,
}

/// Counters of one link.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub accepted: AtomicU64,
    pub resets: AtomicU64,
    /// Chunks held back by added latency (what a latency fault did, countable).
    pub held: AtomicU64,
}

/// One proxied path: a loopback listener relaying to `upstream`.
pub struct Link {
    name: String,
    addr: SocketAddr,
    upstream: SocketAddr,
    state: watch::Sender<LinkState>,
    stats: Arc<LinkStats>,
    accept: JoinHandle<()>,
}

impl Link {
    /// Listens on a free loopback port and relays each connection to `upstream`.
    pub async fn start(name: impl Into<String>, upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (state, watcher) = watch::channel(LinkState::default());
        let stats = Arc::new(LinkStats::default());
        let accept = tokio::spawn(accept_loop(listener, upstream, watcher, stats.clone()));
        Ok(Self {
            name: name.into(),
            addr,
            upstream,
            state,
            stats,
            accept,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where clients connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Replaces the faults; open connections follow from their next chunk.
    pub fn set(&self, faults: NetworkFaults) {
        self.state.send_modify(|state| state.faults = faults);
    }

    /// Resets (TCP RST) every connection open now; later ones are untouched.
    pub fn reset_connections(&self) {
        self.state.send_modify(|state| state.generation += 1);
    }
}

impl Drop for Link {
    /// Stops listening; the relays, owned by the accept task, end with it.
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: watch::Receiver<LinkState>,
    stats: Arc<LinkStats>,
) {
    let mut relays = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    // Read now, not when the task first runs: a reset asked for
                    // after this accept must reach this connection too.
                    let born = state.borrow().generation;
                    relays.spawn(relay(client, upstream, born, state.clone(), stats.clone()));
                }
                Err(error) => {
                    // Out of file descriptors or similar: back off rather than spin.
                    tracing::warn!(%error, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = relays.join_next() => {}
        }
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    born: u64,
    mut state: watch::Receiver<LinkState>,
    stats: Arc<LinkStats>,
) {
    if state.borrow_and_update().faults.reset_peer {
        stats.resets.fetch_add(1, Ordering::Relaxed);
        reset(&client);
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        // The store is down: the client sees what it would see without the proxy.
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let reset_requested = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let (up, down) = (state.clone(), state.clone());
        tokio::select! {
            _ = async {
                tokio::join!(
                    pump(&mut client_read, &mut server_write, up, stats.clone(), false),
                    pump(&mut server_read, &mut client_write, down, stats.clone(), true),
                )
            } => false,
            () = reset_wanted(&mut state, born) => true,
        }
    };
    if reset_requested {
        stats.resets.fetch_add(1, Ordering::Relaxed);
        reset(&client);
        reset(&server);
    }
}

/// Resolves once this connection is to be reset.
async fn reset_wanted(state: &mut watch::Receiver<LinkState>, born: u64) {
    loop {
        {
            let now = state.borrow_and_update();
            if now.faults.reset_peer || now.generation != born {
                return;
            }
        }
        if state.changed().await.is_err() {
            // The link is gone; the accept task's end aborts this relay anyway.
            return std::future::pending().await;
        }
    }
}

/// With a zero linger, closing sends RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Chunks in flight per direction before reading waits (backpressure).
const CHUNKS_IN_FLIGHT: usize = 64;
const CHUNK: usize = 16 * 1024;

/// Copies `from` to `to` until end of stream, applying the faults: reading and
/// writing run side by side so added latency delays data without throttling it.
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    state: watch::Receiver<LinkState>,
    stats: Arc<LinkStats>,
    delayed: bool,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (chunks, mut arriving) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let reader = {
        let state = state.clone();
        async move {
            let mut buffer = vec![0; CHUNK];
            let mut last_due = Instant::now();
            loop {
                let read = match from.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => read,
                };
                let faults = state.borrow().faults.clone();
                if faults.blackhole {
                    continue;
                }
                let hold = if delayed {
                    hold(&faults)
                } else {
                    Duration::ZERO
                };
                if !hold.is_zero() {
                    stats.held.fetch_add(1, Ordering::Relaxed);
                }
                // Never before an earlier chunk: jitter must not reorder a stream.
                let due = Instant::now()
                    .checked_add(hold.min(MAX_LATENCY))
                    .unwrap_or_else(Instant::now);
                last_due = last_due.max(due);
                if chunks
                    .send((last_due, buffer[..read].to_vec()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    };
    let writer = async move {
        let mut line_free = Instant::now();
        while let Some((due, chunk)) = arriving.recv().await {
            tokio::time::sleep_until(due).await;
            let faults = state.borrow().faults.clone();
            // A blackhole that began while the chunk was held swallows it too.
            if faults.blackhole {
                continue;
            }
            let written = match faults.bandwidth {
                None => to.write_all(&chunk).await,
                Some(rate) => paced_write(to, &chunk, rate.get(), &mut line_free).await,
            };
            if written.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// Writes in slices of about a tenth of a second each, sleeping so that the
/// average rate stays at `rate` bytes per second.
async fn paced_write<W: AsyncWrite + Unpin>(
    to: &mut W,
    chunk: &[u8],
    rate: u64,
    line_free: &mut Instant,
) -> io::Result<()> {
    let slice = usize::try_from(rate / 10).unwrap_or(usize::MAX).max(1);
    for piece in chunk.chunks(slice) {
        let busy = Duration::from_secs_f64(piece.len() as f64 / rate as f64);
        *line_free = (*line_free).max(Instant::now()) + busy;
        to.write_all(piece).await?;
        tokio::time::sleep_until(*line_free).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_holds_stay_within_bounds() {
        let faults = NetworkFaults {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(15),
            ..NetworkFaults::default()
        };
        let holds: Vec<_> = (0..2000).map(|_| hold(&faults)).collect();
        assert!(holds.iter().all(|h| *h <= Duration::from_millis(25)));
        assert!(holds.contains(&Duration::ZERO), "clamped at zero");
        assert!(holds.iter().any(|h| *h > Duration::from_millis(20)));
    }

    #[test]
    fn faults_read_from_toml_with_durations() {
        let faults: NetworkFaults =
            toml::from_str("latency = \"50ms\"\njitter = \"5ms\"\nbandwidth = 1024\n")
                .expect("parses");
        assert_eq!(faults.latency, Duration::from_millis(50));
        assert_eq!(faults.bandwidth, std::num::NonZeroU64::new(1024));
        assert!(toml::from_str::<NetworkFaults>("bandwidth = 0").is_err());
        assert!(toml::from_str::<NetworkFaults>("latncy = \"5ms\"").is_err());
        assert!(NetworkFaults::default().is_clear());
    }
}
