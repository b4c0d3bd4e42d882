//! The router and the HTTP and HTTPS listeners; the issuer each listener
//! reports is [`crate::issuer`]'s.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, get};
use axum::{Extension, Router, middleware};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::endpoints::{admin, api, authorize, discovery, entra, logout, token, userinfo};
use crate::faults::{Endpoint, FaultScope, apply_faults};
use crate::issuer::Scheme;
use crate::limits::{ConnectionCap, Limits, read_body};
use crate::tls::TlsMaterial;
use crate::{Idp, StartError};

impl Idp {
    /// Every endpoint, each behind the fault layer for its name, behind the
    /// body limits of [`crate::limits`]. The admin, stats and metrics
    /// endpoints are never faulted.
    pub fn router(&self) -> Router {
        let faulted = |endpoint: Endpoint, route: MethodRouter<Idp>| {
            route.route_layer(middleware::from_fn_with_state(
                FaultScope {
                    idp: self.clone(),
                    endpoint,
                },
                apply_faults,
            ))
        };
        Router::new()
            .route(
                "/.well-known/openid-configuration",
                faulted(Endpoint::Discovery, get(discovery::openid_configuration)),
            )
            .route("/jwks", faulted(Endpoint::Jwks, get(discovery::jwks)))
            .route(
                "/authorize",
                faulted(
                    Endpoint::Authorize,
                    get(authorize::authorize_get).post(authorize::authorize_post),
                ),
            )
            .route(
                "/token",
                faulted(Endpoint::Token, axum::routing::post(token::token)),
            )
            .route(
                "/userinfo",
                faulted(
                    Endpoint::Userinfo,
                    get(userinfo::userinfo).post(userinfo::userinfo),
                ),
            )
            .route(
                "/logout",
                faulted(
                    Endpoint::Logout,
                    get(logout::logout_get).post(logout::logout_post),
                ),
            )
            .route("/api/me", faulted(Endpoint::Api, get(api::me)))
            // Entra ID's shapes of the same endpoints, under a tenant segment.
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                faulted(Endpoint::Discovery, get(entra::openid_configuration)),
            )
            .route(
                "/{tenant}/discovery/v2.0/keys",
                faulted(Endpoint::Jwks, get(entra::jwks)),
            )
            .route(
                "/{tenant}/oauth2/v2.0/authorize",
                faulted(
                    Endpoint::Authorize,
                    get(entra::authorize_get).post(entra::authorize_post),
                ),
            )
            .route(
                "/{tenant}/oauth2/v2.0/token",
                faulted(Endpoint::Token, axum::routing::post(entra::token)),
            )
            .route(
                "/{tenant}/oauth2/v2.0/logout",
                faulted(
                    Endpoint::Logout,
                    get(entra::logout_get).post(entra::logout_post),
                ),
            )
            .route("/stats", get(admin::stats))
            .route("/metrics", get(admin::metrics))
            .route("/healthz", get(admin::healthz))
            .route(
                "/admin/faults",
                get(crate::faults::get_faults)
                    .put(crate::faults::put_faults)
                    .delete(crate::faults::clear_faults),
            )
            // Bodies are read (or refused, as OAuth errors) before any route;
            // the limit is then enforced there, not by axum's extractors.
            .layer(middleware::from_fn_with_state(self.clone(), read_body))
            .layer(DefaultBodyLimit::disable())
            .with_state(self.clone())
    }
}

/// Where to listen and how to do TLS.
pub struct ServerOptions {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    /// Server certificate; generated when `None` and HTTPS is on.
    pub tls: Option<TlsMaterial>,
    /// Where to write the generated CA certificate.
    pub ca_file: Option<PathBuf>,
}

impl ServerOptions {
    /// HTTP and HTTPS on free loopback ports, a generated certificate, the CA written to `ca_file`.
    pub fn loopback(ca_file: PathBuf) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            http: Some(any),
            https: Some(any),
            tls: None,
            ca_file: Some(ca_file),
        }
    }

    /// HTTP only, on a free loopback port.
    pub fn http_only() -> Self {
        Self {
            http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            https: None,
            tls: None,
            ca_file: None,
        }
    }
}

/// A running provider: its URLs, and the means to stop it.
pub struct IdpServer {
    pub idp: Idp,
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    /// The CA certificate file clients should trust, when one was written.
    pub ca_file: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

/// How long in-flight requests get to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(5);

fn bind(addr: SocketAddr) -> std::io::Result<(std::net::TcpListener, SocketAddr)> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Applies the header timeout. hyper times each request's headers (from the
/// end of the previous response on a kept-alive connection); the first
/// request's timeout also covers the bytes hyper reads to tell HTTP/1 from
/// HTTP/2, which its own timer does not.
fn with_limits<A>(
    mut server: axum_server::Server<SocketAddr, A>,
    limits: &Limits,
) -> axum_server::Server<SocketAddr, A> {
    let timeout = limits.header_read_timeout();
    server.http_builder().http1().header_read_timeout(timeout);
    server.first_request_timeout(timeout)
}

/// A handle that drains the listener once `shutdown` says so.
fn stop_on(shutdown: &watch::Sender<bool>) -> axum_server::Handle<SocketAddr> {
    let handle = axum_server::Handle::new();
    let mut stop = shutdown.subscribe();
    let draining = handle.clone();
    tokio::spawn(async move {
        let _ = stop.wait_for(|s| *s).await;
        draining.graceful_shutdown(Some(DRAIN));
    });
    handle
}

impl IdpServer {
    /// Binds the listeners and starts serving in the background.
    pub async fn start(idp: Idp, options: ServerOptions) -> Result<Self, StartError> {
        let (shutdown, _) = watch::channel(false);
        let limits = idp.config().limits.clone();
        let mut tasks = Vec::new();
        let mut http_addr = None;
        if let Some(addr) = options.http {
            let (listener, local) = bind(addr)?;
            http_addr = Some(local);
            let server = with_limits(axum_server::from_tcp(listener)?, &limits);
            let handle = stop_on(&shutdown);
            let app = ConnectionCap::new(
                idp.router().layer(Extension(Scheme("http"))),
                limits.max_connections,
            );
            tasks.push(tokio::spawn(server.handle(handle).serve(app)));
        }
        let mut https_addr = None;
        let mut ca_file = None;
        if let Some(addr) = options.https {
            let tls = match options.tls {
                Some(tls) => tls,
                None => TlsMaterial::generate()?,
            };
            if let Some(path) = &options.ca_file
                && tls.write_ca(path)?
            {
                ca_file = Some(path.clone());
            }
            let (listener, local) = bind(addr)?;
            https_addr = Some(local);
            let config = RustlsConfig::from_config(tls.server_config()?);
            let mut acceptor = RustlsAcceptor::new(config);
            if let Some(timeout) = limits.header_read_timeout() {
                // The handshake comes before the first request's timer starts.
                acceptor = acceptor.handshake_timeout(timeout);
            }
            let server = with_limits(axum_server::from_tcp(listener)?, &limits).acceptor(acceptor);
            let handle = stop_on(&shutdown);
            let app = ConnectionCap::new(
                idp.router().layer(Extension(Scheme("https"))),
                limits.max_connections,
            );
            tasks.push(tokio::spawn(server.handle(handle).serve(app)));
        }
        Ok(Self {
            idp,
            http_addr,
            https_addr,
            ca_file,
            shutdown,
            tasks,
        })
    }

    /// `http://127.0.0.1:PORT`, the HTTP issuer.
    pub fn http_url(&self) -> Option<String> {
        self.http_addr.map(|a| format!("http://{a}"))
    }

    /// `https://localhost:PORT`, the HTTPS issuer (the certificate names localhost and 127.0.0.1).
    pub fn https_url(&self) -> Option<String> {
        self.https_addr
            .map(|a| format!("https://localhost:{}", a.port()))
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the listeners.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            task.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }

    /// Serves until `signal` completes, then stops.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        signal.await;
        self.stop().await
    }
}
