//! `GET /v1/twins/{twin}/{version}`: the anchor of one version of a twin, with its receipt.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};
use twinledger_core::event::EventPayload;

use super::auth::authenticate;
use super::reads::{forbidden, may_read_patient};
use super::{Api, ApiError};

/// The anchor of one version of a twin, with its receipt: readable by the patient (or a live
/// delegate), auditors, member organisations and the hosting organisation's actors.
pub async fn twin(
    State(api): State<Arc<Api>>,
    Path((twin, version)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let requester = authenticate(&api, &method, &uri, &headers, b"")?;
    let twin = twinledger_core::TwinId::from_hex(&twin)
        .map_err(|e| ApiError::bad_request("malformed_id", e.to_string()))?;
    let version: u64 = version
        .parse()
        .map_err(|_| ApiError::bad_request("malformed_version", "version is not a number"))?;
    let state = api.chain.state();
    let Some(rec) = state.twin(&twin).copied() else {
        return Err(ApiError::not_found(format!(
            "twin {twin} was never anchored"
        )));
    };
    let hosting_actor = state
        .actor(&requester)
        .is_some_and(|a| a.live && a.organisation == rec.organisation);
    if !(hosting_actor || may_read_patient(&state, &requester, &rec.patient)) {
        return Err(forbidden(&requester, &format!("twin {twin}")));
    }
    let id = api
        .chain
        .store()
        .twin_anchor(&twin, version)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "version {version} of twin {twin} was never anchored (latest: {})",
                rec.version
            ))
        })?;
    let receipt = api
        .chain
        .receipt(&id)?
        .ok_or_else(|| ApiError::internal(format!("anchor {id} indexed but not stored")))?;
    let EventPayload::TwinAnchor(anchor) = &receipt.event.event.payload else {
        return Err(ApiError::internal(format!(
            "event {id} is not a twin anchor"
        )));
    };
    let changes = super::blocks::set_change_receipts(&api, Some(receipt.header.height))?;
    Ok(Json(json!({
        "twin": twin, "version": version, "state_hash": anchor.state_hash,
        "patient": anchor.patient, "organisation": rec.organisation, "latest_version": rec.version,
        "receipt": receipt,
        // The certified chain of validator-set changes in force at the anchor's height
        // (PROTOCOL §9.3): with the genesis, all a verifier needs to check the receipt.
        "validator_set_changes": changes,
    })))
}
