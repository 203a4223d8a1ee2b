//! kill -9 a real node while a client submits; after restart every event the API reported
//! final is there, with a receipt that verifies, and the store verifies in full.

use std::time::{Duration, Instant};

use serde_json::json;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::request::RequestAuth;
use twinledger_core::{
    ChainId, Commitment, Event, EventId, EventPayload, Keypair, Receipt, Timestamp,
};
use twinledger_node::chain::now;
use twinledger_node::keyfile;
use twinledger_tests::NodeProcess;

fn event(chain: ChainId, key: &Keypair, seq: u64, payload: EventPayload) -> String {
    let ev = Event::new(chain, key.public(), seq, now().plus_ms(600_000), payload).sign(key);
    hex::encode(ev.to_bytes())
}

async fn chain_id(http: &reqwest::Client, node: &NodeProcess) -> ChainId {
    let v: serde_json::Value = http
        .get(node.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ChainId::from_hex(v["chain_id"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_final() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_dev(dir.path(), &[]).unwrap();
    let keys = dir.path().join("keys");
    let patient = keyfile::read(&keys.join("patient.key")).unwrap();
    let physician = keyfile::read(&keys.join("physician.key")).unwrap();
    let auditor = keyfile::read(&keys.join("auditor.key")).unwrap();
    let http = reqwest::Client::new();
    let chain = chain_id(&http, &node).await;

    let grant = EventPayload::ConsentGrant(ConsentGrant {
        patient: patient.public(),
        grantee: Grantee::Actor(physician.public()),
        scope: Scope {
            categories: [DataCategory::VitalSigns].into_iter().collect(),
            purposes: [Purpose::Treat].into_iter().collect(),
            actions: [Action::Read].into_iter().collect(),
        },
        valid_from: Timestamp(0),
        valid_until: None,
    });
    let r = http
        .post(node.url("/v1/events"))
        .json(&json!({"event": event(chain, &patient, 0, grant)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // The physician asks for access again and again; each 200 is a final decision. After a
    // handful, the node is killed with a request in flight.
    let mut finals: Vec<EventId> = Vec::new();
    let mut seq = 0;
    let started = Instant::now();
    let kill_after = 6;
    let mut node = Some(node);
    while finals.len() < kill_after {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "too slow: {} finals",
            finals.len()
        );
        let n = node.as_ref().unwrap();
        let payload = EventPayload::AccessRequest(AccessRequest {
            patient: patient.public(),
            category: DataCategory::VitalSigns,
            purpose: Purpose::Treat,
            action: Action::Read,
            resource: Commitment::new(&[u8::try_from(seq % 256).unwrap(); 32], b"twin://vitals"),
        });
        let body = json!({"event": event(chain, &physician, seq, payload)});
        let r = http
            .post(n.url("/v1/access"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{v}");
        finals.push(EventId::from_hex(v["id"].as_str().unwrap()).unwrap());
        seq += 1;
    }
    // One more in flight, then kill -9 while it is being processed.
    let n = node.take().unwrap();
    let in_flight = {
        let payload = EventPayload::AccessRequest(AccessRequest {
            patient: patient.public(),
            category: DataCategory::VitalSigns,
            purpose: Purpose::Treat,
            action: Action::Read,
            resource: Commitment::new(&[0xee; 32], b"twin://vitals"),
        });
        let body = json!({"event": event(chain, &physician, seq, payload)});
        let url = n.url("/v1/access");
        let http = http.clone();
        tokio::spawn(async move { http.post(url).json(&body).send().await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    n.kill9().unwrap();
    let _ = in_flight.await;

    // Restart with full re-verification of every signature and certificate.
    let node = NodeProcess::start_dev(dir.path(), &["--verify-all"]).unwrap();
    for id in &finals {
        let path = format!("/v1/events/{id}");
        let auth = RequestAuth::sign(&auditor, &chain, "GET", &path, b"", now(), rand16());
        let mut req = http.get(node.url(&path));
        for (h, v) in auth.headers() {
            req = req.header(h, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "final event {id} lost after kill -9");
        let v: serde_json::Value = r.json().await.unwrap();
        let receipt: Receipt = serde_json::from_value(v["receipt"].clone()).unwrap();
        let genesis =
            twinledger_genesis::GenesisFile::load(&dir.path().join("genesis.json")).unwrap();
        receipt
            .verify(&genesis.ledger_genesis().unwrap().validators)
            .unwrap();
    }
}

fn rand16() -> [u8; 16] {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).unwrap();
    n
}
