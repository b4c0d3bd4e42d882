//! Redis and Postgres in containers (testcontainers): the last resort, when
//! neither an external server nor the local binaries are there.

use std::any::Any;

use testcontainers_modules::postgres::Postgres as PostgresImage;
use testcontainers_modules::redis::Redis as RedisImage;
use testcontainers_modules::testcontainers::runners::AsyncRunner;

use super::ServerKind;
use crate::stage::StageError;

/// A running container; dropping it stops and removes the container.
pub type Handle = Box<dyn Any + Send + Sync>;

/// A container of `kind` and its URL.
pub async fn start(kind: &ServerKind) -> Result<(Handle, String), StageError> {
    let no_engine = |error: &dyn std::fmt::Display| {
        StageError::NotAvailable(format!(
            "cannot start {} in a container: no container engine answered ({error}). \
             Start Docker or Podman, install the {} server binaries, or set {}",
            kind.label, kind.label, kind.url_env
        ))
    };
    let port_of = |error: &dyn std::fmt::Display| StageError::Request {
        what: format!("the {} container's port", kind.label),
        reason: error.to_string(),
    };
    if kind.name == "redis" {
        let container = RedisImage::default()
            .start()
            .await
            .map_err(|e| no_engine(&e))?;
        let port = container
            .get_host_port_ipv4(6379)
            .await
            .map_err(|e| port_of(&e))?;
        Ok((Box::new(container), format!("redis://127.0.0.1:{port}")))
    } else {
        let container = PostgresImage::default()
            .start()
            .await
            .map_err(|e| no_engine(&e))?;
        let port = container
            .get_host_port_ipv4(5432)
            .await
            .map_err(|e| port_of(&e))?;
        Ok((
            Box::new(container),
            format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
        ))
    }
}
