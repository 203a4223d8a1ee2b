//! `GET /health` and `GET /metrics` (Prometheus text).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::Api;

/// Liveness and the chain's position: 200 with `"status": "ok"`, or 503 with `"halted"` or
/// `"stalled"` (a load balancer's signal).
pub async fn health(State(api): State<Arc<Api>>) -> (StatusCode, Json<Value>) {
    let st = api.chain.state();
    let (since, stalled) = api.chain.stalled();
    // "halted": consensus stopped because a decided block or the consensus WAL could not be
    // written (disk); the node still serves what it has, but takes no further part. Restart it.
    // "stalled": a replicated node has committed nothing for longer than its threshold (no
    // quorum reachable from here, or this node cannot catch up).
    let status = if api.chain.is_halted() {
        "halted"
    } else if stalled {
        "stalled"
    } else {
        "ok"
    };
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({
            "status": status,
            "chain_id": api.chain.chain_id(),
            "height": st.height(),
            "log_size": st.log_size(),
            "mempool": api.chain.mempool_len(),
            "ms_since_commit": since,
        })),
    )
}

/// Prometheus metrics.
pub async fn metrics(State(api): State<Arc<Api>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.chain.metrics().render(),
    )
}
