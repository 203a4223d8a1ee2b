//! `GET /v1/governance`: the network's membership as the committed state has it (PROTOCOL.md
//! §6.8, §7.1): the governance sequence the next approvals must sign, the validator set in force
//! and any scheduled one, the observers governance recorded, the organisations, and the applied
//! validator-set changes. Public: membership is not patient data, and every validator and
//! member needs it to prepare and check a governance proposal.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use twinledger_core::ValidatorSet;

use super::{Api, ApiError};
use crate::net;

fn set_json(set: &ValidatorSet) -> Value {
    json!({
        "hash": set.hash().to_hex(),
        "total_power": set.total_power(),
        "validators": set.validators().iter().map(|v| json!({
            "key": v.key,
            "organisation": v.organisation,
            "power": v.power,
            "peer_id": net::peer_id(&v.key).to_string(),
        })).collect::<Vec<_>>(),
    })
}

/// The membership view.
pub async fn governance(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let st = api.chain.state();
    let tip = st.height();
    let next = st.validators_for(tip + 1);
    let after = st.validators_for(tip + 2);
    let scheduled = (after.hash() != next.hash()).then(|| {
        let mut v = set_json(after);
        v["in_force_from"] = json!(tip + 2);
        v
    });
    let observers: Vec<Value> = st
        .observers()
        .map(|(k, o)| {
            json!({
                "key": k,
                "peer_id": net::peer_id(k).to_string(),
                "organisation": o.organisation,
                "live": o.live,
            })
        })
        .collect();
    let organisations: Vec<Value> = st
        .organisations()
        .map(|(k, o)| json!({"key": k, "name": o.name, "live": o.live}))
        .collect();
    let delay = twinledger_core::state::VALIDATOR_SET_DELAY;
    let changes: Vec<Value> = api
        .chain
        .validator_set_changes()
        .into_iter()
        .map(|(h, id)| json!({"height": h, "in_force_from": h + delay, "event": id.to_hex()}))
        .collect();
    let mut in_force = set_json(next);
    in_force["height"] = json!(tip + 1);
    Ok(Json(json!({
        "chain_id": st.chain_id().to_hex(),
        "height": tip,
        "governance_seq": st.governance_seq(),
        "validators": in_force,
        "scheduled": scheduled,
        "observers": observers,
        "organisations": organisations,
        "validator_set_changes": changes,
    })))
}
