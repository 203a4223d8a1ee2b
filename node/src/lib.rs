//! `twinledger-node`: the daemon. Storage on sled, block production, the HTTP/JSON API and
//! metrics; BFT replication over libp2p comes with issue #4 behind the [`chain::Consensus`]
//! seam.
//!
//! **Architecture invariant:** this is the only crate that performs network or disk I/O for the
//! ledger. Every rule lives in `twinledger-core`; the node decides time, stores, serves.

pub mod api;
pub mod chain;
pub mod consensus;
pub mod dev;
pub mod keyfile;
pub mod metrics;
pub mod store;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use twinledger_core::Keypair;
use twinledger_genesis::GenesisFile;

use crate::api::{Api, NonceCache};
use crate::chain::{Chain, NodePolicy, SoloValidator};
use crate::metrics::Metrics;
use crate::store::Store;

/// Opens the chain for a genesis on a store, as the validator holding `key`.
pub fn open_chain(
    genesis: &GenesisFile,
    store: Store,
    key: Keypair,
    verify_all: bool,
) -> anyhow::Result<Arc<Chain>> {
    let ledger = genesis
        .ledger_genesis()
        .context("genesis does not verify")?;
    if ledger.validators.get(&key.public()).is_none() {
        anyhow::bail!(
            "the validator key {} is not a validator of this genesis",
            key.public()
        );
    }
    let consensus = Arc::new(SoloValidator::new(key, ledger.validators.clone()));
    let limits = genesis.node_limits();
    let policy = NodePolicy {
        block_interval: Duration::from_millis(limits.block_interval_ms),
        mempool_size: limits.mempool_size as usize,
    };
    let chain = Chain::open(ledger, store, consensus, policy, verify_all, Metrics::new())?;
    Ok(Arc::new(chain))
}

/// Opens the sled store in `data_dir/db`.
pub fn open_store(data_dir: &Path) -> anyhow::Result<Store> {
    let dir = data_dir.join("db");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(Store::open_sled(&dir)?)
}

/// API options.
#[derive(Clone, Copy, Debug)]
pub struct ApiOptions {
    /// Requests a second per client IP address (bursts of twice that); 0 = no limit.
    pub rate_limit_per_client: u32,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            rate_limit_per_client: 5000,
        }
    }
}

/// [`run_with`] with default options.
pub async fn run(
    listener: TcpListener,
    chain: Arc<Chain>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(listener, chain, ApiOptions::default(), shutdown).await
}

/// Serves the API on `listener` and produces blocks until `shutdown` resolves; then stops
/// accepting requests, finishes the block in flight, and returns.
pub async fn run_with(
    listener: TcpListener,
    chain: Arc<Chain>,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(chain.clone().run_producer(stop_rx));
    let api = Arc::new(Api {
        chain: chain.clone(),
        nonces: NonceCache::default(),
        slots: Arc::new(tokio::sync::Semaphore::new(api::MAX_CONCURRENT)),
        rate: api::RateLimiter::new(options.rate_limit_per_client),
    });
    let app = api::router(api);
    tracing::info!(addr = %listener.local_addr()?, chain = %chain.chain_id(), "serving");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("HTTP server")?;
    let _ = stop_tx.send(true);
    producer.await.context("block producer")?;
    Ok(())
}
