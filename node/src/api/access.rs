//! `POST /v1/access`: submit an access (or break-glass) request and wait for the ledger's
//! decision and its receipt.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::oneshot;
use twinledger_core::event::EventPayload;

use super::events::{
    bound_revoked, check_signature, decode_event, receipt_answer, reject, submit_refused,
};
use super::{Api, ApiError, MAX_WAIT};
use crate::chain::Finality;

/// The request: a signed access or break-glass request event, and how long to wait.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorise {
    /// Hex of the signed event.
    pub event: String,
    /// How long to wait for the decision, ms (default 10,000; at most 60,000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Submits and waits: 200 with the decision and receipt once final, 504 if not final in time.
pub async fn authorise(
    State(api): State<Arc<Api>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: Authorise = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("request body: {e}")))?;
    let wait = Duration::from_millis(req.timeout_ms.unwrap_or(10_000));
    if wait > MAX_WAIT || wait.is_zero() {
        return Err(ApiError::bad_request(
            "bad_timeout",
            format!("timeout_ms must be 1..={}", MAX_WAIT.as_millis()),
        ));
    }
    let ev = decode_event(&api, &req.event)?;
    if !matches!(
        ev.event.payload,
        EventPayload::AccessRequest(_) | EventPayload::BreakGlassRequest(_)
    ) {
        return Err(ApiError::bad_request(
            "wrong_event_kind",
            format!(
                "/v1/access takes access_request or break_glass_request events, got {}",
                ev.event.payload.kind()
            ),
        ));
    }
    check_signature(&ev)?;
    bound_revoked(&api, &ev)?;
    let (tx, rx) = oneshot::channel();
    let id = api
        .chain
        .submit_verified(ev, Some(tx))
        .map_err(|e| submit_refused(&api, e))?;
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(Finality::Final { .. })) => {
            let receipt = api.chain.receipt(&id)?.ok_or_else(|| {
                ApiError::internal(format!("final event {id} has no stored receipt"))
            })?;
            receipt_answer(&api, receipt).map(Json)
        }
        Ok(Ok(Finality::Dropped(reason))) => Err(reject(reason)),
        Ok(Err(_)) => Err(ApiError::internal("the block producer stopped")),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "event {id} was not final within {} ms; it is pending and may still be committed",
                wait.as_millis()
            ),
        )),
    }
}
