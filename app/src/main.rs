//! `app`: one instance of the web app under test, with the topology given on the command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use app::idp_client::IdpSettings;
use app::session::SessionSettings;
use app::store::breaker::BreakerSettings;
use app::store::tiered::coherence::CoherenceSettings;
use app::topology::{Backends, Topology};
use app::web::WebSettings;
use app::{AppConfig, build, run};
use clap::Parser;

/// The reference web app: an OAuth confidential client of the (mock) IdP whose
/// session store and token cache are placed as the topology says.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// option1 | option2 | option3 | option4 | option4-cluster.
    #[arg(long, default_value = "option4", conflicts_with = "topology_file")]
    topology: String,
    /// A custom topology (TOML: name, session_backend, token_cache, encrypt, concurrency).
    #[arg(long)]
    topology_file: Option<PathBuf>,
    /// Listen address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// This instance's id, sent as `x-instance`.
    #[arg(long, default_value = "app-1")]
    instance_id: String,
    /// Base URL browsers reach this instance at (default: http://LISTEN).
    #[arg(long)]
    public_url: Option<String>,
    /// The IdP's issuer URL.
    #[arg(long, env = "IDP_AUTHORITY", default_value = "http://127.0.0.1:9400")]
    authority: String,
    #[arg(long, env = "CLIENT_ID", default_value = "harness-app")]
    client_id: String,
    #[arg(long, env = "CLIENT_SECRET", default_value = "harness-secret")]
    client_secret: String,
    /// The protected API (default: {authority}/api/me).
    #[arg(long)]
    api_url: Option<String>,
    /// Audience of the API's scopes.
    #[arg(long, default_value = "api://mock-api")]
    api_audience: String,
    /// A CA certificate (PEM) to trust for an https authority.
    #[arg(long, env = "IDP_CA_FILE")]
    idp_ca_file: Option<PathBuf>,
    /// Milliseconds one IdP call may take.
    #[arg(long, default_value_t = 5000)]
    idp_timeout_ms: u64,
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Seed URLs of a Redis Cluster (comma-separated), for a topology on one
    /// (option4-cluster, or `redis_cluster = true` in a topology file).
    #[arg(long, env = "REDIS_CLUSTER_URLS", value_delimiter = ',')]
    redis_cluster_urls: Vec<String>,
    /// A CA certificate (PEM) to trust for a rediss:// URL (one Redis
    /// server; refused with a Redis Cluster, whose seeds are checked
    /// against the system's roots).
    #[arg(long, env = "REDIS_CA_FILE")]
    redis_ca_file: Option<PathBuf>,
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// SQLite file for persisted topologies when no database URL is given.
    #[arg(long, default_value = "app-store.db")]
    sqlite_path: PathBuf,
    /// Keeps this deployment's records apart on shared servers.
    #[arg(long, default_value = "app")]
    namespace: String,
    /// Secret the at-rest encryption keys and the store-key HMAC keys derive
    /// from (also signs the sign-in cookie); every instance needs the same.
    /// Its built-in default is refused unless `--dev` asks for it.
    #[arg(long, env = "APP_ENCRYPTION_SECRET", default_value = DEV_SECRET)]
    encryption_secret: String,
    /// A local, throwaway instance: allows the built-in default secret
    /// (anyone can read it here, so anyone could forge this instance's
    /// sign-in cookies and find its store keys).
    #[arg(long)]
    dev: bool,
    #[arg(long, default_value = "k1")]
    encryption_key_id: String,
    /// Older key ids still accepted for decryption (comma-separated).
    #[arg(long, value_delimiter = ',')]
    previous_key_ids: Vec<String>,
    #[arg(long, default_value = "app_session")]
    cookie_name: String,
    /// Mark the cookie `Secure` (for https deployments).
    #[arg(long)]
    cookie_secure: bool,
    #[arg(long, default_value_t = app::session::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout_secs: u64,
    #[arg(long, default_value_t = app::session::DEFAULT_ABSOLUTE_TIMEOUT.as_secs())]
    absolute_timeout_secs: u64,
    /// Milliseconds a Redis or Postgres operation may take; past it the store
    /// counts as down and requests fail fast to their fallback until a
    /// background probe finds it back.
    #[arg(long, default_value_t = 2000)]
    store_timeout_ms: u64,
    /// Renew a cached access token this many seconds before it expires.
    #[arg(long, default_value_t = 300)]
    renewal_offset_secs: u64,
}

/// The secret in the source, for local runs only.
const DEV_SECRET: &str = "dev-only-secret-change-me";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing();
    // Two rustls crypto providers end up in this binary (redis-rs and
    // reqwest bring their own); naming one avoids rustls's ambiguity panic.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    if args.encryption_secret == DEV_SECRET {
        if !args.dev {
            anyhow::bail!(
                "refusing the built-in default secret: it signs the sign-in cookie and derives the store keys, and anyone can read it in the source. Give one with --encryption-secret or APP_ENCRYPTION_SECRET (the same on every instance), or pass --dev for a local, throwaway instance"
            );
        }
        // Said at start, where whoever runs it sees it.
        eprintln!(
            "app: --dev: using the built-in default secret; sign-in cookies and store keys are not secret: never expose this instance"
        );
        tracing::warn!("running with the built-in default secret (--dev)");
    }
    let topology = match &args.topology_file {
        Some(path) => Topology::from_file(path)?,
        None => Topology::named(&args.topology)?,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    let authority = args.authority.trim_end_matches('/').to_owned();
    let ca_pem = match &args.idp_ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let redis_ca_pem = match &args.redis_ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let config = AppConfig {
        backends: Backends {
            redis_url: args.redis_url,
            redis_cluster_urls: args.redis_cluster_urls,
            redis_ca_pem,
            database_url: args.database_url,
            sqlite_path: args.sqlite_path,
            namespace: args.namespace,
            encryption_secret: args.encryption_secret.into_bytes(),
            encryption_key_id: args.encryption_key_id,
            previous_key_ids: args.previous_key_ids,
            breaker: BreakerSettings {
                timeout: Duration::from_millis(args.store_timeout_ms),
                ..BreakerSettings::default()
            },
            instance: args.instance_id.clone(),
            coherence: CoherenceSettings::default(),
        },
        sessions: SessionSettings {
            cookie_name: args.cookie_name,
            cookie_secure: args.cookie_secure,
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            absolute_timeout: Duration::from_secs(args.absolute_timeout_secs),
        },
        idp: IdpSettings {
            api_url: args
                .api_url
                .unwrap_or_else(|| format!("{authority}/api/me")),
            authority,
            client_id: args.client_id,
            client_secret: args.client_secret,
            timeout: Duration::from_millis(args.idp_timeout_ms),
            attempts: 3,
            max_retry_after: Duration::from_secs(2),
            ca_pem,
        },
        web: WebSettings {
            instance_id: args.instance_id,
            public_url: args.public_url.unwrap_or_else(|| format!("http://{bound}")),
            api_audience: args.api_audience,
            renewal_offset: args.renewal_offset_secs,
        },
        topology,
    };
    let topology_name = config.topology.name.clone();
    let app = build(config)?;
    let stop = service_kit::shutdown_signal().context("cannot handle SIGINT/SIGTERM")?;
    tracing::info!(topology = %topology_name, "listening");
    // A closed stdout (a supervisor that read the line) must not stop the app.
    let _ = writeln!(
        std::io::stdout(),
        "app listening on http://{bound} (topology {topology_name})"
    );
    run(listener, app, stop).await?;
    Ok(())
}
