//! `mock-idp`: runs the mock OpenID Connect provider until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mock_idp::config::{ClientConfig, GrantType, ReusePolicy, UserConfig};
use mock_idp::tls::TlsMaterial;
use mock_idp::{Idp, IdpConfig, IdpServer, ServerOptions};

/// A mock OpenID Connect provider with a protected echo API (`/api/me`) and
/// fault controls (`/admin/faults`). Runs with no configuration at all.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// TOML configuration: clients, users, lifetimes, policies, faults.
    #[arg(long, env = "MOCK_IDP_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:9400")]
    http: SocketAddr,
    /// HTTPS listen address.
    #[arg(long, default_value = "127.0.0.1:9443")]
    https: SocketAddr,
    /// Serve HTTP only.
    #[arg(long)]
    no_https: bool,
    /// Server certificate chain (PEM); generated with its own CA when absent.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where to write the generated CA certificate, for clients to trust.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Derive the signing key from this seed, for reproducible runs.
    #[arg(long)]
    key_seed: Option<String>,
    /// Access-token lifetime in seconds (overrides the config file).
    #[arg(long)]
    access_token_lifetime: Option<u64>,
    /// Refresh-token lifetime in seconds (overrides the config file).
    #[arg(long)]
    refresh_token_lifetime: Option<u64>,
    /// Tenant id in tokens and in Entra-shaped paths (`/{tenant}/oauth2/v2.0/...`);
    /// set it to your app's own so its authority needs only a new host.
    #[arg(long)]
    tenant_id: Option<String>,
    /// Seconds a client has to send a request's headers; also how long an
    /// idle keep-alive connection stays open (0: no limit).
    #[arg(long, value_name = "SECS")]
    header_read_timeout: Option<u64>,
    /// Seconds a client has to send a request's body (0: no limit).
    #[arg(long, value_name = "SECS")]
    body_read_timeout: Option<u64>,
    /// Connections each listener serves at once; more wait to be accepted.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Refresh-token reuse policy (overrides the config file).
    #[arg(long, value_parser = parse_policy)]
    refresh_reuse: Option<ReusePolicy>,
    /// Register another client, `ID:SECRET` (confidential) or `ID` (public),
    /// with the default loopback redirect URIs. Repeatable.
    #[arg(long = "client", value_name = "ID[:SECRET]")]
    clients: Vec<String>,
    /// Add a user that `login_hint` can name. Repeatable.
    #[arg(long = "user", value_name = "USERNAME")]
    users: Vec<String>,
    /// Refuse `login_hint`s that name no configured user.
    #[arg(long)]
    no_auto_users: bool,
}

fn parse_policy(value: &str) -> Result<ReusePolicy, String> {
    match value {
        "allow" => Ok(ReusePolicy::Allow),
        "revoke-family" => Ok(ReusePolicy::RevokeFamily),
        _ => Err("expected allow or revoke-family".into()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::init_tracing();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => IdpConfig::from_file(path)?,
        None => IdpConfig::default(),
    };
    if let Some(seed) = args.key_seed {
        config.key_seed = Some(seed);
    }
    if let Some(secs) = args.access_token_lifetime {
        config.access_token_lifetime_secs = secs;
    }
    if let Some(secs) = args.refresh_token_lifetime {
        config.refresh_token_lifetime_secs = secs;
    }
    if let Some(policy) = args.refresh_reuse {
        config.refresh_reuse = policy;
    }
    if let Some(tenant_id) = args.tenant_id {
        config.tenant_id = tenant_id;
    }
    if let Some(secs) = args.header_read_timeout {
        config.limits.header_read_timeout_secs = secs;
    }
    if let Some(secs) = args.body_read_timeout {
        config.limits.body_read_timeout_secs = secs;
    }
    if let Some(n) = args.max_connections {
        config.limits.max_connections = n;
    }
    apply_client_and_user_flags(&mut config, &args.clients, &args.users);
    if args.no_auto_users {
        config.auto_provision_users = false;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsMaterial::from_pem_files(cert, key)?),
        _ => None,
    };
    let ca_file = args.ca_file.unwrap_or_else(|| {
        std::env::temp_dir()
            .join(format!("mock-idp-{}", args.https.port()))
            .join("ca.pem")
    });
    let idp = Idp::new(config)?;
    let server = IdpServer::start(
        idp,
        ServerOptions {
            http: Some(args.http),
            https: (!args.no_https).then_some(args.https),
            tls,
            ca_file: Some(ca_file),
        },
    )
    .await
    .context("cannot start the mock IdP")?;
    // Signal handlers go in before readiness is announced, so a supervisor
    // that stops us right after reading the URLs gets a clean shutdown.
    let stop = service_kit::shutdown_signal().context("cannot handle SIGINT/SIGTERM")?;
    announce(&server);
    server.run_until(stop).await?;
    Ok(())
}

fn apply_client_and_user_flags(config: &mut IdpConfig, clients: &[String], users: &[String]) {
    let template = IdpConfig::default().clients.remove(0);
    for spec in clients {
        let (id, secret) = match spec.split_once(':') {
            Some((id, secret)) => (id, Some(secret.to_owned())),
            None => (spec.as_str(), None),
        };
        let mut client = ClientConfig {
            client_id: id.to_owned(),
            client_secret: secret,
            ..template.clone()
        };
        if client.client_secret.is_none() {
            client
                .grant_types
                .retain(|g| *g != GrantType::ClientCredentials);
        }
        config.clients.push(client);
    }
    config.users.extend(users.iter().map(|username| UserConfig {
        username: username.clone(),
        oid: None,
        name: None,
        email: None,
    }));
}

/// Prints the URLs. A closed stdout (a supervisor that read what it needed)
/// is not a reason to stop serving, so write errors are ignored.
fn announce(server: &IdpServer) {
    let mut text = String::new();
    if let Some(url) = server.http_url() {
        text += &format!("mock-idp issuer (http):  {url}\n");
    }
    if let Some(url) = server.https_url() {
        text += &format!("mock-idp issuer (https): {url}\n");
    }
    if let Some(ca) = &server.ca_file {
        text += &format!("CA certificate to trust: {}\n", ca.display());
    }
    text += "stats: /stats  metrics: /metrics  faults: /admin/faults  (Ctrl-C stops)\n";
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}
