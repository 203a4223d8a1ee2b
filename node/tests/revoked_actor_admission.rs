//! PROTOCOL.md 2.2 at the API: a revoked actor's access attempt is admitted and recorded as
//! denied (`actor_revoked`), at most one pending per key; a key never enrolled is refused
//! (`unknown_author`) and counted in the metrics.

mod common;

use common::*;
use serde_json::json;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::membership::ActorRevoke;
use twinledger_core::{Commitment, EventPayload, Keypair};

fn access(patient: &Keypair) -> EventPayload {
    EventPayload::AccessRequest(AccessRequest {
        patient: patient.public(),
        category: DataCategory::VitalSigns,
        purpose: Purpose::Treat,
        action: Action::Read,
        resource: Commitment::new(&[1; 32], b"twin://x"),
    })
}

fn unknown_refusals(node: &TestNode) -> u64 {
    node.chain
        .metrics()
        .render()
        .lines()
        .find(|l| l.starts_with("twinledger_unknown_author_refusals_total "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("the metric is exported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_actors_attempt_is_recorded_denied_one_pending_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    let revoke = node.event(
        &k.institute,
        0,
        EventPayload::ActorRevoke(ActorRevoke {
            actor: k.researcher.public(),
        }),
    );
    let (s, v) = node.submit(&revoke).await;
    assert_eq!(s, 202, "{v}");
    node.wait_log(1).await;

    // Two attempts in one batch: the first is admitted, the second waits for a block.
    let first = node.event(&k.researcher, 0, access(&alice));
    let second = node.event(&k.researcher, 1, access(&alice));
    let (s, v) = node
        .post(
            "/v1/events/batch",
            json!({"events": [hex::encode(first.to_bytes()), hex::encode(second.to_bytes())]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["status"], "pending", "{v}");
    assert_eq!(v["results"][1]["status"], "refused", "{v}");
    assert_eq!(v["results"][1]["error"]["code"], "revoked_backlog", "{v}");
    node.wait_log(2).await;

    // Recorded, denied, with its reason, in the receipt answer and the patient's accesses.
    let (s, v) = node
        .signed_get(&k.auditor, &format!("/v1/events/{}", first.id()))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["outcome"],
        json!({"access": {"deny": {"reason": "actor_revoked"}}})
    );
    let (s, v) = node
        .signed_get(
            &k.auditor,
            &format!("/v1/patients/{}/accesses", alice.public()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accesses"][0]["actor"], json!(k.researcher.public()));
    assert_eq!(
        v["accesses"][0]["outcome"]["access"]["deny"]["reason"],
        "actor_revoked"
    );

    // Once the first is final, the next attempt is admitted: the bound is per pending event.
    let (s, v) = node
        .post(
            "/v1/access",
            json!({"event": hex::encode(second.to_bytes())}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outcome"]["access"]["deny"]["reason"], "actor_revoked");
    assert_eq!(unknown_refusals(&node), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_keys_attempt_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let alice = patient("alice");
    let stranger = patient("stranger");
    assert_eq!(unknown_refusals(&node), 0);
    let ev = node.event(&stranger, 0, access(&alice));
    let (s, v) = node
        .post("/v1/access", json!({"event": hex::encode(ev.to_bytes())}))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("unknown_author")),
        "{v}"
    );
    let (s, v) = node.submit(&ev).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("unknown_author")),
        "{v}"
    );
    assert_eq!(unknown_refusals(&node), 2);
    assert_eq!(
        node.chain.state().log_size(),
        0,
        "nothing reached the chain"
    );
    node.stop().await;
}
