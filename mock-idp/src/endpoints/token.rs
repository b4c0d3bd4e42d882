//! `/token`: authorization code (with PKCE), refresh token (with rotation) and client credentials.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Params;
use crate::Idp;
use crate::config::{ClientConfig, GrantType};
use crate::grants::{Family, RefreshRefusal};
use crate::issuer::Issuer;
use crate::oauth_error::{ErrorCode, OAuthError};
use crate::scope::Scopes;
use crate::tokens::{AccessClaims, IdClaims, client_info};

/// `POST /token`
pub async fn token(
    State(idp): State<Idp>,
    Issuer(issuer): Issuer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(&idp, &issuer, &headers, &body)
}

/// Answers a token request; tokens name `issuer` as theirs.
pub fn respond(idp: &Idp, issuer: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let params = Params::parse(body);
    let grant_label = match &params {
        Ok(p) => match p.get("grant_type") {
            Some(g) if GrantType::parse(g).is_some() => g.to_owned(),
            Some(_) => "unsupported".to_owned(),
            None => "missing".to_owned(),
        },
        Err(_) => "unparsed".to_owned(),
    };
    let result = match params {
        Ok(params) => handle(idp, issuer, headers, &params),
        Err(name) => Err(OAuthError::token(
            ErrorCode::InvalidRequest,
            format!("parameter {name} is repeated"),
        )),
    };
    let outcome = result.as_ref().map_or_else(OAuthError::label, |_| "ok");
    idp.stats().token_calls.inc(&[&grant_label, outcome]);
    match result {
        Ok(body) => {
            let mut response = Json(body).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

fn handle(
    idp: &Idp,
    issuer: &str,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Value, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::token(
            ErrorCode::InvalidRequest,
            "body must be application/x-www-form-urlencoded",
        ));
    }
    let grant = match params.get("grant_type") {
        None => {
            return Err(OAuthError::token(
                ErrorCode::InvalidRequest,
                "grant_type is required",
            ));
        }
        Some(g) => GrantType::parse(g).ok_or_else(|| {
            OAuthError::token(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type {g} is not supported"),
            )
        })?,
    };
    let client = authenticate(idp, headers, params)?;
    if !client.grant_types.contains(&grant) {
        return Err(OAuthError::token(
            ErrorCode::UnauthorizedClient,
            format!("client may not use the {} grant", grant.as_str()),
        ));
    }
    let minter = Minter {
        idp,
        issuer,
        client,
    };
    match grant {
        GrantType::AuthorizationCode => minter.redeem_code(params),
        GrantType::RefreshToken => minter.refresh(params),
        GrantType::ClientCredentials => minter.client_credentials(params),
    }
}

/// Client authentication: HTTP Basic or `client_secret_post`, never both
/// (RFC 6749 section 2.3.1), or `client_id` alone for a public client.
fn authenticate<'a>(
    idp: &'a Idp,
    headers: &HeaderMap,
    params: &Params,
) -> Result<&'a ClientConfig, OAuthError> {
    let invalid_client = |d: &str| OAuthError::token(ErrorCode::InvalidClient, d);
    if params.has("client_assertion") || params.has("client_assertion_type") {
        return Err(invalid_client(
            "client assertions (private_key_jwt) are not supported",
        ));
    }
    let (client_id, secret) = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let (id, secret) = basic_credentials(value)
                .ok_or_else(|| invalid_client("malformed HTTP Basic credentials"))?;
            if params.has("client_secret") {
                return Err(OAuthError::token(
                    ErrorCode::InvalidRequest,
                    "more than one client authentication method",
                ));
            }
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(OAuthError::token(
                    ErrorCode::InvalidRequest,
                    "client_id differs from the authenticated client",
                ));
            }
            (id, Some(secret))
        }
        None => match params.get("client_id") {
            Some(id) => (
                id.to_owned(),
                params.get("client_secret").map(str::to_owned),
            ),
            None => return Err(invalid_client("no client authentication")),
        },
    };
    let client = idp
        .config()
        .clients
        .iter()
        .find(|c| c.client_id == client_id)
        .ok_or_else(|| invalid_client("unknown client"))?;
    match (&client.client_secret, secret) {
        (Some(expected), Some(given))
            if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) =>
        {
            Ok(client)
        }
        (Some(_), Some(_)) => Err(invalid_client("wrong client secret")),
        (Some(_), None) => Err(invalid_client("client secret is required")),
        (None, None) => Ok(client),
        (None, Some(_)) => Err(invalid_client("this public client has no secret")),
    }
}

/// Decodes `Basic base64(urlencode(id):urlencode(secret))`.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// Issues tokens for one authenticated client.
struct Minter<'a> {
    idp: &'a Idp,
    issuer: &'a str,
    client: &'a ClientConfig,
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::token(ErrorCode::InvalidGrant, description)
}

fn required<'p>(params: &'p Params, name: &str) -> Result<&'p str, OAuthError> {
    params
        .get(name)
        .ok_or_else(|| OAuthError::token(ErrorCode::InvalidRequest, format!("{name} is required")))
}

impl Minter<'_> {
    fn redeem_code(&self, params: &Params) -> Result<Value, OAuthError> {
        let code = required(params, "code")?;
        let redirect_uri = required(params, "redirect_uri")?;
        let verifier = required(params, "code_verifier")?;
        let inner = &self.idp.inner;
        let now = self.idp.clock().now();
        let mut grants = inner.grants.lock();
        let grant = grants
            .redeem_code(code, &self.client.client_id, now)
            .map_err(invalid_grant)?;
        if grant.redirect_uri != redirect_uri {
            return Err(invalid_grant(
                "redirect_uri differs from the authorization request",
            ));
        }
        // RFC 7636: 43 to 128 unreserved characters, whose S256 digest is the challenge.
        let verifier_ok = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if !verifier_ok || digest != grant.code_challenge {
            return Err(invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        let family = Family {
            client_id: grant.client_id.clone(),
            user: grant.user.clone(),
            sid: grant.sid.clone(),
            scopes: grant.scopes.clone(),
            auth_time: grant.auth_time,
            revoked: false,
        };
        let family_id = grants.start_family(code, grant.expires_at, family.clone());
        let refresh = family.scopes.has("offline_access").then(|| {
            grants.issue_refresh(
                family_id,
                now + inner.config.refresh_token_lifetime_secs,
                now,
            )
        });
        drop(grants);
        self.user_tokens(
            &family,
            &family.scopes,
            grant.nonce.as_deref(),
            refresh,
            now,
        )
    }

    fn refresh(&self, params: &Params) -> Result<Value, OAuthError> {
        let presented = required(params, "refresh_token")?;
        let inner = &self.idp.inner;
        // Checked before rotation, so a bad request does not use up the token.
        let requested_scopes = params
            .get("scope")
            .map(|requested| Scopes::parse(requested, &inner.config, self.client))
            .transpose()
            .map_err(|s| {
                OAuthError::token(
                    ErrorCode::InvalidScope,
                    format!("scope {s} is not available to this client"),
                )
            })?;
        let stats = self.idp.stats();
        let now = self.idp.clock().now();
        let policy = inner.config.refresh_reuse;
        let mut grants = inner.grants.lock();
        let rotation = match grants.rotate_refresh(presented, &self.client.client_id, now, policy) {
            Ok(rotation) => rotation,
            Err(refusal) => {
                match refusal {
                    RefreshRefusal::SessionEnded => {
                        stats.ended_session_tokens.inc(&["refresh_token"])
                    }
                    RefreshRefusal::ReuseRevokedFamily => {
                        stats.refresh_reuse.inc(&["family_revoked"]);
                        if let Some(sid) = grants.family_sid(presented) {
                            stats.refresh_reuse_by_session.inc(&[sid, "family_revoked"]);
                        }
                    }
                    _ => {}
                }
                return Err(invalid_grant(refusal.description()));
            }
        };
        if rotation.was_reuse {
            stats.refresh_reuse.inc(&["allowed"]);
            stats
                .refresh_reuse_by_session
                .inc(&[&rotation.family.sid, "allowed"]);
        }
        let scopes = requested_scopes.unwrap_or_else(|| rotation.family.scopes.clone());
        let refresh = grants.issue_refresh(
            rotation.family_id,
            now + inner.config.refresh_token_lifetime_secs,
            now,
        );
        drop(grants);
        self.user_tokens(&rotation.family, &scopes, None, Some(refresh), now)
    }

    fn client_credentials(&self, params: &Params) -> Result<Value, OAuthError> {
        let config = &self.idp.inner.config;
        let invalid_scope = |d: String| OAuthError::token(ErrorCode::InvalidScope, d);
        let requested = params.get("scope").ok_or_else(|| {
            invalid_scope(format!(
                "scope is required, for example {}/.default",
                config.api_audience
            ))
        })?;
        let scopes = Scopes::parse(requested, config, self.client)
            .map_err(|s| invalid_scope(format!("scope {s} is not available to this client")))?;
        if !scopes.oidc.is_empty() || scopes.api.is_empty() {
            return Err(invalid_scope(
                "client credentials take API scopes only".into(),
            ));
        }
        let now = self.idp.clock().now();
        let claims = AccessClaims {
            iss: self.issuer.to_owned(),
            aud: config.api_audience.clone(),
            sub: self.client.client_id.clone(),
            oid: None,
            tid: config.tenant_id.clone(),
            sid: None,
            azp: self.client.client_id.clone(),
            scp: None,
            roles: Some(scopes.api.iter().cloned().collect()),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now + config.access_token_lifetime_secs,
            ver: "2.0".into(),
        };
        let mut body = self.access_token_body(&claims, &scopes)?;
        body.remove("refresh_token");
        Ok(Value::Object(body))
    }

    /// The response to a user grant: access token, ID token when `openid` was
    /// granted, refresh token when given, and `client_info` as MSAL expects.
    fn user_tokens(
        &self,
        family: &Family,
        scopes: &Scopes,
        nonce: Option<&str>,
        refresh: Option<String>,
        now: u64,
    ) -> Result<Value, OAuthError> {
        let config = &self.idp.inner.config;
        let user = &family.user;
        let access = AccessClaims {
            iss: self.issuer.to_owned(),
            aud: config.api_audience.clone(),
            sub: user.oid.clone(),
            oid: Some(user.oid.clone()),
            tid: config.tenant_id.clone(),
            sid: Some(family.sid.clone()),
            azp: self.client.client_id.clone(),
            scp: Some(scopes.scp_value()),
            roles: None,
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now + config.access_token_lifetime_secs,
            ver: "2.0".into(),
        };
        let mut body = self.access_token_body(&access, scopes)?;
        if family.scopes.has("openid") {
            let id = IdClaims {
                iss: self.issuer.to_owned(),
                aud: self.client.client_id.clone(),
                sub: user.oid.clone(),
                oid: user.oid.clone(),
                tid: config.tenant_id.clone(),
                sid: family.sid.clone(),
                nonce: nonce.map(str::to_owned),
                iat: now,
                nbf: now,
                exp: now + config.id_token_lifetime_secs,
                auth_time: family.auth_time,
                name: user.name.clone(),
                preferred_username: user.username.clone(),
                email: user.email.clone(),
                ver: "2.0".into(),
            };
            body.insert("id_token".into(), Value::from(self.sign(&id)?));
        }
        if let Some(refresh) = refresh {
            body.insert("refresh_token".into(), Value::from(refresh));
        }
        body.insert(
            "client_info".into(),
            Value::from(client_info(&user.oid, &config.tenant_id)),
        );
        Ok(Value::Object(body))
    }

    fn access_token_body(
        &self,
        claims: &AccessClaims,
        scopes: &Scopes,
    ) -> Result<Map<String, Value>, OAuthError> {
        let lifetime = claims.exp - claims.iat;
        let mut body = Map::new();
        body.insert("token_type".into(), Value::from("Bearer"));
        body.insert("access_token".into(), Value::from(self.sign(claims)?));
        body.insert("expires_in".into(), Value::from(lifetime));
        body.insert("ext_expires_in".into(), Value::from(lifetime));
        body.insert("scope".into(), Value::from(scopes.response_value()));
        Ok(body)
    }

    fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, OAuthError> {
        self.idp.inner.keys.sign(claims).map_err(|e| {
            OAuthError::token(ErrorCode::ServerError, format!("cannot sign a token: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let value =
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("my%20app:s%3Acret")))
                .expect("header");
        assert_eq!(
            basic_credentials(&value),
            Some(("my app".into(), "s:cret".into()))
        );
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Basic !!!")),
            None
        );
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Bearer x")),
            None
        );
    }
}
