//! `POST /v1/events`, `POST /v1/events/batch`, `GET /v1/events/{id}` (a receipt answer,
//! PROTOCOL §9.2).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, json};
use twinledger_core::codec::CodecError;
use twinledger_core::{EventPayload, Receipt, RejectReason, SignedEvent};

use super::auth::authenticate_own_key;
use super::reads::{forbidden, no_readable_event, patient_view};
use super::{Api, ApiError, MAX_BATCH, parse_id};
use crate::chain::SubmitError;
use crate::chain::now;

/// One event: its canonical bytes, hex.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitEvent {
    /// Hex of the signed event's canonical encoding.
    pub event: String,
}

/// A batch of events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// Hex of each signed event.
    pub events: Vec<String>,
}

/// Decodes and signature-checks one submitted event.
pub(super) fn decode_event(api: &Api, hex_event: &str) -> Result<SignedEvent, ApiError> {
    let max = api.chain.max_event_bytes();
    if hex_event.len() > 2 * max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            format!(
                "event is {} bytes, over the chain's limit of {max}",
                hex_event.len() / 2
            ),
        ));
    }
    let bytes = hex::decode(hex_event)
        .map_err(|e| ApiError::bad_request("malformed_event", format!("event is not hex: {e}")))?;
    let ev = SignedEvent::from_bytes(&bytes, max).map_err(|e| match e {
        CodecError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            e.to_string(),
        ),
        CodecError::UnsupportedVersion { .. } => {
            ApiError::bad_request("unsupported_version", e.to_string())
        }
        _ => ApiError::bad_request("malformed_event", e.to_string()),
    })?;
    if ev.event.chain_id != api.chain.chain_id() {
        return Err(reject(RejectReason::WrongChain {
            expected: api.chain.chain_id(),
            got: ev.event.chain_id,
        }));
    }
    Ok(ev)
}

/// Checks the signature: a refused event never reaches the mempool.
pub(super) fn check_signature(ev: &SignedEvent) -> Result<(), ApiError> {
    ev.verify_signature()
        .map_err(|_| reject(RejectReason::BadSignature(ev.event.author)))
}

/// The stable code of a refusal.
fn reject_code(r: &RejectReason) -> &'static str {
    match r {
        RejectReason::WrongChain { .. } => "wrong_chain",
        RejectReason::BadSignature(_) => "bad_signature",
        RejectReason::WrongSequence { .. } => "wrong_sequence",
        RejectReason::Expired { .. } => "expired",
        RejectReason::DeadlineTooFar { .. } => "deadline_too_far",
        RejectReason::TooLarge { .. } => "event_too_large",
        RejectReason::UnknownAuthor { .. } => "unknown_author",
        RejectReason::RevokedAuthor(_) => "revoked_author",
        RejectReason::RetiredKey(_) => "retired_key",
        RejectReason::NotAuthorisedForPatient { .. } => "not_authorised_for_patient",
        RejectReason::NotPermitted { .. } => "not_permitted",
        RejectReason::UnknownReference { .. } => "unknown_reference",
        RejectReason::AlreadyDone { .. } => "already_done",
        RejectReason::EmptyScope(_) => "empty_scope",
        RejectReason::InvalidWindow(_) => "invalid_window",
        RejectReason::OutsideDelegation => "outside_delegation",
        RejectReason::KeyInUse(_) => "key_in_use",
        RejectReason::UnknownGrantee(_) => "unknown_grantee",
        RejectReason::LimitReached { .. } => "limit_reached",
        RejectReason::TwinAnchor(_) => "twin_anchor",
        RejectReason::Sealed(_) => "sealed_twin",
        RejectReason::Governance(_) => "governance",
        RejectReason::Misbehaviour(_) => "misbehaviour",
        RejectReason::InvalidField(_) => "invalid_field",
    }
}

/// A ledger-rule refusal as an API error (422).
pub(super) fn reject(r: RejectReason) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        reject_code(&r),
        r.to_string(),
    )
}

/// Most events a revoked actor may have pending at once. Its access and break-glass requests are
/// recorded as denied (PROTOCOL §6.1, 2.2), so they are accepted; this bound keeps a revoked
/// key to one recorded attempt per block, whatever client addresses it uses.
pub const MAX_PENDING_REVOKED: u64 = 1;

/// Refuses (429 `revoked_backlog`) an event by an enrolled actor that is no longer live (its
/// enrolment or organisation revoked) while it already has [`MAX_PENDING_REVOKED`] events
/// pending.
pub(super) fn bound_revoked(api: &Api, ev: &SignedEvent) -> Result<(), ApiError> {
    if !matches!(
        ev.event.payload,
        EventPayload::AccessRequest(_) | EventPayload::BreakGlassRequest(_)
    ) {
        return Ok(());
    }
    let author = ev.event.author;
    let state = api.chain.state();
    let revoked = state
        .actor(&author)
        .is_some_and(|a| !a.live || !state.organisation(&a.organisation).is_some_and(|o| o.live));
    if !revoked {
        return Ok(());
    }
    let (committed, pending) = api.chain.next_seq(&author);
    if pending.saturating_sub(committed) >= MAX_PENDING_REVOKED {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "revoked_backlog",
            format!(
                "{author} is a revoked actor with {} event(s) pending; its attempts are recorded one a block, retry after the next block",
                pending - committed
            ),
        ));
    }
    Ok(())
}

/// [`submit_error`], counting refusals of unknown authors in the metrics.
pub(super) fn submit_refused(api: &Api, e: SubmitError) -> ApiError {
    if matches!(e, SubmitError::Rejected(RejectReason::UnknownAuthor { .. })) {
        api.chain.metrics().unknown_authors.inc();
    }
    submit_error(e)
}

pub(super) fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Rejected(r) => reject(r),
        SubmitError::Duplicate(_) => {
            ApiError::new(StatusCode::CONFLICT, "duplicate", e.to_string())
        }
        SubmitError::MempoolFull(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "mempool_full",
            e.to_string(),
        ),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("request body: {e}")))
}

/// Submits one signed event; 202 with its id once it is checked and pending.
pub async fn submit(
    State(api): State<Arc<Api>>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: SubmitEvent = parse_json(&body)?;
    let ev = decode_event(&api, &req.event)?;
    check_signature(&ev)?;
    bound_revoked(&api, &ev)?;
    let id = api
        .chain
        .submit_verified(ev, None)
        .map_err(|e| submit_refused(&api, e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "pending"})),
    ))
}

/// Submits up to [`MAX_BATCH`] events in order; each gets its own status.
pub async fn submit_batch(
    State(api): State<Arc<Api>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: SubmitBatch = parse_json(&body)?;
    if req.events.is_empty() || req.events.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "bad_batch",
            format!(
                "a batch holds 1..={MAX_BATCH} events, got {}",
                req.events.len()
            ),
        ));
    }
    // Decode and verify signatures off the async workers, in parallel over the cores, each
    // core's share in one batch.
    let api2 = api.clone();
    let checked: Vec<Result<SignedEvent, ApiError>> = tokio::task::spawn_blocking(move || {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = req.events.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = req
                .events
                .chunks(chunk)
                .map(|part| {
                    let api = &api2;
                    s.spawn(move || {
                        let decoded: Vec<Result<SignedEvent, ApiError>> =
                            part.iter().map(|h| decode_event(api, h)).collect();
                        // One batch check for the part's signatures (ZIP-215: the same verdict
                        // as one at a time).
                        let evs: Vec<&SignedEvent> =
                            decoded.iter().filter_map(|r| r.as_ref().ok()).collect();
                        let mut good = crate::verify::check_each(&evs).into_iter();
                        decoded
                            .into_iter()
                            .map(|r| {
                                let ev = r?;
                                if good.next() == Some(true) {
                                    Ok(ev)
                                } else {
                                    Err(reject(RejectReason::BadSignature(ev.event.author)))
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("verifier thread"))
                .collect()
        })
    })
    .await
    .map_err(ApiError::internal)?;
    let mut results = Vec::with_capacity(checked.len());
    for r in checked {
        let item = match r.and_then(|ev| {
            bound_revoked(&api, &ev)?;
            api.chain
                .submit_verified(ev, None)
                .map_err(|e| submit_refused(&api, e))
        }) {
            Ok(id) => json!({"id": id, "status": "pending"}),
            Err(e) => json!({"status": "refused", "error": {"code": e.code, "message": e.message}}),
        };
        results.push(item);
    }
    Ok(Json(json!({ "results": results })))
}

/// An event by id with its receipt (PROTOCOL §11.5): readable by its author; for an event that
/// concerns a patient, by whoever's view of that patient holds it (the patient, auditors, a
/// delegate within its scope, the organisation it concerns); for an event that concerns no
/// patient (membership, governance, misbehaviour), by auditors and member organisations. An
/// event the requester may not read gets the same 404 as one that does not exist.
pub async fn get(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let requester = authenticate_own_key(&api, &method, &uri, &headers, b"")?;
    let id = parse_id(&id)?;
    let Some(receipt) = api.chain.receipt(&id)? else {
        return Err(no_readable_event(&requester, &id));
    };
    let state = api.chain.state();
    let ev = &receipt.event;
    let allowed = ev.event.author == requester
        || match state.patient_concerned(ev) {
            Some(p) => patient_view(&state, &requester, &p, now())
                .is_some_and(|v| v.sees_event(&state, ev)),
            None => {
                state.is_auditor(&requester)
                    || state.organisation(&requester).is_some_and(|o| o.live)
            }
        };
    if !allowed {
        return Err(no_readable_event(&requester, &id));
    }
    receipt_answer(&api, receipt).map(Json)
}

/// A receipt answer (PROTOCOL §9.2): the event id, its outcome, the receipt and the chain of
/// validator-set changes in force at its height (§9.3), all a verifier needs with the genesis.
pub(super) fn receipt_answer(api: &Api, receipt: Receipt) -> Result<Value, ApiError> {
    let changes = super::blocks::set_change_receipts(api, Some(receipt.header.height))?;
    let outcome = receipt
        .results
        .outcomes
        .get(receipt.index as usize)
        .copied()
        .ok_or_else(|| {
            ApiError::internal(format!(
                "receipt of {} out of its block",
                receipt.event_id()
            ))
        })?;
    Ok(json!({
        "id": receipt.event_id(),
        "outcome": outcome,
        "receipt": receipt,
        "validator_set_changes": changes,
    }))
}

/// A key's next sequence number (committed, and counting pending events): what a client needs
/// to sign its next event. Readable by that key only (a signed request).
pub async fn sequence(
    State(api): State<Arc<Api>>,
    Path(did): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let requester = authenticate_own_key(&api, &method, &uri, &headers, b"")?;
    let key = twinledger_core::PublicKey::from_did(&did)
        .map_err(|e| ApiError::bad_request("malformed_did", e.to_string()))?;
    if key != requester {
        return Err(forbidden(&requester, &format!("the sequence of {key}")));
    }
    let (committed, pending) = api.chain.next_seq(&key);
    // The patient this key is the current key of (the patient id, its first key), if any:
    // what a client names as `patient` in the events it signs after a rotation.
    let patient = api
        .chain
        .state()
        .patient_of_key(&key)
        .filter(|k| !k.retired)
        .map(|k| k.patient);
    Ok(Json(json!({
        "key": key, "next_seq": pending, "committed_next_seq": committed, "patient": patient,
    })))
}
