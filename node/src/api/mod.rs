//! The HTTP/JSON API (documented in docs/openapi.yaml). One module per resource.
//!
//! Every error is a 4xx/5xx with `{"error": {"code": "...", "message": "..."}}` naming the
//! problem; a refused request changes nothing. Limits: request body size, concurrent requests,
//! submissions per request, waiting time.

mod access;
mod auth;
mod blocks;
mod events;
mod health;
mod patients;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Semaphore;

pub use auth::NonceCache;

use crate::chain::Chain;
use crate::metrics::RouteLabel;

/// Largest request body: a batch of events (1,000 of the hard maximum event size would not fit;
/// the chain's event limit keeps real batches far smaller).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Most events in one batch submission.
pub const MAX_BATCH: usize = 1000;
/// Most requests handled at once; more get 503.
pub const MAX_CONCURRENT: usize = 1024;
/// Longest an authorise-access request waits for its decision.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Shared state of the API handlers.
#[derive(Debug)]
pub struct Api {
    /// The ledger.
    pub chain: Arc<Chain>,
    /// Seen request nonces (replay protection).
    pub nonces: NonceCache,
    /// Request slots.
    pub slots: Arc<Semaphore>,
}

/// An API error: status, stable code, message naming the problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (see the node's log)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

/// The router.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health", axum::routing::get(health::health))
        .route("/metrics", axum::routing::get(health::metrics))
        .route("/v1/events", axum::routing::post(events::submit))
        .route(
            "/v1/events/batch",
            axum::routing::post(events::submit_batch),
        )
        .route("/v1/events/{id}", axum::routing::get(events::get))
        .route("/v1/access", axum::routing::post(access::authorise))
        .route(
            "/v1/patients/{did}/consents",
            axum::routing::get(patients::consents),
        )
        .route(
            "/v1/patients/{did}/accesses",
            axum::routing::get(patients::accesses),
        )
        .route("/v1/blocks/{height}", axum::routing::get(blocks::block))
        .route("/v1/checkpoint", axum::routing::get(blocks::checkpoint))
        .route("/v1/consistency", axum::routing::get(blocks::consistency))
        .route("/v1/export", axum::routing::get(blocks::export))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(api.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

/// Concurrency limit and latency metrics around every request.
async fn guard(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = api.slots.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("more than {MAX_CONCURRENT} requests in flight; retry later"),
        )
        .into_response();
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    api.chain
        .metrics()
        .api_latency
        .get_or_create(&RouteLabel {
            route,
            status: resp.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// Parses a hex event id from a path.
fn parse_id(s: &str) -> Result<twinledger_core::EventId, ApiError> {
    twinledger_core::EventId::from_hex(s)
        .map_err(|e| ApiError::bad_request("malformed_id", e.to_string()))
}
