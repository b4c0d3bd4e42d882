//! Reply bodies and header names of the contract, as JSON on the wire.
//!
//! Readers are lenient where an external app may say more (unknown fields
//! are ignored) and strict where the checker relies on a value.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every response names the instance that answered.
pub const INSTANCE_HEADER: &str = "x-instance";
/// Responses of requests with a session carry its version, monotonic per session.
pub const SESSION_VERSION_HEADER: &str = "x-session-version";

/// Where the access token behind an API call came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenSource {
    /// A cached access token, no call to the IdP.
    Cache,
    /// The refresh token was redeemed for it.
    Refresh,
    /// The app does not say (an external app without the field's meaning).
    None,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Cache => "cache",
            TokenSource::Refresh => "refresh",
            TokenSource::None => "none",
        }
    }
}

/// The protected API's echo of the token the app presented.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiEcho {
    /// The user the token belongs to.
    pub sub: String,
    /// The IdP session the token was issued in (absent for app-only tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The token's own id.
    pub jti: String,
    /// Delegated scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    pub iat: u64,
    pub exp: u64,
}

/// `GET /profile` and `GET /data/{resource}`: a silently acquired token, used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileReply {
    /// The signed-in user's name.
    pub user: String,
    pub token_source: TokenSource,
    pub api: ApiEcho,
    /// For `/data/{resource}`: the resource asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// For `/data/{resource}`: the scopes its token was acquired for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
}

/// The most items one session's cart holds: a write past it is refused
/// with 409 `cart_full`, so no client can grow its record (and the cost of
/// every write of it, which rewrites the whole record) without bound.
pub const CART_MAX_ITEMS: usize = 10_000;

/// The most bytes a cart's items may add up to (their lengths summed);
/// past it, 409 `cart_full` as for [`CART_MAX_ITEMS`].
pub const CART_MAX_BYTES: usize = 256 << 10;

/// The longest item id (`POST /cart` refuses a longer one with 400).
pub const CART_ITEM_MAX_BYTES: usize = 256;

/// `POST /cart` body: a client-chosen unique item id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartItem {
    pub item: String,
}

/// `POST /cart` and `GET /cart`: the session's items in the order written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartReply {
    pub version: u64,
    pub items: Vec<String>,
}

/// `GET /`: who this browser is signed in as, if anyone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeReply {
    pub instance: String,
    pub signed_in: bool,
    #[serde(default)]
    pub user: Option<String>,
}

/// `GET /logout` (when it answers 2xx rather than redirecting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutReply {
    pub signed_out: bool,
    /// Whether the IdP's session ended too (the app asked and it answered).
    pub idp_session_ended: bool,
}

/// Every error: `{"error": CODE, "detail": TEXT}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: ErrorCode,
    #[serde(default)]
    pub detail: String,
}

/// The error codes the contract names; any other code is kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ErrorCode {
    /// 401: no session, or one without a user.
    NotSignedIn,
    /// 401: the IdP refused a grant; the user must sign in again.
    SigninRequired,
    /// 400.
    BadRequest,
    /// 503: a store is down.
    StoreUnavailable,
    /// 503: compare-and-set writes kept conflicting.
    WriteContention,
    /// 500.
    StoreMisconfigured,
    /// 503: the IdP is down, slow or throttling.
    IdpUnavailable,
    /// 502: the IdP answered with something unusable.
    IdpError,
    /// 409: the cart holds [`CART_MAX_ITEMS`] items or [`CART_MAX_BYTES`] bytes.
    CartFull,
    Other(String),
}

impl ErrorCode {
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::NotSignedIn => "not_signed_in",
            ErrorCode::SigninRequired => "signin_required",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::WriteContention => "write_contention",
            ErrorCode::StoreMisconfigured => "store_misconfigured",
            ErrorCode::IdpUnavailable => "idp_unavailable",
            ErrorCode::IdpError => "idp_error",
            ErrorCode::CartFull => "cart_full",
            ErrorCode::Other(code) => code,
        }
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        match code.as_str() {
            "not_signed_in" => ErrorCode::NotSignedIn,
            "signin_required" => ErrorCode::SigninRequired,
            "bad_request" => ErrorCode::BadRequest,
            "store_unavailable" => ErrorCode::StoreUnavailable,
            "write_contention" => ErrorCode::WriteContention,
            "store_misconfigured" => ErrorCode::StoreMisconfigured,
            "idp_unavailable" => ErrorCode::IdpUnavailable,
            "idp_error" => ErrorCode::IdpError,
            "cart_full" => ErrorCode::CartFull,
            _ => ErrorCode::Other(code),
        }
    }
}

impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::Other(code) => code,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_unknown_ones_are_kept() {
        for code in [
            ErrorCode::NotSignedIn,
            ErrorCode::SigninRequired,
            ErrorCode::BadRequest,
            ErrorCode::StoreUnavailable,
            ErrorCode::WriteContention,
            ErrorCode::StoreMisconfigured,
            ErrorCode::IdpUnavailable,
            ErrorCode::IdpError,
            ErrorCode::CartFull,
        ] {
            let text = serde_json::to_string(&code).expect("serializes");
            assert_eq!(text, format!("\"{}\"", code.as_str()));
            assert_eq!(
                serde_json::from_str::<ErrorCode>(&text).expect("reads"),
                code
            );
        }
        let odd: ErrorReply =
            serde_json::from_str(r#"{"error": "teapot"}"#).expect("an unknown code reads");
        assert_eq!(odd.error, ErrorCode::Other("teapot".into()));
        assert_eq!(odd.detail, "");
    }

    #[test]
    fn a_profile_reply_reads_the_wire_names_and_ignores_extra_fields() {
        let reply: ProfileReply = serde_json::from_str(
            r#"{"user": "alice", "token_source": "refresh", "instance": "x",
                "api": {"sub": "s", "sid": "i", "jti": "j", "scp": "api.read", "iat": 1, "exp": 2, "azp": "c"}}"#,
        )
        .expect("reads");
        assert_eq!(reply.token_source, TokenSource::Refresh);
        assert_eq!(reply.api.sid.as_deref(), Some("i"));
        assert_eq!(reply.resource, None);
        let written = serde_json::to_value(&reply).expect("writes");
        assert_eq!(written["token_source"], "refresh");
        assert!(written.get("resource").is_none());
        assert!(
            serde_json::from_str::<ProfileReply>(r#"{"user": "a", "source": "cache"}"#).is_err()
        );
    }
}
