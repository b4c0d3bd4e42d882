//! An MSAL-shaped token cache: accounts, ID tokens, access tokens keyed by account and scopes, refresh tokens.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Scopes that never form part of an access token's target (MSAL drops them too).
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A set of resource scopes, normalized (lowercase, sorted, OIDC scopes removed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    pub fn parse(scopes: &str) -> Self {
        Self(
            scopes
                .split(' ')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty() && !OIDC_SCOPES.contains(&s.as_str()))
                .collect(),
        )
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    fn intersects(&self, other: &ScopeSet) -> bool {
        !self.0.is_disjoint(&other.0)
    }

    /// Space-separated, as stored in an access token's `target`.
    pub fn target(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join(" ")
    }
}

/// A signed-in account, as MSAL's `Account` entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// `{uid}.{utid}` from `client_info`.
    pub home_account_id: String,
    pub environment: String,
    pub realm: String,
    pub local_account_id: String,
    pub username: String,
    pub name: String,
}

/// An ID or refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub home_account_id: String,
    pub client_id: String,
    pub secret: String,
}

/// An access token for a set of scopes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    pub home_account_id: String,
    pub client_id: String,
    pub secret: String,
    /// Normalized scopes the token is good for.
    pub target: String,
    pub cached_at: u64,
    pub expires_on: u64,
    pub extended_expires_on: u64,
}

/// What a token response adds to the cache.
pub struct TokenGrant<'a> {
    pub account: Account,
    pub client_id: &'a str,
    pub access_token: &'a str,
    pub scope: &'a str,
    pub expires_in: u64,
    pub ext_expires_in: u64,
    pub id_token: Option<&'a str>,
    pub refresh_token: Option<&'a str>,
}

/// The whole cache, serialized as JSON in MSAL's section names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCache {
    #[serde(rename = "Account", default)]
    pub accounts: BTreeMap<String, Account>,
    #[serde(rename = "IdToken", default)]
    pub id_tokens: BTreeMap<String, Credential>,
    #[serde(rename = "AccessToken", default)]
    pub access_tokens: BTreeMap<String, AccessToken>,
    #[serde(rename = "RefreshToken", default)]
    pub refresh_tokens: BTreeMap<String, Credential>,
}

fn credential_key(account: &Account, kind: &str, client_id: &str, target: &str) -> String {
    format!(
        "{}-{}-{kind}-{client_id}-{}-{target}",
        account.home_account_id, account.environment, account.realm
    )
    .to_ascii_lowercase()
}

impl TokenCache {
    /// Stores a token response: the account, its ID token, its refresh token
    /// (one per account and client), and the access token, replacing any
    /// cached access token of that account whose scopes overlap (as MSAL does).
    pub fn add(&mut self, grant: TokenGrant<'_>, now: u64) {
        let account = grant.account;
        let scopes = ScopeSet::parse(grant.scope);
        let target = scopes.target();
        self.access_tokens.retain(|_, at| {
            !(at.home_account_id == account.home_account_id
                && at.client_id == grant.client_id
                && ScopeSet::parse(&at.target).intersects(&scopes))
        });
        self.access_tokens.insert(
            credential_key(&account, "accesstoken", grant.client_id, &target),
            AccessToken {
                home_account_id: account.home_account_id.clone(),
                client_id: grant.client_id.to_owned(),
                secret: grant.access_token.to_owned(),
                target,
                cached_at: now,
                expires_on: now + grant.expires_in,
                extended_expires_on: now + grant.ext_expires_in,
            },
        );
        let credential = |secret: &str| Credential {
            home_account_id: account.home_account_id.clone(),
            client_id: grant.client_id.to_owned(),
            secret: secret.to_owned(),
        };
        if let Some(id_token) = grant.id_token {
            self.id_tokens.insert(
                credential_key(&account, "idtoken", grant.client_id, ""),
                credential(id_token),
            );
        }
        if let Some(refresh) = grant.refresh_token {
            self.refresh_tokens.insert(
                credential_key(&account, "refreshtoken", grant.client_id, ""),
                credential(refresh),
            );
        }
        self.accounts
            .insert(account.home_account_id.to_ascii_lowercase(), account);
    }

    /// A cached access token covering `scopes` that does not expire within
    /// `renewal_offset` seconds (acquire-silent's first step).
    pub fn access_token(
        &self,
        home_account_id: &str,
        client_id: &str,
        scopes: &ScopeSet,
        now: u64,
        renewal_offset: u64,
    ) -> Option<&AccessToken> {
        self.access_tokens.values().find(|at| {
            at.home_account_id == home_account_id
                && at.client_id == client_id
                && scopes.is_subset(&ScopeSet::parse(&at.target))
                && at.expires_on > now + renewal_offset
        })
    }

    pub fn refresh_token(&self, home_account_id: &str, client_id: &str) -> Option<&str> {
        self.refresh_tokens
            .values()
            .find(|rt| rt.home_account_id == home_account_id && rt.client_id == client_id)
            .map(|rt| rt.secret.as_str())
    }

    pub fn id_token(&self, home_account_id: &str) -> Option<&str> {
        self.id_tokens
            .values()
            .find(|t| t.home_account_id == home_account_id)
            .map(|t| t.secret.as_str())
    }

    /// A cache holding only this account's entries.
    pub fn account_view(&self, home_account_id: &str) -> TokenCache {
        fn of<T: Clone>(
            map: &BTreeMap<String, T>,
            keep: impl Fn(&T) -> bool,
        ) -> BTreeMap<String, T> {
            map.iter()
                .filter(|(_, v)| keep(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }
        TokenCache {
            accounts: of(&self.accounts, |a| a.home_account_id == home_account_id),
            id_tokens: of(&self.id_tokens, |t| t.home_account_id == home_account_id),
            access_tokens: of(&self.access_tokens, |t| {
                t.home_account_id == home_account_id
            }),
            refresh_tokens: of(&self.refresh_tokens, |t| {
                t.home_account_id == home_account_id
            }),
        }
    }

    /// Removes an account and every token of it.
    pub fn remove_account(&mut self, home_account_id: &str) {
        self.accounts
            .retain(|_, a| a.home_account_id != home_account_id);
        self.id_tokens
            .retain(|_, t| t.home_account_id != home_account_id);
        self.access_tokens
            .retain(|_, t| t.home_account_id != home_account_id);
        self.refresh_tokens
            .retain(|_, t| t.home_account_id != home_account_id);
    }

    /// Entries of every kind.
    pub fn len(&self) -> usize {
        self.accounts.len()
            + self.id_tokens.len()
            + self.access_tokens.len()
            + self.refresh_tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(uid: &str) -> Account {
        Account {
            home_account_id: format!("{uid}.tenant"),
            environment: "127.0.0.1".into(),
            realm: "tenant".into(),
            local_account_id: uid.into(),
            username: uid.into(),
            name: uid.into(),
        }
    }

    fn grant<'a>(uid: &str, token: &'a str, scope: &'a str) -> TokenGrant<'a> {
        TokenGrant {
            account: account(uid),
            client_id: "app",
            access_token: token,
            scope,
            expires_in: 3600,
            ext_expires_in: 3600,
            id_token: Some("id"),
            refresh_token: Some("rt"),
        }
    }

    #[test]
    fn access_tokens_are_found_by_account_and_scope_subset_until_renewal() {
        let mut cache = TokenCache::default();
        cache.add(
            grant("u1", "at-read", "api://x/api.read api://x/data.read openid"),
            1000,
        );
        let read = ScopeSet::parse("api://x/api.read offline_access");
        assert_eq!(
            cache
                .access_token("u1.tenant", "app", &read, 1000, 300)
                .map(|t| t.secret.as_str()),
            Some("at-read")
        );
        assert!(
            cache
                .access_token("u2.tenant", "app", &read, 1000, 300)
                .is_none(),
            "other account"
        );
        assert!(
            cache
                .access_token(
                    "u1.tenant",
                    "app",
                    &ScopeSet::parse("api://x/api.write"),
                    1000,
                    300
                )
                .is_none()
        );
        assert!(
            cache
                .access_token("u1.tenant", "app", &read, 4400, 300)
                .is_none(),
            "within the renewal offset"
        );
        assert_eq!(cache.refresh_token("u1.tenant", "app"), Some("rt"));
    }

    #[test]
    fn an_overlapping_token_replaces_the_old_one_and_removal_clears_an_account() {
        let mut cache = TokenCache::default();
        cache.add(grant("u1", "old", "api://x/api.read"), 0);
        cache.add(grant("u1", "new", "api://x/api.read api://x/api.write"), 10);
        cache.add(grant("u2", "other", "api://x/api.read"), 10);
        assert_eq!(cache.access_tokens.len(), 2);
        let round_trip = TokenCache::from_bytes(&cache.to_bytes()).expect("json");
        assert_eq!(round_trip, cache);
        cache.remove_account("u1.tenant");
        assert_eq!(
            cache.len(),
            4,
            "u2's account, ID, access and refresh tokens remain"
        );
    }
}
