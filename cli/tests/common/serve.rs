//! An in-process node for end-to-end tests: the genesis saved in `dir`, its store and chain
//! opened, the API served on an OS-chosen loopback port until [`Served::stop`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use twinledger_core::Keypair;
use twinledger_genesis::GenesisFile;
use twinledger_node::chain::Chain;

/// A running node.
pub struct Served {
    /// Its API address (`http://127.0.0.1:<port>`).
    pub url: String,
    /// The genesis file's path.
    pub genesis: PathBuf,
    /// The chain it serves (for tests that look at the store).
    pub chain: Arc<Chain>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Saves `g` as `<dir>/genesis.json` and serves a one-validator chain of it, keyed by
/// `validator`, with its store in `<dir>/data`.
pub async fn serve(dir: &Path, g: &GenesisFile, validator: &Keypair) -> Served {
    let genesis = dir.join("genesis.json");
    g.save(&genesis).unwrap();
    let store = twinledger_node::open_store(&dir.join("data")).unwrap();
    let chain = twinledger_node::open_chain(g, store, validator.clone(), false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = twinledger_node::run(listener, chain.clone(), validator.clone(), async move {
        let _ = stopped.await;
    });
    let server = tokio::spawn(async move {
        if let Err(e) = serve.await {
            panic!("the node stopped with an error: {e:#}");
        }
    });
    Served {
        url,
        genesis,
        chain,
        stop: Some(stop),
        server: Some(server),
    }
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Served {
    /// Stops the node and waits for it (a node that failed while running fails the test here).
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.server.take() {
            h.await.expect("the node ran until stopped");
        }
    }
}
