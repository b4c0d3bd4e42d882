//! One module per endpoint, and the request parsing they share.

pub mod admin;
pub mod api;
pub mod authorize;
pub mod discovery;
pub mod entra;
pub mod logout;
pub mod token;
pub mod userinfo;

use std::collections::HashMap;

use axum::http::{HeaderMap, header};

use crate::oauth_error::{ErrorCode, OAuthError};

/// Request parameters (query or form). Empty values count as absent
/// (RFC 6749 section 3.1), and a repeated parameter is an error.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text. On a repeated name, returns that name.
    pub fn parse(form: &[u8]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(form) {
            if value.is_empty() {
                continue;
            }
            if map
                .insert(key.clone().into_owned(), value.into_owned())
                .is_some()
            {
                return Err(key.into_owned());
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// The bearer token of a protected-resource request (RFC 6750 section 2.1).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, OAuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(OAuthError::bearer_missing());
    };
    if values.next().is_some() {
        return Err(OAuthError::bearer(
            ErrorCode::InvalidRequest,
            "more than one Authorization header",
        ));
    }
    let value = value.to_str().map_err(|_| {
        OAuthError::bearer(
            ErrorCode::InvalidRequest,
            "Authorization header is not ASCII",
        )
    })?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(if value.eq_ignore_ascii_case("bearer") {
            OAuthError::bearer(ErrorCode::InvalidRequest, "Bearer scheme without a token")
        } else {
            OAuthError::bearer_missing()
        });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(OAuthError::bearer_missing());
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(OAuthError::bearer(
            ErrorCode::InvalidRequest,
            "malformed bearer token",
        ));
    }
    Ok(token)
}

/// Whether a requested redirect URI matches a registered one: simple string
/// comparison (RFC 6749 section 3.1.2.3), except that a loopback HTTP URI may
/// name any port (RFC 8252 section 7.3). The raw text is compared, never a
/// parsed URL, because parsing forgives what must not match (it drops tabs,
/// CR and LF, and normalizes case and dots).
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (split_loopback(registered), split_loopback(requested)) {
        (Some(reg), Some(req)) => reg == req,
        _ => false,
    }
}

/// `http://` + loopback host + optional `:port` + rest: (host, rest), the port left out.
fn split_loopback(uri: &str) -> Option<(&str, &str)> {
    let after_scheme = uri.strip_prefix("http://")?;
    let host = ["127.0.0.1", "localhost", "[::1]"]
        .into_iter()
        .find(|h| after_scheme.starts_with(h))?;
    let after_host = &after_scheme[host.len()..];
    let rest = match after_host.strip_prefix(':') {
        Some(port_and_rest) => {
            let digits = port_and_rest.bytes().take_while(u8::is_ascii_digit).count();
            port_and_rest[..digits].parse::<u16>().ok()?;
            &port_and_rest[digits..]
        }
        None => after_host,
    };
    // The host must end where the authority does (not `localhost.evil.example`).
    if !(rest.is_empty() || rest.starts_with(['/', '?'])) {
        return None;
    }
    Some((host, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_any_port_and_nothing_else() {
        let reg = "http://127.0.0.1/auth/callback";
        assert!(redirect_uri_matches(
            reg,
            "http://127.0.0.1:49152/auth/callback"
        ));
        assert!(redirect_uri_matches(reg, "http://127.0.0.1/auth/callback"));
        assert!(!redirect_uri_matches(reg, "http://127.0.0.1:1/other"));
        assert!(!redirect_uri_matches(
            reg,
            "http://localhost:1/auth/callback"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "https://127.0.0.1:1/auth/callback"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "http://127.0.0.1:1/auth/callback#x"
        ));
        assert!(!redirect_uri_matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
        assert!(redirect_uri_matches(
            "http://127.0.0.1:8080/cb",
            "http://127.0.0.1:9/cb"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "http://127.0.0.1:/auth/callback"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "http://127.0.0.1:99999/auth/callback"
        ));
        assert!(!redirect_uri_matches(
            "http://localhost/cb",
            "http://localhost.evil.example/cb"
        ));
    }

    #[test]
    fn redirect_uris_compare_as_raw_text() {
        let reg = "http://127.0.0.1/auth/callback";
        for sneaky in [
            "http://127.0.0.1:5555/auth/call\r\nback",
            "http://127.0.0.1:5555/auth/callback\n",
            "http://127.0.0.1:5555/auth/\tcallback",
            "http://127.0.0.1:5555/auth/./callback",
            "http://127.0.0.1:5555/AUTH/callback",
            "HTTP://127.0.0.1:5555/auth/callback",
        ] {
            assert!(!redirect_uri_matches(reg, sneaky), "{sneaky:?}");
        }
        assert!(!redirect_uri_matches(
            "https://app.example/cb",
            "https://app.example/c\r\nb"
        ));
    }

    #[test]
    fn repeated_parameters_are_named_and_empty_ones_ignored() {
        assert_eq!(Params::parse(b"a=1&a=2").err(), Some("a".into()));
        let params = Params::parse(b"a=&b=2").expect("parses");
        assert!(!params.has("a"));
        assert_eq!(params.get("b"), Some("2"));
    }
}
