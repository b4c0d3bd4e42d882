//! The fault proxy over real loopback TCP, against an echo server: data intact,
//! and each fault (latency, jitter, bandwidth, blackhole, resets) felt by open
//! and new connections. Tests that measure time run on tokio's paused clock:
//! the proxy's holds and pacing are timers, so their durations are exact in
//! virtual time however busy the machine is.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::time::Duration;

use harness::model::network::NetworkFaults;
use harness::stage::network::Link;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

async fn linked() -> (Link, TcpStream) {
    let link = Link::start("echo", echo_server().await)
        .await
        .expect("link");
    let stream = TcpStream::connect(link.addr()).await.expect("connect");
    (link, stream)
}

/// Time for one small message to come back.
async fn round_trip(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    stream.write_all(b"ping").await.expect("write");
    let mut reply = [0; 4];
    stream.read_exact(&mut reply).await.expect("echo");
    assert_eq!(&reply, b"ping");
    started.elapsed()
}

fn latency(ms: u64) -> NetworkFaults {
    NetworkFaults {
        latency: Duration::from_millis(ms),
        ..NetworkFaults::default()
    }
}

#[tokio::test]
async fn relays_a_megabyte_both_ways_unchanged() {
    let (_link, stream) = linked().await;
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = stream.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move { write.write_all(&sent).await });
    let mut back = vec![0; payload.len()];
    read.read_exact(&mut back).await.expect("echo");
    writer.await.expect("join").expect("write");
    assert_eq!(back, payload);
}

#[tokio::test(start_paused = true)]
async fn added_latency_reaches_open_connections_and_goes_away() {
    let (link, mut stream) = linked().await;
    let before = round_trip(&mut stream).await;
    link.set(latency(150));
    let during = round_trip(&mut stream).await;
    link.set(NetworkFaults::default());
    let after = round_trip(&mut stream).await;
    assert!(
        during >= Duration::from_millis(150),
        "held: {during:?} (before {before:?})"
    );
    assert!(after < Duration::from_millis(100), "cleared: {after:?}");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_a_pipelined_burst_once_not_per_message() {
    let (link, mut stream) = linked().await;
    link.set(NetworkFaults {
        jitter: Duration::from_millis(20),
        ..latency(100)
    });
    let started = Instant::now();
    for i in 0..20u8 {
        stream.write_all(&[i]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut back = [0; 20];
    stream.read_exact(&mut back).await.expect("echo");
    let elapsed = started.elapsed();
    let in_order: Vec<u8> = (0..20).collect();
    assert_eq!(back.to_vec(), in_order, "jitter never reorders a stream");
    assert!(elapsed >= Duration::from_millis(80), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(1000),
        "20 messages x 100 ms would be 2 s: {elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn bandwidth_limit_paces_a_transfer() {
    let (link, stream) = linked().await;
    link.set(NetworkFaults {
        bandwidth: NonZeroU64::new(100_000),
        ..NetworkFaults::default()
    });
    let payload = vec![7u8; 60_000];
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    let sent = payload.clone();
    let writer = tokio::spawn(async move { write.write_all(&sent).await });
    let mut back = vec![0; payload.len()];
    read.read_exact(&mut back).await.expect("echo");
    let elapsed = started.elapsed();
    writer.await.expect("join").expect("write");
    assert_eq!(back, payload);
    assert!(
        elapsed >= Duration::from_millis(500),
        "60 kB at 100 kB/s takes at least 0.6 s each way, overlapped: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_blackhole_swallows_data_but_keeps_the_connection() {
    let (link, mut stream) = linked().await;
    link.set(NetworkFaults {
        blackhole: true,
        ..NetworkFaults::default()
    });
    stream.write_all(b"lost").await.expect("write");
    let mut reply = [0; 4];
    let waited = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut reply)).await;
    assert!(waited.is_err(), "nothing comes back: {waited:?}");
    link.set(NetworkFaults::default());
    assert!(round_trip(&mut stream).await < Duration::from_millis(200));
}

#[tokio::test]
async fn reset_connections_resets_open_ones_only() {
    let (link, mut old) = linked().await;
    round_trip(&mut old).await;
    link.reset_connections();
    let mut buffer = [0; 4];
    let read = tokio::time::timeout(Duration::from_secs(2), old.read(&mut buffer))
        .await
        .expect("answers at once");
    assert_eq!(
        read.expect_err("reset").kind(),
        ErrorKind::ConnectionReset,
        "RST, not FIN"
    );
    let mut fresh = TcpStream::connect(link.addr()).await.expect("connect");
    round_trip(&mut fresh).await;
    assert_eq!(
        link.stats()
            .resets
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn reset_peer_resets_every_connection_until_cleared() {
    let (link, mut open) = linked().await;
    link.set(NetworkFaults {
        reset_peer: true,
        ..NetworkFaults::default()
    });
    let mut buffer = [0; 4];
    assert_eq!(
        open.read(&mut buffer).await.expect_err("reset").kind(),
        ErrorKind::ConnectionReset
    );
    let mut new = TcpStream::connect(link.addr()).await.expect("connect");
    let _ = new.write_all(b"ping").await;
    let read = new.read(&mut buffer).await;
    assert!(
        matches!(&read, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{read:?}"
    );
    link.set(NetworkFaults::default());
    let mut after = TcpStream::connect(link.addr()).await.expect("connect");
    round_trip(&mut after).await;
}

#[tokio::test]
async fn a_dropped_link_stops_listening_and_closes_its_connections() {
    let (link, mut stream) = linked().await;
    let addr = link.addr();
    drop(link);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    let mut buffer = [0; 4];
    let _ = stream.write_all(b"ping").await;
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer))
        .await
        .expect("closed, not hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn an_upstream_that_is_down_looks_down_through_the_link() {
    let gone = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let link = Link::start("nowhere", gone).await.expect("link");
    let mut stream = TcpStream::connect(link.addr()).await.expect("accepted");
    let mut buffer = [0; 4];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer))
        .await
        .expect("answers at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
