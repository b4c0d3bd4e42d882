//! Claims of ID and access tokens, how they are minted, and how access tokens are verified.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::SigningKey;
use crate::oauth_error::{ErrorCode, OAuthError};

/// Claims of an access token for the protected API (Entra v2 access-token shape).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user's `oid` for delegated tokens, the client id for app-only tokens.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    pub tid: String,
    /// IdP session; absent from app-only (client-credentials) tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub azp: String,
    /// Delegated scopes, space-separated short names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    /// Application permissions of app-only tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub ver: String,
}

/// Claims of an ID token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub oid: String,
    pub tid: String,
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub auth_time: u64,
    pub name: String,
    pub preferred_username: String,
    pub email: String,
    pub ver: String,
}

/// The `client_info` MSAL asks for (`client_info=1`): base64url of
/// `{"uid": oid, "utid": tid}`, from which it makes the account's home id.
pub fn client_info(oid: &str, tenant_id: &str) -> String {
    let json = serde_json::json!({ "uid": oid, "utid": tenant_id });
    URL_SAFE_NO_PAD.encode(json.to_string())
}

/// Verifies signature, algorithm and key id; time and audience are checked by
/// the caller against the IdP's clock (jsonwebtoken would read the system clock).
fn signature_only() -> Validation {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
}

/// Verifies an access token presented to the protected API or UserInfo.
pub fn verify_access_token(
    key: &SigningKey,
    token: &str,
    audience: &str,
    now: u64,
) -> Result<AccessClaims, OAuthError> {
    let invalid = |d: &str| OAuthError::bearer(ErrorCode::InvalidToken, d);
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| invalid("token is not a signed JWT"))?;
    if header.kid.as_deref() != Some(key.kid()) {
        return Err(invalid("token was not signed by a key of this provider"));
    }
    let data = jsonwebtoken::decode::<AccessClaims>(token, key.decoding_key(), &signature_only())
        .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid("signature does not verify"),
        jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => invalid("algorithm must be ES256"),
        _ => invalid("token claims are malformed"),
    })?;
    check_time_and_audience(&data.claims, audience, now)?;
    Ok(data.claims)
}

fn check_time_and_audience(
    claims: &AccessClaims,
    audience: &str,
    now: u64,
) -> Result<(), OAuthError> {
    let invalid = |d: &str| OAuthError::bearer(ErrorCode::InvalidToken, d);
    if claims.aud != audience {
        return Err(invalid("token is for another audience"));
    }
    if claims.exp <= now {
        return Err(invalid("token has expired"));
    }
    if claims.nbf > now {
        return Err(invalid("token is not yet valid"));
    }
    Ok(())
}

/// Verifies an ID token's signature for use as `id_token_hint`; expiry does not matter there.
pub fn verify_id_token_hint(key: &SigningKey, token: &str) -> Option<IdClaims> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.kid.as_deref() != Some(key.kid()) {
        return None;
    }
    jsonwebtoken::decode::<IdClaims>(token, key.decoding_key(), &signature_only())
        .ok()
        .map(|d| d.claims)
}

/// Access tokens whose signature already verified, keyed by their exact text.
///
/// An app presents the same cached access token many times over its
/// lifetime, and ES256 verification is the dearest step of a protected call
/// (about 110 us on this project's 2-core machines; OpenSSL does no better).
/// A token with the same bytes carries the same signature, so its signature
/// result can be reused; expiry, `nbf`, audience and the session policy are
/// still checked on every call. A tampered token has other bytes and misses.
pub struct VerifiedTokens {
    capacity: usize,
    entries: parking_lot::RwLock<std::collections::HashMap<String, std::sync::Arc<AccessClaims>>>,
}

impl VerifiedTokens {
    /// A cache of at most `capacity` tokens; 0 turns it off.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Default::default(),
        }
    }

    /// Verifies a token, from the cache when its signature was seen before.
    pub fn verify(
        &self,
        key: &SigningKey,
        token: &str,
        audience: &str,
        now: u64,
    ) -> Result<std::sync::Arc<AccessClaims>, OAuthError> {
        if let Some(claims) = self.entries.read().get(token).cloned() {
            check_time_and_audience(&claims, audience, now)?;
            return Ok(claims);
        }
        let claims = std::sync::Arc::new(verify_access_token(key, token, audience, now)?);
        if self.capacity > 0 {
            let mut entries = self.entries.write();
            if entries.len() >= self.capacity {
                // Expired tokens are worthless; if none are, start over rather
                // than track recency on the read path.
                entries.retain(|_, c| c.exp > now);
                if entries.len() >= self.capacity {
                    entries.clear();
                }
            }
            entries.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }
}
