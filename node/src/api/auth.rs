//! Signed-request authentication (PROTOCOL §11.1): who is asking. What they may then read is
//! `reads`.
//!
//! Order (the node's rule, docs/guides/operator.md "Signed reads under abuse"): the headers
//! parse, the signature verifies, the time is within [`WINDOW_MS`], the key is known to the
//! chain's state ([`is_known_key`]), the key is under its rate, and only then is its nonce
//! remembered, in a per-key quota ([`NonceCache`]). Nothing is stored about an unknown key or
//! a refused request.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use twinledger_core::request::{RequestAuth, header};
use twinledger_core::{PublicKey, Signature, State, Timestamp};

use super::ApiError;
use crate::chain::now;

/// How far a request's time may be from the node's clock, either side (PROTOCOL §11.1).
pub const WINDOW_MS: u64 = 60_000;
/// How long a nonce is remembered at most, of the node's clock: from its request's time
/// `- WINDOW_MS` (the earliest it can be accepted) to `+ WINDOW_MS` (after which the request is
/// stale anyway), i.e. `2 * WINDOW_MS`.
pub const RETENTION_MS: u64 = 2 * WINDOW_MS;
/// Hard cap on the nonces remembered for all keys together. Reaching it forgets expired
/// nonces (one sweep a second at most); if still full, only a key holding at least
/// [`FAIR_SHARE`] nonces is refused (503).
pub const MAX_NONCES: usize = 1_000_000;
/// A key holding fewer nonces than this is never refused because the cache is full.
pub const FAIR_SHARE: usize = 64;
/// Per-key nonce quota when the per-key rate limit is off (0).
pub const UNLIMITED_RATE_QUOTA: usize = 120_000;

/// Most nonces one key may have remembered within [`RETENTION_MS`] at a per-key rate of
/// `per_second` (bursts of `2 * per_second`): `per_second * 2W + burst`. An honest key under its
/// rate never reaches it; 0 = rate limit off, then [`UNLIMITED_RATE_QUOTA`].
pub fn nonce_quota(per_second: u32) -> usize {
    if per_second == 0 {
        return UNLIMITED_RATE_QUOTA;
    }
    let r = u64::from(per_second);
    usize::try_from((r * RETENTION_MS).div_ceil(1000) + 2 * r).unwrap_or(usize::MAX)
}

#[derive(Debug, Default)]
struct Nonces {
    /// Per key: nonce → expiry (request time + WINDOW_MS).
    by_key: HashMap<PublicKey, HashMap<[u8; 16], u64>>,
    total: usize,
    /// Node clock of the last sweep of the whole cache (at most one a second, so a full cache
    /// does not cost a sweep per request).
    last_sweep: u64,
}

/// Nonces of known keys seen within the window, with a quota per key ([`nonce_quota`]) and a
/// global cap ([`MAX_NONCES`]).
#[derive(Debug)]
pub struct NonceCache {
    quota: usize,
    cap: usize,
    inner: Mutex<Nonces>,
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::new(nonce_quota(super::DEFAULT_RATE_PER_KEY))
    }
}

impl NonceCache {
    /// A cache allowing `quota` nonces per key.
    pub fn new(quota: usize) -> Self {
        Self {
            quota,
            cap: MAX_NONCES,
            inner: Mutex::default(),
        }
    }

    /// The per-key quota.
    pub fn quota(&self) -> usize {
        self.quota
    }

    /// Nonces remembered, all keys together.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("nonce lock").total
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nonces remembered for `key`.
    pub fn len_of(&self, key: &PublicKey) -> usize {
        let n = self.inner.lock().expect("nonce lock");
        n.by_key.get(key).map_or(0, HashMap::len)
    }

    /// Records a nonce of a known key; a replay, a key over its quota or a full cache is an
    /// error, and then nothing is recorded.
    fn insert(&self, key: PublicKey, nonce: [u8; 16], time: u64) -> Result<(), ApiError> {
        let t = now().0;
        let mut guard = self.inner.lock().expect("nonce lock");
        let n = &mut *guard;
        let mine = n.by_key.get(&key).map_or(0, HashMap::len);
        if n.by_key.get(&key).is_some_and(|m| m.contains_key(&nonce)) {
            return Err(unauthorised(
                "replayed_request",
                "this request nonce was already used",
            ));
        }
        if mine >= self.quota {
            let m = n.by_key.get_mut(&key).expect("present");
            m.retain(|_, exp| *exp >= t);
            n.total -= mine - m.len();
            if m.len() >= self.quota {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "{key} has {} signed requests in the last {} s, its quota; slow down",
                        self.quota,
                        RETENTION_MS / 1000
                    ),
                )
                .rate_limited(super::LimitKind::Key));
            }
        }
        if n.total >= self.cap && t >= n.last_sweep + 1000 {
            let mut total = 0;
            n.by_key.retain(|_, m| {
                m.retain(|_, exp| *exp >= t);
                total += m.len();
                !m.is_empty()
            });
            n.total = total;
            n.last_sweep = t;
        }
        if n.total >= self.cap {
            let mine = n.by_key.get(&key).map_or(0, HashMap::len);
            if mine >= FAIR_SHARE {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    format!(
                        "{} signed requests in the replay window and {key} holds {mine} of \
                         them; retry later",
                        self.cap
                    ),
                ));
            }
        }
        n.by_key
            .entry(key)
            .or_default()
            .insert(nonce, time + WINDOW_MS);
        n.total += 1;
        Ok(())
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

/// Whether `key` is known to the chain's state at `time`: a current patient key, a live
/// delegate of some patient, a live enrolled actor, a live organisation, a live auditor, or a
/// key of the validator set in force for the next block.
pub fn is_known_key(state: &State, key: &PublicKey, time: Timestamp) -> bool {
    state.patient_of_key(key).is_some_and(|k| !k.retired)
        || state.actor(key).is_some_and(|a| a.live)
        || state.organisation(key).is_some_and(|o| o.live)
        || state.is_auditor(key)
        || state.validators_for(state.height() + 1).get(key).is_some()
        || state.is_live_delegate_of_anyone(key, time)
}

/// Headers parse, signature verifies, time within the window: the signer, its nonce and time.
fn verify(
    api: &super::Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(PublicKey, [u8; 16], u64), ApiError> {
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
    Ok((key, nonce, time))
}

/// Per-key rate, then the nonce (replay, quota) of a known key.
fn admit_known(
    api: &super::Api,
    key: PublicKey,
    nonce: [u8; 16],
    time: u64,
) -> Result<(), ApiError> {
    if !api.key_rate.allow(key) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} signed requests a second from {key}; slow down",
                api.key_rate.per_second
            ),
        )
        .rate_limited(super::LimitKind::Key));
    }
    api.nonces.insert(key, nonce, time)
}

/// Authenticates a signed request: signature, freshness, a key known to the chain, its rate,
/// no replay. Returns the requester. An unknown key is refused (403 `unknown_key`) and nothing
/// about it is stored.
pub fn authenticate(
    api: &super::Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PublicKey, ApiError> {
    let (key, nonce, time) = verify(api, method, uri, headers, body)?;
    if !is_known_key(&api.chain.state(), &key, now()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_key",
            format!(
                "{key} is no current patient key, live delegate, actor, organisation, auditor \
                 or validator of this chain"
            ),
        ));
    }
    admit_known(api, key, nonce, time)?;
    Ok(key)
}

/// [`authenticate`] for the two reads a key needs before the chain knows it (a new patient
/// signing its first event): its own sequence number, and its own event by id while it waits
/// for it to be final (404 until then). A key the chain does not know yet is let through after
/// the signature and time checks, with no nonce stored (a replay of it returns the same answer,
/// about that key's own sequence or events, to whoever holds the request) and limited only per
/// address; the handler's own rule still decides what it reads. A known key goes through the
/// whole of [`authenticate`].
pub fn authenticate_own_key(
    api: &super::Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PublicKey, ApiError> {
    let (key, nonce, time) = verify(api, method, uri, headers, body)?;
    if is_known_key(&api.chain.state(), &key, now()) {
        admit_known(api, key, nonce, time)?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinledger_core::devkit::dev_key;

    fn nonce(i: u32) -> [u8; 16] {
        let mut n = [0u8; 16];
        n[..4].copy_from_slice(&i.to_be_bytes());
        n
    }

    #[test]
    fn the_quota_follows_from_the_rate_and_the_retention() {
        // r * 2W + burst: 20/s over 120 s, plus a burst of 40.
        assert_eq!(nonce_quota(20), 2_440);
        assert_eq!(nonce_quota(1), 122);
        assert_eq!(nonce_quota(0), UNLIMITED_RATE_QUOTA);
    }

    #[test]
    fn a_key_over_its_quota_is_refused_alone_and_a_replay_is_refused() {
        let cache = NonceCache::new(3);
        let (a, b) = (dev_key("auth/a").public(), dev_key("auth/b").public());
        let t = now().0;
        for i in 0..3 {
            cache.insert(a, nonce(i), t).unwrap();
        }
        let e = cache.insert(a, nonce(3), t).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (429, "rate_limited"));
        assert!(e.message.contains(&a.to_string()), "{}", e.message);
        let e = cache.insert(a, nonce(0), t).unwrap_err();
        assert_eq!(e.code, "replayed_request");
        cache.insert(b, nonce(0), t).unwrap();
        assert_eq!((cache.len_of(&a), cache.len_of(&b), cache.len()), (3, 1, 4));
    }

    #[test]
    fn a_full_cache_refuses_only_keys_holding_their_fair_share() {
        let cache = NonceCache {
            cap: 200,
            ..NonceCache::new(1_000)
        };
        let (flooder, honest) = (
            dev_key("auth/flood").public(),
            dev_key("auth/honest").public(),
        );
        let t = now().0;
        for i in 0..200 {
            cache.insert(flooder, nonce(i), t).unwrap();
        }
        let e = cache.insert(flooder, nonce(200), t).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (503, "overloaded"));
        assert!(e.message.contains(&flooder.to_string()), "{}", e.message);
        // A key holding fewer than FAIR_SHARE nonces is still served, full cache or not.
        for i in 0..u32::try_from(FAIR_SHARE).unwrap() {
            cache.insert(honest, nonce(i), t).unwrap();
        }
        assert_eq!(cache.len_of(&honest), FAIR_SHARE);
    }

    #[test]
    fn expired_nonces_free_the_quota() {
        let cache = NonceCache::new(2);
        let a = dev_key("auth/a").public();
        let old = now().0 - 2 * WINDOW_MS;
        cache.insert(a, nonce(0), old).unwrap();
        cache.insert(a, nonce(1), old).unwrap();
        cache.insert(a, nonce(2), now().0).unwrap();
        assert_eq!(cache.len(), 1);
    }
}
