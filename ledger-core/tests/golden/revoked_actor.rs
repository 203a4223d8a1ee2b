//! Vector of PROTOCOL.md 2.2 (§6.1, §6.5, §8.2): a chain on the reference genesis in which the
//! hospital revokes the nurse (block 1), whose access and break-glass requests are then
//! recorded as denied with `actor_revoked` (block 2). The reference chain's vectors are built
//! without such a request and are unchanged by 2.2.

use serde_json::{Value, json};
use twinledger_core::devkit::DevChain;
use twinledger_core::event::membership::ActorRevoke;
use twinledger_core::*;

use super::common::*;

/// The chain and its blocks, as `extra::blocks` renders them, with each block's results as JSON.
pub fn vector() -> Value {
    let mut chain = DevChain::new(4);
    let hosp = chain.hospital.clone();
    let nurse = chain.nurse.clone();
    let alice = patient("alice");
    let revoke = chain.event(
        &hosp,
        EventPayload::ActorRevoke(ActorRevoke {
            actor: nurse.public(),
        }),
    );
    chain.commit(vec![revoke]);
    let access = chain.event(
        &nurse,
        access_payload(
            &alice.public(),
            DataCategory::VitalSigns,
            Purpose::Treat,
            Action::Read,
        ),
    );
    let bg = chain.event(
        &nurse,
        break_glass_payload(&alice.public(), DataCategory::Imaging),
    );
    let c = chain.commit(vec![access, bg]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let results: Vec<Value> = chain
        .blocks
        .iter()
        .map(|b| serde_json::to_value(&b.results).unwrap())
        .collect();
    json!({
        "note": "PROTOCOL.md 2.2: on the reference genesis, block 1 revokes the nurse; block 2 holds the nurse's access and break-glass requests, accepted and denied (actor_revoked).",
        "blocks": super::extra::blocks(&chain),
        "results_json": results,
    })
}

/// Replays the pinned blocks from the pinned genesis and checks the outcomes of block 2.
pub fn check(want: &Value) {
    let genesis: Genesis = codec::decode(
        "genesis",
        &hex::decode(want["genesis_hex"].as_str().unwrap()).unwrap(),
        1 << 20,
    )
    .unwrap();
    let v = &want["revoked_actor"];
    let mut state = State::from_genesis(&genesis).unwrap();
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2);
    for (i, b) in blocks.iter().enumerate() {
        let block =
            Block::from_bytes(&hex::decode(b["block_hex"].as_str().unwrap()).unwrap()).unwrap();
        let (next, results) = state.apply_block(&block).unwrap();
        assert_eq!(
            hex::encode(codec::encode(&results)),
            b["results_hex"].as_str().unwrap()
        );
        assert_eq!(
            serde_json::to_value(&results).unwrap(),
            v["results_json"][i]
        );
        state = next;
    }
    let denied = json!({"access": {"deny": {"reason": "actor_revoked"}}});
    assert_eq!(v["results_json"][1]["outcomes"], json!([denied, denied]));
    // §8.2: the results encode `Access(Deny(actor_revoked))` as 01 01 02.
    assert_eq!(blocks[1]["results_hex"].as_str().unwrap(), "02010102010102");
}
