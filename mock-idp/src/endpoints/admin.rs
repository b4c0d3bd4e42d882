//! Counters (`/stats`, `/metrics`) and liveness (`/healthz`).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;

use crate::Idp;

/// `GET /stats`: every counter as JSON.
pub async fn stats(State(idp): State<Idp>) -> Json<Value> {
    Json(idp.stats().to_json())
}

/// `GET /metrics`: every counter in the Prometheus text format.
pub async fn metrics(State(idp): State<Idp>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        idp.stats().to_prometheus(),
    )
}

/// `GET /healthz`
pub async fn healthz() -> &'static str {
    "ok"
}
