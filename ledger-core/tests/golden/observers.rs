//! Vector of PROTOCOL.md 2.5 (§5.8, §6.8, §6.10 table 16): a chain on the reference genesis in
//! which governance adds an observer run by the hospital (block 1), removes it and removes an
//! observer known only from a genesis file (block 2). The reference chain's vectors hold no
//! observer action and are unchanged by 2.5.

use serde_json::{Value, json};
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::governance::GovernanceAction;
use twinledger_core::*;

fn event_json(ev: &SignedEvent) -> Value {
    json!({
        "signed_hex": hex::encode(ev.to_bytes()),
        "event_id": ev.id().to_hex(),
    })
}

/// The chain, its blocks as `extra::blocks` renders them, the three governance events and the
/// observer records after each block.
pub fn vector() -> Value {
    let mut chain = DevChain::new(4);
    let hosp = chain.hospital.public();
    let replica = dev_key("observer/st-mary-replica");
    let genesis_observer = dev_key("observer/genesis-file");
    let add = crate::common::governance_event(
        &mut chain,
        0,
        GovernanceAction::ObserverAdd {
            observer: replica.public(),
            organisation: hosp,
        },
    );
    let c = chain.commit(vec![add.clone()]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let after_1 = *chain.state.observer(&replica.public()).unwrap();
    let remove = crate::common::governance_event(
        &mut chain,
        1,
        GovernanceAction::ObserverRemove {
            observer: replica.public(),
        },
    );
    let remove_genesis = crate::common::governance_event(
        &mut chain,
        2,
        GovernanceAction::ObserverRemove {
            observer: genesis_observer.public(),
        },
    );
    let c = chain.commit(vec![remove.clone(), remove_genesis.clone()]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let after_2 = *chain.state.observer(&replica.public()).unwrap();
    let genesis_after_2 = *chain.state.observer(&genesis_observer.public()).unwrap();
    json!({
        "note": "PROTOCOL.md 2.5: on the reference genesis, block 1 adds an observer run by the hospital (governance seq 0); block 2 removes it (seq 1) and removes an observer known only from a genesis file (seq 2).",
        "observer": hex::encode(replica.public().as_bytes()),
        "genesis_observer": hex::encode(genesis_observer.public().as_bytes()),
        "events": {
            "observer_add": event_json(&add),
            "observer_remove": event_json(&remove),
            "observer_remove_genesis": event_json(&remove_genesis),
        },
        "observer_record_hex": [
            hex::encode(codec::encode(&after_1)),
            hex::encode(codec::encode(&after_2)),
        ],
        "genesis_observer_record_hex": hex::encode(codec::encode(&genesis_after_2)),
        "blocks": super::extra::blocks(&chain),
    })
}

/// Replays the pinned blocks from the pinned genesis: every event applied, the records as
/// pinned, and the removal replayed once more refused (`already removed`).
pub fn check(want: &Value) {
    let genesis: Genesis = codec::decode(
        "genesis",
        &hex::decode(want["genesis_hex"].as_str().unwrap()).unwrap(),
        1 << 20,
    )
    .unwrap();
    let v = &want["observers"];
    let key = |name: &str| {
        let b: [u8; 32] = hex::decode(v[name].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        PublicKey::from_ed25519_bytes(&b).unwrap()
    };
    let (observer, genesis_observer) = (key("observer"), key("genesis_observer"));
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
        assert!(
            results.outcomes.iter().all(|o| *o == Outcome::Applied),
            "{results:?}"
        );
        state = next;
        assert_eq!(
            hex::encode(codec::encode(state.observer(&observer).unwrap())),
            v["observer_record_hex"][i].as_str().unwrap()
        );
    }
    assert_eq!(
        hex::encode(codec::encode(state.observer(&genesis_observer).unwrap())),
        v["genesis_observer_record_hex"].as_str().unwrap()
    );
    for name in ["observer_add", "observer_remove", "observer_remove_genesis"] {
        let bytes = hex::decode(v["events"][name]["signed_hex"].as_str().unwrap()).unwrap();
        let ev = SignedEvent::from_bytes(&bytes, 1 << 16).unwrap();
        assert_eq!(ev.event.payload.kind(), "governance");
        assert_eq!(
            ev.id().to_hex(),
            v["events"][name]["event_id"].as_str().unwrap()
        );
        ev.verify_signature().unwrap();
    }
}
