//! Multi-process BFT network: 4 validator processes and an observer on loopback (ports picked
//! by the OS), real libp2p, real sled stores, kill -9.
//!
//! One scenario, in order (each step waits on a condition with a deadline):
//! 1. events submitted to every validator become final on all nodes;
//! 2. kill -9 one validator under load: the other three keep finalising;
//! 3. restart it: it catches up (sync) and rejoins;
//! 4. kill -9 two of four: nothing more is finalised; restart both: progress resumes and the
//!    events submitted meanwhile become final;
//! 5. a node whose peer id is not in genesis cannot connect, follows nothing, and what is
//!    submitted to it never reaches the chain; the observer listed in genesis follows;
//! 6. every store re-verifies in full (`Chain::open` with every signature and certificate),
//!    the blocks are identical at every height on every node, and no validator was recorded
//!    double-signing across the kills (the signing record survives kill -9).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::{ChainId, Event, EventPayload, Hash, PublicKey, Timestamp};
use twinledger_genesis::GenesisFile;
use twinledger_node::chain::{Chain, NodePolicy, SoloValidator, now};
use twinledger_node::devnet::{self, Devnet};
use twinledger_node::keyfile;
use twinledger_node::metrics::Metrics;
use twinledger_node::store::Store;
use twinledger_tests::NodeProcess;

struct Net {
    devnet: Devnet,
    procs: Vec<Option<NodeProcess>>,
    http: reqwest::Client,
    chain: ChainId,
    org: PublicKey,
    submitted: u64,
}

impl Net {
    fn start(&mut self, i: usize) {
        let args = self.devnet.nodes[i].args(&self.devnet.genesis_path);
        self.procs[i] = Some(NodeProcess::start(&args).expect("node starts"));
    }

    fn kill9(&mut self, i: usize) {
        self.procs[i].take().expect("running").kill9().unwrap();
    }

    async fn health(&self, i: usize) -> Option<serde_json::Value> {
        let p = self.procs[i].as_ref()?;
        let r = self.http.get(p.url("/health")).send().await.ok()?;
        r.json().await.ok()
    }

    async fn height(&self, i: usize) -> u64 {
        self.health(i)
            .await
            .map_or(0, |v| v["height"].as_u64().unwrap_or(0))
    }

    async fn log_size(&self, i: usize) -> u64 {
        self.health(i)
            .await
            .map_or(0, |v| v["log_size"].as_u64().unwrap_or(0))
    }

    /// Submits one fresh patient's consent grant to node `i`; returns its event id (hex).
    async fn submit(&mut self, i: usize) -> String {
        let patient = twinledger_core::Keypair::from_secret(
            blake3::hash(format!("net-patient-{}", self.submitted).as_bytes()).as_bytes(),
        );
        self.submitted += 1;
        let ev = Event::new(
            self.chain,
            patient.public(),
            0,
            now().plus_ms(600_000),
            EventPayload::ConsentGrant(ConsentGrant {
                patient: patient.public(),
                grantee: Grantee::Organisation(self.org),
                scope: Scope {
                    categories: [DataCategory::VitalSigns].into_iter().collect(),
                    purposes: [Purpose::Treat].into_iter().collect(),
                    actions: [Action::Read].into_iter().collect(),
                },
                valid_from: Timestamp(0),
                valid_until: None,
            }),
        )
        .sign(&patient);
        let p = self.procs[i].as_ref().expect("running");
        let r = self
            .http
            .post(p.url("/v1/events"))
            .json(&json!({"event": hex::encode(ev.to_bytes())}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "node {i} refused an event: {}",
            r.text().await.unwrap()
        );
        ev.id().to_string()
    }

    /// Whether nodes `range` all hold at least `n` events.
    async fn all_final(&self, range: std::ops::Range<usize>, n: u64) -> bool {
        for i in range {
            if self.log_size(i).await < n {
                return false;
            }
        }
        true
    }

    async fn wait(&self, what: &str, deadline: Duration, mut ok: impl AsyncFnMut(&Net) -> bool) {
        let end = Instant::now() + deadline;
        loop {
            if ok(self).await {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validator_processes_replicate_survive_kill9_and_refuse_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = devnet::create(dir.path(), 4, 1).unwrap();
    let genesis = GenesisFile::load(&devnet.genesis_path).unwrap();
    let ledger = genesis.ledger_genesis().unwrap();
    let n = devnet.nodes.len();
    let mut net = Net {
        devnet,
        procs: (0..n).map(|_| None).collect(),
        http: reqwest::Client::new(),
        chain: ledger.chain_id(),
        org: ledger.organisations[0].key,
        submitted: 0,
    };
    for i in 0..n {
        net.start(i);
    }

    // 1. Events submitted to any validator become final everywhere.
    for k in 0..20 {
        net.submit(k % 4).await;
    }
    net.wait(
        "20 events final on all 5 nodes",
        Duration::from_secs(60),
        async |net| net.all_final(0..5, 20).await,
    )
    .await;

    // 2. kill -9 validator 3 under load: the others keep finalising.
    net.submit(0).await;
    net.kill9(3);
    for k in 0..15 {
        net.submit(k % 3).await;
    }
    let expected = net.submitted;
    net.wait(
        "3 validators finalise without the 4th",
        Duration::from_secs(60),
        async |net| net.all_final(0..3, expected).await,
    )
    .await;

    // 3. Restart it: it catches up and rejoins.
    net.start(3);
    net.wait(
        "the restarted validator catches up",
        Duration::from_secs(60),
        async |net| net.log_size(3).await >= expected,
    )
    .await;
    for k in 0..8 {
        net.submit(k % 4).await;
    }
    let expected = net.submitted;
    net.wait(
        "all four finalise again",
        Duration::from_secs(60),
        async |net| net.all_final(0..4, expected).await,
    )
    .await;

    // 4. Two of four down: no progress, no fork; both back: progress resumes.
    net.kill9(2);
    net.kill9(3);
    let stuck = net.height(0).await;
    let pending = net.submit(0).await;
    // Observation window for the absence of progress (not synchronisation): several rounds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(net.height(0).await, stuck, "finalised without a quorum");
    assert_eq!(net.height(1).await, stuck, "finalised without a quorum");
    net.start(2);
    net.start(3);
    let expected = net.submitted;
    net.wait(
        "progress resumes with both back",
        Duration::from_secs(90),
        async |net| net.all_final(0..4, expected).await,
    )
    .await;
    let _ = pending;

    // 5. A stranger (peer id not in genesis) follows nothing; its submissions go nowhere. The
    //    listed observer (node 4) follows.
    let stranger_dir = dir.path().join("stranger");
    std::fs::create_dir_all(&stranger_dir).unwrap();
    let key = keyfile::generate().unwrap();
    keyfile::write(&stranger_dir.join("node.key"), &key, "test").unwrap();
    let args: Vec<String> = [
        "--genesis",
        &net.devnet.genesis_path.display().to_string(),
        "--validator-key",
        &stranger_dir.join("node.key").display().to_string(),
        "--data-dir",
        &stranger_dir.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--observer",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    net.procs.push(Some(NodeProcess::start(&args).unwrap()));
    let stranger = net.procs.len() - 1;
    let lost = net.submit(stranger).await;
    for k in 0..4 {
        net.submit(k).await;
    }
    let expected = net.submitted - 1; // all but the stranger's
    net.wait(
        "validators and observer move on",
        Duration::from_secs(60),
        async |net| net.all_final(0..5, expected).await,
    )
    .await;
    assert_eq!(
        net.height(stranger).await,
        0,
        "the stranger received blocks"
    );
    // Everything else became final; the stranger's event is not on the chain (exactly the
    // others are), and the stranger's own node holds it pending, unfinalised.
    assert_eq!(
        net.log_size(0).await,
        expected,
        "the stranger's event reached the chain"
    );
    let st = net.health(stranger).await.unwrap();
    assert_eq!(st["mempool"].as_u64(), Some(1), "{st}");
    let _ = lost;

    // 6. Stop everything; every store verifies in full and they agree block by block.
    for i in 0..net.procs.len() {
        if net.procs[i].is_some() {
            net.kill9(i);
        }
    }
    let mut tips = Vec::new();
    let mut stores = Vec::new();
    for node in net.devnet.nodes.iter() {
        let store = Store::open_sled(&node.data_dir.join("db")).unwrap();
        let key = keyfile::read(&node.key_path).unwrap();
        let chain = Chain::open(
            ledger.clone(),
            store.clone(),
            Arc::new(SoloValidator::new(key, ledger.validators.clone())),
            NodePolicy {
                block_interval: Duration::from_secs(1),
                mempool_size: 10,
            },
            true,
            Metrics::new(),
        )
        .unwrap_or_else(|e| panic!("{} store does not verify: {e}", node.name));
        tips.push(chain.height());
        assert_eq!(
            chain.state().misbehaviours().count(),
            0,
            "a validator double-signed"
        );
        stores.push(store);
    }
    let common = *tips.iter().min().unwrap();
    assert!(common >= 5);
    for h in 1..=common {
        let hashes: Vec<Hash> = stores
            .iter()
            .map(|s| s.block(h).unwrap().unwrap().block.header.hash())
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "fork at height {h}"
        );
    }
}
