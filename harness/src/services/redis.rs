//! Redis: `REDIS_URL`, or a private `redis-server` on a free port with nothing persisted.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Provision, ServiceError, find_program};
use crate::process::{ChildSpec, Supervised, free_port};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis for the run.
pub struct Redis {
    provision: Provision,
}

impl Redis {
    /// `REDIS_URL` when set (checked with PING), else a private server in `run_dir`.
    pub async fn provide(run_dir: &Path) -> Result<Self, ServiceError> {
        Self::provide_from(std::env::var("REDIS_URL").ok(), run_dir).await
    }

    /// As [`Redis::provide`], with the URL the environment would give.
    pub async fn provide_from(url: Option<String>, run_dir: &Path) -> Result<Self, ServiceError> {
        match url {
            Some(url) if !url.is_empty() => {
                ping(&url).await.map_err(|e| {
                    ServiceError::NotAvailable(format!("REDIS_URL={url} does not answer: {e}"))
                })?;
                Ok(Self {
                    provision: Provision::External { url },
                })
            }
            _ => match Self::start_private(run_dir).await {
                #[cfg(feature = "containers")]
                Err(ServiceError::NotAvailable(without_binaries)) => {
                    let (handle, url) = super::containers::redis().await.map_err(|e| {
                        ServiceError::NotAvailable(format!("{without_binaries}; and {e}"))
                    })?;
                    Ok(Self {
                        provision: Provision::Container {
                            url,
                            _handle: handle,
                        },
                    })
                }
                other => other,
            },
        }
    }

    /// A private `redis-server` on a free port, data in `run_dir/redis`.
    pub async fn start_private(run_dir: &Path) -> Result<Self, ServiceError> {
        std::fs::create_dir_all(run_dir)?;
        let program = find_program("redis-server", &[]).ok_or_else(|| {
            ServiceError::NotAvailable(
                "redis-server not found on PATH: install it (apt-get install redis-server) or set REDIS_URL".into(),
            )
        })?;
        let dir = run_dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let spec = ChildSpec::new("redis", program, run_dir)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&dir);
        let server = Box::new(Supervised::spawn(spec)?);
        let redis = Self {
            provision: Provision::Private {
                url: private_url(port),
                server,
                port,
            },
        };
        redis.wait_ready().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        self.provision.url()
    }

    /// The server process, when the harness runs it.
    pub fn process(&self) -> Option<&Supervised> {
        self.provision.process()
    }

    async fn wait_ready(&self) -> Result<(), ServiceError> {
        self.provision
            .wait_ready("redis", READY_TIMEOUT, |url| async move {
                ping(&url).await.is_ok()
            })
            .await
    }

    fn private(&mut self, action: &'static str) -> Result<&mut Supervised, ServiceError> {
        self.provision.private("Redis", action)
    }

    /// Stops (SIGTERM) and starts again on the same port: everything in it is gone.
    pub async fn restart(&mut self) -> Result<(), ServiceError> {
        let server = self.private("restarted")?;
        server.stop(Signal::SIGTERM, Duration::from_secs(5)).await?;
        server.respawn()?;
        self.wait_ready().await
    }

    /// Kills the server (SIGKILL) without starting it again.
    pub async fn kill(&mut self) -> Result<(), ServiceError> {
        self.private("killed")?.kill().await?;
        Ok(())
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&mut self) -> Result<(), ServiceError> {
        Ok(self.private("paused")?.signal(Signal::SIGSTOP)?)
    }

    pub fn resume(&mut self) -> Result<(), ServiceError> {
        Ok(self.private("resumed")?.signal(Signal::SIGCONT)?)
    }

    /// Empties the server (FLUSHALL). Refused on an external server, which may be shared.
    pub async fn flush(&mut self) -> Result<(), ServiceError> {
        self.private("flushed")?;
        let client =
            ::redis::Client::open(self.url()).map_err(|e| ServiceError::Failed(e.to_string()))?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| ServiceError::Failed(format!("redis: {e}")))?;
        ::redis::cmd("FLUSHALL")
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| ServiceError::Failed(format!("redis FLUSHALL: {e}")))
    }
}

fn private_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

async fn ping(url: &str) -> Result<(), String> {
    let client = ::redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut connection = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    ::redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
