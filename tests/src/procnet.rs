//! A devnet of real `twinledger-node` processes (validators and observers) on loopback, with
//! the faults an operator meets: kill -9, SIGSTOP/SIGCONT, restart; and the checks an auditor
//! makes afterwards (every store re-verifies in full, blocks identical at every height, no
//! misbehaviour recorded). Used by the multi-process scenarios and the fault soak.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use twinledger_core::audit::{Auditor, EXPORT_MAGIC, export_frame, read_export};
use twinledger_core::devkit::{dev_key, patient_grant};
use twinledger_core::request::RequestAuth;
use twinledger_core::state::SignatureCheck;
use twinledger_core::{ChainId, EventId, Genesis, Keypair, PublicKey};
use twinledger_node::chain::{Chain, NodePolicy, now};
use twinledger_node::devnet::{self, Devnet};
use twinledger_node::metrics::Metrics;
use twinledger_node::store::Store;

use crate::NodeProcess;

/// Multi-process scenarios start five or more processes each: they run one at a time, even when
/// the test harness runs tests in parallel (2 cores).
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The network under test.
#[derive(Debug)]
pub struct ProcNet {
    /// The devnet's files.
    pub devnet: Devnet,
    /// The running processes (None: down).
    pub procs: Vec<Option<NodeProcess>>,
    /// Which are stopped with SIGSTOP.
    pub stopped: Vec<bool>,
    http: reqwest::Client,
    /// The chain.
    pub chain: ChainId,
    /// The ledger genesis.
    pub genesis: Genesis,
    org: PublicKey,
    /// Events submitted so far (accepted by some node).
    pub submitted: u64,
    /// The patients' keys, by submission number.
    patients: Vec<(EventId, Keypair)>,
    /// Data directories of nodes started outside the devnet ([`ProcNet::start_extra_in`]):
    /// verified with the devnet's stores.
    pub extra_dirs: Vec<(String, std::path::PathBuf)>,
}

impl ProcNet {
    /// Creates a devnet of `validators` + `observers` in `dir` and starts every node.
    pub fn start_all(dir: &Path, validators: usize, observers: usize) -> Self {
        let devnet = devnet::create(dir, validators, observers).expect("devnet");
        let file = twinledger_genesis::GenesisFile::load(&devnet.genesis_path).expect("genesis");
        let genesis = file.ledger_genesis().expect("ledger genesis");
        let n = devnet.nodes.len();
        let mut net = Self {
            devnet,
            procs: (0..n).map(|_| None).collect(),
            stopped: vec![false; n],
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
            chain: genesis.chain_id(),
            org: genesis.organisations[0].key,
            genesis,
            submitted: 0,
            patients: Vec::new(),
            extra_dirs: Vec::new(),
        };
        for i in 0..n {
            net.start(i);
        }
        net
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Starts node `i` (again).
    pub fn start(&mut self, i: usize) {
        let args = self.devnet.nodes[i].args(&self.devnet.genesis_path);
        self.procs[i] = Some(NodeProcess::start(&args).expect("node starts"));
        self.stopped[i] = false;
    }

    /// Adopts a process started outside the devnet (e.g. a stranger); returns its index.
    /// [`ProcNet::stop_and_verify`] stops it but verifies only the devnet's stores.
    pub fn start_extra(&mut self, p: NodeProcess) -> usize {
        self.procs.push(Some(p));
        self.stopped.push(false);
        self.procs.len() - 1
    }

    /// Adopts a process started outside the devnet whose store is in `data_dir`; returns its
    /// index. [`ProcNet::stop_and_verify`] verifies its store with the devnet's.
    pub fn start_extra_in(&mut self, name: &str, p: NodeProcess, data_dir: &Path) -> usize {
        self.extra_dirs
            .push((name.to_owned(), data_dir.to_path_buf()));
        self.start_extra(p)
    }

    /// kill -9 of node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(p) = self.procs[i].take() {
            p.kill9().expect("kill -9");
        }
        self.stopped[i] = false;
    }

    /// SIGSTOP (`stop`) or SIGCONT (`!stop`) to node `i`.
    pub fn pause(&mut self, i: usize, stop: bool) {
        if let Some(p) = &self.procs[i] {
            p.signal(if stop { "-STOP" } else { "-CONT" })
                .expect("signal");
            self.stopped[i] = stop;
        }
    }

    /// Whether node `i` is running and not stopped.
    pub fn is_live(&self, i: usize) -> bool {
        self.procs[i].is_some() && !self.stopped[i]
    }

    /// `/health` of node `i`.
    pub async fn health(&self, i: usize) -> Option<serde_json::Value> {
        if !self.is_live(i) {
            return None;
        }
        let p = self.procs[i].as_ref()?;
        let r = self.http.get(p.url("/health")).send().await.ok()?;
        r.json().await.ok()
    }

    /// Committed height of node `i` (0 if unreachable).
    pub async fn height(&self, i: usize) -> u64 {
        self.health(i)
            .await
            .map_or(0, |v| v["height"].as_u64().unwrap_or(0))
    }

    /// Events in node `i`'s log (0 if unreachable).
    pub async fn log_size(&self, i: usize) -> u64 {
        self.health(i)
            .await
            .map_or(0, |v| v["log_size"].as_u64().unwrap_or(0))
    }

    /// Heights of every node (0 for unreachable ones).
    pub async fn heights(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for i in 0..self.len() {
            out.push(self.height(i).await);
        }
        out
    }

    /// Submits one fresh patient's consent grant to node `i`. Returns whether it was accepted.
    pub async fn submit(&mut self, i: usize) -> bool {
        let n = self.patients.len() as u64;
        let patient = dev_key(&format!("procnet/patient/{n}"));
        let ev = patient_grant(self.chain, "procnet", n, &self.org, now().plus_ms(600_000));
        let id = ev.id();
        self.patients.push((id, patient));
        let Some(p) = self.procs[i].as_ref().filter(|_| !self.stopped[i]) else {
            return false;
        };
        let accepted = match self
            .http
            .post(p.url("/v1/events"))
            .json(&json!({"event": hex::encode(ev.to_bytes())}))
            .send()
            .await
        {
            Ok(r) => r.status() == 202,
            Err(_) => false,
        };
        if accepted {
            self.submitted += 1;
        }
        accepted
    }

    /// Whether node `i` reports the `k`-th submitted event final (a request signed by its
    /// author, as a client would check).
    pub async fn reported_final(&self, i: usize, k: usize) -> bool {
        let Some(p) = self.procs[i].as_ref().filter(|_| !self.stopped[i]) else {
            return false;
        };
        let (id, key) = &self.patients[k];
        let path = format!("/v1/events/{id}");
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&now().0.to_be_bytes());
        nonce[8..].copy_from_slice(&(k as u64).to_be_bytes());
        let auth = RequestAuth::sign(key, &self.chain, "GET", &path, b"", now(), nonce);
        let mut req = self.http.get(p.url(&path));
        for (h, v) in auth.headers() {
            req = req.header(h, v);
        }
        matches!(req.send().await, Ok(r) if r.status() == 200)
    }

    /// The id of the `k`-th submitted event.
    pub fn event_id(&self, k: usize) -> EventId {
        self.patients[k].0
    }

    /// Number of events created (accepted or not).
    pub fn created(&self) -> usize {
        self.patients.len()
    }

    /// Waits until `ok` holds, polling every 100 ms; panics naming `what` after `deadline`.
    pub async fn wait(
        &self,
        what: &str,
        deadline: Duration,
        mut ok: impl AsyncFnMut(&Self) -> bool,
    ) {
        let end = Instant::now() + deadline;
        loop {
            if ok(self).await {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (deadline 60 s) until every running node has committed height `h`.
    pub async fn wait_all_at(&self, h: u64) {
        self.wait(
            &format!("every running node at height {h}"),
            Duration::from_secs(60),
            async |n| {
                let mut ok = true;
                for i in 0..n.len() {
                    if n.procs[i].is_some() {
                        ok &= n.height(i).await >= h;
                    }
                }
                ok
            },
        )
        .await;
    }

    /// Stops every process, then re-opens every store as a new node would (every signature,
    /// every certificate, every block re-executed), replays each node's export through the
    /// auditor (`twinctl audit verify`), checks that blocks are identical at every
    /// height two stores share, that no misbehaviour was recorded, and returns the tips and
    /// the ids of the events in the shortest store.
    pub fn stop_and_verify(&mut self) -> (Vec<u64>, Vec<HashSet<EventId>>) {
        for i in 0..self.len() {
            if self.stopped[i] {
                self.pause(i, false);
            }
            self.kill9(i);
        }
        let dirs: Vec<(String, std::path::PathBuf)> = self
            .devnet
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.data_dir.clone()))
            .chain(self.extra_dirs.iter().cloned())
            .collect();
        verify_stores(&self.genesis, &dirs).unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// What an auditor checks of stopped nodes' stores (`dirs`: name and data dir): each store
/// re-opened as a new node would (every signature, every certificate, every block
/// re-executed), no misbehaviour recorded, each store's export replayed through the auditor
/// (`twinctl audit verify`), and the blocks identical at every height two stores share. Returns
/// the tips and the ids of the events in each store.
pub fn verify_stores(
    genesis: &Genesis,
    dirs: &[(String, std::path::PathBuf)],
) -> anyhow::Result<(Vec<u64>, Vec<HashSet<EventId>>)> {
    use anyhow::{Context as _, ensure};
    let mut tips = Vec::new();
    let mut stores = Vec::new();
    let mut ids = Vec::new();
    for (name, data_dir) in dirs {
        let store = Store::open_sled(&data_dir.join("db"))
            .with_context(|| format!("{name}: store does not open"))?;
        let chain = Chain::open(
            genesis.clone(),
            store.clone(),
            NodePolicy {
                block_interval: Duration::from_secs(1),
                mempool_size: 10,
            },
            true,
            Metrics::new(),
        )
        .with_context(|| format!("{name}: store does not verify"))?;
        ensure!(
            chain.state().misbehaviours().count() == 0,
            "{name}: a validator was recorded double-signing"
        );
        tips.push(chain.height());
        let mut export = EXPORT_MAGIC.to_vec();
        let mut set = HashSet::new();
        for h in 1..=chain.height() {
            let sb = store
                .block(h)?
                .with_context(|| format!("{name}: block {h} missing"))?;
            set.extend(sb.block.events.iter().map(|ev| ev.id()));
            export.extend(export_frame(&sb));
        }
        let mut auditor = Auditor::new(genesis)?;
        for cb in read_export(&export)? {
            let cb = cb.with_context(|| format!("{name}: export"))?;
            auditor
                .check(&cb, SignatureCheck::Verify)
                .with_context(|| format!("{name}: audit verify"))?;
        }
        ids.push(set);
        stores.push(store);
    }
    let top = tips.iter().copied().max().unwrap_or(0);
    for h in 1..=top {
        let mut hashes = HashSet::new();
        for s in &stores {
            if let Some(b) = s.block(h)? {
                hashes.insert(b.block.header.hash());
            }
        }
        ensure!(hashes.len() <= 1, "FORK at height {h}");
    }
    Ok((tips, ids))
}
