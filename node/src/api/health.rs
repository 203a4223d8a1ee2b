//! `GET /health` and `GET /metrics` (Prometheus text).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::Api;

/// Liveness and the chain's position.
pub async fn health(State(api): State<Arc<Api>>) -> Json<Value> {
    let st = api.chain.state();
    Json(json!({
        // "halted": consensus stopped because a decided block could not be written (disk);
        // the node still serves what it has, but takes no further part. Restart it.
        "status": if api.chain.is_halted() { "halted" } else { "ok" },
        "chain_id": api.chain.chain_id(),
        "height": st.height(),
        "log_size": st.log_size(),
        "mempool": api.chain.mempool_len(),
    }))
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
