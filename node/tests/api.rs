//! The HTTP API over real HTTP on 127.0.0.1:0: each endpoint's happy path and its bad inputs,
//! who may read what, persistence across restart, tamper detection at start-up.

mod common;

use common::*;
use serde_json::{Value, json};
use twinledger_core::checkpoint::Checkpoint;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::consent::{ConsentGrant, ConsentRevoke, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::merkle::{self, Blake3Tree};
use twinledger_core::{
    ChainId, Commitment, EventPayload, Keypair, Outcome, Receipt, State, Timestamp, codec,
};
use twinledger_node::chain::now;
use twinledger_node::store::{CommittedBlock, Store};

fn grant(patient: &Keypair, to: Grantee, cats: &[DataCategory]) -> EventPayload {
    EventPayload::ConsentGrant(ConsentGrant {
        patient: patient.public(),
        grantee: to,
        scope: Scope {
            categories: cats.iter().copied().collect(),
            purposes: [Purpose::Treat, Purpose::Research].into_iter().collect(),
            actions: [Action::Read].into_iter().collect(),
        },
        valid_from: Timestamp(0),
        valid_until: None,
    })
}

fn access(patient: &Keypair, cat: DataCategory) -> EventPayload {
    EventPayload::AccessRequest(AccessRequest {
        patient: patient.public(),
        category: cat,
        purpose: Purpose::Treat,
        action: Action::Read,
        resource: Commitment::new(&[1; 32], b"twin://x"),
    })
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_authorise_read_and_verify_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let k = keys();
    let alice = patient("alice");

    let (s, v) = node.get("/health").await;
    assert_eq!((s, v["height"].as_u64()), (200, Some(0)));
    let (s, v) = node.get("/v1/checkpoint").await;
    assert_eq!((s, code(&v)), (404, "not_found"));

    // Alice grants the physician her vital signs (not her genome).
    let g = node.event(
        &alice,
        0,
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::VitalSigns],
        ),
    );
    let (s, v) = node.submit(&g).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["id"].as_str().unwrap(), g.id().to_hex());
    node.wait_log(1).await;

    // Authorise: permitted, with a receipt that verifies offline against the genesis set.
    let req = node.event(&k.physician, 0, access(&alice, DataCategory::VitalSigns));
    let (s, v) = node
        .post("/v1/access", json!({"event": hex::encode(req.to_bytes())}))
        .await;
    assert_eq!(s, 200, "{v}");
    let receipt: Receipt = serde_json::from_value(v["receipt"].clone()).unwrap();
    let outcome = receipt.verify(node.chain.validators()).unwrap();
    assert_eq!(
        outcome,
        Outcome::Access(twinledger_core::Decision::Permit { grant: g.id() })
    );
    // Any change to the receipt breaks it.
    let mut bad = receipt.clone();
    bad.results.outcomes[bad.index as usize] = Outcome::Access(twinledger_core::Decision::Deny {
        reason: twinledger_core::DenyReason::NoCoveringGrant,
    });
    assert!(bad.verify(node.chain.validators()).is_err());
    let mut bad = receipt.clone();
    assert!(
        !bad.inclusion_proof.is_empty(),
        "two leaves: the proof has a sibling"
    );
    bad.inclusion_proof[0].0[0] ^= 1;
    assert!(bad.verify(node.chain.validators()).is_err());
    let mut bad = receipt.clone();
    bad.event.signature.0[9] ^= 1;
    assert!(bad.verify(node.chain.validators()).is_err());

    // Denied: the genome was never granted.
    let req2 = node.event(&k.physician, 1, access(&alice, DataCategory::Genetic));
    let (s, v) = node
        .post("/v1/access", json!({"event": hex::encode(req2.to_bytes())}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["outcome"]["access"]["deny"]["reason"], "no_covering_grant",
        "{v}"
    );

    // A key reads its own next sequence number, nobody else's.
    let path = format!("/v1/keys/{}/sequence", k.physician.public());
    let (s, v) = node.signed_get(&k.physician, &path).await;
    assert_eq!((s, v["next_seq"].as_u64()), (200, Some(2)), "{v}");
    let (s, v) = node.signed_get(&alice, &path).await;
    assert_eq!((s, code(&v)), (403, "forbidden"));

    // Reads: the patient reads her consents and accesses; the event with its receipt.
    let path = format!("/v1/patients/{}/consents", alice.public());
    let (s, v) = node.signed_get(&alice, &path).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["grants"][0]["status"], "active");
    let path = format!("/v1/patients/{}/accesses", alice.public());
    let (s, v) = node.signed_get(&alice, &path).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accesses"].as_array().unwrap().len(), 2);
    assert_eq!(v["accesses"][0]["actor"], k.physician.public().to_did());
    let (s, v) = node
        .signed_get(&alice, &format!("/v1/events/{}", req.id()))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node
        .signed_get(&k.auditor, &format!("/v1/events/{}", req.id()))
        .await;
    assert_eq!(s, 200, "{v}");

    // Checkpoint and consistency proof (public).
    let (s, cp1) = node.get("/v1/checkpoint").await;
    assert_eq!(s, 200);
    let (cp, cert) = Checkpoint::from_text(cp1["text"].as_str().unwrap()).unwrap();
    cert.verify(&cp, node.chain.validators()).unwrap();
    let (s, v) = node
        .get(&format!("/v1/consistency?from=1&to={}", cp.log_size))
        .await;
    assert_eq!(s, 200, "{v}");
    let proof: Vec<Vec<u8>> = v["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap())
        .collect();
    let old_root = hex::decode(v["from_root"].as_str().unwrap()).unwrap();
    merkle::verify_consistency::<Blake3Tree>(
        1,
        cp.log_size,
        &proof,
        &old_root,
        cp.log_root.as_bytes(),
    )
    .unwrap();
    let (s, v) = node.get("/v1/consistency?from=0&to=1").await;
    assert_eq!((s, code(&v)), (400, "bad_sizes"));
    let (s, v) = node.get("/v1/consistency?from=1&to=999").await;
    assert_eq!((s, code(&v)), (400, "bad_sizes"));

    // Blocks and export: auditors yes, patients no.
    let (s, v) = node.signed_get(&k.auditor, "/v1/blocks/1").await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.signed_get(&alice, "/v1/blocks/1").await;
    assert_eq!((s, code(&v)), (403, "forbidden"));
    let (s, v) = node.signed_get(&k.auditor, "/v1/blocks/999").await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let auth = node.sign(&k.auditor, "/v1/export", now(), fresh_nonce());
    let mut r = node.http.get(node.url("/v1/export"));
    for (h, val) in auth.headers() {
        r = r.header(h, val);
    }
    let bytes = r.send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..8], b"TWLEXP01");
    // Replay the export from genesis alone: every block verifies.
    let mut state = State::from_genesis(node.chain.genesis()).unwrap();
    let mut rest = &bytes[8..];
    let mut blocks = 0;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let sb: CommittedBlock = codec::decode("stored block", &rest[4..4 + len], 1 << 26).unwrap();
        let set = state.validators_for(sb.block.header.height).clone();
        sb.certificate
            .verify(&sb.block.header.checkpoint(), &set)
            .unwrap();
        let (next, results) = state.apply_block(&sb.block).unwrap();
        assert_eq!(results, sb.results);
        state = next;
        rest = &rest[4 + len..];
        blocks += 1;
    }
    assert_eq!(blocks, node.chain.state().height());

    // Metrics count what happened.
    let text = node
        .http
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("twinledger_events_committed_total 3"),
        "{text}"
    );
    assert!(text.contains("outcome=\"permit\""), "{text}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    let g = node.event(
        &alice,
        0,
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::VitalSigns],
        ),
    );
    let good = hex::encode(g.to_bytes());

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"evnt": good}), 400, "malformed_json"),
        (json!({"event": "zz"}), 400, "malformed_event"),
        (json!({"event": "0102"}), 400, "malformed_event"),
        (
            json!({"event": format!("{good}00")}),
            400,
            "malformed_event",
        ),
        (json!({"event": "00".repeat(5000)}), 413, "event_too_large"),
        (
            json!({"event": hex::encode({
                let mut b = g.clone(); b.event.chain_id = ChainId([9; 32]); b.to_bytes()
            })}),
            422,
            "wrong_chain",
        ),
        (
            json!({"event": hex::encode({
                let mut b = g.clone(); b.signature.0[0] ^= 1; b.to_bytes()
            })}),
            422,
            "bad_signature",
        ),
        (
            json!({"event": hex::encode(node.event(&alice, 7, grant(&alice, Grantee::Actor(k.physician.public()), &[DataCategory::VitalSigns])).to_bytes())}),
            422,
            "wrong_sequence",
        ),
        (
            json!({"event": hex::encode(node.event(&patient("stranger"), 0, access(&alice, DataCategory::VitalSigns)).to_bytes())}),
            422,
            "unknown_author",
        ),
    ];
    for (body, status, want) in cases {
        let (s, v) = node.post("/v1/events", body.clone()).await;
        assert_eq!((s, code(&v)), (status, want), "{body} -> {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(
        node.chain.mempool_len(),
        0,
        "nothing refused reached the mempool"
    );

    // While pending, the same event again: a duplicate if no block took it in between,
    // otherwise a replay (the race is the producer's; both refuse, neither accepts it twice).
    let (s, _) = node.submit(&g).await;
    assert_eq!(s, 202);
    let (s, v) = node.submit(&g).await;
    assert!(
        [(409, "duplicate"), (422, "wrong_sequence")].contains(&(s, code(&v))),
        "{s} {v}"
    );
    node.wait_log(1).await;
    let (s, v) = node.submit(&g).await;
    assert_eq!(
        (s, code(&v)),
        (422, "wrong_sequence"),
        "replay after commit"
    );

    // /v1/access takes only access requests, and a sane timeout.
    let (s, v) = node.post("/v1/access", json!({"event": good})).await;
    assert_eq!((s, code(&v)), (400, "wrong_event_kind"));
    let req = node.event(&k.physician, 0, access(&alice, DataCategory::VitalSigns));
    let (s, v) = node
        .post(
            "/v1/access",
            json!({"event": hex::encode(req.to_bytes()), "timeout_ms": 0}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "bad_timeout"));

    // Batches: each event gets its own status.
    let e1 = node.event(
        &alice,
        1,
        grant(
            &alice,
            Grantee::Organisation(k.hospital.public()),
            &[DataCategory::Imaging],
        ),
    );
    let (s, v) = node
        .post(
            "/v1/events/batch",
            json!({"events": [hex::encode(e1.to_bytes()), "zz"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["status"], "pending");
    assert_eq!(v["results"][1]["error"]["code"], "malformed_event");
    let (s, v) = node.post("/v1/events/batch", json!({"events": []})).await;
    assert_eq!((s, code(&v)), (400, "bad_batch"));
    let (s, v) = node.get("/v1/nowhere").await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_a_fresh_signature_of_someone_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    let bob = patient("bob");
    let g = node.event(
        &alice,
        0,
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::VitalSigns],
        ),
    );
    node.submit(&g).await;
    let gb = node.event(
        &bob,
        0,
        grant(
            &bob,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::VitalSigns],
        ),
    );
    node.submit(&gb).await;
    node.wait_log(2).await;
    let path = format!("/v1/patients/{}/consents", alice.public());

    // Allowed: the patient, an auditor, a member organisation.
    for key in [&alice, &k.auditor, &k.hospital] {
        let (s, v) = node.signed_get(key, &path).await;
        assert_eq!(s, 200, "{v}");
    }
    // Refused: another patient, an actor that is not an organisation; a key the chain does
    // not know is refused before the read rules (`unknown_key`).
    for key in [&bob, &k.physician] {
        let (s, v) = node.signed_get(key, &path).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    }
    let (s, v) = node.signed_get(&patient("unknown"), &path).await;
    assert_eq!((s, code(&v)), (403, "unknown_key"), "{v}");
    // Unsigned, stale, replayed, forged, signed for another path.
    let (s, v) = node.get(&path).await;
    assert_eq!((s, code(&v)), (401, "unsigned_request"));
    let stale = node.sign(&alice, &path, Timestamp(now().0 - 120_000), fresh_nonce());
    let (s, v) = node.get_with(&path, &stale).await;
    assert_eq!((s, code(&v)), (401, "stale_request"));
    let once = node.sign(&alice, &path, now(), fresh_nonce());
    assert_eq!(node.get_with(&path, &once).await.0, 200);
    let (s, v) = node.get_with(&path, &once).await;
    assert_eq!((s, code(&v)), (401, "replayed_request"));
    let mut forged = node.sign(&alice, &path, now(), fresh_nonce());
    forged.signature.0[3] ^= 1;
    let (s, v) = node.get_with(&path, &forged).await;
    assert_eq!((s, code(&v)), (401, "bad_signature"));
    let other = node.sign(&alice, "/v1/checkpoint", now(), fresh_nonce());
    let (s, v) = node.get_with(&path, &other).await;
    assert_eq!((s, code(&v)), (401, "bad_signature"));
    // Bob cannot read Alice's grant event either: answered as if it did not exist
    // (PROTOCOL §11.5).
    let (s, v) = node
        .signed_get(&bob, &format!("/v1/events/{}", g.id()))
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let (s, v) = node
        .signed_get(&bob, "/v1/patients/not-a-did/consents")
        .await;
    assert_eq!((s, code(&v)), (400, "malformed_did"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let alice = patient("alice");
    let (grant_id, tip) = {
        let node = TestNode::start(dir.path()).await.unwrap();
        let g = node.event(
            &alice,
            0,
            grant(
                &alice,
                Grantee::Actor(k.physician.public()),
                &[DataCategory::VitalSigns],
            ),
        );
        node.submit(&g).await;
        node.wait_log(1).await;
        let r = node.event(
            &alice,
            1,
            EventPayload::ConsentRevoke(ConsentRevoke {
                patient: alice.public(),
                grant: g.id(),
            }),
        );
        node.submit(&r).await;
        node.wait_log(2).await;
        let tip = node.chain.state().height();
        node.stop().await;
        (g.id(), tip)
    };
    let node = TestNode::start(dir.path()).await.unwrap();
    let st = node.chain.state();
    assert_eq!((st.height(), st.log_size()), (tip, 2));
    assert!(st.grant(&grant_id).unwrap().revoked_at.is_some());
    let (s, v) = node
        .signed_get(&alice, &format!("/v1/events/{grant_id}"))
        .await;
    assert_eq!(s, 200, "{v}");
    let receipt: Receipt = serde_json::from_value(v["receipt"].clone()).unwrap();
    receipt.verify(node.chain.validators()).unwrap();
    // The chain continues: Alice's next sequence number is 2.
    let g2 = node.event(
        &alice,
        2,
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::Imaging],
        ),
    );
    assert_eq!(node.submit(&g2).await.0, 202);
    node.wait_log(3).await;
    // Graceful shutdown right after an acceptance: the producer's last block takes it.
    let g3 = node.event(
        &alice,
        3,
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::Laboratory],
        ),
    );
    assert_eq!(node.submit(&g3).await.0, 202);
    node.stop().await;
    let node = TestNode::start(dir.path()).await.unwrap();
    assert_eq!(
        node.chain.state().log_size(),
        4,
        "the event accepted before shutdown is final"
    );
    assert!(node.chain.state().grant(&g3.id()).is_some());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_store_is_refused_naming_the_height() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let alice = patient("alice");
    {
        let node = TestNode::start(dir.path()).await.unwrap();
        for seq in 0..3 {
            let g = node.event(
                &alice,
                seq,
                grant(
                    &alice,
                    Grantee::Actor(k.physician.public()),
                    &[DataCategory::VitalSigns],
                ),
            );
            node.submit(&g).await;
            node.wait_log(seq + 1).await;
        }
        node.stop().await;
    }
    // Flip one byte inside stored block 2 (a byte of its event), keeping the record's checksum
    // consistent, as a careful attacker with disk access would.
    {
        let store = common::open_store_when_released(dir.path()).await.unwrap();
        let mut key = b"b/".to_vec();
        key.extend_from_slice(&2u64.to_be_bytes());
        let value = store.kv().get(&key).unwrap().unwrap();
        let mut bytes = value[32..].to_vec();
        let n = bytes.len();
        bytes[n - 200] ^= 0x01;
        let mut tampered = blake3::hash(&bytes).as_bytes().to_vec();
        tampered.extend_from_slice(&bytes);
        store.kv().commit(vec![(key, tampered)]).unwrap();
    }
    let err = match TestNode::start(dir.path()).await {
        Ok(_) => panic!("a tampered store was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("height 2") || err.contains("block 2"), "{err}");

    // A store of another genesis is refused too.
    let other = tempfile::tempdir().unwrap();
    {
        let node = TestNode::start(other.path()).await.unwrap();
        node.stop().await;
    }
    let mut g = genesis(&k);
    g.chain_name = "another-chain".into();
    let store = common::open_store_when_released(other.path())
        .await
        .unwrap();
    let err = twinledger_node::open_chain(&g, store, k.validator, false).unwrap_err();
    assert!(
        format!("{err:#}").contains("refusing to mix chains"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(
        dir.path(),
        twinledger_node::ApiOptions {
            rate_limit_per_client: 5,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // A burst of twice the rate passes, the next request is refused with 429.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(node.get("/health").await.0);
    }
    assert!(statuses[..10].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[10..].contains(&429), "{statuses:?}");
    let (s, v) = node.get("/health").await;
    assert_eq!((s, code(&v)), (429, "rate_limited"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_reports_nothing_final_and_loses_nothing() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let kv = std::sync::Arc::new(twinledger_node::store::FaultyKv::default());
    let store = Store::new(kv.clone());
    let node = TestNode::start_on(dir.path(), store, twinledger_node::ApiOptions::default())
        .await
        .unwrap();
    let k = keys();
    let alice = patient("alice");
    kv.fail.store(true, Ordering::SeqCst);
    let g = node.event(
        &alice,
        0,
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::VitalSigns],
        ),
    );
    assert_eq!(node.submit(&g).await.0, 202);
    // Wait (deadline) until the producer has tried and failed twice.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while kv.failures.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the producer never tried to write"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        node.chain.state().log_size(),
        0,
        "nothing is final while the disk fails"
    );
    let (s, _) = node
        .signed_get(&alice, &format!("/v1/events/{}", g.id()))
        .await;
    assert_eq!(s, 404);
    // The event waits, it is not dropped. (A production attempt in flight holds it outside the
    // mempool and puts it back when the write fails: wait for it to be back, with a deadline.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while node.chain.mempool_len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the event was dropped from the mempool while the disk failed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The disk recovers: the event becomes final.
    kv.fail.store(false, Ordering::SeqCst);
    node.wait_log(1).await;
    let (s, v) = node
        .signed_get(&alice, &format!("/v1/events/{}", g.id()))
        .await;
    assert_eq!(s, 200, "{v}");
    node.stop().await;
}

/// With no producer running, a second submission of a pending event is a duplicate, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_event_submitted_again_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let alice = patient("alice");
    let store = twinledger_node::open_store(dir.path()).unwrap();
    let chain = twinledger_node::open_chain(&genesis(&k), store, k.validator, false).unwrap();
    let g = twinledger_core::Event::new(
        chain.chain_id(),
        alice.public(),
        0,
        now().plus_ms(60_000),
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::VitalSigns],
        ),
    )
    .sign(&alice);
    chain.submit_verified(g.clone(), None).unwrap();
    assert!(matches!(
        chain.submit_verified(g, None),
        Err(twinledger_node::chain::SubmitError::Duplicate(_))
    ));
    assert_eq!(chain.mempool_len(), 1);
}

/// `/health` is a load balancer's signal: 200 "ok" while the chain moves here, 503 "stalled"
/// when a replicated node has committed nothing for longer than its threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_node_that_cannot_make_progress() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let (s, v) = node.get("/health").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")), "{v}");
    for path in ["/ready", "/live"] {
        let (s, _) = node.get(path).await;
        assert_eq!(s, 200, "{path}");
    }
    // Catching up (committing old blocks from a peer): not ready, still live.
    node.chain.set_catching_up(true);
    for path in ["/health", "/ready"] {
        let (s, v) = node.get(path).await;
        assert_eq!(
            (s, v["status"].as_str()),
            (503, Some("catching_up")),
            "{path}: {v}"
        );
    }
    let (s, v) = node.get("/live").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("live")), "{v}");
    node.chain.set_catching_up(false);
    node.chain
        .set_stall_after(std::time::Duration::from_millis(1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, v) = node.get("/health").await;
        if s == 503 {
            assert_eq!(v["status"].as_str(), Some("stalled"), "{v}");
            assert!(v["ms_since_commit"].as_u64().unwrap() >= 1, "{v}");
            // Stalled: not ready, but live (a restart would not bring a quorum back).
            let (s, _) = node.get("/ready").await;
            assert_eq!(s, 503);
            let (s, _) = node.get("/live").await;
            assert_eq!(s, 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reported stalled: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    node.stop().await;
}

/// PROTOCOL §9.3: after governance changes the validator set, `GET /v1/validator-sets` serves
/// the certified chain of changes, receipt answers carry the part in force at their height, and
/// receipts verify with it (not against the genesis set alone); the node rebuilds the list when
/// it replays its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_set_changes_are_served_and_receipts_follow_them() {
    use twinledger_core::event::governance::{Governance, GovernanceAction};
    use twinledger_core::receipt::ReceiptError;
    use twinledger_core::{Validator, ValidatorSet, ValidatorSets};

    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let alice = patient("alice");
    let node = TestNode::start(dir.path()).await.unwrap();
    let genesis = node.chain.genesis().clone();
    let g = node.event(
        &alice,
        0,
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::VitalSigns],
        ),
    );
    assert_eq!(node.submit(&g).await.0, 202);
    node.wait_log(1).await;
    let (s, v) = node.get("/v1/validator-sets").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["validator_set_changes"], json!([]));

    // The solo validator triples its power: a new set (new hash), the same signer.
    let set = ValidatorSet::new(vec![Validator {
        key: k.validator.public(),
        organisation: k.hospital.public(),
        power: 3,
    }])
    .unwrap();
    let action = GovernanceAction::ValidatorSetChange {
        validators: set.clone(),
    };
    let approval = Governance::approve(&node.chain_id(), 0, &action, &k.validator);
    let ev = node.event(
        &k.validator,
        0,
        EventPayload::Governance(Governance {
            seq: 0,
            action,
            approvals: vec![approval],
        }),
    );
    assert_eq!(node.submit(&ev).await.0, 202);
    node.wait_log(2).await;
    let changed_at = node.chain.state().height();

    let (s, v) = node.get("/v1/validator-sets").await;
    assert_eq!(s, 200, "{v}");
    let changes: Vec<Receipt> = serde_json::from_value(v["validator_set_changes"].clone()).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].event_id(), ev.id());
    let sets = ValidatorSets::verify(&genesis, &changes).unwrap();
    assert_eq!(sets.set_at(changed_at + 2), &set);
    for (to, n) in [(changed_at + 1, 0), (changed_at + 2, 1)] {
        let (s, v) = node.get(&format!("/v1/validator-sets?to={to}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["validator_set_changes"].as_array().unwrap().len(),
            n,
            "to={to}"
        );
    }

    // Accesses until one is final at or after the change's effective height.
    let mut answers = Vec::new();
    for seq in 0..4 {
        let req = node.event(&k.physician, seq, access(&alice, DataCategory::VitalSigns));
        let (s, v) = node
            .post("/v1/access", json!({"event": hex::encode(req.to_bytes())}))
            .await;
        assert_eq!(s, 200, "{v}");
        let r: Receipt = serde_json::from_value(v["receipt"].clone()).unwrap();
        let h = r.header.height;
        answers.push((req.id(), v));
        if h >= changed_at + 2 {
            break;
        }
    }
    for (_, v) in &answers {
        let r: Receipt = serde_json::from_value(v["receipt"].clone()).unwrap();
        let carried: Vec<Receipt> =
            serde_json::from_value(v["validator_set_changes"].clone()).unwrap();
        let after = r.header.height >= changed_at + 2;
        assert_eq!(
            carried.len(),
            usize::from(after),
            "height {}",
            r.header.height
        );
        let sets = ValidatorSets::verify(&genesis, &carried).unwrap();
        assert_eq!(
            sets.verify_receipt(&r).unwrap(),
            Outcome::Access(twinledger_core::Decision::Permit { grant: g.id() })
        );
        assert_eq!(v["outcome"], json!(sets.verify_receipt(&r).unwrap()));
        if after {
            assert!(matches!(
                r.verify(&genesis.validators),
                Err(ReceiptError::ValidatorsHash { .. })
            ));
        }
    }
    let (last_id, last) = answers.last().unwrap().clone();
    assert!(
        last["receipt"]["header"]["height"].as_u64().unwrap() >= changed_at + 2,
        "an access after the change"
    );

    // After a restart the node rebuilds the list from its store.
    node.stop().await;
    let node = TestNode::start(dir.path()).await.unwrap();
    let (s, v) = node.get("/v1/validator-sets").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["validator_set_changes"].as_array().unwrap().len(), 1);
    let (s, v) = node
        .signed_get(&alice, &format!("/v1/events/{last_id}"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["validator_set_changes"], last["validator_set_changes"]);
    assert_eq!(v["receipt"], last["receipt"]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_history_is_served_with_its_proof_to_its_readers_only() {
    use twinledger_core::state::records::PatientEvents;
    use twinledger_core::{BlockHeader, CommitCertificate, StateProof, Table};
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    let bob = patient("bob");
    let path = format!("/v1/patients/{}/history", alice.public());
    // Nothing committed: no tip to prove against.
    let (s, v) = node.signed_get(&k.auditor, &path).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");

    let g = node.event(
        &alice,
        0,
        grant(
            &alice,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::VitalSigns],
        ),
    );
    node.submit(&g).await;
    let gb = node.event(
        &bob,
        0,
        grant(
            &bob,
            Grantee::Actor(k.physician.public()),
            &[DataCategory::VitalSigns],
        ),
    );
    node.submit(&gb).await;
    node.wait_log(2).await;
    let req = node.event(&k.physician, 0, access(&alice, DataCategory::VitalSigns));
    let (s, v) = node
        .post("/v1/access", json!({"event": hex::encode(req.to_bytes())}))
        .await;
    assert_eq!(s, 200, "{v}");

    // Refused: another patient, an actor, an unknown key (`unknown_key`); unsigned.
    for key in [&bob, &k.physician] {
        let (s, v) = node.signed_get(key, &path).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    }
    let (s, v) = node.signed_get(&patient("unknown"), &path).await;
    assert_eq!((s, code(&v)), (403, "unknown_key"), "{v}");
    let (s, v) = node.get(&path).await;
    assert_eq!((s, code(&v)), (401, "unsigned_request"));

    // Served to the patient (and an auditor): the tip, its certificate, the record's proof and
    // Alice's two events (not Bob's), each a receipt that verifies.
    for key in [&alice, &k.auditor] {
        let (s, v) = node.signed_get(key, &path).await;
        assert_eq!(s, 200, "{v}");
        let header: BlockHeader = serde_json::from_value(v["header"].clone()).unwrap();
        let cert: CommitCertificate = serde_json::from_value(v["certificate"].clone()).unwrap();
        assert_eq!(v["height"].as_u64(), Some(header.height));
        cert.verify(&header.checkpoint(), node.chain.validators())
            .unwrap();
        assert_eq!(v["validator_set_changes"], json!([]));
        let events: Vec<Receipt> = serde_json::from_value(v["events"].clone()).unwrap();
        let ids: Vec<_> = events.iter().map(Receipt::event_id).collect();
        assert_eq!(ids, [g.id(), req.id()]);
        let mut rec = PatientEvents::default();
        for (i, r) in events.iter().enumerate() {
            // The same receipt as the event's own receipt answer.
            let (s, one) = node
                .signed_get(key, &format!("/v1/events/{}", r.event_id()))
                .await;
            assert_eq!(s, 200, "{one}");
            assert_eq!(one["receipt"], v["events"][i]);
            r.verify(node.chain.validators()).unwrap();
            assert!(r.leaf_index < header.log_size);
            rec = rec.next(&r.event_id());
        }
        let proven: PatientEvents = serde_json::from_value(v["patient_events"].clone()).unwrap();
        assert_eq!(proven, rec);
        let proof = StateProof::from_bytes(
            &hex::decode(v["state_proof"].as_str().unwrap()).unwrap(),
            1 << 16,
        )
        .unwrap();
        proof
            .verify(
                header.state_hash,
                Table::PatientEvents,
                &alice.public(),
                Some(&rec),
            )
            .unwrap();
        // The requester's actor record, proven against the same state hash (§11.3).
        let actors = v["actors"].as_object().unwrap();
        assert_eq!(actors.len(), 1, "{v}");
        let a = &actors[&k.physician.public().to_string()];
        let record: twinledger_core::state::records::ActorRecord =
            serde_json::from_value(a["record"].clone()).unwrap();
        assert!(record.live);
        StateProof::from_bytes(
            &hex::decode(a["state_proof"].as_str().unwrap()).unwrap(),
            1 << 16,
        )
        .unwrap()
        .verify(
            header.state_hash,
            Table::Actor,
            &k.physician.public(),
            Some(&record),
        )
        .unwrap();
    }
    // A patient no event concerns (read by an auditor): a non-membership proof, no events.
    let carol = patient("carol").public();
    let (s, v) = node
        .signed_get(&k.auditor, &format!("/v1/patients/{carol}/history"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["patient_events"].is_null() && v["events"] == json!([]) && v["actors"] == json!({}),
        "{v}"
    );
    let header: BlockHeader = serde_json::from_value(v["header"].clone()).unwrap();
    let proof = StateProof::from_bytes(
        &hex::decode(v["state_proof"].as_str().unwrap()).unwrap(),
        1 << 16,
    )
    .unwrap();
    proof
        .verify::<_, PatientEvents>(header.state_hash, Table::PatientEvents, &carol, None)
        .unwrap();
    let (s, v) = node
        .signed_get(&k.auditor, "/v1/patients/not-a-did/history")
        .await;
    assert_eq!((s, code(&v)), (400, "malformed_did"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_over_its_limit_is_refused_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    // 10,001 access requests concerning Alice (denied: she granted nothing), in batches.
    let mut seq = 0;
    while seq <= 10_000 {
        let events: Vec<String> = (seq..(seq + 1000).min(10_001))
            .map(|s| {
                hex::encode(
                    node.event(&k.physician, s, access(&alice, DataCategory::VitalSigns))
                        .to_bytes(),
                )
            })
            .collect();
        seq += events.len() as u64;
        let (s, v) = node
            .post("/v1/events/batch", json!({ "events": events }))
            .await;
        assert_eq!(s, 200, "{v}");
        node.wait_log(seq).await;
    }
    let (s, v) = node
        .signed_get(
            &k.auditor,
            &format!("/v1/patients/{}/history", alice.public()),
        )
        .await;
    assert_eq!((s, code(&v)), (422, "history_too_large"), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("10001 events") && message.contains("10000"),
        "{message}"
    );
    node.stop().await;
}
