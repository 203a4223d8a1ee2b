//! `GET /health` and `GET /metrics` (Prometheus text).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::Api;

/// Readiness and the chain's position (`GET /health`, and `GET /ready`, the same answer): 200
/// with `"status": "ok"`, or 503 with `"halted"`, `"catching_up"` or `"stalled"`, so that a load
/// balancer or an orchestrator takes the node out of service while it cannot answer with the
/// chain's current state.
pub async fn health(State(api): State<Arc<Api>>) -> (StatusCode, Json<Value>) {
    let st = api.chain.state();
    let (since, stalled) = api.chain.stalled();
    // "halted": consensus stopped because a decided block or the consensus WAL could not be
    // written (disk); the node still serves what it has, but takes no further part. Restart it.
    // "catching_up": the node is committing old, certified blocks from a peer: what it serves
    // is behind the chain.
    // "stalled": a replicated node has committed nothing for longer than its threshold (no
    // quorum reachable from here, or this node cannot catch up).
    let status = if api.chain.is_halted() {
        "halted"
    } else if api.chain.is_catching_up() {
        "catching_up"
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

/// Liveness (`GET /live`): 200 `"live"` while the process can still do its work, 503
/// `"halted"` once consensus stopped on a write failure, which only a restart clears. A stalled
/// or catching-up node is live (restarting it would not help): only readiness reports those.
pub async fn live(State(api): State<Arc<Api>>) -> (StatusCode, Json<Value>) {
    if api.chain.is_halted() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "halted"})),
        )
    } else {
        (StatusCode::OK, Json(json!({"status": "live"})))
    }
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
