//! Signed reads under abuse (issue #15, PROTOCOL §11.1, operator guide "Signed reads under
//! abuse"): throwaway keys cannot fill the nonce cache, a key flooding its own nonces is
//! limited alone, limits behind a trusted proxy are per key and per forwarded client, forged
//! forwarding headers are ignored, and a brand-new key still reads its own sequence number.
//! Every key is derived from a fixed label (seeded); no sleeps.

mod common;

use common::*;
use serde_json::Value;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::devkit::dev_key;
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::{EventPayload, Keypair, Timestamp};
use twinledger_node::ApiOptions;
use twinledger_node::chain::now;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

/// Registers `p` as a patient (its first event, a consent grant to the physician).
async fn register(node: &TestNode, p: &Keypair, log: u64) {
    let k = keys();
    let g = node.event(
        p,
        0,
        EventPayload::ConsentGrant(ConsentGrant {
            patient: p.public(),
            grantee: Grantee::Actor(k.physician.public()),
            scope: Scope {
                categories: [DataCategory::VitalSigns].into_iter().collect(),
                purposes: [Purpose::Treat].into_iter().collect(),
                actions: [Action::Read].into_iter().collect(),
            },
            valid_from: Timestamp(0),
            valid_until: None,
        }),
    );
    let (s, v) = node.submit(&g).await;
    assert_eq!(s, 202, "{v}");
    node.wait_log(log).await;
}

fn consents(p: &Keypair) -> String {
    format!("/v1/patients/{}/consents", p.public())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_flood_from_throwaway_keys_leaves_an_honest_reader_served() {
    const THROWAWAY: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    register(&node, &alice, 1).await;
    let nonces_before = node.metric("twinledger_request_nonces ").await;

    // Thousands of throwaway keys, each with a valid, fresh signature on a read: refused as
    // unknown before any nonce is stored, each answer naming its key.
    let path = consents(&alice);
    for i in 0..THROWAWAY {
        let key = dev_key(&format!("read-abuse/throwaway/{i}"));
        let (s, v) = node.signed_get(&key, &path).await;
        assert_eq!((s, code(&v)), (403, "unknown_key"), "{v}");
        assert!(message(&v).contains(&key.public().to_string()), "{v}");
    }
    assert_eq!(
        node.metric("twinledger_request_nonces ").await,
        nonces_before,
        "no nonce stored for an unknown key"
    );
    assert_eq!(
        node.metric("twinledger_unknown_key_reads_total ").await,
        THROWAWAY as f64
    );
    assert_eq!(
        node.metric("twinledger_read_refusals_total{status=\"403\",code=\"unknown_key\"}")
            .await,
        THROWAWAY as f64
    );

    // The honest readers are served: the patient, an auditor (chain and patient reads).
    let (s, v) = node.signed_get(&alice, &path).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.signed_get(&k.auditor, &path).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.signed_get(&k.auditor, "/v1/blocks/1").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        node.metric("twinledger_request_nonces ").await,
        nonces_before + 3.0,
        "exactly the honest reads' nonces are remembered"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_key_flooding_its_own_nonces_is_limited_while_another_key_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(
        dir.path(),
        ApiOptions {
            rate_limit_per_key: 3,
            ..ApiOptions::default()
        },
    )
    .await
    .unwrap();
    let k = keys();
    let alice = patient("alice");
    register(&node, &alice, 1).await;
    let path = consents(&alice);

    // Alice floods: her burst (twice her rate) passes, then she alone gets 429 naming her key.
    let mut statuses = Vec::new();
    let mut refusal = Value::Null;
    for _ in 0..60 {
        if statuses.contains(&429) {
            break;
        }
        let (s, v) = node.signed_get(&alice, &path).await;
        if s == 429 {
            refusal = v;
        }
        statuses.push(s);
    }
    assert!(statuses[..6].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[6..].contains(&429), "{statuses:?}");
    assert_eq!(code(&refusal), "rate_limited");
    assert!(
        message(&refusal).contains(&alice.public().to_string()),
        "{refusal}"
    );
    // Her refused requests stored no nonce: at most her burst plus what refilled.
    let remembered = node.metric("twinledger_request_nonces ").await;
    let served = statuses.iter().filter(|s| **s == 200).count() as f64;
    assert_eq!(remembered, served, "{statuses:?}");

    // Another key, from the same address, is served.
    let (s, v) = node.signed_get(&k.auditor, &path).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        node.metric("twinledger_rate_limited_requests_total{kind=\"key\"}")
            .await
            >= 1.0
    );
    assert_eq!(
        node.metric("twinledger_rate_limited_requests_total{kind=\"address\"}")
            .await,
        0.0
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_limits_are_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(
        dir.path(),
        ApiOptions {
            rate_limit_per_client: 5,
            rate_limit_per_key: 2,
            trusted_proxies: vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
            ..ApiOptions::default()
        },
    )
    .await
    .unwrap();
    let k = keys();
    let alice = patient("alice");
    // The submission comes through the proxy too (its own forwarded client).
    let fwd = |client: &str| vec![("x-forwarded-for", format!("{client}, 10.1.2.3"))];
    {
        let g = node.event(
            &alice,
            0,
            EventPayload::ConsentGrant(ConsentGrant {
                patient: alice.public(),
                grantee: Grantee::Actor(k.physician.public()),
                scope: Scope {
                    categories: [DataCategory::VitalSigns].into_iter().collect(),
                    purposes: [Purpose::Treat].into_iter().collect(),
                    actions: [Action::Read].into_iter().collect(),
                },
                valid_from: Timestamp(0),
                valid_until: None,
            }),
        );
        let (s, v) = node.submit(&g).await;
        assert_eq!(s, 202, "{v}");
        node.wait_log(1).await;
    }
    let path = consents(&alice);

    // Alice and the auditor both reach the node from the proxy's socket address (127.0.0.1),
    // as two forwarded clients. Alice goes over her key's rate (burst 4): 429 naming her key.
    let mut statuses = Vec::new();
    let mut refusal = Value::Null;
    for _ in 0..40 {
        if statuses.contains(&429) {
            break;
        }
        let auth = node.sign(&alice, &path, now(), fresh_nonce());
        let (s, v) = node.get_via(&path, Some(&auth), &fwd("198.51.100.7")).await;
        if s == 429 {
            refusal = v;
        }
        statuses.push(s);
    }
    assert!(statuses[..4].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[4..].contains(&429), "{statuses:?}");
    assert!(
        message(&refusal).contains(&alice.public().to_string()),
        "{refusal}"
    );
    // The auditor, through the same proxy socket, is served.
    let auth = node.sign(&k.auditor, &path, now(), fresh_nonce());
    let (s, v) = node.get_via(&path, Some(&auth), &fwd("198.51.100.8")).await;
    assert_eq!(s, 200, "{v}");

    // The per-address limit applies to the forwarded client, not to the proxy: one client over
    // its burst (10) is refused by address, another client through the same proxy is not.
    let mut last = (0, Value::Null);
    for _ in 0..100 {
        last = node.get_via("/health", None, &fwd("203.0.113.5")).await;
        if last.0 == 429 {
            break;
        }
    }
    assert_eq!((last.0, code(&last.1)), (429, "rate_limited"), "{}", last.1);
    assert!(message(&last.1).contains("203.0.113.5"), "{}", last.1);
    let (s, v) = node.get_via("/health", None, &fwd("203.0.113.6")).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        node.metric("twinledger_rate_limited_requests_total{kind=\"address\"}")
            .await
            >= 1.0
    );
    assert!(
        node.metric("twinledger_rate_limited_requests_total{kind=\"key\"}")
            .await
            >= 1.0
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    // The only trusted proxy is elsewhere: 127.0.0.1's forwarding headers are a client's own.
    let node = TestNode::start_with(
        dir.path(),
        ApiOptions {
            rate_limit_per_client: 5,
            trusted_proxies: vec!["192.0.2.0/24".parse().unwrap()],
            ..ApiOptions::default()
        },
    )
    .await
    .unwrap();
    // A client claiming a new address on every request still spends its own bucket.
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for i in 0..100 {
        if statuses.contains(&429) {
            break;
        }
        let (s, v) = node
            .get_via(
                "/health",
                None,
                &[
                    ("x-forwarded-for", format!("198.51.100.{i}")),
                    ("forwarded", format!("for=198.51.100.{i}")),
                ],
            )
            .await;
        statuses.push(s);
        last = v;
    }
    assert!(statuses[..10].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(message(&last).contains("127.0.0.1"), "{last}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_read_of_a_known_key_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let alice = patient("alice");
    register(&node, &alice, 1).await;
    let path = consents(&alice);
    let once = node.sign(&alice, &path, now(), fresh_nonce());
    assert_eq!(node.get_with(&path, &once).await.0, 200);
    let (s, v) = node.get_with(&path, &once).await;
    assert_eq!((s, code(&v)), (401, "replayed_request"), "{v}");
    assert_eq!(
        node.metric("twinledger_read_refusals_total{status=\"401\",code=\"replayed_request\"}")
            .await,
        1.0
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brand_new_key_reads_its_own_sequence_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await.unwrap();
    let newcomer = patient("newcomer");
    let path = format!("/v1/keys/{}/sequence", newcomer.public());
    let before = node.metric("twinledger_request_nonces ").await;
    let (s, v) = node.signed_get(&newcomer, &path).await;
    assert_eq!((s, v["next_seq"].as_u64()), (200, Some(0)), "{v}");
    assert!(v["patient"].is_null(), "{v}");
    assert_eq!(node.metric("twinledger_request_nonces ").await, before);
    // Still signed and fresh: a forged or stale request is refused.
    let mut forged = node.sign(&newcomer, &path, now(), fresh_nonce());
    forged.signature.0[0] ^= 1;
    let (s, v) = node.get_with(&path, &forged).await;
    assert_eq!((s, code(&v)), (401, "bad_signature"), "{v}");
    let stale = node.sign(
        &newcomer,
        &path,
        Timestamp(now().0 - 120_000),
        fresh_nonce(),
    );
    let (s, v) = node.get_with(&path, &stale).await;
    assert_eq!((s, code(&v)), (401, "stale_request"), "{v}");
    // Another unknown key cannot read it.
    let (s, v) = node.signed_get(&patient("stranger"), &path).await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    // Waiting for its first event to be final, it reads that event by id: 404, then the event.
    let first = node.event(
        &newcomer,
        0,
        EventPayload::ConsentGrant(ConsentGrant {
            patient: newcomer.public(),
            grantee: Grantee::Actor(keys().physician.public()),
            scope: Scope {
                categories: [DataCategory::VitalSigns].into_iter().collect(),
                purposes: [Purpose::Treat].into_iter().collect(),
                actions: [Action::Read].into_iter().collect(),
            },
            valid_from: Timestamp(0),
            valid_until: None,
        }),
    );
    let event_path = format!("/v1/events/{}", first.id());
    let (s, v) = node.signed_get(&newcomer, &event_path).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    // Still only for unknown keys' own reads: any other read is refused as unknown.
    let (s, v) = node.signed_get(&newcomer, &consents(&newcomer)).await;
    assert_eq!((s, code(&v)), (403, "unknown_key"), "{v}");
    assert_eq!(node.metric("twinledger_request_nonces ").await, before);
    // Once the chain knows the key, its reads are replay-protected like any read.
    let (s, v) = node.submit(&first).await;
    assert_eq!(s, 202, "{v}");
    node.wait_log(1).await;
    let (s, v) = node.signed_get(&newcomer, &event_path).await;
    assert_eq!(s, 200, "{v}");
    let once = node.sign(&newcomer, &path, now(), fresh_nonce());
    let (s, v) = node.get_with(&path, &once).await;
    assert_eq!((s, v["next_seq"].as_u64()), (200, Some(1)), "{v}");
    let (s, v) = node.get_with(&path, &once).await;
    assert_eq!((s, code(&v)), (401, "replayed_request"), "{v}");
    node.stop().await;
}
