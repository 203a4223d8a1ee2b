//! `GET /v1/twins/{twin}/{version}` (PROTOCOL.md §5.6, §11.5): no existence oracle for twin ids,
//! twin ids bound to the anchoring organisation, and an answer that proves that organisation.

mod common;

use common::*;
use serde_json::Value;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::event::integrity::TwinAnchor;
use twinledger_core::{EventPayload, Hash, LocalTwinId, Timestamp, TwinId};

fn anchor(patient: &twinledger_core::Keypair, local: LocalTwinId, version: u64) -> EventPayload {
    EventPayload::TwinAnchor(TwinAnchor {
        twin: local,
        patient: patient.public(),
        version,
        state_hash: Hash([u8::try_from(version).unwrap(); 32]),
    })
}

fn grant(patient: &twinledger_core::Keypair) -> EventPayload {
    EventPayload::ConsentGrant(ConsentGrant {
        patient: patient.public(),
        grantee: Grantee::Organisation(keys().institute.public()),
        scope: Scope {
            categories: [DataCategory::VitalSigns].into_iter().collect(),
            purposes: [Purpose::Research].into_iter().collect(),
            actions: [Action::Read].into_iter().collect(),
        },
        valid_from: Timestamp(0),
        valid_until: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_that_is_not_yours_answers_exactly_like_one_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let k = keys();
    let (alice, bob) = (patient("alice"), patient("bob"));
    let local = LocalTwinId::from_label(&[3; 32], "MRN-0001");
    // The hospital's physician anchors alice's twin; bob becomes a known patient.
    node.submit(&node.event(&k.physician, 0, anchor(&alice, local, 1)))
        .await;
    node.submit(&node.event(&bob, 0, grant(&bob))).await;
    node.wait_log(2).await;
    let twin = TwinId::bound(&k.hospital.public(), &local);
    let unknown = TwinId::bound(&k.hospital.public(), &LocalTwinId([9; 32]));
    let path = format!("/v1/twins/{twin}/1");

    // Its readers: the hospital's actor and key, and the auditor.
    for reader in [&k.physician, &k.hospital, &k.auditor] {
        let (s, v) = node.signed_get(reader, &path).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["twin"], Value::String(twin.to_hex()));
        assert_eq!(v["local"], Value::String(local.to_hex()));
    }
    // A version never anchored, to a reader: 404 naming the latest version.
    let (s, v) = node
        .signed_get(&k.physician, &format!("/v1/twins/{twin}/2"))
        .await;
    assert_eq!(s, 404);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("latest: 1"),
        "{v}"
    );

    // Not readers: a stranger, another patient, another organisation and its actor. Each gets
    // byte for byte the answer for a twin id nobody anchored: 404 `not_found` for keys the
    // chain knows; a key the chain does not know is refused before any read (403
    // `unknown_key`, PROTOCOL §11.1), the same for both paths too.
    let stranger = patient("stranger");
    for who in [&stranger, &bob, &k.institute, &k.researcher] {
        let (s1, not_yours) = node.signed_get(who, &path).await;
        let (s2, no_such) = node
            .signed_get(who, &format!("/v1/twins/{unknown}/1"))
            .await;
        assert_eq!(
            serde_json::to_vec(&not_yours).unwrap(),
            serde_json::to_vec(&no_such).unwrap()
        );
        if std::ptr::eq(who, &stranger) {
            assert_eq!((s1, s2), (403, 403), "{not_yours} {no_such}");
            assert_eq!(not_yours["error"]["code"], "unknown_key");
            continue;
        }
        assert_eq!((s1, s2), (404, 404), "{not_yours} {no_such}");
        assert_eq!(not_yours["error"]["code"], "not_found");
        let msg = not_yours["error"]["message"].as_str().unwrap();
        assert!(
            !msg.contains(&twin.to_hex()) && !msg.contains("latest"),
            "{msg}"
        );
        // Nor does a version hint tell them apart.
        let (_, v2) = node.signed_get(who, &format!("/v1/twins/{twin}/2")).await;
        assert_eq!(v2, no_such);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisation_anchoring_the_same_local_id_first_gets_its_own_twin() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    let local = LocalTwinId::from_label(&[3; 32], "MRN-0001");
    // The institute's researcher squats the hospital's local id with a high version, first.
    node.submit(&node.event(&k.researcher, 0, anchor(&alice, local, 9)))
        .await;
    node.wait_log(1).await;
    node.submit(&node.event(&k.physician, 0, anchor(&alice, local, 1)))
        .await;
    node.wait_log(2).await;
    let ours = TwinId::bound(&k.hospital.public(), &local);
    let theirs = TwinId::bound(&k.institute.public(), &local);
    let (s, v) = node
        .signed_get(&k.physician, &format!("/v1/twins/{ours}/1"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["organisation"],
        Value::String(k.hospital.public().to_string())
    );
    assert_eq!(v["latest_version"], 1);
    // The answer carries the anchoring actor's record, proving the organisation at the tip.
    assert_eq!(
        v["author"]["actor"],
        Value::String(k.physician.public().to_string())
    );
    assert_eq!(
        v["author"]["record"]["organisation"],
        Value::String(k.hospital.public().to_string())
    );
    assert!(v["tip"]["header"]["height"].as_u64().unwrap() >= 2, "{v}");
    // The squatter's twin is its own, and the hospital's actor cannot read it.
    let (s, _) = node
        .signed_get(&k.researcher, &format!("/v1/twins/{theirs}/9"))
        .await;
    assert_eq!(s, 200);
    let (s, _) = node
        .signed_get(&k.physician, &format!("/v1/twins/{theirs}/9"))
        .await;
    assert_eq!(s, 404);
    node.stop().await;
}
