//! Scope parsing: OpenID Connect scopes plus the protected API's scopes, in short or full form.

use std::collections::BTreeSet;

use crate::config::{ClientConfig, IdpConfig};

/// The OpenID Connect scopes this provider understands.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A granted set of scopes, split into OIDC scopes and API scopes (short form),
/// remembering the form in which the client wrote each API scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    pub oidc: BTreeSet<String>,
    pub api: BTreeSet<String>,
    /// API scopes as the client wrote them (`api.read` or `api://mock-api/api.read`;
    /// `.default` expanded in its own form). The token response answers in these
    /// forms because MSAL caches an access token under the response's scopes and
    /// looks it up under the scopes the app asks for, as Entra ID lets it.
    asked: BTreeSet<String>,
}

impl Scopes {
    /// Parses a space-separated `scope` parameter for `client`. API scopes may be
    /// short (`api.read`) or prefixed with the API audience (`api://mock-api/api.read`);
    /// `{audience}/.default` means every API scope the client may have.
    /// On failure, names the scope that is not allowed.
    pub fn parse(
        requested: &str,
        config: &IdpConfig,
        client: &ClientConfig,
    ) -> Result<Self, String> {
        let mut scopes = Scopes::default();
        let prefix = format!("{}/", config.api_audience);
        for item in requested.split(' ').filter(|s| !s.is_empty()) {
            if OIDC_SCOPES.contains(&item) {
                scopes.oidc.insert(item.to_owned());
                continue;
            }
            let (short, form) = match item.strip_prefix(&prefix) {
                Some(short) => (short, prefix.as_str()),
                None => (item, ""),
            };
            if short == ".default" {
                for scope in allowed_api_scopes(config, client) {
                    scopes.insert_api(scope, form);
                }
            } else if allowed_api_scopes(config, client).any(|s| s == short) {
                scopes.insert_api(short, form);
            } else {
                return Err(item.to_owned());
            }
        }
        Ok(scopes)
    }

    /// Grants the API scope `short`, written with `form` before it (`""` or the audience and `/`).
    fn insert_api(&mut self, short: &str, form: &str) {
        self.api.insert(short.to_owned());
        self.asked.insert(format!("{form}{short}"));
    }

    pub fn is_empty(&self) -> bool {
        self.oidc.is_empty() && self.api.is_empty()
    }

    pub fn has(&self, oidc_scope: &str) -> bool {
        self.oidc.contains(oidc_scope)
    }

    /// The `scope` value of a token response: API scopes in the form the client
    /// asked for them, then OIDC scopes.
    pub fn response_value(&self) -> String {
        self.asked
            .iter()
            .chain(&self.oidc)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The access token's `scp`: API scopes in short form, or the OIDC scopes when
    /// no API scope was granted (such a token is good for UserInfo only).
    pub fn scp_value(&self) -> String {
        let set = if self.api.is_empty() {
            &self.oidc
        } else {
            &self.api
        };
        set.iter().cloned().collect::<Vec<_>>().join(" ")
    }
}

fn allowed_api_scopes<'a>(
    config: &'a IdpConfig,
    client: &'a ClientConfig,
) -> impl Iterator<Item = &'a str> {
    let list = if client.allowed_scopes.is_empty() {
        &config.api_scopes
    } else {
        &client.allowed_scopes
    };
    list.iter().map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_full_and_default_forms_parse() {
        let config = IdpConfig::default();
        let client = &config.clients[0];
        let s = Scopes::parse(
            "openid  offline_access api://mock-api/api.read data.read",
            &config,
            client,
        )
        .expect("valid scopes");
        assert_eq!(s.api.iter().collect::<Vec<_>>(), ["api.read", "data.read"]);
        assert!(s.has("openid") && s.has("offline_access"));
        assert_eq!(s.scp_value(), "api.read data.read");
        let all = Scopes::parse("api://mock-api/.default", &config, client).expect(".default");
        assert_eq!(all.api.len(), config.api_scopes.len());
        assert_eq!(
            Scopes::parse("openid admin.all", &config, client),
            Err("admin.all".into())
        );
    }

    #[test]
    fn the_response_answers_each_api_scope_in_the_form_it_was_asked() {
        let config = IdpConfig::default();
        let client = &config.clients[0];
        let answer = |asked: &str| {
            Scopes::parse(asked, &config, client)
                .expect("valid scopes")
                .response_value()
        };
        assert_eq!(
            answer("api.read openid offline_access"),
            "api.read offline_access openid"
        );
        assert_eq!(
            answer("openid api://mock-api/api.read"),
            "api://mock-api/api.read openid"
        );
        assert_eq!(
            answer("data.read api://mock-api/api.write"),
            "api://mock-api/api.write data.read",
            "per scope, not per request"
        );
        assert_eq!(
            answer("api://mock-api/.default"),
            "api://mock-api/api.read api://mock-api/api.write \
             api://mock-api/data.read api://mock-api/data.write"
        );
    }
}
