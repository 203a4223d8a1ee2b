//! `twinledger-node`: the daemon. Storage on sled, the HTTP/JSON API, metrics, and either
//! single-validator block production ([`run_with`], a chain whose only validator is this node)
//! or BFT replication among validators over libp2p ([`run_replicated`], `consensus` and `net`).
//!
//! **Architecture invariant:** this is the only crate that performs network or disk I/O for the
//! ledger. Every rule lives in `twinledger-core`; the node decides time, stores, serves.

pub mod api;
pub mod backup;
pub mod chain;
pub mod consensus;
pub mod custodian;
pub mod dev;
pub mod devnet;
pub mod keyfile;
mod layout;
pub mod membership;
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

/// The role of the node holding `key` (`observer`: the operator asked for observer mode), from
/// the genesis file and, once the node has a store, the committed state: a key that governance
/// made a validator (PROTOCOL.md §7.1) is one, a key it removed is not.
///
/// A replicated node's role is only where it starts: whether it signs is decided height by
/// height by the set in force, so a node started with `--observer` whose key governance adds
/// signs from the height the new set is in force, and a validator whose key is removed or
/// rotated away goes on following without signing. A chain of one genesis validator runs solo
/// (no network) and keeps that set.
pub fn role_of(
    genesis: &GenesisFile,
    state: Option<&twinledger_core::State>,
    key: &Keypair,
    observer: bool,
) -> anyhow::Result<Role> {
    let public = key.public();
    let in_genesis = genesis.validators.iter().any(|v| v.consensus_key == public);
    // Solo: one validator and no network, as long as the set in force is this key alone (a
    // chain whose set governance grew runs replicated from then on).
    let solo = match state.filter(|s| s.height() > 0) {
        Some(st) => {
            let tip = st.height();
            [tip + 1, tip + 2].iter().all(|h| {
                let set = st.validators_for(*h);
                set.validators().len() == 1 && set.get(&public).is_some()
            })
        }
        None => genesis.validators.len() == 1,
    };
    let (is_validator, where_) = match state.filter(|s| s.height() > 0) {
        Some(st) => (
            membership::is_validator(st, &public),
            format!("of this chain at height {}", st.height()),
        ),
        None => (in_genesis, "of this genesis".to_string()),
    };
    match (observer, is_validator) {
        (true, true) => anyhow::bail!(
            "--observer given, but {public} is a validator {where_}: two nodes signing with one \
             key would double-sign; run the validator without --observer"
        ),
        (true, false) => Ok(Role::Observer),
        (false, false) => anyhow::bail!(
            "the key {public} is not a validator {where_}. To follow the chain, start with \
             --observer; a node whose key governance is adding as a validator also starts with \
             --observer and begins signing at the height its set comes into force"
        ),
        (false, true) if solo => Ok(Role::Solo),
        (false, true) => Ok(Role::Validator),
    }
}

/// The replica settings for this node from the genesis file: dial every other genesis validator
/// at its listen address and every `peers` address (validators added by governance are not in
/// the genesis file), keep the genesis observers' peer ids for the allow-list (the rest of it
/// comes from the committed state, PROTOCOL.md §7.1), listen on `listen` (default: this
/// validator's own listen address in the genesis file; any other node's: a loopback port the OS
/// picks).
pub fn replica_config(
    genesis: &GenesisFile,
    key: &Keypair,
    listen: Option<libp2p::Multiaddr>,
    peers: &[libp2p::Multiaddr],
    data_dir: &Path,
) -> anyhow::Result<consensus::replica::ReplicaConfig> {
    use libp2p::multiaddr::Protocol;
    let me = net::peer_id(&key.public());
    let mut dial = Vec::new();
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
    }
    for p in peers {
        anyhow::ensure!(
            matches!(p.iter().last(), Some(Protocol::P2p(_))),
            "--peer {p} must end in /p2p/<peer id> (the peer's identity is checked at the handshake)"
        );
        dial.push(p.clone());
    }
    let mut genesis_observers = Vec::new();
    for o in &genesis.observers {
        let peer: libp2p::PeerId = o
            .peer_id
            .parse()
            .with_context(|| format!("observer peer id {}", o.peer_id))?;
        genesis_observers.push(peer);
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
            // Set by `Replica::start` from the committed state.
            allowed: Vec::new(),
            chain_id: ledger.chain_id(),
            max_message_bytes: twinledger_core::block::MAX_BLOCK_BYTES + 64 * 1024,
        },
        engine: consensus::EngineConfig::default(),
        idle: Duration::from_millis(genesis.node_limits().block_interval_ms.max(1000)),
        wal: data_dir.join("consensus.wal"),
        genesis_observers,
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
    let limits = genesis.node_limits();
    let policy = NodePolicy {
        block_interval: Duration::from_millis(limits.block_interval_ms),
        mempool_size: limits.mempool_size as usize,
    };
    let chain = Chain::open(ledger, store, policy, verify_all, Metrics::new())?;
    // Refuses a key that is neither a validator (of the genesis, or of the committed state)
    // nor, with `observer`, an observer.
    role_of(genesis, Some(&chain.state()), &key, observer)?;
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
    /// HTTPS: the API's TLS configuration ([`api::tls::server_config`]); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            rate_limit_per_client: 5000,
            rate_limit_per_key: api::DEFAULT_RATE_PER_KEY,
            trusted_proxies: Vec::new(),
            custodian: None,
            tls: None,
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
    // One path for plain HTTP and TLS: the listener completes handshakes and hands each
    // stream over with its peer address (so ConnectInfo and the per-client limit see the peer).
    let listener =
        api::tls::ApiListener::new(listener, options.tls.clone()).context("API listener")?;
    let scheme = if listener.is_tls() { "https" } else { "http" };
    let addr = axum::serve::Listener::local_addr(&listener)?;
    tracing::info!(%addr, scheme, chain = %chain.chain_id(), "serving");
    // Custodian mode: erasures follow the committed chain while the API serves.
    let follower = options.custodian.clone().map(|c| {
        tracing::info!(custodian = %c.public(), organisation = %c.organisation(), "custodian mode");
        tokio::spawn(custodian::follow(chain.clone(), c))
    });
    let served = axum::serve(
        // axum gives `ConnectInfo<SocketAddr>` for a listener of its own or a `TapIo` around
        // any listener whose address is a `SocketAddr`: the tap does nothing else.
        axum::serve::ListenerExt::tap_io(listener, |_| {}),
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
