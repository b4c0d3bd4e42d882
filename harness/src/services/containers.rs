//! Redis and Postgres in containers (testcontainers): the last resort, when
//! neither an external server nor the local binaries are there.

use std::any::Any;

use testcontainers_modules::postgres::Postgres as PostgresImage;
use testcontainers_modules::redis::Redis as RedisImage;
use testcontainers_modules::testcontainers::runners::AsyncRunner;

use super::ServiceError;

/// A running container; dropping it stops and removes the container.
pub type Handle = Box<dyn Any + Send + Sync>;

fn no_engine(service: &str, error: impl std::fmt::Display) -> ServiceError {
    ServiceError::NotAvailable(format!(
        "cannot start {service} in a container: no container engine answered ({error}). \
         Start Docker or Podman, install the {service} server binaries, or set {}",
        if service == "Redis" {
            "REDIS_URL"
        } else {
            "DATABASE_URL"
        }
    ))
}

/// A Redis container and its URL.
pub async fn redis() -> Result<(Handle, String), ServiceError> {
    let container = RedisImage::default()
        .start()
        .await
        .map_err(|e| no_engine("Redis", e))?;
    let port = container
        .get_host_port_ipv4(6379)
        .await
        .map_err(|e| ServiceError::Failed(format!("redis container port: {e}")))?;
    Ok((Box::new(container), format!("redis://127.0.0.1:{port}")))
}

/// A Postgres container and its URL.
pub async fn postgres() -> Result<(Handle, String), ServiceError> {
    let container = PostgresImage::default()
        .start()
        .await
        .map_err(|e| no_engine("PostgreSQL", e))?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .map_err(|e| ServiceError::Failed(format!("postgres container port: {e}")))?;
    Ok((
        Box::new(container),
        format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
    ))
}
