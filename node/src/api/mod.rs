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
mod history;
mod patients;
mod reads;
mod twins;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
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
    /// Per-client request rate limit.
    pub rate: RateLimiter,
}

/// Most clients tracked by the rate limiter; idle ones are forgotten first.
pub const MAX_TRACKED_CLIENTS: usize = 100_000;

/// A token bucket per client IP address: `per_second` requests a second, bursts of twice that.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: u32,
    buckets: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` = 0 disables the limit.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            buckets: Default::default(),
        }
    }

    /// Takes a token for `ip`; false if the client is over its rate.
    fn allow(&self, ip: std::net::IpAddr) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let rate = f64::from(self.per_second);
        let burst = 2.0 * rate;
        let now = Instant::now();
        let mut b = self.buckets.lock().expect("rate lock");
        if b.len() >= MAX_TRACKED_CLIENTS && !b.contains_key(&ip) {
            // Forget clients whose bucket has refilled: they are idle.
            b.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = b.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
        .route(
            "/v1/patients/{did}/history",
            axum::routing::get(history::history),
        )
        .route(
            "/v1/keys/{did}/sequence",
            axum::routing::get(events::sequence),
        )
        .route("/v1/blocks/{height}", axum::routing::get(blocks::block))
        .route("/v1/checkpoint", axum::routing::get(blocks::checkpoint))
        .route("/v1/cosignatures", axum::routing::post(blocks::cosign))
        .route("/v1/consistency", axum::routing::get(blocks::consistency))
        .route("/v1/export", axum::routing::get(blocks::export))
        .route(
            "/v1/validator-sets",
            axum::routing::get(blocks::validator_sets),
        )
        .route("/v1/reviews", axum::routing::get(blocks::reviews))
        .route(
            "/v1/twins/{twin}/{version}",
            axum::routing::get(twins::twin),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn_with_state(api.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

/// Rate limit, concurrency limit and latency metrics around every request.
async fn guard(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>()
        && !api.rate.allow(peer.ip())
    {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} requests a second from {}; slow down",
                api.rate.per_second,
                peer.ip()
            ),
        )
        .into_response();
    }
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
