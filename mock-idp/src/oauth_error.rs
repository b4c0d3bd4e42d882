//! OAuth 2.0 (RFC 6749) and bearer-token (RFC 6750) error responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The `error` codes this provider answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    LoginRequired,
    InvalidToken,
    InsufficientScope,
    /// Entra ID's answer for a tenant it does not know.
    InvalidTenant,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InvalidTenant => "invalid_tenant",
            ErrorCode::ServerError => "server_error",
        }
    }
}

/// An error answered directly (not by redirect), with the status and
/// `WWW-Authenticate` challenge its RFC asks for.
#[derive(Debug)]
pub struct OAuthError {
    /// `None` only for a bearer request that carried no credentials at all,
    /// which RFC 6750 section 3.1 answers without an error code.
    pub code: Option<ErrorCode>,
    pub description: String,
    status: StatusCode,
    challenge: Option<String>,
}

impl OAuthError {
    /// An error of the token endpoint (RFC 6749 section 5.2): 400, or 401 with
    /// a Basic challenge for `invalid_client`.
    pub fn token(code: ErrorCode, description: impl Into<String>) -> Self {
        let (status, challenge) = match code {
            ErrorCode::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                Some(r#"Basic realm="mock-idp""#.to_owned()),
            ),
            ErrorCode::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, None),
            _ => (StatusCode::BAD_REQUEST, None),
        };
        Self {
            code: Some(code),
            description: description.into(),
            status,
            challenge,
        }
    }

    /// An error of a protected resource (RFC 6750 section 3.1).
    pub fn bearer(code: ErrorCode, description: impl Into<String>) -> Self {
        let description = description.into();
        let status = match code {
            ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        let challenge = format!(
            r#"Bearer realm="mock-api", error="{}", error_description="{}""#,
            code.as_str(),
            description.replace(['"', '\\'], "'")
        );
        Self {
            code: Some(code),
            description,
            status,
            challenge: Some(challenge),
        }
    }

    /// A protected-resource request with no credentials: 401, a bare challenge.
    pub fn bearer_missing() -> Self {
        Self {
            code: None,
            description: "a bearer access token is required".into(),
            status: StatusCode::UNAUTHORIZED,
            challenge: Some(r#"Bearer realm="mock-api""#.into()),
        }
    }

    /// An error shown to the user agent instead of redirecting, because the
    /// client or redirect URI cannot be trusted (RFC 6749 section 4.1.2.1).
    pub fn no_redirect(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            description: description.into(),
            status: StatusCode::BAD_REQUEST,
            challenge: None,
        }
    }

    /// An error with a status of its own, for what happens before any endpoint
    /// runs (a body too large or too slow).
    pub fn with_status(
        status: StatusCode,
        code: ErrorCode,
        description: impl Into<String>,
    ) -> Self {
        Self {
            code: Some(code),
            description: description.into(),
            status,
            challenge: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code as a metrics label.
    pub fn label(&self) -> &'static str {
        self.code.map_or("no_token", ErrorCode::as_str)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = match self.code {
            Some(code) => json!({ "error": code.as_str(), "error_description": self.description }),
            None => json!({ "error_description": self.description }),
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
