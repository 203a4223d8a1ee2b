//! `GET /v1/custodian` and `POST /v1/custodian/release` (PROTOCOL.md §11.6).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use twinledger_core::event::sealing::KeyRelease;
use twinledger_core::{Action, Decision, Event, EventPayload, Hash, Outcome, Receipt, TwinId};
use twinledger_sealed::SealError;
use twinledger_sealed::custodian::KeyState;

use super::{Custodian, RELEASE_WAIT, version_id};
use crate::api::{Api, ApiError, authenticate};
use crate::chain::{Finality, now};

/// The custodian of this node, or 404 `no_custodian`.
pub(super) fn custodian_of(api: &Api) -> Result<Arc<Custodian>, ApiError> {
    api.custodian.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_custodian",
            "this node runs no key custodian (start it with --custodian-key and \
             --custodian-master-key)",
        )
    })
}

/// `GET /v1/custodian`: the custodian's key and organisation (unsigned).
pub async fn info(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let c = custodian_of(&api)?;
    Ok(Json(json!({
        "custodian": c.public().to_did(),
        "organisation": c.organisation().to_did(),
    })))
}

/// The body of a release request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    /// The bound twin id, hex.
    twin: String,
    /// The sealed version.
    version: u64,
    /// The access receipt: the answer of `POST /v1/access` (with `receipt` inside) or the bare
    /// receipt.
    receipt: Value,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

/// `POST /v1/custodian/release`: checks the request, commits a KeyRelease, then answers the data
/// key wrapped to the requester. Every refusal is counted by code in /metrics.
pub async fn release(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let result = release_inner(&api, &method, &uri, &headers, &body).await;
    let m = api.chain.metrics();
    match &result {
        Ok(_) => {
            m.custodian_releases.inc();
        }
        Err(e) => m.count_custodian_refusal(e.code()),
    };
    result.map(Json)
}

async fn release_inner(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ApiError> {
    let cust = custodian_of(api)?;
    // §11.1: signature over POST, path and the body's blake3; fresh time; known key; fresh
    // nonce (a replayed request stops here).
    let requester = authenticate(api, method, uri, headers, body)?;
    let req: ReleaseRequest = serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("request body: {e}"),
        )
    })?;
    let twin = TwinId::from_hex(&req.twin).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            "malformed_id",
            format!("twin: {e}"),
        )
    })?;
    let version = req.version;

    // 1. The receipt is the chain's: the node's committed copy of that event's receipt, equal
    //    in every field (header, results, certificate, inclusion proof).
    let inner = match req.receipt.get("receipt") {
        Some(r) if req.receipt.get("event").is_none() => r.clone(),
        _ => req.receipt.clone(),
    };
    let bad = |why: String| refuse(StatusCode::BAD_REQUEST, "bad_receipt", why);
    let receipt: Receipt = serde_json::from_value(inner)
        .map_err(|e| bad(format!("the receipt does not parse: {e}")))?;
    let access = receipt.event_id();
    let stored = api
        .chain
        .receipt(&access)
        .map_err(ApiError::from)?
        .ok_or_else(|| bad(format!("event {access} is not final on this chain")))?;
    if stored != receipt {
        return Err(bad(format!(
            "the receipt of event {access} is not the chain's (a field was changed)"
        )));
    }
    let outcome = stored
        .results
        .outcomes
        .get(stored.index as usize)
        .copied()
        .ok_or_else(|| bad(format!("receipt of {access} out of its block")))?;

    // 2. An access or break-glass request ...
    let ev = &stored.event.event;
    let (patient, category, action) = match &ev.payload {
        EventPayload::AccessRequest(a) => (a.patient, a.category, a.action),
        EventPayload::BreakGlassRequest(b) => (b.patient, b.category, b.action),
        other => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "not_a_request",
                format!(
                    "event {access} is a {}, not an access or break-glass request",
                    other.kind()
                ),
            ));
        }
    };
    // 3. ... authored by the signer of this request.
    if ev.author != requester {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "not_the_requester",
            format!(
                "access request {access} was made by {}, not by {requester} who signed this release \
                 request",
                ev.author
            ),
        ));
    }
    // 4. Permitted, or a flagged break-glass access.
    let (grant, break_glass) = match outcome {
        Outcome::Access(Decision::Permit { grant }) => (Some(grant), false),
        Outcome::Access(Decision::BreakGlass) => (None, true),
        Outcome::Access(Decision::Deny { reason }) => {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "denied",
                format!("access request {access} was denied ({reason:?}); no key is released"),
            ));
        }
        Outcome::Applied => return Err(bad(format!("event {access} has no access decision"))),
    };
    // 5. The sealed version, held by this custodian, of the request's patient and category.
    let state = api.chain.state();
    let unknown = || {
        refuse(
            StatusCode::NOT_FOUND,
            "unknown_version",
            format!("this custodian holds no key for version {version} of twin {twin}"),
        )
    };
    let sealed = state.sealed(&twin, version).copied().ok_or_else(unknown)?;
    if sealed.custodian != cust.public() {
        return Err(unknown());
    }
    if sealed.patient != patient {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "wrong_twin",
            format!(
                "access request {access} concerns patient {patient}, but version {version} of twin \
                 {twin} is another patient's"
            ),
        ));
    }
    if sealed.category != category {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "wrong_category",
            format!(
                "access request {access} is for category {category:?}, but version {version} of \
                 twin {twin} holds {:?}",
                sealed.category
            ),
        ));
    }
    if action != Action::Read {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "wrong_action",
            format!("access request {access} is for {action:?}, a key is released for read only"),
        ));
    }
    // 6. The requester is still a live actor of a live organisation: an actor (or organisation)
    //    revoked since its request gets no key, whatever its receipt says.
    let requester_live = state
        .actor(&requester)
        .is_some_and(|a| a.live && state.organisation(&a.organisation).is_some_and(|o| o.live));
    if !requester_live {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "requester_revoked",
            format!(
                "{requester} is no longer a live actor of a live member organisation; no key is \
                 released for its earlier access request {access}"
            ),
        ));
    }
    // 6b. The permitting grant is still in force now (not revoked, in its window, its
    //    delegate's delegation live).
    let t = now();
    if let Some(g) = grant {
        let live = state
            .grant(&g)
            .is_some_and(|rec| state.grant_in_force(rec, t));
        if !live {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "grant_revoked",
                format!(
                    "grant {g} that permitted access request {access} is no longer in force \
                     (revoked, ended, or its delegation ended)"
                ),
            ));
        }
    }
    // 7. A recent receipt.
    let age_ms = t.0.saturating_sub(stored.header.time.0);
    if u128::from(age_ms) > cust.window.as_millis() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "receipt_expired",
            format!(
                "access request {access} was decided {} s ago, more than the release window of {} \
                 s; make a new access request",
                age_ms / 1000,
                cust.window.as_secs()
            ),
        ));
    }
    // 8. Not erased, deposited.
    let vid = version_id(&twin, version).map_err(ApiError::internal_error)?;
    let erased = || {
        refuse(
            StatusCode::GONE,
            "erased",
            format!("version {version} of twin {twin} was erased; its key no longer exists"),
        )
    };
    if sealed.erased_at.is_some() {
        return Err(erased());
    }
    match cust.keys.state(&vid).map_err(ApiError::internal_error)? {
        KeyState::Held => {}
        KeyState::Erased => return Err(erased()),
        KeyState::Unknown => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "unknown_version",
                format!(
                    "the key of version {version} of twin {twin} was never deposited with this \
                     custodian"
                ),
            ));
        }
    }
    // 9. One release per access: not released (committed or in flight).
    let _one_at_a_time = cust.lock.lock().await;
    let already = |rel: String| {
        refuse(
            StatusCode::CONFLICT,
            "already_released",
            format!("access request {access} was already answered by a key release {rel}"),
        )
    };
    let state = api.chain.state();
    if let Some(r) = state.release_of(&access) {
        return Err(already(r.to_string()));
    }
    if cust.pending.lock().expect("pending lock").contains(&access) {
        return Err(already("(pending)".into()));
    }

    // Commit the KeyRelease; only once it is final is the key handed out.
    let me = cust.public();
    let (_, seq) = api.chain.next_seq(&me);
    let payload = EventPayload::KeyRelease(KeyRelease {
        patient,
        twin,
        version,
        access,
        requester,
        request: Hash(*blake3::hash(body).as_bytes()),
    });
    let ev = Event::new(
        api.chain.chain_id(),
        me,
        seq,
        now().plus_ms(u64::try_from(RELEASE_WAIT.as_millis()).unwrap_or(u64::MAX)),
        payload,
    )
    .sign(&cust.key);
    let (tx, rx) = oneshot::channel();
    let id = api.chain.submit_verified(ev, Some(tx)).map_err(|e| {
        refuse(
            StatusCode::CONFLICT,
            "release_refused",
            format!("the ledger refused the key release: {e}"),
        )
    })?;
    match tokio::time::timeout(RELEASE_WAIT, rx).await {
        Ok(Ok(Finality::Final { .. })) => {}
        Ok(Ok(Finality::Dropped(reason))) => {
            return Err(refuse(
                StatusCode::CONFLICT,
                "release_refused",
                format!("the key release {id} was dropped: {reason}"),
            ));
        }
        Ok(Err(_)) => return Err(ApiError::internal_error("the block producer stopped")),
        Err(_) => {
            cust.pending.lock().expect("pending lock").insert(access);
            return Err(refuse(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "key release {id} was not final within {} s; it is pending, no key was handed \
                     out",
                    RELEASE_WAIT.as_secs()
                ),
            ));
        }
    }
    let wrapped = cust
        .keys
        .release(&vid, requester.as_bytes())
        .map_err(|e| match e {
            SealError::Erased { .. } => erased(),
            other => ApiError::internal_error(other),
        })?;
    tracing::info!(%twin, version, %access, release = %id, %requester, break_glass, "key released");
    Ok(json!({
        "wrapped_hex": hex::encode(wrapped),
        "release": id,
        "break_glass": break_glass,
        "twin": twin,
        "version": version,
        "ciphertext_hash": sealed.ciphertext_hash,
        "state_hash": sealed.state_hash,
        "ciphertext_size": sealed.ciphertext_size,
        "category": sealed.category,
    }))
}
