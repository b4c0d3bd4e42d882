//! Injected faults (latency, errors, per-client rate limit, outage) applied per endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, body};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use crate::Idp;

/// The endpoints a fault can apply to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Discovery,
    Jwks,
    Authorize,
    Token,
    Userinfo,
    Logout,
    Api,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "jwks",
            Endpoint::Authorize => "authorize",
            Endpoint::Token => "token",
            Endpoint::Userinfo => "userinfo",
            Endpoint::Logout => "logout",
            Endpoint::Api => "api",
        }
    }
}

/// Endpoints a fault applies to; an empty list means every endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Endpoints(pub Vec<Endpoint>);

impl Endpoints {
    fn covers(&self, endpoint: Endpoint) -> bool {
        self.0.is_empty() || self.0.contains(&endpoint)
    }
}

/// The active faults. Each is off when absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyFault>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorFault>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitFault>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outage: Option<OutageFault>,
    /// Seed for error draws and jitter, so a run can be repeated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Every request waits `fixed_ms` plus a uniform draw from `0..=jitter_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyFault {
    pub fixed_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// A share of requests fails with `status` (500, 503, or 429 with `Retry-After`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorFault {
    /// Probability in `0.0..=1.0`.
    pub rate: f64,
    pub status: u16,
    #[serde(default = "one")]
    pub retry_after_secs: u64,
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// A token bucket per client: `burst` requests at once, refilled at `per_second`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFault {
    pub per_second: f64,
    /// Bucket size; defaults to `per_second` rounded up.
    pub burst: Option<u32>,
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// The endpoints answer 503 to everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageFault {
    #[serde(default)]
    pub endpoints: Endpoints,
}

fn one() -> u64 {
    1
}

impl FaultConfig {
    /// Whether any fault is set.
    pub fn any(&self) -> bool {
        self.latency.is_some()
            || self.errors.is_some()
            || self.rate_limit.is_some()
            || self.outage.is_some()
    }

    /// Checks ranges serde cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(errors) = &self.errors {
            if !(0.0..=1.0).contains(&errors.rate) {
                return Err(format!(
                    "faults.errors.rate must be within 0..=1, got {}",
                    errors.rate
                ));
            }
            if ![500, 503, 429].contains(&errors.status) {
                return Err(format!(
                    "faults.errors.status must be 500, 503 or 429, got {}",
                    errors.status
                ));
            }
        }
        if let Some(limit) = &self.rate_limit
            && !(limit.per_second.is_finite() && limit.per_second > 0.0)
        {
            return Err(format!(
                "faults.rate_limit.per_second must be positive, got {}",
                limit.per_second
            ));
        }
        Ok(())
    }
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The live fault settings and the state they need (random draws, buckets).
pub struct FaultController {
    /// False while no fault is set, so requests skip the fault logic entirely.
    active: AtomicBool,
    config: RwLock<FaultConfig>,
    rng: Mutex<StdRng>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl FaultController {
    pub fn new(config: FaultConfig) -> Self {
        let rng = seeded_rng(config.seed);
        Self {
            active: AtomicBool::new(config.any()),
            config: RwLock::new(config),
            rng: Mutex::new(rng),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The faults now in force.
    pub fn current(&self) -> FaultConfig {
        self.config.read().clone()
    }

    /// Replaces every fault at once; buckets and the random sequence start over.
    pub fn replace(&self, config: FaultConfig) -> Result<(), String> {
        config.validate()?;
        *self.rng.lock() = seeded_rng(config.seed);
        self.buckets.lock().clear();
        self.active.store(config.any(), Ordering::Relaxed);
        *self.config.write() = config;
        Ok(())
    }

    fn latency_for(&self, endpoint: Endpoint) -> Option<Duration> {
        let config = self.config.read();
        let latency = config
            .latency
            .as_ref()
            .filter(|l| l.endpoints.covers(endpoint))?;
        let jitter = if latency.jitter_ms > 0 {
            self.rng.lock().random_range(0..=latency.jitter_ms)
        } else {
            0
        };
        Some(Duration::from_millis(latency.fixed_ms + jitter))
    }

    /// Takes a token from the client's bucket; on failure, the wait until the next one.
    fn take_token(&self, limit: &RateLimitFault, client: &str) -> Result<(), Duration> {
        let burst = f64::from(limit.burst.unwrap_or(limit.per_second.ceil() as u32).max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(client.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / limit.per_second,
            ))
        }
    }
}

fn seeded_rng(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

/// Middleware state: the IdP and which endpoint this route is.
#[derive(Clone)]
pub struct FaultScope {
    pub idp: Idp,
    pub endpoint: Endpoint,
}

/// Applies the active faults in the order latency, outage, rate limit, errors.
pub async fn apply_faults(
    State(scope): State<FaultScope>,
    request: Request,
    next: Next,
) -> Response {
    let FaultScope { idp, endpoint } = scope;
    let faults = &idp.inner.faults;
    if !faults.active.load(Ordering::Relaxed) {
        return next.run(request).await;
    }
    if let Some(delay) = faults.latency_for(endpoint) {
        idp.inner
            .stats
            .faults_injected
            .inc(&["latency", endpoint.as_str()]);
        tokio::time::sleep(delay).await;
    }
    let config = faults.current();
    if config
        .outage
        .as_ref()
        .is_some_and(|o| o.endpoints.covers(endpoint))
    {
        idp.inner
            .stats
            .faults_injected
            .inc(&["outage", endpoint.as_str()]);
        return fault_response(StatusCode::SERVICE_UNAVAILABLE, None, "injected outage");
    }
    let mut request = request;
    if let Some(limit) = config
        .rate_limit
        .as_ref()
        .filter(|l| l.endpoints.covers(endpoint))
    {
        let (client, rebuilt) = client_of(request).await;
        request = rebuilt;
        if let Err(wait) = faults.take_token(limit, &client) {
            idp.inner
                .stats
                .faults_injected
                .inc(&["rate_limit", endpoint.as_str()]);
            let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
            return fault_response(
                StatusCode::TOO_MANY_REQUESTS,
                Some(retry_after),
                "injected rate limit",
            );
        }
    }
    if let Some(errors) = config
        .errors
        .as_ref()
        .filter(|e| e.endpoints.covers(endpoint))
        && faults.rng.lock().random_bool(errors.rate)
    {
        idp.inner
            .stats
            .faults_injected
            .inc(&["error", endpoint.as_str()]);
        let status =
            StatusCode::from_u16(errors.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after =
            (status != StatusCode::INTERNAL_SERVER_ERROR).then_some(errors.retry_after_secs);
        return fault_response(status, retry_after, "injected error");
    }
    next.run(request).await
}

fn fault_response(status: StatusCode, retry_after: Option<u64>, description: &str) -> Response {
    let error = if status == StatusCode::INTERNAL_SERVER_ERROR {
        "server_error"
    } else {
        "temporarily_unavailable"
    };
    let mut response = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Upper bound on a body buffered to find its `client_id`; larger bodies are
/// rejected by the token endpoint anyway.
const MAX_PEEKED_BODY: usize = 64 * 1024;

/// Who is calling, for the per-client rate limit: HTTP Basic user, a
/// `client_id` query or form parameter, or a bearer token's `azp` claim.
async fn client_of(request: Request) -> (String, Request) {
    if let Some(id) = basic_client_id(request.headers()).or_else(|| bearer_azp(request.headers())) {
        return (id, request);
    }
    if let Some(id) = request
        .uri()
        .query()
        .and_then(|q| form_value(q.as_bytes(), "client_id"))
    {
        return (id, request);
    }
    let (parts, body) = request.into_parts();
    let bytes = body::to_bytes(body, MAX_PEEKED_BODY)
        .await
        .unwrap_or_default();
    let id = form_value(&bytes, "client_id").unwrap_or_else(|| "anonymous".into());
    (id, Request::from_parts(parts, Body::from(bytes)))
}

fn form_value(form: &[u8], key: &str) -> Option<String> {
    url::form_urlencoded::parse(form)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn basic_client_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, _) = text.split_once(':')?;
    Some(id.to_owned())
}

fn bearer_azp(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?;
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("azp")?.as_str().map(str::to_owned)
}

/// `GET /admin/faults`: the faults in force.
pub async fn get_faults(State(idp): State<Idp>) -> Json<FaultConfig> {
    Json(idp.inner.faults.current())
}

/// `PUT /admin/faults`: replace every fault.
pub async fn put_faults(State(idp): State<Idp>, Json(config): Json<FaultConfig>) -> Response {
    match idp.inner.faults.replace(config) {
        Ok(()) => Json(idp.inner.faults.current()).into_response(),
        Err(message) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_request", "error_description": message })),
        )
            .into_response(),
    }
}

/// `DELETE /admin/faults`: clear every fault.
pub async fn clear_faults(State(idp): State<Idp>) -> StatusCode {
    match idp.inner.faults.replace(FaultConfig::default()) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
