//! Vector of PROTOCOL.md 2.4 (§5.10, §6.12): a chain on the reference genesis in which the
//! hospital enrols a custodian (block 1), the physician seals version 1 of Alice's twin and the
//! researcher asks to read it under Alice's grant (block 2), and the custodian records the key
//! release for that permit before Alice erases the version (block 3). The reference chain's
//! vectors are built without sealed events and are unchanged by 2.4.

use serde_json::{Value, json};
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::consent::Grantee;
use twinledger_core::event::membership::ActorEnrol;
use twinledger_core::event::sealing::{KeyRelease, TwinErase, TwinSeal};
use twinledger_core::*;

use super::common::*;

fn event_json(ev: &SignedEvent) -> Value {
    json!({
        "unsigned_hex": hex::encode(ev.event.to_bytes()),
        "signed_hex": hex::encode(ev.to_bytes()),
        "event_id": ev.id().to_hex(),
    })
}

/// The chain, its blocks as `extra::blocks` renders them, the three sealed events and the
/// sealed record after block 2 and after block 3.
pub fn vector() -> Value {
    let mut chain = DevChain::new(4);
    let hosp = chain.hospital.clone();
    let phys = chain.physician.clone();
    let researcher = chain.researcher.clone();
    let custodian = dev_key("actor/custodian");
    let alice = patient("alice");
    let enrol = chain.event(
        &hosp,
        EventPayload::ActorEnrol(ActorEnrol {
            actor: custodian.public(),
            role: Role::Service,
        }),
    );
    chain.commit(vec![enrol]);
    let local = LocalTwinId([0x42; 32]);
    let seal = chain.event(
        &phys,
        EventPayload::TwinSeal(TwinSeal {
            twin: local,
            patient: alice.public(),
            version: 1,
            state_hash: Hash(*blake3::hash(b"heart data v1").as_bytes()),
            category: DataCategory::VitalSigns,
            ciphertext_hash: Hash(*blake3::hash(b"age-encryption.org/v1 ...").as_bytes()),
            ciphertext_size: 1_048_576,
            custodian: custodian.public(),
        }),
    );
    let grant = chain.event(
        &alice,
        grant_payload(
            &alice.public(),
            Grantee::Actor(researcher.public()),
            &[DataCategory::VitalSigns],
            &[Purpose::Research],
            &[Action::Read],
        ),
    );
    let access = chain.event(
        &researcher,
        access_payload(
            &alice.public(),
            DataCategory::VitalSigns,
            Purpose::Research,
            Action::Read,
        ),
    );
    let c = chain.commit(vec![seal.clone(), grant, access.clone()]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let twin = TwinId::bound(&hosp.public(), &local);
    let sealed_after_2 = *chain.state.sealed(&twin, 1).unwrap();
    let release = chain.event(
        &custodian,
        EventPayload::KeyRelease(KeyRelease {
            patient: alice.public(),
            twin,
            version: 1,
            access: access.id(),
            requester: researcher.public(),
            request: Hash(*blake3::hash(b"the signed release request").as_bytes()),
        }),
    );
    let erase = chain.event(
        &alice,
        EventPayload::TwinErase(TwinErase {
            patient: alice.public(),
            twin,
            version: 1,
        }),
    );
    let c = chain.commit(vec![release.clone(), erase.clone()]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let sealed_after_3 = *chain.state.sealed(&twin, 1).unwrap();
    json!({
        "note": "PROTOCOL.md 2.4: on the reference genesis, block 1 enrols a custodian (service); block 2 seals version 1 of Alice's twin (local id 0x42..., the hospital), grants the researcher and holds its permitted access; block 3 holds the custodian's key release for that access and Alice's erasure.",
        "twin_id": twin.to_hex(),
        "events": {
            "twin_seal": event_json(&seal),
            "key_release": event_json(&release),
            "twin_erase": event_json(&erase),
        },
        "sealed_record_hex": [
            hex::encode(codec::encode(&sealed_after_2)),
            hex::encode(codec::encode(&sealed_after_3)),
        ],
        "blocks": super::extra::blocks(&chain),
    })
}

/// Replays the pinned blocks from the pinned genesis: every event applied, the sealed record
/// as pinned after blocks 2 and 3, the release recorded under the access id.
pub fn check(want: &Value) {
    let genesis: Genesis = codec::decode(
        "genesis",
        &hex::decode(want["genesis_hex"].as_str().unwrap()).unwrap(),
        1 << 20,
    )
    .unwrap();
    let v = &want["sealed"];
    let twin = TwinId::from_hex(v["twin_id"].as_str().unwrap()).unwrap();
    let mut state = State::from_genesis(&genesis).unwrap();
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 3);
    for (i, b) in blocks.iter().enumerate() {
        let block =
            Block::from_bytes(&hex::decode(b["block_hex"].as_str().unwrap()).unwrap()).unwrap();
        let (next, results) = state.apply_block(&block).unwrap();
        assert_eq!(
            hex::encode(codec::encode(&results)),
            b["results_hex"].as_str().unwrap()
        );
        state = next;
        if i >= 1 {
            assert_eq!(
                hex::encode(codec::encode(state.sealed(&twin, 1).unwrap())),
                v["sealed_record_hex"][i - 1].as_str().unwrap()
            );
        }
    }
    for name in ["twin_seal", "key_release", "twin_erase"] {
        let bytes = hex::decode(v["events"][name]["signed_hex"].as_str().unwrap()).unwrap();
        let ev = SignedEvent::from_bytes(&bytes, 1 << 16).unwrap();
        assert_eq!(ev.event.payload.kind(), name);
        assert_eq!(
            ev.id().to_hex(),
            v["events"][name]["event_id"].as_str().unwrap()
        );
        ev.verify_signature().unwrap();
    }
    let release = SignedEvent::from_bytes(
        &hex::decode(v["events"]["key_release"]["signed_hex"].as_str().unwrap()).unwrap(),
        1 << 16,
    )
    .unwrap();
    let EventPayload::KeyRelease(r) = &release.event.payload else {
        panic!("not a key release");
    };
    assert_eq!(state.release_of(&r.access), Some(&release.id()));
}
