//! IdP configuration: clients, users, token lifetimes and policies, from TOML with defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::faults::FaultConfig;
use crate::limits::Limits;

/// Everything that shapes the IdP's behaviour. `IdpConfig::default()` is a
/// working provider: one confidential client, a few users, and automatic
/// creation of any user a `login_hint` names.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdpConfig {
    /// Tenant id reported as `tid` and in `client_info.utid`.
    pub tenant_id: String,
    /// Audience (`aud`) of access tokens for the protected API.
    pub api_audience: String,
    /// Scopes of the protected API, short form (`api.read`); requests may use
    /// the short form or `{api_audience}/{scope}`.
    pub api_scopes: Vec<String>,
    /// Lifetime of access tokens, seconds.
    pub access_token_lifetime_secs: u64,
    /// Lifetime of ID tokens, seconds.
    pub id_token_lifetime_secs: u64,
    /// Lifetime of each refresh token from the moment it is issued, seconds.
    pub refresh_token_lifetime_secs: u64,
    /// Lifetime of authorization codes, seconds.
    pub auth_code_lifetime_secs: u64,
    /// What happens when a refresh token that was already rotated is presented again.
    pub refresh_reuse: ReusePolicy,
    /// What the protected API does with a token whose IdP session has ended.
    pub ended_session_tokens: EndedSessionPolicy,
    /// When true, a `login_hint` that names no configured user creates one.
    pub auto_provision_users: bool,
    /// How many verified access tokens the protected API remembers, so a token
    /// presented again skips signature verification (0 turns this off).
    pub verified_token_cache: usize,
    /// Seed for the signing key; when set, keys (and so `kid`) are the same on every start.
    pub key_seed: Option<String>,
    /// Registered OAuth clients.
    pub clients: Vec<ClientConfig>,
    /// Known users. The first is signed in when `/authorize` gets no `login_hint`.
    pub users: Vec<UserConfig>,
    /// Faults active from the start; the admin endpoint changes them at run time.
    pub faults: FaultConfig,
    /// Header and body read timeouts, body size and connection caps.
    pub limits: Limits,
}

/// Refresh-token reuse policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReusePolicy {
    /// A rotated refresh token stays valid until it expires (as Entra ID does).
    Allow,
    /// Reuse of a rotated refresh token revokes its whole family (strict providers).
    RevokeFamily,
}

/// How `/api/me` and `/userinfo` treat a token whose IdP session has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndedSessionPolicy {
    /// Accept it until it expires, as self-contained JWTs are; the event is counted.
    Accept,
    /// Reject it with `invalid_token`; the event is counted.
    Reject,
}

/// Grant types a client may use at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    /// The `grant_type` parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }

    /// Parses a `grant_type` parameter value.
    pub fn parse(value: &str) -> Option<Self> {
        [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ]
        .into_iter()
        .find(|g| g.as_str() == value)
    }
}

/// A registered OAuth client.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    /// Confidential clients have a secret; a client without one is public and
    /// must use PKCE (it always must here) and cannot use `client_credentials`.
    pub client_secret: Option<String>,
    /// Redirect URIs. A loopback URI (`http://127.0.0.1/...`, `http://localhost/...`,
    /// `http://[::1]/...`) matches any port, as RFC 8252 allows.
    pub redirect_uris: Vec<String>,
    /// Where `/logout` may send the browser afterwards; loopback URIs match any port.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default = "all_grant_types")]
    pub grant_types: Vec<GrantType>,
    /// API scopes (short form) this client may obtain; empty means all of them.
    #[serde(default)]
    pub allowed_scopes: Vec<String>,
}

fn all_grant_types() -> Vec<GrantType> {
    vec![
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ]
}

/// A user that can sign in.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The `login_hint` that selects this user; also `preferred_username`.
    pub username: String,
    /// Object id (`oid`, and `sub`); derived from the username when absent.
    pub oid: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// Default client id, secret and redirect URIs, so the IdP and the app work with no configuration.
pub const DEFAULT_CLIENT_ID: &str = "harness-app";
pub const DEFAULT_CLIENT_SECRET: &str = "harness-secret";

impl Default for IdpConfig {
    fn default() -> Self {
        Self {
            tenant_id: "9188040d-6c67-4c5b-b112-36a304b66dad".into(),
            api_audience: "api://mock-api".into(),
            api_scopes: ["api.read", "api.write", "data.read", "data.write"]
                .map(String::from)
                .to_vec(),
            access_token_lifetime_secs: 3600,
            id_token_lifetime_secs: 3600,
            refresh_token_lifetime_secs: 86_400,
            auth_code_lifetime_secs: 60,
            refresh_reuse: ReusePolicy::Allow,
            ended_session_tokens: EndedSessionPolicy::Accept,
            auto_provision_users: true,
            verified_token_cache: 100_000,
            key_seed: None,
            clients: vec![ClientConfig {
                client_id: DEFAULT_CLIENT_ID.into(),
                client_secret: Some(DEFAULT_CLIENT_SECRET.into()),
                redirect_uris: vec![
                    "http://127.0.0.1/auth/callback".into(),
                    "http://localhost/auth/callback".into(),
                ],
                post_logout_redirect_uris: vec![
                    "http://127.0.0.1/".into(),
                    "http://localhost/".into(),
                ],
                grant_types: all_grant_types(),
                allowed_scopes: Vec::new(),
            }],
            users: ["alice", "bob", "carol"]
                .map(|u| UserConfig {
                    username: u.into(),
                    oid: None,
                    name: None,
                    email: None,
                })
                .to_vec(),
            faults: FaultConfig::default(),
            limits: Limits::default(),
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read IdP config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The message of `toml` names the line and column and quotes the line.
    #[error("invalid IdP config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid IdP config: {0}")]
    Invalid(String),
}

impl IdpConfig {
    /// Reads a TOML file; missing keys take their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: IdpConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: references between fields and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        // The tenant id is a path segment of Entra-shaped URLs and of the tenant issuer.
        let segment_ok = !self.tenant_id.is_empty()
            && self
                .tenant_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            && !["common", "organizations", "consumers"]
                .contains(&self.tenant_id.to_ascii_lowercase().as_str());
        if !segment_ok {
            return invalid(format!(
                "tenant_id {:?} must be letters, digits, '-', '.' or '_', and not common, \
                 organizations or consumers",
                self.tenant_id
            ));
        }
        if self.access_token_lifetime_secs == 0 || self.refresh_token_lifetime_secs == 0 {
            return invalid("token lifetimes must be at least one second".into());
        }
        for client in &self.clients {
            if client.redirect_uris.is_empty()
                && client.grant_types.contains(&GrantType::AuthorizationCode)
            {
                return invalid(format!(
                    "client {} uses authorization_code but has no redirect_uris",
                    client.client_id
                ));
            }
            for uri in client
                .redirect_uris
                .iter()
                .chain(&client.post_logout_redirect_uris)
            {
                if url::Url::parse(uri).is_err() {
                    return invalid(format!(
                        "client {}: {uri:?} is not an absolute URL",
                        client.client_id
                    ));
                }
            }
            if client.client_secret.is_none()
                && client.grant_types.contains(&GrantType::ClientCredentials)
            {
                return invalid(format!(
                    "client {} has no secret, so it cannot use client_credentials",
                    client.client_id
                ));
            }
            if let Some(s) = client
                .allowed_scopes
                .iter()
                .find(|s| !self.api_scopes.contains(s))
            {
                return invalid(format!(
                    "client {} allows scope {s:?}, which is not in api_scopes",
                    client.client_id
                ));
            }
        }
        self.limits.validate().map_err(ConfigError::Invalid)?;
        self.faults.validate().map_err(ConfigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config: IdpConfig = toml::from_str("").expect("empty config parses");
        assert_eq!(config.clients[0].client_id, DEFAULT_CLIENT_ID);
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn a_parse_error_names_file_line_and_column() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("idp.toml");
        std::fs::write(
            &path,
            "tenant_id = \"t\"\naccess_token_lifetime_secs = \"soon\"\n",
        )
        .expect("write config");
        let err = IdpConfig::from_file(&path).expect_err("string lifetime is rejected");
        let text = err.to_string();
        assert!(text.contains("idp.toml"), "{text}");
        assert!(text.contains("line 2, column 30"), "{text}");
    }

    #[test]
    fn limits_and_tenant_id_are_checked() {
        let config: IdpConfig = toml::from_str(
            "tenant_id = \"contoso-1\"\n[limits]\nheader_read_timeout_secs = 5\nmax_connections = 8\n",
        )
        .expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.limits.header_read_timeout_secs, 5);
        assert_eq!(
            config.limits.body_read_timeout_secs, 30,
            "the rest keep defaults"
        );
        for bad in [
            "[limits]\nmax_connections = 0",
            "[limits]\nmax_body_bytes = 0",
            "tenant_id = \"a/b\"",
            "tenant_id = \"Common\"",
            "tenant_id = \"\"",
        ] {
            let config: IdpConfig = toml::from_str(bad).expect("parses");
            assert!(config.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<IdpConfig>("acces_token_lifetime_secs = 5").expect_err("typo");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
