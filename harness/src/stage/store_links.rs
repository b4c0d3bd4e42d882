//! Proxied paths from each app instance to each store, so a network fault can
//! hit one instance's path or all of them.

use std::net::SocketAddr;

use super::StageError;
use super::network::Link;
use crate::model::ids::{InstanceId, StoreKind};
use crate::model::network::NetworkFaults;

/// One instance's path to one store.
pub struct StoreLink {
    pub instance: InstanceId,
    pub store: StoreKind,
    pub link: Link,
}

/// Every proxied path of a stack.
#[derive(Default)]
pub struct StoreLinks {
    links: Vec<StoreLink>,
}

impl StoreLinks {
    /// Puts a proxy between `instance` and the store at `url`; returns the URL
    /// the instance should use instead.
    pub async fn route(
        &mut self,
        instance: InstanceId,
        store: StoreKind,
        url: &str,
    ) -> Result<String, StageError> {
        let (upstream, proxied) = rewrite(url)
            .await
            .map_err(|reason| StageError::Unproxyable { store, reason })?;
        let link = Link::start(format!("{instance}->{store}"), upstream)
            .await
            .map_err(StageError::io(format!("a proxy for {instance} to {store}")))?;
        let proxied = proxied(link.addr());
        self.links.push(StoreLink {
            instance,
            store,
            link,
        });
        Ok(proxied)
    }

    pub fn all(&self) -> &[StoreLink] {
        &self.links
    }

    /// The links to `store` from `instances` (every instance when empty).
    fn select(
        &self,
        store: StoreKind,
        instances: &[InstanceId],
    ) -> Result<Vec<&StoreLink>, StageError> {
        if self.links.is_empty() {
            return Err(StageError::NoProxy);
        }
        let to_store: Vec<&StoreLink> = self.links.iter().filter(|l| l.store == store).collect();
        if to_store.is_empty() {
            return Err(StageError::NoStore(store));
        }
        if let Some(&id) = instances
            .iter()
            .find(|id| !to_store.iter().any(|l| l.instance == **id))
        {
            return Err(StageError::NoSuchInstance {
                id,
                instances: to_store.len(),
            });
        }
        let chosen: Vec<&StoreLink> = to_store
            .into_iter()
            .filter(|l| instances.is_empty() || instances.contains(&l.instance))
            .collect();
        Ok(chosen)
    }

    /// Sets `faults` on the chosen paths; returns how many there were.
    pub fn set(
        &self,
        store: StoreKind,
        instances: &[InstanceId],
        faults: &NetworkFaults,
    ) -> Result<usize, StageError> {
        let chosen = self.select(store, instances)?;
        for path in &chosen {
            path.link.set(faults.clone());
        }
        Ok(chosen.len())
    }

    /// Resets every open connection on the chosen paths.
    pub fn reset(&self, store: StoreKind, instances: &[InstanceId]) -> Result<usize, StageError> {
        let chosen = self.select(store, instances)?;
        for path in &chosen {
            path.link.reset_connections();
        }
        Ok(chosen.len())
    }
}

type Proxied = Box<dyn Fn(SocketAddr) -> String + Send>;

/// The address a store URL points at, and how to write the URL for a proxy.
async fn rewrite(url: &str) -> Result<(SocketAddr, Proxied), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let default_port = match parsed.scheme() {
        "redis" => 6379,
        "postgres" | "postgresql" => 5432,
        // The proxy would stand between the client and the name its certificate carries.
        other => return Err(format!("a {other}:// URL cannot go through the proxy")),
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "the URL names no TCP host".to_owned())?
        .to_owned();
    let port = parsed.port().unwrap_or(default_port);
    let upstream = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to nothing"))?;
    let proxied = move |addr: SocketAddr| {
        let mut url = parsed.clone();
        // Both calls only fail for URLs that cannot have a host, excluded above.
        let _ = url.set_host(Some(&addr.ip().to_string()));
        let _ = url.set_port(Some(addr.port()));
        url.to_string()
    };
    Ok((upstream, Box::new(proxied)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_rewritten_to_the_proxy_keeping_credentials_and_database() {
        let (upstream, proxied) =
            rewrite("postgres://postgres:secret@localhost/app?sslmode=disable")
                .await
                .expect("rewrites");
        assert_eq!(upstream.port(), 5432);
        assert_eq!(
            proxied("127.0.0.1:7000".parse().expect("addr")),
            "postgres://postgres:secret@127.0.0.1:7000/app?sslmode=disable"
        );
        let (upstream, proxied) = rewrite("redis://127.0.0.1:6390/2").await.expect("rewrites");
        assert_eq!(upstream, "127.0.0.1:6390".parse().expect("addr"));
        assert_eq!(
            proxied("127.0.0.1:7001".parse().expect("addr")),
            "redis://127.0.0.1:7001/2"
        );
    }

    #[tokio::test]
    async fn tls_and_socket_urls_are_refused_with_a_reason() {
        let tls = rewrite("rediss://cache.example:6380").await.err();
        assert!(tls.is_some_and(|e| e.contains("rediss://")));
        let socket = rewrite("postgres:///app?host=/run/postgresql").await.err();
        assert!(socket.is_some_and(|e| e.contains("no TCP host")));
    }
}
