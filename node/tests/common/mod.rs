//! An in-process node on 127.0.0.1:0 with a temp data dir, and a signing HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use twinledger_core::devkit::dev_key;
use twinledger_core::request::RequestAuth;
use twinledger_core::{ChainId, Event, EventPayload, Keypair, Role, SignedEvent, Timestamp};
use twinledger_genesis::{ActorEntry, GenesisFile};
use twinledger_node::chain::{Chain, now};
use twinledger_node::{open_chain, open_store};

pub struct Keys {
    pub validator: Keypair,
    pub hospital: Keypair,
    pub auditor: Keypair,
    pub physician: Keypair,
    pub researcher: Keypair,
    pub institute: Keypair,
}

pub fn keys() -> Keys {
    Keys {
        validator: dev_key("node-test/validator"),
        hospital: dev_key("node-test/hospital"),
        auditor: dev_key("node-test/auditor"),
        physician: dev_key("node-test/physician"),
        researcher: dev_key("node-test/researcher"),
        institute: dev_key("node-test/institute"),
    }
}

pub fn genesis(k: &Keys) -> GenesisFile {
    let mut g = twinledger_node::dev::solo_genesis(
        "node-test",
        1_767_225_600_000,
        "Test Hospital",
        &k.hospital,
        &k.validator,
    )
    .unwrap();
    g.limits.block_interval_ms = 50;
    g.add_org("Test Institute", k.institute.public()).unwrap();
    g.add_auditor("Test Auditor", k.auditor.public()).unwrap();
    g.add_actor(ActorEntry {
        key: k.physician.public(),
        organisation: k.hospital.public(),
        role: Role::Physician,
    })
    .unwrap();
    g.add_actor(ActorEntry {
        key: k.researcher.public(),
        organisation: k.institute.public(),
        role: Role::Researcher,
    })
    .unwrap();
    g
}

pub struct TestNode {
    pub addr: SocketAddr,
    pub chain: Arc<Chain>,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub http: reqwest::Client,
}

impl TestNode {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, twinledger_node::ApiOptions::default()).await
    }

    pub async fn start_with(
        dir: &Path,
        options: twinledger_node::ApiOptions,
    ) -> anyhow::Result<Self> {
        Self::start_on(dir, open_store_when_released(dir).await?, options).await
    }

    /// A node on a given store (e.g. one that fails on purpose).
    pub async fn start_on(
        dir: &Path,
        store: twinledger_node::store::Store,
        options: twinledger_node::ApiOptions,
    ) -> anyhow::Result<Self> {
        let k = keys();
        let g = genesis(&k);
        let chain = open_chain(&g, store, k.validator.clone(), false)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(twinledger_node::run_with(
            listener,
            chain.clone(),
            k.validator,
            options,
            async move {
                let _ = rx.await;
            },
        ));
        Ok(Self {
            addr,
            chain,
            dir: dir.to_path_buf(),
            stop: Some(tx),
            task: Some(task),
            http: reqwest::Client::new(),
        })
    }

    /// Graceful stop: finishes the block in flight, then waits (deadline 10 s) until every
    /// connection task has let go of the chain, so the store is closed and can be reopened.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        drop(std::mem::take(&mut self.http));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.chain) > 1 {
            assert!(
                Instant::now() < deadline,
                "the server still holds the chain"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn chain_id(&self) -> ChainId {
        self.chain.chain_id()
    }

    /// Signs `payload` as `key` with sequence `seq`, deadline one hour from now.
    pub fn event(&self, key: &Keypair, seq: u64, payload: EventPayload) -> SignedEvent {
        Event::new(
            self.chain_id(),
            key.public(),
            seq,
            now().plus_ms(3_600_000),
            payload,
        )
        .sign(key)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn submit(&self, ev: &SignedEvent) -> (u16, Value) {
        self.post(
            "/v1/events",
            serde_json::json!({"event": hex::encode(ev.to_bytes())}),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A GET signed by `key` (fresh nonce, current time).
    pub async fn signed_get(&self, key: &Keypair, path: &str) -> (u16, Value) {
        let auth = self.sign(key, path, now(), fresh_nonce());
        self.get_with(path, &auth).await
    }

    pub fn sign(&self, key: &Keypair, path: &str, time: Timestamp, nonce: [u8; 16]) -> RequestAuth {
        RequestAuth::sign(key, &self.chain_id(), "GET", path, b"", time, nonce)
    }

    pub async fn get_with(&self, path: &str, auth: &RequestAuth) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        for (h, v) in auth.headers() {
            req = req.header(h, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits (deadline 10 s) until the chain's log holds at least `n` events.
    pub async fn wait_log(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut rx = self.chain.subscribe();
        while self.chain.state().log_size() < n {
            assert!(
                Instant::now() < deadline,
                "log did not reach {n} events in time"
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        }
    }
}

pub fn fresh_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).unwrap();
    n
}

pub fn patient(label: &str) -> Keypair {
    dev_key(&format!("node-test/patient/{label}"))
}

/// Opens the node's sled store in `dir`. A test that restarts a node in the same process must
/// wait for sled to release its file lock: sled drops it from a background thread once the
/// last handle of the stopped node is gone, later under load. Waits on that condition with a
/// deadline (30 s); any other error is returned at once.
pub async fn open_store_when_released(dir: &Path) -> anyhow::Result<twinledger_node::store::Store> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match open_store(dir) {
            Err(e)
                if format!("{e:#}").contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

impl TestNode {
    /// A GET, signed by `auth` if given, with extra headers (e.g. a proxy's `X-Forwarded-For`).
    pub async fn get_via(
        &self,
        path: &str,
        auth: Option<&RequestAuth>,
        extra: &[(&str, String)],
    ) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(auth) = auth {
            for (h, v) in auth.headers() {
                req = req.header(h, v);
            }
        }
        for (h, v) in extra {
            req = req.header(*h, v.as_str());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The sum of the /metrics samples whose line starts with `prefix` (name and labels), 0 if
    /// none.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}
