//! The replica: runs the consensus [`Engine`] on its own thread (re-executing blocks and
//! writing them is CPU and disk work that must not stall the async runtime), with wall-clock
//! timers, the libp2p network task, block sync for a node that is behind, and double-sign
//! evidence submitted as events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use malachitebft_core_types::Timeout;
use tokio::sync::{mpsc, oneshot, watch};
use twinledger_core::event::{Event, EventPayload};
use twinledger_core::{Keypair, Timestamp};

use super::app::ChainApp;
use super::engine::{Effect, Engine, EngineConfig, Msg};
use super::wal::{FileWal, Wal};
use crate::chain::{Chain, now};
use crate::net::{self, FromNet, NetConfig, ToNet};

/// How often the engine is ticked (retry a pending proposal, rebroadcast when stuck).
const TICK: Duration = Duration::from_millis(50);
/// A sync request not answered within this long is abandoned.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Replica settings.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The network.
    pub net: NetConfig,
    /// Engine tunables.
    pub engine: EngineConfig,
    /// Propose an empty block after this long without events (keeps time moving).
    pub idle: Duration,
    /// The consensus write-ahead log (every replica keeps one: whether it signs is decided
    /// height by height by the set in force, PROTOCOL.md §7.1).
    pub wal: std::path::PathBuf,
    /// The genesis file's observers (network policy, not in the state): allowed unless the
    /// state records them removed.
    pub genesis_observers: Vec<PeerId>,
}

/// A running replica.
#[derive(Debug)]
pub struct Replica {
    /// The p2p address it listens on.
    pub p2p_addr: Multiaddr,
    /// Its peer id.
    pub peer_id: PeerId,
    to_net: mpsc::Sender<ToNet>,
    stop_net: watch::Sender<bool>,
    stop_engine: std::sync::mpsc::SyncSender<FromNet>,
    engine: Option<std::thread::JoinHandle<()>>,
    net: tokio::task::JoinHandle<anyhow::Result<()>>,
    chain: Arc<Chain>,
}

impl Replica {
    /// Starts the network and the engine. `key` is this node's identity: it signs at the
    /// heights whose validator set names it (a validator, one added by governance from the
    /// height its set is in force, one rotated in) and never otherwise (an observer, a removed
    /// or rotated-away validator). The allow-list starts from the committed state and follows
    /// it block by block (PROTOCOL.md §7.1).
    pub async fn start(
        chain: Arc<Chain>,
        key: Keypair,
        cfg: ReplicaConfig,
    ) -> anyhow::Result<Self> {
        let me = net::peer_id(&key.public());
        let mut cfg = cfg;
        let allowed = crate::membership::allowed_peers(&chain.state(), &cfg.genesis_observers, &me);
        cfg.net.allowed = allowed.iter().copied().collect();
        let swarm = net::build_swarm(&key, &cfg.net)?;
        let peer_id = *swarm.local_peer_id();
        let (to_net_tx, to_net_rx) = mpsc::channel(4096);
        let (from_tx, from_rx) = std::sync::mpsc::sync_channel(4096);
        let (events_tx, events_rx) = mpsc::channel(16_384);
        let (listen_tx, listen_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = watch::channel(false);
        chain.set_event_gossip(events_tx);
        // Validators propose an empty block at least every idle interval: a replicated node
        // that commits nothing for ten of them (at least 30 s) cannot make progress.
        chain.set_stall_after((cfg.idle * 10).max(Duration::from_secs(30)));
        let net = tokio::spawn(net::run(
            swarm,
            cfg.net.clone(),
            chain.clone(),
            to_net_rx,
            from_tx.clone(),
            events_rx,
            listen_tx,
            stop_rx,
        ));
        let p2p_addr = listen_rx
            .await
            .map_err(|_| anyhow::anyhow!("the p2p network did not start"))?;
        let h = chain.height() + 1;
        let set = chain.state().validators_for(h).clone();
        let app = ChainApp::new(chain.clone(), Some(key.public()), cfg.idle);
        let wal: Box<dyn Wal> = Box::new(FileWal::open(&cfg.wal)?);
        let engine = Engine::new(
            chain.chain_id(),
            Some(key.clone()),
            cfg.engine,
            app,
            wal,
            h,
            set,
        );
        let out = to_net_tx.clone();
        let genesis_observers = cfg.genesis_observers.clone();
        let thread = std::thread::Builder::new()
            .name("consensus".into())
            .spawn(move || drive(engine, key, genesis_observers, allowed, from_rx, out))?;
        Ok(Self {
            p2p_addr,
            peer_id,
            to_net: to_net_tx,
            stop_net: stop_tx,
            stop_engine: from_tx,
            engine: Some(thread),
            net,
            chain,
        })
    }

    /// Dial a peer (tests that learn addresses after start).
    pub async fn dial(&self, addr: Multiaddr) {
        let _ = self.to_net.send(ToNet::Dial(addr)).await;
    }

    /// Whether the engine stopped because committing failed (kept by the chain, which
    /// `/health` reads).
    pub fn is_halted(&self) -> bool {
        self.chain.is_halted()
    }

    /// Stops the engine (finishing the step in progress) and the network.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop_engine.try_send(FromNet::Stop);
        if let Some(t) = self.engine.take() {
            tokio::task::spawn_blocking(move || t.join())
                .await?
                .map_err(|_| anyhow::anyhow!("consensus thread panicked"))?;
        }
        let _ = self.stop_net.send(true);
        self.net.await??;
        Ok(())
    }
}

fn ms_now() -> u64 {
    now().0
}

struct Driver {
    timers: BTreeMap<(Instant, u64), (u64, Timeout)>,
    seq: u64,
    out: mpsc::Sender<ToNet>,
    key: Keypair,
    /// The genesis file's observers (for the allow-list).
    genesis_observers: Vec<PeerId>,
    /// The allow-list last handed to the network.
    allowed: std::collections::BTreeSet<PeerId>,
    /// Whether this node signed at the last height it worked on (logged when it changes).
    signing: Option<bool>,
    /// Highest height seen in any message, and who sent it.
    best: Option<(u64, PeerId)>,
    syncing: Option<(PeerId, Instant)>,
}

fn drive(
    mut engine: Engine<ChainApp>,
    key: Keypair,
    genesis_observers: Vec<PeerId>,
    allowed: std::collections::BTreeSet<PeerId>,
    rx: std::sync::mpsc::Receiver<FromNet>,
    out: mpsc::Sender<ToNet>,
) {
    let mut d = Driver {
        timers: BTreeMap::new(),
        seq: 0,
        out,
        key,
        genesis_observers,
        allowed,
        signing: None,
        best: None,
        syncing: None,
    };
    d.membership(&engine);
    let fx = engine.start(ms_now());
    if !d.apply(&mut engine, fx) {
        return;
    }
    let mut next_tick = Instant::now() + TICK;
    loop {
        let deadline = d
            .timers
            .keys()
            .next()
            .map_or(next_tick, |(t, _)| (*t).min(next_tick));
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(FromNet::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Ok(FromNet::Consensus { msg, from }) => {
                let (fx, r) = engine.message(msg, ms_now());
                if let Err(e) = r {
                    tracing::debug!(peer = %from, error = %e, "consensus message not used");
                }
                // Sync targets come only from certified decisions (never from a bare claim).
                for e in &fx {
                    if let Effect::SyncTarget(h) = e
                        && d.best.is_none_or(|(b, _)| *h > b)
                    {
                        d.best = Some((*h, from));
                    }
                }
                if !d.apply(&mut engine, fx) {
                    return;
                }
            }
            Ok(FromNet::Synced { peer, blocks }) => {
                d.syncing = None;
                let before = engine.height();
                let mut clean = true;
                engine.app().chain().set_catching_up(true);
                for (block, certificate) in blocks {
                    let h = block.header.height;
                    if h < engine.height() {
                        continue;
                    }
                    if h > engine.height() {
                        break;
                    }
                    let (fx, r) = engine.message(Msg::Decision { block, certificate }, ms_now());
                    if let Err(e) = r {
                        let why = format!("served block {h}, which does not verify: {e}");
                        tracing::warn!(%peer, %why, "bad block from sync");
                        let _ = d.out.blocking_send(ToNet::Disconnect(peer, why));
                        clean = false;
                        break;
                    }
                    if !d.apply(&mut engine, fx) {
                        return;
                    }
                }
                // A batch that verified and moved us on: the peer may hold more (answers are
                // bounded), so ask it again at once rather than wait for the next certified
                // decision push; a chain that grows faster than one batch per push would
                // otherwise never be caught up. An empty answer ends it (below).
                tracing::info!(%peer, from = before, to = engine.height(), clean, "synced blocks");
                if clean && engine.height() > before {
                    let h = engine.height();
                    if d.best.is_none_or(|(b, _)| b < h) {
                        d.best = Some((h, peer));
                    }
                } else {
                    // Nothing more from this batch: at the live edge again (or stuck on a bad
                    // peer, which is not catching up either).
                    engine.app().chain().set_catching_up(false);
                }
            }
            Ok(FromNet::SyncFailed(_)) => {
                d.syncing = None;
                engine.app().chain().set_catching_up(false);
                // Nothing more there: stop asking until a certified decision shows more.
                if d.best.is_some_and(|(b, _)| b <= engine.height()) {
                    d.best = None;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        // Timers due.
        let now_i = Instant::now();
        while let Some((&(t, seq), _)) = d.timers.iter().next() {
            if t > now_i {
                break;
            }
            let (height, timeout) = d.timers.remove(&(t, seq)).expect("present");
            let fx = engine.timeout(height, timeout, ms_now());
            if !d.apply(&mut engine, fx) {
                return;
            }
        }
        if now_i >= next_tick {
            next_tick = now_i + TICK;
            let fx = engine.tick(ms_now());
            if !d.apply(&mut engine, fx) {
                return;
            }
            d.maybe_sync(&engine);
        }
    }
    tracing::info!(height = engine.height(), "consensus stopped");
}

impl Driver {
    /// After a commit (and at start): the allow-list from the committed state, handed to the
    /// network when it changed, and a log line when this node starts or stops signing.
    fn membership(&mut self, engine: &Engine<ChainApp>) {
        let st = engine.app().chain().state();
        let me = net::peer_id(&self.key.public());
        let next = crate::membership::allowed_peers(&st, &self.genesis_observers, &me);
        if next != self.allowed {
            self.allowed.clone_from(&next);
            if self.out.blocking_send(ToNet::Allow(next)).is_err() {
                tracing::debug!("network stopped");
            }
        }
        let h = st.height() + 1;
        let signs = crate::membership::signs_at(&st, &self.key.public(), h);
        if self.signing != Some(signs) {
            if signs {
                tracing::info!(height = h, key = %self.key.public(), "this node's key is in the validator set in force: signing");
            } else {
                tracing::info!(height = h, key = %self.key.public(), "this node's key is not in the validator set in force: following without signing");
            }
            self.signing = Some(signs);
        }
    }

    /// A peer proved a height at or past ours decided: ask it for blocks (one request at a
    /// time; each block is verified and re-executed by the engine as a decision).
    fn maybe_sync(&mut self, engine: &Engine<ChainApp>) {
        if self
            .syncing
            .is_some_and(|(_, t)| t.elapsed() < SYNC_TIMEOUT)
        {
            return;
        }
        if let Some((best, peer)) = self.best
            && best >= engine.height()
        {
            self.syncing = Some((peer, Instant::now()));
            let _ = self.out.blocking_send(ToNet::Sync {
                peer,
                from: engine.height(),
            });
        }
    }

    /// Carries out effects; false if the engine halted.
    fn apply(&mut self, engine: &mut Engine<ChainApp>, fx: Vec<Effect>) -> bool {
        for e in fx {
            match e {
                Effect::Broadcast(msg) => {
                    if self.out.blocking_send(ToNet::Consensus(msg)).is_err() {
                        tracing::debug!("network stopped");
                    }
                }
                Effect::Schedule {
                    height,
                    timeout,
                    after,
                } => {
                    self.seq += 1;
                    self.timers
                        .insert((Instant::now() + after, self.seq), (height, timeout));
                    // Timers of past heights are dropped by the engine when they fire; keep
                    // the map bounded anyway.
                    while self.timers.len() > 1024 {
                        self.timers.pop_first();
                    }
                }
                Effect::Committed(h) => {
                    tracing::debug!(height = h, "committed");
                    self.membership(engine);
                }
                Effect::SyncTarget(_) => {}
                Effect::Evidence(ev) => {
                    let chain = engine.app().chain().clone();
                    // Evidence is a validator's event (§6.11): only while this key is one.
                    if !crate::membership::is_validator(&chain.state(), &self.key.public()) {
                        continue;
                    }
                    let author = self.key.public();
                    let (_, seq) = chain.next_seq(&author);
                    let event = Event::new(
                        chain.chain_id(),
                        author,
                        seq,
                        Timestamp(ms_now() + 3_600_000),
                        EventPayload::Misbehaviour(ev),
                    )
                    .sign(&self.key);
                    match chain.submit_verified(event, None) {
                        Ok(id) => {
                            tracing::warn!(validator = %ev.validator(), event = %id, "double-sign evidence submitted")
                        }
                        Err(e) => tracing::info!(error = %e, "double-sign evidence not submitted"),
                    }
                }
                Effect::Halted(why) => {
                    tracing::error!(%why, "consensus halted: writing a decided block or the consensus WAL failed; the node stops voting");
                    engine.app().chain().set_halted();
                    return false;
                }
            }
        }
        true
    }
}
