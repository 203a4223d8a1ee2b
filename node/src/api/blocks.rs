//! `GET /v1/blocks/{height}`, `GET /v1/checkpoint`, `GET /v1/consistency`, `GET /v1/export`,
//! `GET /v1/validator-sets`.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;
use twinledger_core::codec;
use twinledger_core::merkle::{self, Blake3Tree};

use super::auth::authenticate;
use super::reads::{forbidden, reading_organisation, reads_whole_chain};
use super::{Api, ApiError};

use twinledger_core::audit::{EXPORT_MAGIC, export_frame};
/// Most blocks in one export request.
pub const MAX_EXPORT_BLOCKS: u64 = 1_000_000;

fn privileged(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    what: &str,
) -> Result<(), ApiError> {
    let requester = authenticate(api, method, uri, headers, b"")?;
    if !reads_whole_chain(&api.chain.state(), &requester) {
        return Err(forbidden(
            &requester,
            &format!("{what} (auditors and the operators of validators in the set in force do)"),
        ));
    }
    Ok(())
}

/// A whole block with its results and certificate (auditors and the operators of validators,
/// PROTOCOL §11.5).
pub async fn block(
    State(api): State<Arc<Api>>,
    Path(height): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    privileged(&api, &method, &uri, &headers, "whole blocks")?;
    let height: u64 = height
        .parse()
        .map_err(|_| ApiError::bad_request("malformed_height", "height is not a number"))?;
    let sb = api
        .chain
        .store()
        .block(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    Ok(Json(json!({
        "hash": sb.block.hash(),
        "block": sb.block,
        "results": sb.results,
        "certificate": sb.certificate,
        "bytes_hex": hex::encode(codec::encode(&sb)),
    })))
}

/// The latest checkpoint with its certificate, as data and as text. Public: it reveals no
/// patient data.
pub async fn checkpoint(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let height = api.chain.state().height();
    if height == 0 {
        return Err(ApiError::not_found("no block yet"));
    }
    let sb = api
        .chain
        .store()
        .block(height)?
        .ok_or_else(|| ApiError::internal(format!("tip block {height} missing")))?;
    let cp = sb.block.header.checkpoint();
    let witnessed: Vec<Value> = api
        .chain
        .store()
        .cosignatures(height)?
        .into_iter()
        .map(|(k, s)| json!({"auditor": k, "signature": s}))
        .collect();
    Ok(Json(json!({
        "checkpoint": cp,
        "certificate": sb.certificate,
        "text": cp.to_text(&sb.certificate),
        "witnessed_by": witnessed,
    })))
}

/// An auditor's cosignature of a checkpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cosign {
    /// The checkpoint, text form with its certificate.
    pub checkpoint: String,
    /// The auditor's did:key.
    pub auditor: String,
    /// Its signature (hex) under `twinledger/v1/checkpoint-cosign`.
    pub signature: String,
}

/// Records that an auditor witnessed a checkpoint of this chain: the checkpoint must be this
/// node's block at that height, the auditor live, the signature valid.
pub async fn cosign(
    State(api): State<Arc<Api>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: Cosign = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("request body: {e}")))?;
    let (cp, _) = twinledger_core::Checkpoint::from_text(&req.checkpoint)
        .map_err(|e| ApiError::bad_request("malformed_checkpoint", e.to_string()))?;
    let auditor = twinledger_core::PublicKey::from_did(&req.auditor)
        .map_err(|e| ApiError::bad_request("malformed_did", e.to_string()))?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(&req.signature, &mut sig).map_err(|_| {
        ApiError::bad_request("malformed_signature", "signature is not 128 hex digits")
    })?;
    let sig = twinledger_core::Signature(sig);
    if !api.chain.state().is_auditor(&auditor) {
        return Err(forbidden(
            &auditor,
            "cosign checkpoints (not a live auditor)",
        ));
    }
    let ours = api
        .chain
        .store()
        .block(cp.height)?
        .map(|sb| sb.block.header.checkpoint());
    if ours != Some(cp) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "unknown_checkpoint",
            format!("this node has no such checkpoint at height {}", cp.height),
        ));
    }
    if !cp.verify_cosignature(&auditor, &sig) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the cosignature does not verify",
        ));
    }
    api.chain
        .store()
        .put_cosignature(cp.height, &auditor, &sig)?;
    Ok(Json(
        json!({"height": cp.height, "auditor": auditor, "recorded": true}),
    ))
}

/// Sizes for a consistency proof.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sizes {
    /// Older log size.
    pub from: u64,
    /// Newer log size (at most the current one).
    pub to: u64,
}

/// RFC 9162 consistency proof between two log sizes. Public.
pub async fn consistency(
    State(api): State<Arc<Api>>,
    Query(s): Query<Sizes>,
) -> Result<Json<Value>, ApiError> {
    let size = api.chain.state().log_size();
    if s.to > size {
        return Err(ApiError::bad_request(
            "bad_sizes",
            format!("to = {} is beyond the log size {size}", s.to),
        ));
    }
    let store = api.chain.store();
    let proof = merkle::consistency_proof::<Blake3Tree>(store, s.from, s.to)
        .map_err(|e| ApiError::bad_request("bad_sizes", e.to_string()))?;
    let root = |n| {
        merkle::root_at::<Blake3Tree>(store, n)
            .map_err(|e| ApiError::bad_request("bad_sizes", e.to_string()))
    };
    Ok(Json(json!({
        "from": s.from, "to": s.to,
        "from_root": hex::encode(root(s.from)?),
        "to_root": hex::encode(root(s.to)?),
        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
    })))
}

/// The receipts of the validator-set changes committed so far, in height order (PROTOCOL §9.3);
/// with `in_force_at`, only those in force at that height (`h + VALIDATOR_SET_DELAY <= H`):
/// the chain of changes a receipt at `H` is verified with.
pub(super) fn set_change_receipts(
    api: &Api,
    in_force_at: Option<u64>,
) -> Result<Vec<twinledger_core::Receipt>, ApiError> {
    let delay = twinledger_core::state::VALIDATOR_SET_DELAY;
    api.chain
        .validator_set_changes()
        .into_iter()
        .filter(|(h, _)| in_force_at.is_none_or(|at| h.saturating_add(delay) <= at))
        .map(|(h, id)| {
            api.chain.receipt(&id)?.ok_or_else(|| {
                ApiError::internal(format!(
                    "validator-set change {id} of block {h} has no stored receipt"
                ))
            })
        })
        .collect()
}

/// Which changes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetsQuery {
    /// Only the changes in force at this height.
    pub to: Option<u64>,
}

/// The certified chain of validator-set changes since genesis (PROTOCOL §9.3). Public: it
/// holds governance events only.
pub async fn validator_sets(
    State(api): State<Arc<Api>>,
    Query(q): Query<SetsQuery>,
) -> Result<Json<Value>, ApiError> {
    let height = api.chain.state().height();
    let changes = set_change_receipts(&api, q.to)?;
    Ok(Json(json!({
        "height": height,
        "validator_set_changes": changes,
    })))
}

/// A height range.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// First height (default 1).
    pub from: Option<u64>,
    /// Last height (default: the tip).
    pub to: Option<u64>,
}

/// A range of stored blocks as one stream: `TWLEXP01`, then per block a u32 big-endian length
/// and the canonical encoding of (block, results, certificate). Auditors and the operators of
/// validators (PROTOCOL §11.5).
pub async fn export(
    State(api): State<Arc<Api>>,
    Query(r): Query<Range>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    privileged(&api, &method, &uri, &headers, "the chain export")?;
    let tip = api.chain.state().height();
    let from = r.from.unwrap_or(1).max(1);
    let to = r.to.unwrap_or(tip);
    if to > tip || from > to || to - from >= MAX_EXPORT_BLOCKS {
        return Err(ApiError::bad_request(
            "bad_range",
            format!(
                "need 1 <= from <= to <= {tip} and at most {MAX_EXPORT_BLOCKS} blocks, got {from}..={to}"
            ),
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let store = api.chain.store().clone();
    tokio::task::spawn_blocking(move || {
        if tx
            .blocking_send(Ok(Bytes::from_static(EXPORT_MAGIC)))
            .is_err()
        {
            return;
        }
        for h in from..=to {
            let frame = match store.block(h) {
                Ok(Some(sb)) => Ok(Bytes::from(export_frame(&sb))),
                Ok(None) => Err(std::io::Error::other(format!("block {h} missing"))),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let stop = frame.is_err();
            if tx.blocking_send(frame).is_err() || stop {
                return;
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/vnd.twinledger.export")],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}

/// Break-glass accesses awaiting review, with who broke the glass, whose twin and when
/// (PROTOCOL §11.5): auditors read the whole queue; a live member organisation (its key) and
/// its live privacy officers, who review them (§6.5), read the accesses of its own actors.
pub async fn reviews(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let requester = authenticate(&api, &method, &uri, &headers, b"")?;
    let state = api.chain.state();
    let organisation = if state.is_auditor(&requester) {
        None
    } else {
        match reading_organisation(&state, &requester) {
            Some(o) => Some(o),
            None => return Err(forbidden(&requester, "the break-glass review queue")),
        }
    };
    let queue: Vec<Value> = state
        .review_queue()
        .filter_map(|id| state.break_glass(id).map(|r| (id, r)))
        .filter(|(_, r)| organisation.is_none_or(|o| r.organisation == o))
        .take(10_000)
        .map(|(id, r)| json!({"id": id, "access": r}))
        .collect();
    Ok(Json(json!({"unreviewed": queue})))
}
