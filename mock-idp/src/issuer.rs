//! The issuer a request is answered under (the base URL of the listener the
//! client used) and which issuers a listener serves. The endpoints read it;
//! the listeners in [`crate::server`] tag each request with its scheme.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

/// The URL scheme of the listener a request came in on.
#[derive(Clone, Copy, Debug)]
pub struct Scheme(pub &'static str);

/// The issuer for this request: the base URL of the listener the client used,
/// from its scheme and the `Host` the client sent, as MSAL-family clients
/// require the issuer to match the authority they were given.
pub struct Issuer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Issuer {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let scheme = parts.extensions.get::<Scheme>().map_or("http", |s| s.0);
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        let well_formed = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        if !well_formed {
            return Err((StatusCode::BAD_REQUEST, "malformed Host header"));
        }
        Ok(Issuer(format!("{scheme}://{host}")))
    }
}

/// Whether `iss` is an issuer of the listener a request reached, given that
/// request's own issuer `base`: the same scheme and port under any host name
/// (`localhost` and `127.0.0.1` reach one listener), with no path or the tenant
/// path `/{tenant id}/v2.0`. So the HTTPS listener's API refuses the HTTP
/// listener's tokens, as a resource server set up for one authority refuses
/// another's.
pub fn serves_issuer(base: &str, tenant_id: &str, iss: &str) -> bool {
    let (Some(ours), Some(theirs)) = (split_origin(base), split_origin(iss)) else {
        return false;
    };
    let tenant_path = || {
        theirs
            .2
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/v2.0"))
            == Some(tenant_id)
    };
    ours.0 == theirs.0 && ours.1 == theirs.1 && (theirs.2.is_empty() || tenant_path())
}

/// `scheme://host[:port][/path]` as (scheme, port, path); `None` when malformed.
fn split_origin(url: &str) -> Option<(&str, u16, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let host_end = if authority.starts_with('[') {
        authority.find(']')? + 1
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    if host_end == 0 {
        return None;
    }
    let port = match &authority[host_end..] {
        "" => default_port,
        port => port.strip_prefix(':')?.parse().ok()?,
    };
    Some((scheme, port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_serves_its_own_issuers_under_any_host_name() {
        let tid = "t-1";
        let base = "https://localhost:9443";
        for iss in [
            "https://localhost:9443",
            "https://127.0.0.1:9443",
            "https://127.0.0.1:9443/t-1/v2.0",
        ] {
            assert!(serves_issuer(base, tid, iss), "{iss}");
        }
        for iss in [
            "http://127.0.0.1:9443",
            "https://127.0.0.1:9400",
            "https://127.0.0.1",
            "https://127.0.0.1:9443/",
            "https://127.0.0.1:9443/other/v2.0",
            "https://127.0.0.1:9443/t-1",
            "https://:9443",
            "127.0.0.1:9443",
        ] {
            assert!(!serves_issuer(base, tid, iss), "{iss}");
        }
        assert!(serves_issuer("http://[::1]", tid, "http://localhost:80"));
    }
}
