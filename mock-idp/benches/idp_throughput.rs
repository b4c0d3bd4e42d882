//! Throughput of the mock IdP over loopback HTTP: refresh grants and `/api/me` validations per second.
//!
//! Run with `cargo bench -p mock-idp --bench idp_throughput`. `BENCH_SECS`
//! sets the measured seconds per phase (default 5), `BENCH_CONNECTIONS` the
//! number of keep-alive connections (default 32). The IdP runs on its own
//! two-thread runtime; the load runs on another, so both share the machine's
//! cores as they would in a harness run.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use mock_idp::config::DEFAULT_CLIENT_SECRET;
use mock_idp::{Idp, IdpConfig, IdpServer, ServerOptions};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

#[derive(Clone, Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
}

struct Phase {
    requests: u64,
    failures: u64,
    latencies_us: Vec<u32>,
    elapsed: Duration,
}

fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let connections: usize = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let config = IdpConfig {
        access_token_lifetime_secs: 86_400,
        refresh_token_lifetime_secs: 86_400,
        ..IdpConfig::default()
    };
    let cached = server_rt.block_on(IdpServer::start(
        Idp::new(config.clone())?,
        ServerOptions::http_only(),
    ))?;
    let uncached_config = IdpConfig {
        verified_token_cache: 0,
        ..config
    };
    let uncached = server_rt.block_on(IdpServer::start(
        Idp::new(uncached_config)?,
        ServerOptions::http_only(),
    ))?;
    println!(
        "mock-idp throughput over loopback HTTP: {connections} connections, {secs} s per phase"
    );
    let measured = Duration::from_secs(secs);
    let mut failures = 0;

    let (addr, tokens) = client_rt.block_on(sign_in_all(&cached, connections))?;
    let refresh = client_rt.block_on(run_phase(addr, tokens.clone(), measured, Kind::Refresh))?;
    failures += report("refresh_token grants", &refresh, Some(5_000.0));
    let api = client_rt.block_on(run_phase(addr, tokens.clone(), measured, Kind::ApiMe))?;
    failures += report("/api/me", &api, Some(20_000.0));
    let floor = client_rt.block_on(run_phase(addr, tokens, measured, Kind::Healthz))?;
    failures += report("GET /healthz (floor)", &floor, None);

    let (addr, tokens) = client_rt.block_on(sign_in_all(&uncached, connections))?;
    let full = client_rt.block_on(run_phase(addr, tokens, measured, Kind::ApiMe))?;
    failures += report("/api/me, no cache", &full, None);
    println!(
        "(/api/me re-verifies a repeated token's expiry, audience, scope and session on every call and reuses \
         its signature check; \"no cache\" verifies ES256 every time, bounded by the CPU's P-256 speed)"
    );

    let stats = cached.idp.stats();
    println!(
        "IdP counted: {} refresh grants ok, {} /api/me ok",
        stats.token_calls.get(&["refresh_token", "ok"]),
        stats.api_calls.get(&["ok"])
    );
    server_rt.block_on(cached.stop())?;
    server_rt.block_on(uncached.stop())?;
    if failures > 0 {
        bail!("{failures} requests failed");
    }
    Ok(())
}

fn report(name: &str, phase: &Phase, target: Option<f64>) -> u64 {
    let mut sorted = phase.latencies_us.clone();
    sorted.sort_unstable();
    let pct = |p: f64| {
        sorted
            .get(((sorted.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let rate = phase.requests as f64 / phase.elapsed.as_secs_f64();
    let verdict = match target {
        Some(t) if rate >= t => format!("target >= {t:.0}: met"),
        Some(t) => format!("target >= {t:.0}: NOT met"),
        None => "no target".to_owned(),
    };
    println!(
        "{name:<22} {rate:>9.0} /s  ({verdict})  p50 {} us  p99 {} us  failures {}",
        pct(0.50),
        pct(0.99),
        phase.failures
    );
    phase.failures
}

#[derive(Clone, Copy)]
enum Kind {
    Refresh,
    ApiMe,
    /// No work at all: the ceiling of this HTTP setup on this machine.
    Healthz,
}

/// One sign-in per connection, through `/authorize` and the code grant.
async fn sign_in_all(
    server: &IdpServer,
    n: usize,
) -> anyhow::Result<(std::net::SocketAddr, Vec<TokenResponse>)> {
    let base = server.http_url().context("http listener")?;
    let addr = server.http_addr.context("http listener")?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let verifier = URL_SAFE_NO_PAD.encode(rand_bytes(i));
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let redirect = "http://127.0.0.1:1/auth/callback";
        let response = client
            .get(format!("{base}/authorize"))
            .query(&[
                ("client_id", "harness-app"),
                ("response_type", "code"),
                ("redirect_uri", redirect),
                ("scope", "openid profile offline_access api.read"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("login_hint", &format!("bench-{i}")),
            ])
            .send()
            .await?;
        let location = response
            .headers()
            .get("location")
            .context("authorize did not redirect")?
            .to_str()?;
        let code = url::Url::parse(location)?
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .context("no code in redirect")?;
        let tokens: TokenResponse = client
            .post(format!("{base}/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", "harness-app"),
                ("client_secret", DEFAULT_CLIENT_SECRET),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &verifier),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        out.push(tokens);
    }
    Ok((addr, out))
}

fn rand_bytes(i: usize) -> [u8; 32] {
    Sha256::digest(format!("bench verifier {i}").as_bytes()).into()
}

async fn run_phase(
    addr: std::net::SocketAddr,
    tokens: Vec<TokenResponse>,
    measured: Duration,
    kind: Kind,
) -> anyhow::Result<Phase> {
    let warmup = Duration::from_millis(500);
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + measured;
    let mut tasks = Vec::new();
    for token in tokens {
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let mut refresh_token = token.refresh_token;
            let (mut requests, mut failures, mut latencies) = (0u64, 0u64, Vec::new());
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let request = match kind {
                    Kind::Refresh => hyper::Request::post("/token")
                        .header("host", addr.to_string())
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(Full::new(Bytes::from(format!(
                            "grant_type=refresh_token&client_id=harness-app&client_secret={DEFAULT_CLIENT_SECRET}&refresh_token={refresh_token}"
                        ))))?,
                    Kind::ApiMe => hyper::Request::get("/api/me")
                        .header("host", addr.to_string())
                        .header("authorization", format!("Bearer {}", token.access_token))
                        .body(Full::new(Bytes::new()))?,
                    Kind::Healthz => hyper::Request::get("/healthz")
                        .header("host", addr.to_string())
                        .body(Full::new(Bytes::new()))?,
                };
                let response = sender.send_request(request).await?;
                let ok = response.status().is_success();
                let body = response.into_body().collect().await?.to_bytes();
                if ok && matches!(kind, Kind::Refresh) {
                    let parsed: TokenResponse = serde_json::from_slice(&body)?;
                    refresh_token = parsed.refresh_token;
                }
                if now >= measure_from {
                    requests += 1;
                    failures += u64::from(!ok);
                    latencies.push(now.elapsed().as_micros() as u32);
                }
            }
            anyhow::Ok((requests, failures, latencies))
        }));
    }
    let mut phase = Phase {
        requests: 0,
        failures: 0,
        latencies_us: Vec::new(),
        elapsed: measured,
    };
    for task in tasks {
        let (requests, failures, latencies) = task.await??;
        phase.requests += requests;
        phase.failures += failures;
        phase.latencies_us.extend(latencies);
    }
    Ok(phase)
}
