//! Signed-request authentication (PROTOCOL §11.1): who is asking. What they may then read is
//! `reads`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use twinledger_core::request::{RequestAuth, header};
use twinledger_core::{PublicKey, Signature, Timestamp};

use super::ApiError;
use crate::chain::now;

/// How far a request's time may be from the node's clock.
pub const WINDOW_MS: u64 = 60_000;
/// Most remembered nonces (requests within the window); beyond it requests get 503.
pub const MAX_NONCES: usize = 1_000_000;

/// Nonces seen within the window.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<(PublicKey, [u8; 16]), u64>>,
}

impl NonceCache {
    /// Records a nonce; false if it was already seen (a replay).
    fn insert(&self, key: PublicKey, nonce: [u8; 16], time: u64) -> Result<bool, ApiError> {
        let mut seen = self.seen.lock().expect("nonce lock");
        let t = now().0;
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, exp| *exp > t);
            if seen.len() >= MAX_NONCES {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many signed requests in the replay window; retry later",
                ));
            }
        }
        Ok(seen.insert((key, nonce), time + 2 * WINDOW_MS).is_none())
    }
}

fn unauthorised(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .ok_or_else(|| {
            unauthorised(
                "unsigned_request",
                format!("missing {name} header: reads of patient data must be signed"),
            )
        })?
        .to_str()
        .map_err(|_| unauthorised("malformed_auth", format!("{name} is not ASCII")))
}

/// Authenticates a signed request: signature, freshness, no replay. Returns the requester.
pub fn authenticate(
    api: &super::Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PublicKey, ApiError> {
    let key = PublicKey::from_did(header_str(headers, header::KEY)?)
        .map_err(|e| unauthorised("malformed_auth", format!("{}: {e}", header::KEY)))?;
    let time: u64 = header_str(headers, header::TIME)?.parse().map_err(|_| {
        unauthorised(
            "malformed_auth",
            format!("{} is not a number", header::TIME),
        )
    })?;
    let mut nonce = [0u8; 16];
    hex::decode_to_slice(header_str(headers, header::NONCE)?, &mut nonce).map_err(|_| {
        unauthorised(
            "malformed_auth",
            format!("{} is not 32 hex digits", header::NONCE),
        )
    })?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(header_str(headers, header::SIGNATURE)?, &mut sig).map_err(|_| {
        unauthorised(
            "malformed_auth",
            format!("{} is not 128 hex digits", header::SIGNATURE),
        )
    })?;
    let auth = RequestAuth {
        key,
        time: Timestamp(time),
        nonce,
        signature: Signature(sig),
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    auth.verify(&api.chain.chain_id(), method.as_str(), path, body)
        .map_err(|_| unauthorised("bad_signature", "request signature does not verify"))?;
    let t = now().0;
    if time.abs_diff(t) > WINDOW_MS {
        return Err(unauthorised(
            "stale_request",
            format!("request time {time} is more than {WINDOW_MS} ms from the node's clock {t}"),
        ));
    }
    if !api.nonces.insert(key, nonce, time)? {
        return Err(unauthorised(
            "replayed_request",
            "this request nonce was already used",
        ));
    }
    Ok(key)
}
