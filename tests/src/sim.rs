//! A deterministic in-process cluster: n validators, each a real [`Chain`] on an in-memory
//! store driven by the real consensus [`Engine`], connected by a simulated network that drops,
//! delays, duplicates and reorders messages, partitions, crashes and restarts nodes, all from
//! one seed. Time is virtual, so a run is exactly replayable: the seed is printed on failure.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use malachitebft_core_types::Timeout;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use twinledger_core::codes::{Actions, Categories, Purposes};
use twinledger_core::consensus::{SignedVote, VoteKind};
use twinledger_core::devkit::{DEV_GENESIS_TIME, DevChain, dev_key};
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::event::{Event, EventPayload};
use twinledger_core::merkle::{Blake3Tree, TreeHasher, mth};
use twinledger_core::state::SignatureCheck;
use twinledger_core::{
    Action, Block, DataCategory, Genesis, Hash, Keypair, PublicKey, Purpose, SignedEvent, Timestamp,
};
use twinledger_node::chain::{Chain, NodePolicy};
use twinledger_node::consensus::app::ChainApp;
use twinledger_node::consensus::wal::MemWal;
use twinledger_node::consensus::{Effect, Engine, EngineConfig, Msg};
use twinledger_node::metrics::Metrics;
use twinledger_node::store::Store;

/// Network faults.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Probability a message is lost.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Delivery delay is uniform in 1..=max_delay ms (so messages reorder).
    pub max_delay: u64,
}

impl Faults {
    /// A perfect network with small delays.
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay: 5,
    };
}

/// How a Byzantine validator misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Every vote it casts, it also casts for another value (sent to everyone, in random
    /// order): equivocation.
    Equivocate,
    /// Its proposals carry a block that does not re-execute.
    InvalidProposals,
    /// It never votes (withholds), but proposes.
    Withhold,
    /// Its proposals carry a gossiped event whose signature it replaced (the header re-derived
    /// around it, so only that signature is wrong).
    SwapSignature,
    /// Its proposals carry an event with one changed field (its deadline), not re-signed.
    ChangeEventByte,
    /// Its proposals carry two events of one author against their sequence order.
    ReorderEvents,
    /// It sends every peer its real proposal twice: first with a body that is not the one
    /// the header commits to, then with the real body.
    BadBodyFirst,
    /// For every round it proposes it signs many different blocks.
    ProposalFlood,
}

/// How many blocks [`Byzantine::ProposalFlood`] signs per round.
pub const FLOOD_PROPOSALS: u64 = 80;

struct SimNode {
    key: Keypair,
    store: Store,
    disk: Arc<twinledger_node::store::FaultyKv>,
    /// The consensus WAL: what was flushed survives a crash, like the store.
    wal: MemWal,
    engine: Option<Engine<ChainApp>>,
    incarnation: u64,
    byzantine: Option<Byzantine>,
}

enum Item {
    Deliver {
        from: usize,
        to: usize,
        msg: Msg,
    },
    Timer {
        node: usize,
        incarnation: u64,
        height: u64,
        timeout: Timeout,
    },
}

/// The simulated cluster.
#[allow(missing_debug_implementations)] // holds engines and an RNG; printed by seed instead
pub struct Sim {
    /// The seed (print it on failure).
    pub seed: u64,
    rng: StdRng,
    /// Virtual time, ms since the epoch.
    pub now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    items: HashMap<u64, Item>,
    nodes: Vec<SimNode>,
    genesis: Genesis,
    /// Current network faults.
    pub faults: Faults,
    /// Partition: node → group; messages between groups are lost.
    pub groups: Option<Vec<u8>>,
    next_tick: u64,
    patients: u64,
    /// Events submitted (id → submitted to some node).
    pub submitted: Vec<SignedEvent>,
    /// Double-sign evidence reported by engines: (reporter, evidence).
    pub evidence: Vec<(usize, twinledger_core::consensus::DoubleSign)>,
    /// Nodes whose engine halted, with why.
    pub halted: Vec<(usize, String)>,
    /// Scripted mode: what nodes broadcast is captured in the outbox instead of being sent.
    pub hold: bool,
    outbox: Vec<(usize, Msg)>,
    /// Every vote any node sent (or tried to send), in order: (sender, vote).
    pub sent_votes: Vec<(usize, SignedVote)>,
    /// With this probability a delivery crashes its receiver: before it handles the message,
    /// or after (then what it would have sent is lost too); the node restarts after
    /// `restart_after` ms.
    pub crash_on_delivery: f64,
    /// Restart delay for [`Sim::crash_on_delivery`] crashes (ms).
    pub restart_after: u64,
    /// Nodes that may be crashed by [`Sim::crash_on_delivery`] while others are down: at most
    /// this many down at once.
    pub max_down: usize,
    /// Pending restarts: (at, node).
    restarts: Vec<(u64, usize)>,
    /// How many crashes [`Sim::crash_on_delivery`] caused.
    pub crashes: u64,
    /// Proposals forged by Byzantine nodes.
    pub forged: u64,
    /// Certified sync targets engines reported: (node, height).
    pub sync_targets: Vec<(usize, u64)>,
    /// Decisions each node broadcast.
    pub decisions_sent: Vec<u64>,
    paused: Vec<bool>,
    stalled: Vec<Item>,
}

/// A consent grant by `patient` to a hospital (`n` varies the hospital).
fn grant(patient: PublicKey, n: u64) -> ConsentGrant {
    let org = if n.is_multiple_of(2) {
        "org/st-mary-hospital"
    } else {
        "org/genome-institute"
    };
    ConsentGrant {
        patient,
        grantee: Grantee::Organisation(dev_key(org).public()),
        scope: Scope {
            categories: [DataCategory::VitalSigns]
                .into_iter()
                .collect::<Categories>(),
            purposes: [Purpose::Treat].into_iter().collect::<Purposes>(),
            actions: [Action::Read].into_iter().collect::<Actions>(),
        },
        valid_from: Timestamp(0),
        valid_until: None,
    }
}

const TICK_MS: u64 = 50;
/// Most blocks one sync answer carries.
pub const SYNC_BATCH: u64 = 32;

impl Sim {
    /// `n` validators of equal power (the dev chain's genesis with `n` validators).
    pub fn new(n: usize, seed: u64) -> Self {
        let dev = DevChain::new(n);
        let genesis = dev.genesis.clone();
        let nodes = dev
            .validators
            .iter()
            .map(|k| {
                let disk = Arc::new(twinledger_node::store::FaultyKv::default());
                SimNode {
                    key: k.clone(),
                    store: Store::new(disk.clone()),
                    disk,
                    wal: MemWal::default(),
                    engine: None,
                    incarnation: 0,
                    byzantine: None,
                }
            })
            .collect();
        let now = DEV_GENESIS_TIME.0 + 1000;
        let mut sim = Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            now,
            seq: 0,
            queue: BinaryHeap::new(),
            items: HashMap::new(),
            nodes,
            genesis,
            faults: Faults::NONE,
            groups: None,
            next_tick: now,
            patients: 0,
            submitted: Vec::new(),
            evidence: Vec::new(),
            halted: Vec::new(),
            hold: false,
            outbox: Vec::new(),
            sent_votes: Vec::new(),
            crash_on_delivery: 0.0,
            restart_after: 1000,
            max_down: 1,
            restarts: Vec::new(),
            crashes: 0,
            forged: 0,
            sync_targets: Vec::new(),
            decisions_sent: vec![0; n],
            paused: vec![false; n],
            stalled: Vec::new(),
        };
        for i in 0..n {
            sim.start(i);
        }
        sim
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false (a cluster has nodes).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Makes node `i` Byzantine.
    pub fn set_byzantine(&mut self, i: usize, b: Byzantine) {
        self.nodes[i].byzantine = Some(b);
    }

    /// The chain of node `i` (if running).
    pub fn chain(&self, i: usize) -> Option<&Arc<Chain>> {
        self.nodes[i].engine.as_ref().map(|e| e.app().chain())
    }

    /// The store of node `i` (kept across crashes).
    pub fn store(&self, i: usize) -> &Store {
        &self.nodes[i].store
    }

    /// Committed height of node `i` (from its store).
    pub fn height(&self, i: usize) -> u64 {
        self.nodes[i].store.tip().expect("tip")
    }

    /// Whether node `i` is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].engine.is_some()
    }

    /// Starts (or restarts) node `i` from its store: the chain re-verifies the store, the
    /// engine begins at the next height; the signing record is in the store.
    pub fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let chain = Chain::open(
            self.genesis.clone(),
            node.store.clone(),
            NodePolicy {
                block_interval: Duration::from_millis(100),
                mempool_size: 10_000,
            },
            false,
            Metrics::new(),
        )
        .expect("store verifies on restart");
        let chain = Arc::new(chain);
        let h = chain.height() + 1;
        let set = chain.state().validators_for(h).clone();
        let app = ChainApp::new(
            chain.clone(),
            Some(node.key.public()),
            Duration::from_millis(300),
        );
        let mut engine = Engine::new(
            chain.chain_id(),
            Some(node.key.clone()),
            EngineConfig::default(),
            app,
            Box::new(node.wal.clone()),
            h,
            set,
        );
        node.incarnation += 1;
        let fx = engine.start(self.now);
        node.engine = Some(engine);
        self.effects(i, fx);
    }

    /// Makes node `i`'s disk refuse every write from now on (store and WAL).
    pub fn fail_disk(&mut self, i: usize) {
        self.nodes[i]
            .disk
            .fail
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.nodes[i].wal.fail();
    }

    /// Crashes node `i` (kill -9: its mempool, in-flight timers and WAL entries not yet flushed
    /// are lost; its store and the flushed WAL stay).
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].engine = None;
        self.nodes[i].incarnation += 1;
        self.nodes[i].wal.crash();
    }

    /// SIGSTOP of node `i`: it handles nothing (messages to it and its timers wait) until
    /// [`Sim::resume`].
    pub fn pause(&mut self, i: usize) {
        self.paused[i] = true;
    }

    /// SIGCONT of node `i`: everything that waited is handled now, in order.
    pub fn resume(&mut self, i: usize) {
        self.paused[i] = false;
        let (mine, rest): (Vec<Item>, Vec<Item>) = std::mem::take(&mut self.stalled)
            .into_iter()
            .partition(|item| match item {
                Item::Deliver { to, .. } => *to == i,
                Item::Timer { node, .. } => *node == i,
            });
        self.stalled = rest;
        let now = self.now;
        for item in mine {
            self.push(now, item);
        }
    }

    /// The key of node `i`.
    pub fn key(&self, i: usize) -> &Keypair {
        &self.nodes[i].key
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Fires `timeout` of `height` on node `i` now (scripted tests).
    pub fn fire(&mut self, i: usize, height: u64, timeout: Timeout) {
        let now = self.now;
        if let Some(e) = self.nodes[i].engine.as_mut() {
            let fx = e.timeout(height, timeout, now);
            self.effects(i, fx);
        }
    }

    /// kill -9 of node `i` at a moment when what it just sent is still in its own send
    /// queues: those messages die with it (and so does what its WAL had not flushed).
    pub fn kill(&mut self, i: usize) {
        self.crash(i);
        let lost: Vec<u64> = self
            .items
            .iter()
            .filter(|(_, item)| matches!(item, Item::Deliver { from, .. } if *from == i))
            .map(|(k, _)| *k)
            .collect();
        for k in lost {
            self.items.remove(&k);
        }
    }

    /// Ticks node `i` now (retries a pending proposal; scripted tests).
    pub fn tick(&mut self, i: usize) {
        let now = self.now;
        if let Some(e) = self.nodes[i].engine.as_mut() {
            let fx = e.tick(now);
            self.effects(i, fx);
        }
    }

    /// The engine of node `i` (if running).
    pub fn engine(&self, i: usize) -> Option<&Engine<ChainApp>> {
        self.nodes[i].engine.as_ref()
    }

    /// Puts a message back in the outbox (scripted tests that peek at it).
    pub fn requeue(&mut self, from: usize, msg: Msg) {
        self.outbox.push((from, msg));
    }

    /// Takes the messages captured while [`Sim::hold`] is set, with their senders.
    pub fn take_outbox(&mut self) -> Vec<(usize, Msg)> {
        std::mem::take(&mut self.outbox)
    }

    fn push(&mut self, at: u64, item: Item) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.items.insert(self.seq, item);
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.groups.as_ref().is_none_or(|g| g[a] == g[b])
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if !self.connected(from, to) || self.rng.random_bool(self.faults.drop) {
            return;
        }
        let copies = if self.rng.random_bool(self.faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.rng.random_range(1..=self.faults.max_delay.max(1));
            self.push(
                at,
                Item::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn broadcast(&mut self, from: usize, msg: Msg) {
        match &msg {
            Msg::Vote(v) => self.sent_votes.push((from, *v)),
            Msg::Decision { .. } => self.decisions_sent[from] += 1,
            _ => {}
        }
        if self.hold {
            self.outbox.push((from, msg));
            return;
        }
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, msg.clone());
            }
        }
    }

    fn effects(&mut self, i: usize, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::Broadcast(msg) => self.byzantine_broadcast(i, msg),
                Effect::Schedule {
                    height,
                    timeout,
                    after,
                } => {
                    let at = self.now + u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                    let incarnation = self.nodes[i].incarnation;
                    self.push(
                        at,
                        Item::Timer {
                            node: i,
                            incarnation,
                            height,
                            timeout,
                        },
                    );
                }
                Effect::Committed(_) => {}
                Effect::SyncTarget(h) => {
                    self.sync_targets.push((i, h));
                    self.sync(i, h);
                }
                Effect::Evidence(ev) => {
                    self.evidence.push((i, ev));
                    if let Some(chain) = self.chain(i).cloned() {
                        let key = self.nodes[i].key.clone();
                        let (_, seq) = chain.next_seq(&key.public());
                        let ev = Event::new(
                            chain.chain_id(),
                            key.public(),
                            seq,
                            Timestamp(self.now + 3_600_000),
                            EventPayload::Misbehaviour(ev),
                        )
                        .sign(&key);
                        let _ = chain.submit_verified_at(ev, None, Timestamp(self.now));
                    }
                }
                Effect::Halted(why) => {
                    if let Some(chain) = self.chain(i) {
                        chain.set_halted();
                    }
                    self.halted.push((i, why));
                }
            }
        }
    }

    /// Block sync, as the replica does it by request-response: node `i` learnt (from a
    /// certified decision) that `target` is decided; a connected peer that holds the blocks
    /// answers with up to [`SYNC_BATCH`] of them, each delivered as a decision (verified and
    /// re-executed by the engine).
    fn sync(&mut self, i: usize, target: u64) {
        let Some(from) = self.nodes[i].engine.as_ref().map(|e| e.height()) else {
            return;
        };
        let peers: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != i && self.is_up(j) && self.connected(i, j))
            .filter(|&j| self.height(j) >= from)
            .collect();
        if peers.is_empty() || self.hold {
            return;
        }
        let j = peers[self.rng.random_range(0..peers.len())];
        let to = target.min(self.height(j)).min(from + SYNC_BATCH - 1);
        let at = self.now + self.rng.random_range(1..=self.faults.max_delay.max(1));
        for h in from..=to {
            let sb = self.nodes[j].store.block(h).expect("read").expect("stored");
            self.push(
                at,
                Item::Deliver {
                    from: j,
                    to: i,
                    msg: Msg::Decision {
                        block: sb.block,
                        certificate: sb.certificate,
                    },
                },
            );
        }
    }

    fn byzantine_broadcast(&mut self, i: usize, msg: Msg) {
        let key = self.nodes[i].key.clone();
        match (self.nodes[i].byzantine, msg) {
            (Some(Byzantine::Withhold), Msg::Vote(_)) => {}
            (Some(Byzantine::Equivocate), Msg::Vote(v)) => {
                let mut other = v.vote;
                other.value = match other.value {
                    Some(_) => None,
                    None => Some(twinledger_core::Checkpoint {
                        version: 1,
                        chain_id: v.vote.chain_id,
                        height: v.vote.height,
                        log_size: 0,
                        log_root: Hash([0xee; 32]),
                        block_hash: Hash([0xee; 32]),
                    }),
                };
                let twin: SignedVote = other.sign(&key);
                let (a, b) = if self.rng.random_bool(0.5) {
                    (v, twin)
                } else {
                    (twin, v)
                };
                self.broadcast(i, Msg::Vote(a));
                self.broadcast(i, Msg::Vote(b));
            }
            (
                Some(
                    b @ (Byzantine::SwapSignature
                    | Byzantine::ChangeEventByte
                    | Byzantine::ReorderEvents
                    | Byzantine::BadBodyFirst
                    | Byzantine::ProposalFlood),
                ),
                Msg::Proposal { proposal, block },
            ) => self.forge_proposal(i, b, proposal, block),
            (Some(Byzantine::InvalidProposals), Msg::Proposal { proposal, block }) => {
                let mut bad = block;
                bad.header.state_hash = Hash([0xbb; 32]);
                let mut body = proposal.proposal;
                body.value = bad.header.checkpoint();
                let signed = body.sign(&key);
                self.broadcast(
                    i,
                    Msg::Proposal {
                        proposal: signed,
                        block: bad,
                    },
                );
            }
            (_, msg) => self.broadcast(i, msg),
        }
    }

    /// What the Byzantine proposer `i` sends instead of its honest proposal.
    fn forge_proposal(
        &mut self,
        i: usize,
        how: Byzantine,
        proposal: twinledger_core::consensus::SignedProposal,
        block: Block,
    ) {
        let key = self.nodes[i].key.clone();
        let Some(state) = self.chain(i).map(|c| c.state()) else {
            return;
        };
        let resign = |block: &Block| {
            let mut body = proposal.proposal;
            body.value = block.header.checkpoint();
            body.sign(&key)
        };
        let rebuild = |events: Vec<SignedEvent>| {
            state
                .build_block_with(
                    block.header.proposer,
                    block.header.time,
                    events,
                    SignatureCheck::AlreadyVerified,
                )
                .ok()
                .map(|b| b.block)
        };
        let honest = Msg::Proposal {
            proposal,
            block: block.clone(),
        };
        match how {
            Byzantine::SwapSignature | Byzantine::ChangeEventByte => {
                let Some(first) = block.events.first() else {
                    return self.broadcast(i, honest);
                };
                let mut events = block.events.clone();
                if how == Byzantine::SwapSignature {
                    // Another event's signature, or a flipped bit if there is no other.
                    events[0].signature = match block.events.get(1) {
                        Some(other) => other.signature,
                        None => {
                            let mut s = first.signature;
                            s.0[7] ^= 1;
                            s
                        }
                    };
                } else {
                    events[0].event.not_after = Timestamp(first.event.not_after.0 + 1);
                }
                match rebuild(events) {
                    Some(forged) if forged.events.len() == block.events.len() => {
                        let p = resign(&forged);
                        self.send_forged(i, p, forged);
                    }
                    _ => self.broadcast(i, honest),
                }
            }
            Byzantine::ReorderEvents => {
                let mut events = block.events.clone();
                let pair = (0..events.len()).find_map(|a| {
                    (a + 1..events.len())
                        .find(|&b| events[b].event.author == events[a].event.author)
                        .map(|b| (a, b))
                });
                let Some((a, b)) = pair else {
                    return self.broadcast(i, honest);
                };
                events.swap(a, b);
                let mut forged = Block {
                    header: block.header.clone(),
                    events,
                };
                let leaves: Vec<[u8; 32]> = forged
                    .events
                    .iter()
                    .map(|e| <Blake3Tree as TreeHasher>::leaf(&e.to_bytes()))
                    .collect();
                forged.header.events_root = Hash(mth::<Blake3Tree>(&leaves));
                let p = resign(&forged);
                self.send_forged(i, p, forged);
            }
            Byzantine::BadBodyFirst => {
                let mut bad = block.clone();
                match bad.events.first_mut() {
                    Some(e) => e.signature.0[3] ^= 1,
                    None => match self.submitted.last() {
                        Some(e) => bad.events.push(e.clone()),
                        None => return self.broadcast(i, honest),
                    },
                }
                self.send_forged(i, proposal, bad);
                self.broadcast(i, honest);
            }
            Byzantine::ProposalFlood => {
                for k in 1..=FLOOD_PROPOSALS {
                    let variant = state
                        .build_block_with(
                            block.header.proposer,
                            Timestamp(block.header.time.0 + k),
                            block.events.clone(),
                            SignatureCheck::AlreadyVerified,
                        )
                        .ok()
                        .map(|b| b.block);
                    if let Some(v) = variant {
                        let p = resign(&v);
                        self.send_forged(i, p, v);
                    }
                }
                self.broadcast(i, honest);
            }
            _ => self.broadcast(i, honest),
        }
    }

    /// Broadcasts a forged proposal from Byzantine node `i`, counting it.
    fn send_forged(
        &mut self,
        i: usize,
        proposal: twinledger_core::consensus::SignedProposal,
        block: Block,
    ) {
        self.forged += 1;
        self.broadcast(i, Msg::Proposal { proposal, block });
    }

    /// Re-opens every node's store as a new node would, verifying every signature and every
    /// certificate and re-executing every block; panics naming the node and the failure.
    pub fn verify_stores(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            if let Err(e) = Chain::open(
                self.genesis.clone(),
                n.store.clone(),
                NodePolicy {
                    block_interval: Duration::from_millis(100),
                    mempool_size: 10,
                },
                true,
                Metrics::new(),
            ) {
                panic!("seed {}: node {i}'s store does not verify: {e}", self.seed);
            }
        }
    }

    /// Whether some committed block on node `i` was proposed by node `j`.
    pub fn committed_a_block_of(&self, i: usize, j: usize) -> bool {
        let k = self.nodes[j].key.public();
        let st = &self.nodes[i].store;
        (1..=st.tip().expect("tip")).any(|h| {
            st.block(h)
                .expect("read")
                .expect("stored")
                .block
                .header
                .proposer
                == k
        })
    }

    /// Submits two events by one new patient (sequence 0 and 1) to node `to` and the nodes
    /// it reaches.
    pub fn submit_pair(&mut self, to: usize) {
        self.patients += 1;
        let patient = dev_key(&format!("sim-pair/{}/{}", self.seed, self.patients));
        let chain_id = self.genesis.chain_id();
        let evs: Vec<SignedEvent> = (0..2u64)
            .map(|seq| {
                Event::new(
                    chain_id,
                    patient.public(),
                    seq,
                    Timestamp(self.now + 3_600_000),
                    EventPayload::ConsentGrant(grant(patient.public(), seq)),
                )
                .sign(&patient)
            })
            .collect();
        for ev in evs {
            for j in 0..self.nodes.len() {
                if (j == to || self.connected(to, j))
                    && let Some(chain) = self.chain(j)
                {
                    let _ = chain.submit_verified_at(ev.clone(), None, Timestamp(self.now));
                }
            }
            self.submitted.push(ev);
        }
    }

    /// Delivers `msg` to node `i` now (no network), returning the engine's verdict.
    pub fn deliver(
        &mut self,
        i: usize,
        msg: Msg,
    ) -> Result<(), twinledger_node::consensus::Refused> {
        let now = self.now;
        let engine = self.nodes[i].engine.as_mut().expect("running");
        let (fx, r) = engine.message(msg, now);
        self.effects(i, fx);
        r
    }

    /// Submits a fresh event (a new patient's consent grant) to node `to` and, as gossip would,
    /// to every other running node it can reach.
    pub fn submit(&mut self, to: usize) {
        self.patients += 1;
        let patient = dev_key(&format!("sim-patient/{}/{}", self.seed, self.patients));
        let chain_id = self.genesis.chain_id();
        let ev = Event::new(
            chain_id,
            patient.public(),
            0,
            Timestamp(self.now + 3_600_000),
            EventPayload::ConsentGrant(grant(patient.public(), 0)),
        )
        .sign(&patient);
        for j in 0..self.nodes.len() {
            if (j == to || self.connected(to, j))
                && let Some(chain) = self.chain(j)
            {
                let _ = chain.submit_verified_at(ev.clone(), None, Timestamp(self.now));
            }
        }
        self.submitted.push(ev);
    }

    /// Runs until `done(self)` or `limit_ms` of virtual time pass; submits an event to a random
    /// running node every `event_every_ms` (0: none). Returns whether `done` held.
    pub fn run_until(
        &mut self,
        limit_ms: u64,
        event_every_ms: u64,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> bool {
        let end = self.now + limit_ms;
        let mut next_event = self.now;
        while self.now < end {
            if done(self) {
                return true;
            }
            let next_item = self.queue.peek().map(|Reverse((t, _))| *t);
            let t = next_item.unwrap_or(u64::MAX).min(self.next_tick);
            self.now = self.now.max(t);
            if t == self.next_tick {
                self.next_tick += TICK_MS;
                let due: Vec<usize> = self
                    .restarts
                    .iter()
                    .filter(|(at, _)| *at <= self.now)
                    .map(|(_, i)| *i)
                    .collect();
                self.restarts.retain(|(at, _)| *at > self.now);
                for i in due {
                    if !self.is_up(i) {
                        self.start(i);
                    }
                }
                if event_every_ms > 0 && self.now >= next_event {
                    next_event = self.now + event_every_ms;
                    let up: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.is_up(i)).collect();
                    if !up.is_empty() {
                        let to = up[self.rng.random_range(0..up.len())];
                        self.submit(to);
                    }
                }
                for i in 0..self.nodes.len() {
                    let now = self.now;
                    if self.paused[i] {
                        continue;
                    }
                    if let Some(e) = self.nodes[i].engine.as_mut() {
                        let fx = e.tick(now);
                        self.effects(i, fx);
                    }
                }
                continue;
            }
            let Reverse((_, seq)) = self.queue.pop().expect("peeked");
            // Removed when its sender was killed before it left.
            let Some(item) = self.items.remove(&seq) else {
                continue;
            };
            let target = match &item {
                Item::Deliver { to, .. } => *to,
                Item::Timer { node, .. } => *node,
            };
            if self.paused[target] {
                // SIGSTOP: it all waits in the socket buffers and the timer wheel.
                self.stalled.push(item);
                continue;
            }
            let now = self.now;
            match item {
                Item::Deliver { to, msg, .. } => {
                    let down = (0..self.nodes.len()).filter(|&j| !self.is_up(j)).count();
                    let crash = self.is_up(to)
                        && down < self.max_down
                        && self.crash_on_delivery > 0.0
                        && self.rng.random_bool(self.crash_on_delivery);
                    if crash && self.rng.random_bool(0.5) {
                        // Crash before handling: the message is lost with the process.
                        self.crash(to);
                        self.crashes += 1;
                        self.restarts.push((now + self.restart_after, to));
                        continue;
                    }
                    if let Some(e) = self.nodes[to].engine.as_mut() {
                        let (fx, _refused) = e.message(msg, now);
                        if crash {
                            // Crash after handling, before anything it produced left: what it
                            // logged and flushed survives, what it would have sent does not.
                            self.crash(to);
                            self.crashes += 1;
                            self.restarts.push((now + self.restart_after, to));
                            continue;
                        }
                        self.effects(to, fx);
                    }
                }
                Item::Timer {
                    node,
                    incarnation,
                    height,
                    timeout,
                } => {
                    if self.nodes[node].incarnation == incarnation
                        && let Some(e) = self.nodes[node].engine.as_mut()
                    {
                        let fx = e.timeout(height, timeout, now);
                        self.effects(node, fx);
                    }
                }
            }
        }
        done(self)
    }

    /// Checks agreement: at every height stored by two nodes, the blocks (hence block hashes,
    /// state hashes, log roots) are identical and every certificate verifies against the set in
    /// force. Returns the highest height stored by all of `nodes`.
    pub fn check_agreement(&self) -> u64 {
        let mut by_height: BTreeMap<u64, (usize, Hash)> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let tip = n.store.tip().expect("tip");
            for h in 1..=tip {
                let sb = n.store.block(h).expect("read").expect("stored");
                let hash = sb.block.header.hash();
                match by_height.get(&h) {
                    Some((j, other)) => assert_eq!(
                        *other, hash,
                        "FORK at height {h}: node {i} and node {j} differ (seed {})",
                        self.seed
                    ),
                    None => {
                        by_height.insert(h, (i, hash));
                    }
                }
            }
        }
        self.nodes
            .iter()
            .map(|n| n.store.tip().expect("tip"))
            .min()
            .unwrap_or(0)
    }

    /// Kinds of double-sign evidence recorded on the chain of node `i`.
    pub fn evidence_on_chain(&self, i: usize) -> Vec<(twinledger_core::PublicKey, VoteKind)> {
        let st = &self.nodes[i].store;
        let tip = st.tip().expect("tip");
        let mut out = Vec::new();
        for h in 1..=tip {
            let sb = st.block(h).expect("read").expect("stored");
            for ev in &sb.block.events {
                if let EventPayload::Misbehaviour(m) = &ev.event.payload {
                    out.push((m.validator(), m.slot().2));
                }
            }
        }
        out
    }
}

/// The seeds a scenario runs: `default`, or the one in `TWINLEDGER_SIM_SEED`.
pub fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("TWINLEDGER_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("TWINLEDGER_SIM_SEED is a number")],
        Err(_) => default.to_vec(),
    }
}

/// Whether every node has committed height `h`.
pub fn all_reach(sim: &Sim, h: u64) -> bool {
    (0..sim.len()).all(|i| sim.height(i) >= h)
}

/// Every node's committed height.
pub fn heights(sim: &Sim) -> Vec<u64> {
    (0..sim.len()).map(|i| sim.height(i)).collect()
}

/// No scenario expects an engine to halt unless it says so.
pub fn no_halts(sim: &Sim) {
    assert!(
        sim.halted.is_empty(),
        "seed {}: halted: {:?}",
        sim.seed,
        sim.halted
    );
}
