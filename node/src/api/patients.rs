//! `GET /v1/patients/{did}/consents` and `GET /v1/patients/{did}/accesses`: a patient's
//! consents and who accessed their twin. Signed reads, each no wider than consent (PROTOCOL
//! §11.5): the patient and auditors read all, a live delegate what its scope covers, a member
//! organisation (its key or privacy officers) what concerns it, nobody else anything.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use serde::Deserialize;
use serde_json::{Value, json};
use twinledger_core::event::EventPayload;
use twinledger_core::state::records::GrantedBy;
use twinledger_core::{PublicKey, Purpose};

use super::auth::authenticate;
use super::reads::{PatientView, forbidden, patient_view, resolve_patient};
use super::{Api, ApiError};
use crate::chain::now;
use crate::store::{CommittedBlock, Index};

/// Paging: from a log position, at most `limit` (1..=1000, default 100) entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// First log position (leaf index) to include.
    #[serde(default)]
    pub from: u64,
    /// Most entries.
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    100
}

fn authorised_patient(
    api: &Api,
    did: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    page: &Page,
) -> Result<(PublicKey, twinledger_core::State, PatientView), ApiError> {
    let requester = authenticate(api, method, uri, headers, b"")?;
    let named = PublicKey::from_did(did)
        .map_err(|e| ApiError::bad_request("malformed_did", format!("patient: {e}")))?;
    if page.limit == 0 || page.limit > 1000 {
        return Err(ApiError::bad_request("bad_limit", "limit must be 1..=1000"));
    }
    let state = api.chain.state();
    // A patient's current key names the patient (its id is the first key).
    let patient = resolve_patient(&state, named);
    let Some(view) = patient_view(&state, &requester, &patient, now()) else {
        return Err(forbidden(
            &requester,
            &format!("the records of patient {patient}"),
        ));
    };
    Ok((patient, state, view))
}

/// The patient's consent grants (active, future, expired, revoked and ended) and delegations.
/// A grant made by a delegate whose delegation was revoked, or has expired, no longer counts
/// (PROTOCOL §6.3): it is `"ended"`, with `"ended": {"reason": "delegation_revoked" |
/// "delegation_expired", "delegation": <id>, "at_ms": <when the delegation ended>}`.
pub async fn consents(
    State(api): State<Arc<Api>>,
    Path(did): Path<String>,
    Query(page): Query<Page>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (patient, state, view) = authorised_patient(&api, &did, &method, &uri, &headers, &page)?;
    let t = now();
    let mut grants = Vec::new();
    let mut delegations = Vec::new();
    let store = api.chain.store();
    let entries = store.index(Index::Patient, &patient, page.from, page.limit)?;
    let next = entries.last().map(|(leaf, _)| leaf + 1);
    // Block times by height, for the time a delegation was revoked.
    let mut times: HashMap<u64, u64> = HashMap::new();
    let mut time_at = |height: u64| -> Result<u64, ApiError> {
        if let Some(t) = times.get(&height) {
            return Ok(*t);
        }
        let b = store.block(height)?.ok_or_else(|| {
            ApiError::internal(format!("block {height} is committed but not stored"))
        })?;
        let t = b.block.header.time.0;
        times.insert(height, t);
        Ok(t)
    };
    for (leaf, id) in entries {
        if let Some(g) = state.grant(&id) {
            if !view.sees_grant(&state, g) {
                continue;
            }
            let ended = match g.granted_by {
                GrantedBy::Delegate(d) if g.revoked_at.is_none() => match state.delegation(&d) {
                    Some(del) => match (del.revoked_at, del.valid_until) {
                        (Some(h), _) => Some(json!({
                            "reason": "delegation_revoked", "delegation": d, "at_ms": time_at(h)?,
                        })),
                        (None, Some(u)) if u <= t => Some(json!({
                            "reason": "delegation_expired", "delegation": d, "at_ms": u.0,
                        })),
                        _ => None,
                    },
                    None => None,
                },
                _ => None,
            };
            let status = if g.revoked_at.is_some() {
                "revoked"
            } else if ended.is_some() {
                "ended"
            } else if g.active_at(t) {
                "active"
            } else if g.grant.valid_from > t {
                "future"
            } else {
                "expired"
            };
            let mut entry = json!({
                "id": id, "leaf": leaf, "status": status, "grant": g.grant,
                "granted_by": g.granted_by, "height": g.height, "revoked_at": g.revoked_at,
            });
            if let Some(e) = ended {
                entry["ended"] = e;
            }
            grants.push(entry);
        } else if let Some(d) = state.delegation(&id) {
            if !view.sees_delegation(&d.delegate) {
                continue;
            }
            let status = if d.revoked_at.is_some() {
                "revoked"
            } else if d.live_at(t) {
                "active"
            } else {
                "expired"
            };
            delegations.push(json!({"id": id, "leaf": leaf, "status": status, "delegation": d}));
        }
    }
    Ok(Json(json!({
        "patient": patient, "grants": grants, "delegations": delegations, "next_from": next,
    })))
}

/// Who accessed (or tried to access) the patient's twin: access and break-glass requests with
/// the ledger's decision, in log order.
pub async fn accesses(
    State(api): State<Arc<Api>>,
    Path(did): Path<String>,
    Query(page): Query<Page>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (patient, state, view) = authorised_patient(&api, &did, &method, &uri, &headers, &page)?;
    let store = api.chain.store();
    let entries = store.index(Index::Patient, &patient, page.from, page.limit)?;
    let next = entries.last().map(|(leaf, _)| leaf + 1);
    let mut blocks: HashMap<u64, CommittedBlock> = HashMap::new();
    let mut out = Vec::new();
    for (leaf, id) in entries {
        if state.grant(&id).is_some() || state.delegation(&id).is_some() {
            continue;
        }
        let Some(loc) = store.event(&id)? else {
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(e) = blocks.entry(loc.height) {
            let sb = store.block(loc.height)?.ok_or_else(|| {
                ApiError::internal(format!("block {} indexed but missing", loc.height))
            })?;
            e.insert(sb);
        }
        let sb = &blocks[&loc.height];
        let ev = &sb.block.events[loc.index as usize];
        let (kind, category, purpose, action) = match &ev.event.payload {
            EventPayload::AccessRequest(a) => ("access", a.category, a.purpose, a.action),
            EventPayload::BreakGlassRequest(b) => {
                ("break_glass", b.category, Purpose::EmergencyTreat, b.action)
            }
            _ => continue,
        };
        let actor = ev.event.author;
        let organisation = state.actor(&actor).map(|a| a.organisation);
        if !view.sees_access(organisation, category, purpose, action) {
            continue;
        }
        out.push(json!({
            "id": id, "leaf": leaf, "height": loc.height, "time": sb.block.header.time,
            "actor": actor,
            "organisation": organisation,
            "kind": kind, "category": category, "purpose": purpose, "action": action,
            "outcome": sb.results.outcomes[loc.index as usize],
            "break_glass_review": state.break_glass(&id).and_then(|b| b.review),
            // Who actually decrypted (2.4): the key release that answered this request, if any.
            "key_release": match state.release_of(&id) {
                Some(r) => {
                    let at = store.event(r)?.map(|l| l.height);
                    let at_ms = match at {
                        Some(h) => store.block(h)?.map(|b| b.block.header.time.0),
                        None => None,
                    };
                    json!({"id": r, "at_ms": at_ms})
                }
                None => Value::Null,
            },
        }));
    }
    Ok(Json(
        json!({"patient": patient, "accesses": out, "next_from": next}),
    ))
}
