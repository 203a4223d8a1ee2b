//! `POST /v1/custodian/keys`: the deposit of a sealed version's data key (PROTOCOL.md §11.6).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, json};
use twinledger_core::TwinId;
use twinledger_sealed::SealError;

use super::release::custodian_of;
use super::version_id;
use crate::api::{Api, ApiError, authenticate};

/// Largest `wrapped_hex` accepted, in hex digits (a wrapped data key is about 400 bytes).
pub const MAX_WRAPPED_HEX: usize = 16 * 1024;

/// The body of a deposit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    /// The bound twin id, hex.
    twin: String,
    /// The sealed version.
    version: u64,
    /// `wrap_for(data key, custodian's ed25519 key)`, hex.
    wrapped_hex: String,
}

/// `POST /v1/custodian/keys` (signed by a live actor of the custodian's organisation): 201 once
/// the key is stored, wrapped under the master key.
pub async fn deposit(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let result = deposit_inner(&api, &method, &uri, &headers, &body);
    let m = api.chain.metrics();
    match &result {
        Ok(_) => {
            m.custodian_deposits.inc();
        }
        Err(e) => m.count_custodian_refusal(e.code()),
    };
    result.map(|v| (StatusCode::CREATED, Json(v)))
}

fn deposit_inner(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let cust = custodian_of(api)?;
    let signer = authenticate(api, method, uri, headers, body)?;
    let state = api.chain.state();
    if !state
        .actor(&signer)
        .is_some_and(|a| a.live && a.organisation == cust.organisation())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_of_the_organisation",
            format!(
                "{signer} is not a live actor of {}, the custodian's organisation",
                cust.organisation()
            ),
        ));
    }
    let req: Deposit = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("request body: {e}"),
        )
    })?;
    let twin = TwinId::from_hex(&req.twin).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_id",
            format!("twin: {e}"),
        )
    })?;
    let version = req.version;
    let sealed = state
        .sealed(&twin, version)
        .copied()
        .filter(|s| s.custodian == cust.public())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_sealed",
                format!(
                    "no committed twin seal of version {version} of twin {twin} names this \
                     custodian ({})",
                    cust.public()
                ),
            )
        })?;
    let erased = || {
        ApiError::new(
            StatusCode::GONE,
            "erased",
            format!("version {version} of twin {twin} was erased; no key is taken for it"),
        )
    };
    if sealed.erased_at.is_some() {
        return Err(erased());
    }
    if req.wrapped_hex.len() > MAX_WRAPPED_HEX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_wrapped_key",
            format!(
                "wrapped_hex is {} hex digits, more than {MAX_WRAPPED_HEX}",
                req.wrapped_hex.len()
            ),
        ));
    }
    let wrapped = hex::decode(&req.wrapped_hex).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_wrapped_key",
            format!("wrapped_hex: {e}"),
        )
    })?;
    let vid = version_id(&twin, version).map_err(ApiError::internal_error)?;
    let secret = zeroize::Zeroizing::new(cust.key.secret_bytes());
    let key = twinledger_sealed::unwrap_with(&wrapped, &vid, &secret).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_wrapped_key",
            format!(
                "the wrapped key does not open as version {version} of twin {twin}'s data key \
                 wrapped for the custodian {}: {e}",
                cust.public()
            ),
        )
    })?;
    cust.keys().put(&vid, &key).map_err(|e| match e {
        SealError::KeyExists { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "already_deposited",
            format!("the key of version {version} of twin {twin} was already deposited"),
        ),
        SealError::Erased { .. } => erased(),
        other => ApiError::internal_error(other),
    })?;
    tracing::info!(%twin, version, by = %signer, "data key deposited");
    Ok(json!({ "twin": twin, "version": version, "custodian": cust.public() }))
}
