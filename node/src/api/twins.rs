//! `GET /v1/twins/{twin}/{version}`: the anchor of one version of a twin (a TwinAnchor, or a
//! TwinSeal with its sealed fields under `sealed`), with its receipt and what proves the twin id
//! (PROTOCOL.md §5.6, §5.10, §11).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use twinledger_core::event::EventPayload;
use twinledger_core::{PublicKey, Table, TwinId};

use super::auth::authenticate;
use super::reads::may_read_patient;
use super::{Api, ApiError};

/// The one answer for a twin that was never anchored and one the requester may not read: the
/// same status, code and message either way, so that the answer is no existence oracle for
/// twin ids (§11, protocol 2.3).
fn no_readable_twin(key: &PublicKey) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no anchored twin at this path that {key} may read"),
    )
}

/// The anchor of one version of a twin, with its receipt, readable by the patient's current key,
/// a live delegate of the patient, the hosting organisation's key and its live actors, and
/// auditors. Anyone else gets the answer of a twin that does not exist.
///
/// Besides the receipt (which proves the anchor event: local id, patient, version, hash), the
/// answer carries the certified tip (`tip`: header and certificate) and the anchoring actor's
/// record with its state proof against the tip's state hash (`author`): an actor's organisation
/// never changes, so this proves the organisation the twin id is bound to (§5.6).
pub async fn twin(
    State(api): State<Arc<Api>>,
    Path((twin, version)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let requester = authenticate(&api, &method, &uri, &headers, b"")?;
    let twin = TwinId::from_hex(&twin)
        .map_err(|e| ApiError::bad_request("malformed_id", e.to_string()))?;
    let version: u64 = version
        .parse()
        .map_err(|_| ApiError::bad_request("malformed_version", "version is not a number"))?;
    let state = api.chain.state();
    let Some(rec) = state.twin(&twin).copied() else {
        return Err(no_readable_twin(&requester));
    };
    let hosting = requester == rec.organisation
        || state
            .actor(&requester)
            .is_some_and(|a| a.live && a.organisation == rec.organisation);
    if !(hosting || may_read_patient(&state, &requester, &rec.patient)) {
        return Err(no_readable_twin(&requester));
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
    // A twin anchor, or a sealed version (TwinSeal, 2.4: the anchor extended; its sealed
    // fields are answered under `sealed`, with the erasure height if it was erased).
    let (anchor, sealed) = match &receipt.event.event.payload {
        EventPayload::TwinAnchor(a) => (a.clone(), Value::Null),
        EventPayload::TwinSeal(s) => {
            let erased_at = state.sealed(&twin, version).and_then(|r| r.erased_at);
            (
                s.anchor(),
                json!({
                    "category": s.category, "ciphertext_hash": s.ciphertext_hash,
                    "ciphertext_size": s.ciphertext_size, "custodian": s.custodian,
                    "erased_at": erased_at,
                }),
            )
        }
        _ => {
            return Err(ApiError::internal(format!(
                "event {id} is not a twin anchor"
            )));
        }
    };
    // The tip is taken after the anchor was read, so it is at or after the anchor's block.
    let state = api.chain.state();
    let height = state.height();
    let tip =
        api.chain.store().block(height)?.ok_or_else(|| {
            ApiError::internal(format!("block {height} is committed but not stored"))
        })?;
    if tip.block.header.state_hash != state.state_root() {
        return Err(ApiError::internal(format!(
            "block {height}'s state hash is not the state map's root"
        )));
    }
    let author = receipt.event.event.author;
    let changes = super::blocks::set_change_receipts(&api, Some(height))?;
    Ok(Json(json!({
        "twin": twin, "local": anchor.twin, "version": version, "state_hash": anchor.state_hash,
        "patient": anchor.patient, "organisation": rec.organisation, "latest_version": rec.version,
        "sealed": sealed,
        "receipt": receipt,
        "tip": { "header": tip.block.header, "certificate": tip.certificate },
        "author": {
            "actor": author,
            "record": state.actor(&author),
            "state_proof": hex::encode(state.prove(Table::Actor, &author).to_bytes()),
        },
        // The certified chain of validator-set changes in force up to the tip (PROTOCOL
        // §9.3): with the genesis, all a verifier needs to check the receipt and the tip.
        "validator_set_changes": changes,
    })))
}
