//! `GET /v1/patients/{did}/history`: everything a patient needs to check, against the genesis
//! alone, that a list of the events concerning them is complete (PROTOCOL §11.3): the committed
//! tip's header and certificate, the chain of validator-set changes in force there, the
//! patient-events record of the state map at the tip with its proof (§6.10), and the receipt of
//! every event that concerns the patient, in chain order (§9.2), and the actor record of every
//! author of an access or break-glass request among them with its proof against the same state
//! hash (§6.10), so that the requester's organisation and role are proven too (§11.4). Readable
//! by the patient, auditors and delegates of the whole scope (§11.5).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use twinledger_core::merkle::Blake3Tree;
use twinledger_core::{EventPayload, PublicKey, Receipt, Table};

use super::auth::authenticate;
use super::reads::{forbidden, patient_view, resolve_patient};
use super::{Api, ApiError};
use crate::chain::now;
use crate::store::Index;

/// Most events one history answer holds; a patient with more is refused, never truncated.
pub const MAX_HISTORY_EVENTS: usize = 10_000;
/// Largest history answer (its JSON), refused beyond.
pub const MAX_HISTORY_BYTES: usize = 64 * 1024 * 1024;

fn too_large(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "history_too_large",
        message,
    )
}

/// The patient's certified history at the committed tip.
pub async fn history(
    State(api): State<Arc<Api>>,
    Path(did): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let requester = authenticate(&api, &method, &uri, &headers, b"")?;
    let named = PublicKey::from_did(&did)
        .map_err(|e| ApiError::bad_request("malformed_did", format!("patient: {e}")))?;
    // One snapshot: the proof, the tip and the events all at the state's height.
    let state = api.chain.state();
    // A patient's current key names the patient (its id is the first key).
    let patient = resolve_patient(&state, named);
    // The certified history proves the list of every event concerning the patient complete:
    // it is the whole view, for the patient, auditors and delegates of the whole scope only
    // (PROTOCOL §11.5).
    if !patient_view(&state, &requester, &patient, now()).is_some_and(|v| v.is_whole()) {
        return Err(forbidden(
            &requester,
            &format!(
                "the certified history of patient {patient} (the patient, auditors and \
                 delegates of the whole scope read it; consents and accesses show a narrower view)"
            ),
        ));
    }
    let api2 = api.clone();
    tokio::task::spawn_blocking(move || build(&api2, &state, &patient))
        .await
        .map_err(ApiError::internal)?
        .map(Json)
}

fn build(
    api: &Api,
    state: &twinledger_core::State,
    patient: &PublicKey,
) -> Result<Value, ApiError> {
    let height = state.height();
    if height == 0 {
        return Err(ApiError::not_found(
            "no block is committed yet: there is no certified tip to prove a history against",
        ));
    }
    let store = api.chain.store();
    let tip = store
        .block(height)?
        .ok_or_else(|| ApiError::internal(format!("block {height} is committed but not stored")))?;
    let header = tip.block.header;
    if header.state_hash != state.state_root() {
        return Err(ApiError::internal(format!(
            "block {height}'s state hash is not the state map's root"
        )));
    }
    let record = state.patient_events(patient).copied();
    let proof = state.prove(Table::PatientEvents, patient);
    // Events committed after the snapshot are left out: only leaves before the tip's log size.
    let entries: Vec<_> = store
        .index(Index::Patient, patient, 0, MAX_HISTORY_EVENTS + 1)?
        .into_iter()
        .filter(|(leaf, _)| *leaf < header.log_size)
        .collect();
    let count = record.map_or(0, |r| r.count);
    if entries.len() > MAX_HISTORY_EVENTS || count > MAX_HISTORY_EVENTS as u64 {
        return Err(too_large(format!(
            "{count} events concern patient {patient}, more than the {MAX_HISTORY_EVENTS} a \
             history answer holds"
        )));
    }
    if entries.len() as u64 != count {
        return Err(ApiError::internal(format!(
            "the patient index holds {} events of {patient}, the state map counts {count}",
            entries.len()
        )));
    }
    let changes = super::blocks::set_change_receipts(api, Some(height))?;
    let mut answer = json!({
        "patient": patient,
        "height": height,
        "header": header,
        "certificate": tip.certificate,
        "validator_set_changes": changes,
        "patient_events": record,
        "state_proof": hex::encode(proof.to_bytes()),
        "events": [],
        "actors": {},
    });
    // The size is counted as the answer grows: refused as soon as it is over, never built whole.
    let mut size = json_len(&answer);
    let mut receipts = Vec::with_capacity(entries.len());
    // The authors of the requests, at most one per event (so bounded by the events' bound).
    let mut authors: BTreeSet<PublicKey> = BTreeSet::new();
    // Events come in log order: one block decoded at a time.
    let mut block: Option<crate::store::CommittedBlock> = None;
    for (_, id) in entries {
        let loc = store
            .event(&id)?
            .ok_or_else(|| ApiError::internal(format!("event {id} indexed but not stored")))?;
        if block
            .as_ref()
            .is_none_or(|b| b.block.header.height != loc.height)
        {
            block = Some(store.block(loc.height)?.ok_or_else(|| {
                ApiError::internal(format!("block {} indexed but missing", loc.height))
            })?);
        }
        let sb = block.as_ref().expect("just read");
        let event = sb
            .block
            .events
            .get(loc.index as usize)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("event {id} outside its block")))?;
        let proof = twinledger_core::merkle::inclusion_proof::<Blake3Tree>(
            store,
            loc.leaf,
            sb.block.header.log_size,
        )
        .map_err(ApiError::internal)?;
        if matches!(
            event.event.payload,
            EventPayload::AccessRequest(_) | EventPayload::BreakGlassRequest(_)
        ) {
            authors.insert(event.event.author);
        }
        let r = json!(Receipt {
            event,
            index: loc.index,
            leaf_index: loc.leaf,
            inclusion_proof: proof.into_iter().map(twinledger_core::Hash).collect(),
            header: sb.block.header.clone(),
            results: sb.results.clone(),
            certificate: sb.certificate.clone(),
        });
        size = size.saturating_add(json_len(&r) + 1);
        if size > MAX_HISTORY_BYTES {
            return Err(too_large(format!(
                "the history of patient {patient} is over {MAX_HISTORY_BYTES} bytes, more than \
                 a history answer holds"
            )));
        }
        receipts.push(r);
    }
    answer["events"] = Value::Array(receipts);
    // Each requester's actor record and its proof, from the same snapshot as the tip.
    let mut actors = Map::new();
    for author in authors {
        let entry = json!({
            "record": state.actor(&author),
            "state_proof": hex::encode(state.prove(Table::Actor, &author).to_bytes()),
        });
        size = size.saturating_add(json_len(&entry) + 70);
        if size > MAX_HISTORY_BYTES {
            return Err(too_large(format!(
                "the history of patient {patient} is over {MAX_HISTORY_BYTES} bytes, more than \
                 a history answer holds"
            )));
        }
        actors.insert(author.to_string(), entry);
    }
    answer["actors"] = Value::Object(actors);
    Ok(answer)
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}
