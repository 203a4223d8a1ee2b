//! `twinledger-node`: the daemon. Storage on sled, the HTTP/JSON API, metrics, and either
//! single-validator block production ([`run_with`], a chain whose only validator is this node)
//! or BFT replication among validators over libp2p ([`run_replicated`], `consensus` and `net`).
//!
//! **Architecture invariant:** this is the only crate that performs network or disk I/O for the
//! ledger. Every rule lives in `twinledger-core`; the node decides time, stores, serves.

pub mod api;
pub mod chain;
pub mod consensus;
pub mod custodian;
pub mod dev;
pub mod devnet;
pub mod keyfile;
mod layout;
pub mod metrics;
pub mod net;
pub mod shell;
pub mod snapshot;
pub mod store;
pub mod verify;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use twinledger_core::Keypair;
use twinledger_genesis::GenesisFile;

use crate::api::Api;
use crate::chain::{Chain, NodePolicy};
use crate::metrics::Metrics;
use crate::store::Store;

/// How a node takes part in its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only validator: it produces and signs every block itself.
    Solo,
    /// One of several validators: BFT consensus over libp2p.
    Validator,
    /// Not a validator: follows and verifies the chain over libp2p, serves the API.
    Observer,
}

/// The role of the node holding `key` (`observer`: the operator asked for observer mode).
pub fn role_of(genesis: &GenesisFile, key: &Keypair, observer: bool) -> anyhow::Result<Role> {
    let is_validator = genesis
        .validators
        .iter()
        .any(|v| v.consensus_key == key.public());
    match (observer, is_validator) {
        (true, true) => anyhow::bail!(
            "--observer given, but {} is a validator of this genesis",
            key.public()
        ),
        (true, false) => Ok(Role::Observer),
        (false, false) => anyhow::bail!(
            "the validator key {} is not a validator of this genesis (use --observer to follow)",
            key.public()
        ),
        (false, true) if genesis.validators.len() == 1 => Ok(Role::Solo),
        (false, true) => Ok(Role::Validator),
    }
}

/// The replica settings for this node from the genesis file: dial every other validator at its
/// listen address, allow exactly the validators' and observers' peer ids, listen on `listen`
/// (default: this validator's own listen address; an observer's: a loopback port the OS picks).
pub fn replica_config(
    genesis: &GenesisFile,
    key: &Keypair,
    listen: Option<libp2p::Multiaddr>,
    data_dir: &Path,
) -> anyhow::Result<consensus::replica::ReplicaConfig> {
    use libp2p::multiaddr::Protocol;
    let me = net::peer_id(&key.public());
    let mut dial = Vec::new();
    let mut allowed = Vec::new();
    let mut own_addr = None;
    for v in &genesis.validators {
        let peer: libp2p::PeerId = v
            .peer_id
            .parse()
            .with_context(|| format!("validator peer id {}", v.peer_id))?;
        let mut addr: libp2p::Multiaddr = v
            .listen_addr
            .parse()
            .with_context(|| format!("validator listen address {}", v.listen_addr))?;
        if peer == me {
            if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
                addr.pop();
            }
            own_addr = Some(addr);
            continue;
        }
        if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
            addr.push(Protocol::P2p(peer));
        }
        dial.push(addr);
        allowed.push(peer);
    }
    for o in &genesis.observers {
        let peer: libp2p::PeerId = o
            .peer_id
            .parse()
            .with_context(|| format!("observer peer id {}", o.peer_id))?;
        if peer != me {
            allowed.push(peer);
        }
    }
    let listen = match (listen, own_addr) {
        (Some(l), _) => l,
        (None, Some(a)) => a,
        (None, None) => "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
    };
    let ledger = genesis.ledger_genesis()?;
    Ok(consensus::replica::ReplicaConfig {
        net: net::NetConfig {
            listen,
            dial,
            allowed,
            chain_id: ledger.chain_id(),
            max_message_bytes: twinledger_core::block::MAX_BLOCK_BYTES + 64 * 1024,
        },
        engine: consensus::EngineConfig::default(),
        idle: Duration::from_millis(genesis.node_limits().block_interval_ms.max(1000)),
        wal: data_dir.join("consensus.wal"),
    })
}

/// Opens the chain for a genesis on a store, as the node holding `key` (a validator, or an
/// observer if `observer`).
pub fn open_chain(
    genesis: &GenesisFile,
    store: Store,
    key: Keypair,
    verify_all: bool,
) -> anyhow::Result<Arc<Chain>> {
    open_chain_as(genesis, store, key, verify_all, false)
}

/// [`open_chain`], allowing an observer's key when `observer` is set.
pub fn open_chain_as(
    genesis: &GenesisFile,
    store: Store,
    key: Keypair,
    verify_all: bool,
    observer: bool,
) -> anyhow::Result<Arc<Chain>> {
    let ledger = genesis
        .ledger_genesis()
        .context("genesis does not verify")?;
    // Refuses a key that is neither a validator nor (with `observer`) an observer.
    role_of(genesis, &key, observer)?;
    let limits = genesis.node_limits();
    let policy = NodePolicy {
        block_interval: Duration::from_millis(limits.block_interval_ms),
        mempool_size: limits.mempool_size as usize,
    };
    let chain = Chain::open(ledger, store, policy, verify_all, Metrics::new())?;
    Ok(Arc::new(chain))
}

/// Opens the sled store in `data_dir/db`.
pub fn open_store(data_dir: &Path) -> anyhow::Result<Store> {
    let dir = data_dir.join("db");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Store::open_sled(&dir)?)
}

/// API options.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// Requests a second per client IP address (bursts of twice that), every request, before
    /// authentication; 0 = no limit.
    pub rate_limit_per_client: u32,
    /// Signed requests a second per known key (bursts of twice that), after authentication;
    /// also sets each key's nonce quota ([`api::nonce_quota`]); 0 = no limit.
    pub rate_limit_per_key: u32,
    /// Peers (addresses or networks) whose `X-Forwarded-For` / `Forwarded` headers name the
    /// client address for the per-address limit; every other peer's are ignored.
    pub trusted_proxies: Vec<api::IpNet>,
    /// Custodian mode: the key-release service (PROTOCOL.md §11.6), if this node runs one.
    pub custodian: Option<Arc<custodian::Custodian>>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            rate_limit_per_client: 5000,
            rate_limit_per_key: api::DEFAULT_RATE_PER_KEY,
            trusted_proxies: Vec::new(),
            custodian: None,
        }
    }
}

/// [`run_with`] with default options.
pub async fn run(
    listener: TcpListener,
    chain: Arc<Chain>,
    key: Keypair,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(listener, chain, key, ApiOptions::default(), shutdown).await
}

/// Serves the API on `listener` while `replica` takes part in BFT consensus, until `shutdown`
/// resolves; then stops accepting requests, stops the engine (a decided block being written is
/// finished) and the network, and returns.
pub async fn run_replicated(
    listener: TcpListener,
    chain: Arc<Chain>,
    replica: consensus::replica::Replica,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let served = serve(listener, chain, options, shutdown).await;
    replica.stop().await.context("stopping consensus")?;
    served
}

/// Serves the API on `listener` until `shutdown` resolves, and nothing else (block production
/// is the caller's: [`run_with`], [`run_replicated`], or a test's own committee).
pub async fn serve(
    listener: TcpListener,
    chain: Arc<Chain>,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api = Arc::new(Api::new(chain.clone(), &options));
    let app = api::router(api);
    tracing::info!(addr = %listener.local_addr()?, chain = %chain.chain_id(), "serving");
    // Custodian mode: erasures follow the committed chain while the API serves.
    let follower = options.custodian.clone().map(|c| {
        tracing::info!(custodian = %c.public(), organisation = %c.organisation(), "custodian mode");
        tokio::spawn(custodian::follow(chain.clone(), c))
    });
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("HTTP server");
    if let Some(f) = follower {
        f.abort();
        let _ = f.await;
    }
    served
}

/// Serves the API on `listener` while this node, the chain's only validator (`key`), commits
/// blocks through [`consensus::solo::Solo`], until `shutdown` resolves; then stops accepting
/// requests, commits what was admitted, and returns.
pub async fn run_with(
    listener: TcpListener,
    chain: Arc<Chain>,
    key: Keypair,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let interval = chain.policy().block_interval;
    let solo = consensus::solo::Solo::new(chain.clone(), key);
    let producer = tokio::spawn(solo.run(interval, stop_rx));
    serve(listener, chain, options, shutdown).await?;
    let _ = stop_tx.send(true);
    producer.await.context("block producer")?;
    Ok(())
}
