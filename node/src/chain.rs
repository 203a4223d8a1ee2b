//! The node's ledger: committed state, mempool, the three steps every validator takes for a
//! block (propose, validate, commit; the same for a set of one as for a network), persistence,
//! and notification of finality.
//!
//! One lock guards the committed state, the mempool and its scratch state. Signature checks
//! happen before the lock (in parallel, on the caller's task); applying to the scratch state,
//! building a block and re-deriving state are the only work under it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, oneshot};
use twinledger_core::audit::{AuditFailure, Auditor, CertificateCheck};
use twinledger_core::checkpoint::CertificateError;
use twinledger_core::event::EventPayload;
use twinledger_core::merkle::{Blake3Tree, Frontier};
use twinledger_core::state::{BlockError, Executed, SignatureCheck};
use twinledger_core::{
    Block, ChainId, CommitCertificate, EventId, Genesis, Hash, Outcome, PublicKey, Receipt,
    RejectReason, Signature, SignedEvent, State, Timestamp, ValidatorSet,
};

use crate::metrics::Metrics;
use crate::snapshot::set_changes_in;
use crate::store::{BlockWrite, CommittedBlock, EventLocation, Index, Store, StoreError};

/// Node-local policy from the genesis file.
#[derive(Clone, Copy, Debug)]
pub struct NodePolicy {
    /// Time between blocks.
    pub block_interval: Duration,
    /// Most events waiting in the mempool.
    pub mempool_size: usize,
}

/// Why a proposed or decided block was refused before this node voted for it or wrote it.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The block's time is too far ahead of this node's clock (voting only).
    #[error(
        "block time {time} is more than {MAX_CLOCK_SKEW_MS} ms ahead of this node's clock ({now})"
    )]
    TimeAhead {
        /// The block's time (ms).
        time: u64,
        /// This node's clock (ms).
        now: u64,
    },
    /// The body is not the one the header commits to.
    #[error("{0}")]
    Body(#[from] twinledger_core::block::BodyMismatch),
    /// An event signature does not verify.
    #[error("event {index}: signature: {error}")]
    Signature {
        /// Position in the block.
        index: usize,
        /// Why.
        error: twinledger_core::keys::KeyError,
    },
    /// The block does not re-execute on this node's committed state.
    #[error("{0}")]
    Block(#[from] BlockError),
}

/// Why a decided block could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The block is not the next one.
    #[error("decided block {height} does not follow the committed height {committed}")]
    NotNext {
        /// The block's height.
        height: u64,
        /// The committed height.
        committed: u64,
    },
    /// Its certificate does not verify against the set in force.
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    /// The block does not check or re-execute.
    #[error(transparent)]
    Invalid(#[from] ValidateError),
    /// Writing it failed: the node must stop voting.
    #[error("writing the block: {0}")]
    Store(#[from] StoreError),
}

/// Why a submitted event was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The ledger rules refuse it.
    #[error("{0}")]
    Rejected(#[from] RejectReason),
    /// Already waiting in the mempool.
    #[error("event {0} is already pending")]
    Duplicate(EventId),
    /// The mempool is full: try again later.
    #[error("mempool is full ({0} events); try again later")]
    MempoolFull(usize),
}

/// What a waiter learns about its event.
#[derive(Clone, Debug)]
pub enum Finality {
    /// Final in a committed block.
    Final {
        /// Where.
        location: EventLocation,
        /// Its outcome.
        outcome: Outcome,
    },
    /// Dropped from the mempool (e.g. it expired before a block could take it).
    Dropped(RejectReason),
}

/// Why the store does not verify on start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store is unusable for this genesis.
    #[error(transparent)]
    Init(#[from] crate::store::InitError),
    /// I/O or a corrupt record.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block is missing.
    #[error("store does not verify: block {0} is missing")]
    Missing(u64),
    /// A block does not re-execute, its results differ from re-execution, or its
    /// certificate does not verify (the same checks as `twinctl audit verify`).
    #[error("store does not verify at height {height}: {error}")]
    Audit {
        /// First bad height.
        height: u64,
        /// Why.
        error: AuditFailure,
    },
    /// The stored Merkle nodes disagree with the log root.
    #[error("store does not verify: stored event-log nodes give another root than block {0}")]
    LogNodes(u64),
    /// Genesis invalid.
    #[error("genesis: {0}")]
    Genesis(String),
}

struct Inner {
    committed: State,
    /// Committed state plus every mempool event, in order: where new events are checked.
    pending: State,
    mempool: VecDeque<SignedEvent>,
    /// The mempool's events by id, with the signature this node verified: an event in a
    /// proposed block skips verification only if id and signature are both these (an event
    /// id hashes the unsigned event, so the id alone would let a proposer swap a signature).
    ids: HashMap<EventId, Signature>,
    waiters: HashMap<EventId, Vec<oneshot::Sender<Finality>>>,
}

/// The node's ledger.
pub struct Chain {
    genesis: Genesis,
    chain_id: ChainId,
    store: Store,
    policy: NodePolicy,
    inner: Mutex<Inner>,
    commits: broadcast::Sender<u64>,
    metrics: Metrics,
    /// Blocks this node built or re-executed at the next height, by block hash: the state
    /// after them, so that committing a decided block does not execute it twice.
    executed: Mutex<HashMap<Hash, Executed>>,
    /// Where events submitted through the API are gossiped to the other nodes (BFT mode).
    gossip: Mutex<Option<tokio::sync::mpsc::Sender<Vec<u8>>>>,
    /// Set when consensus stopped because a decided block could not be written: the node
    /// serves reads but takes no further part; `/health` reports it.
    halted: std::sync::atomic::AtomicBool,
    /// When the last block was committed (ms since the epoch, this node's clock; 0: none yet
    /// in this run).
    last_commit_ms: std::sync::atomic::AtomicU64,
    /// A replicated node that commits nothing for this long reports itself stalled on
    /// `/health` (0: never; a single validator commits only when there is something to commit).
    stall_after_ms: std::sync::atomic::AtomicU64,
    /// The applied validator-set changes (height, governance event id), in height order:
    /// rebuilt when the store is replayed on open, extended on every commit (PROTOCOL §9.3).
    set_changes: Mutex<Vec<(u64, EventId)>>,
    /// Set while the node commits old blocks from a peer ([`Chain::set_catching_up`]).
    catching_up: std::sync::atomic::AtomicBool,
    /// Times the scratch state was re-derived ([`Chain::pending_rebuilds`]).
    rebuilds: std::sync::atomic::AtomicU64,
}

/// How far ahead of this node's clock a proposed block's time may be. A Byzantine proposer
/// could otherwise push chain time forward and expire consents and events early.
pub const MAX_CLOCK_SKEW_MS: u64 = 5_000;
/// The scratch state is re-derived from the committed state and the mempool at least every
/// this many heights (see `Chain::publish`).
pub const PENDING_REBUILD_EVERY: u64 = 16;
/// Most executed candidate blocks kept (one per round, bounded against a proposer spraying).
const MAX_EXECUTED: usize = 16;

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({})", self.chain_id)
    }
}

/// Milliseconds since the Unix epoch, from the node's clock (the only clock reader).
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}

impl Chain {
    /// Opens the chain on `store`: binds the store to the genesis, replays and checks every
    /// stored block (hash links, every derived header field, the log's stored nodes, the tip's
    /// certificate; with `verify_all` also every event signature and every certificate), and
    /// refuses a store that does not verify, naming the first bad height.
    pub fn open(
        genesis: Genesis,
        store: Store,
        policy: NodePolicy,
        verify_all: bool,
        metrics: Metrics,
    ) -> Result<Self, OpenError> {
        let chain_id = genesis.chain_id();
        store.init(chain_id)?;
        let mut auditor = Auditor::new(&genesis).map_err(|e| OpenError::Genesis(e.to_string()))?;
        let tip = store.tip()?;
        let started = Instant::now();
        let mut last: Option<CommittedBlock> = None;
        let mut set_changes = Vec::new();
        let sigs = if verify_all {
            SignatureCheck::Verify
        } else {
            SignatureCheck::AlreadyVerified
        };
        // A verified state snapshot spares replaying the blocks up to it (ADR 0010).
        let mut from = 1;
        if !verify_all && let Some(r) = crate::snapshot::restore(&genesis, &store, tip) {
            (auditor, set_changes, from) = (r.auditor, r.set_changes, r.height + 1);
        }
        for h in from..=tip {
            let sb = store.block(h)?.ok_or(OpenError::Missing(h))?;
            let certificate = if verify_all || h == tip {
                CertificateCheck::Verify
            } else {
                CertificateCheck::AlreadyVerified
            };
            auditor
                .check_with(&sb, sigs, certificate)
                .map_err(|error| OpenError::Audit { height: h, error })?;
            set_changes.extend(set_changes_in(&sb));
            if h % 10_000 == 0 {
                tracing::info!(height = h, tip, "verifying store");
            }
            last = Some(sb);
        }
        let state = auditor.state().clone();
        if let Some(sb) = &last {
            let size = state.log_size();
            let root = Frontier::from_source(&store, size)
                .map(|f| f.root::<Blake3Tree>())
                .map_err(|_| OpenError::LogNodes(sb.block.header.height))?;
            if root != state.log_root().0 {
                return Err(OpenError::LogNodes(sb.block.header.height));
            }
        }
        tracing::info!(
            height = tip,
            events = state.log_size(),
            verify_all,
            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "store verified"
        );
        metrics.height.set(i64::try_from(tip).unwrap_or(i64::MAX));
        let (commits, _) = broadcast::channel(1024);
        Ok(Self {
            genesis,
            chain_id,
            store,
            policy,
            inner: Mutex::new(Inner {
                pending: state.clone(),
                committed: state,
                mempool: VecDeque::new(),
                ids: HashMap::new(),
                waiters: HashMap::new(),
            }),
            commits,
            metrics,
            executed: Mutex::new(HashMap::new()),
            gossip: Mutex::new(None),
            halted: std::sync::atomic::AtomicBool::new(false),
            last_commit_ms: std::sync::atomic::AtomicU64::new(now().0),
            stall_after_ms: std::sync::atomic::AtomicU64::new(0),
            set_changes: Mutex::new(set_changes),
            catching_up: std::sync::atomic::AtomicBool::new(false),
            rebuilds: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Node-local policy (block interval, mempool size).
    pub fn policy(&self) -> NodePolicy {
        self.policy
    }
    /// The chain id.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }
    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }
    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    /// The chain's limit on one encoded event (fixed by the genesis).
    pub fn max_event_bytes(&self) -> usize {
        self.genesis.limits.max_event_bytes as usize
    }
    /// A copy of the committed state (O(1)).
    pub fn state(&self) -> State {
        self.inner.lock().expect("chain lock").committed.clone()
    }
    /// Events waiting.
    pub fn mempool_len(&self) -> usize {
        self.inner.lock().expect("chain lock").mempool.len()
    }
    /// A key's next sequence number: on the committed state, and counting the mempool (what
    /// its next event must use).
    pub fn next_seq(&self, key: &PublicKey) -> (u64, u64) {
        let inner = self.inner.lock().expect("chain lock");
        (inner.committed.next_seq(key), inner.pending.next_seq(key))
    }

    /// Subscribe to committed heights.
    pub fn subscribe(&self) -> broadcast::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Admits an event whose signature the caller has verified: checks it against the
    /// committed state plus the mempool and queues it. `waiter`, if given, learns its finality.
    pub fn submit_verified(
        &self,
        ev: SignedEvent,
        waiter: Option<oneshot::Sender<Finality>>,
    ) -> Result<EventId, SubmitError> {
        let bytes = self
            .gossip
            .lock()
            .expect("gossip lock")
            .is_some()
            .then(|| ev.to_bytes());
        let id = self.submit_verified_at(ev, waiter, now())?;
        if let Some(bytes) = bytes
            && let Some(tx) = self.gossip.lock().expect("gossip lock").as_ref()
            && tx.try_send(bytes).is_err()
        {
            // The event is admitted here and will be proposed by this node in its turn;
            // gossip only makes it reach the other proposers sooner.
            tracing::debug!("event gossip queue full");
        }
        Ok(id)
    }

    /// Whether `ev` is in the mempool with this very signature (so this node verified it).
    pub fn knows(&self, ev: &SignedEvent) -> bool {
        self.inner.lock().expect("chain lock").ids.get(&ev.id()) == Some(&ev.signature)
    }

    /// Marks consensus as halted (a decided block could not be written).
    pub fn set_halted(&self) {
        self.halted.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether consensus halted on this node.
    pub fn is_halted(&self) -> bool {
        self.halted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// From now on, report the node stalled when it commits nothing for `after` (a replicated
    /// node: its validators propose an empty block at least every idle interval).
    pub fn set_stall_after(&self, after: Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX).max(1);
        self.stall_after_ms
            .store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Milliseconds since this node last committed a block (or started), and whether that is
    /// longer than the stall threshold: the chain is not moving here.
    pub fn stalled(&self) -> (u64, bool) {
        let since = now().0.saturating_sub(
            self.last_commit_ms
                .load(std::sync::atomic::Ordering::SeqCst),
        );
        let after = self
            .stall_after_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        (since, after > 0 && since > after)
    }

    /// Gossip every event admitted through [`Chain::submit_verified`] to `tx` (BFT mode).
    pub fn set_event_gossip(&self, tx: tokio::sync::mpsc::Sender<Vec<u8>>) {
        *self.gossip.lock().expect("gossip lock") = Some(tx);
    }

    /// [`Chain::submit_verified`] with the time to check the event's deadline against (the
    /// node's clock; a simulation's virtual clock).
    pub fn submit_verified_at(
        &self,
        ev: SignedEvent,
        waiter: Option<oneshot::Sender<Finality>>,
        time: Timestamp,
    ) -> Result<EventId, SubmitError> {
        let id = ev.id();
        let mut inner = self.inner.lock().expect("chain lock");
        if inner.ids.contains_key(&id) {
            return Err(SubmitError::Duplicate(id));
        }
        if inner.mempool.len() >= self.policy.mempool_size {
            return Err(SubmitError::MempoolFull(self.policy.mempool_size));
        }
        inner
            .pending
            .admit(&ev, time, SignatureCheck::AlreadyVerified)?;
        inner.ids.insert(id, ev.signature);
        inner.mempool.push_back(ev);
        if let Some(w) = waiter {
            inner.waiters.entry(id).or_default().push(w);
        }
        self.metrics
            .mempool
            .set(i64::try_from(inner.mempool.len()).unwrap_or(i64::MAX));
        Ok(id)
    }

    /// Makes a durably stored block visible: the new committed state, waiters told, the
    /// block's events out of the mempool.
    ///
    /// The scratch state (committed state plus every mempool event, where new submissions are
    /// checked) is re-derived only when the block holds an event this node had not admitted
    /// itself (or every [`PENDING_REBUILD_EVERY`] heights). Otherwise it already holds the
    /// effect of every event of the block, and keeping
    /// it saves re-admitting the whole mempool after every block (O(mempool) per block). It may
    /// then admit an event that the new committed state refuses (one that expired meanwhile,
    /// say); that is safe because every proposal re-checks its events on the committed state
    /// ([`Chain::propose`] drops what no longer passes and tells its waiters).
    fn publish(&self, stored: CommittedBlock, state: State) {
        let height = stored.block.header.height;
        let mut inner = self.inner.lock().expect("chain lock");
        // Under the chain lock: a reader never sees a state without its set changes.
        self.set_changes
            .lock()
            .expect("set changes lock")
            .extend(set_changes_in(&stored));
        // Membership moved (a governance event, or a scheduled set in force from this block):
        // the scratch state's view of who may do what, and of the pending set, is stale.
        let membership_moved = inner.committed.validators_in_force() != state.validators_in_force()
            || stored
                .block
                .events
                .iter()
                .any(|e| matches!(e.event.payload, EventPayload::Governance(_)));
        inner.committed = state;
        let events = &stored.block.events;
        let first_leaf = stored.block.header.log_size - events.len() as u64;
        let mut included = HashSet::with_capacity(events.len());
        let mut all_known = true;
        for (i, (ev, outcome)) in events.iter().zip(&stored.results.outcomes).enumerate() {
            let id = ev.id();
            all_known &= inner.ids.remove(&id) == Some(ev.signature);
            included.insert(id);
            self.metrics.count_outcome(outcome);
            if let Some(ws) = inner.waiters.remove(&id) {
                let location = EventLocation {
                    height,
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    leaf: first_leaf + i as u64,
                };
                for w in ws {
                    let _ = w.send(Finality::Final {
                        location,
                        outcome: *outcome,
                    });
                }
            }
        }
        let prefix = inner.mempool.len() >= events.len()
            && inner
                .mempool
                .iter()
                .zip(events)
                .all(|(m, e)| m.signature == e.signature && m.event == e.event);
        if prefix {
            inner.mempool.drain(..events.len());
        } else if !events.is_empty() {
            inner.mempool.retain(|ev| !included.contains(&ev.id()));
        }
        // Every few heights anyway: events that expired while waiting leave the mempool of a
        // node that does not propose (an observer) too. Not while catching up: the blocks are
        // old, their events unknown here, and re-admitting a mempool of live events after each
        // of them made a far-behind node slower than the chain it was chasing.
        let catching_up = self.catching_up.load(std::sync::atomic::Ordering::SeqCst);
        if membership_moved
            || (!catching_up && (!all_known || height.is_multiple_of(PENDING_REBUILD_EVERY)))
        {
            self.rebuild_pending(&mut inner);
        }
        self.metrics
            .mempool
            .set(i64::try_from(inner.mempool.len()).unwrap_or(i64::MAX));
        drop(inner);
        self.last_commit_ms
            .store(now().0, std::sync::atomic::Ordering::SeqCst);
        self.metrics
            .height
            .set(i64::try_from(height).unwrap_or(i64::MAX));
        self.metrics.events.inc_by(events.len() as u64);
        let _ = self.commits.send(height);
    }

    /// Drops events a proposal left out because they no longer pass on the committed state
    /// (they expired while waiting), telling their waiters.
    fn drop_rejected(&self, rejected: &[(EventId, RejectReason)]) {
        if rejected.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().expect("chain lock");
        let gone: HashSet<EventId> = rejected.iter().map(|(id, _)| *id).collect();
        inner.mempool.retain(|ev| !gone.contains(&ev.id()));
        for (id, reason) in rejected {
            inner.ids.remove(id);
            if let Some(ws) = inner.waiters.remove(id) {
                for w in ws {
                    let _ = w.send(Finality::Dropped(reason.clone()));
                }
            }
        }
        self.rebuild_pending(&mut inner);
    }

    /// Tells the chain whether its node is catching up (committing old, certified blocks from
    /// a peer). While it is, the scratch state is not re-derived after each block; it is once,
    /// when catching up ends.
    pub fn set_catching_up(&self, on: bool) {
        let was = self
            .catching_up
            .swap(on, std::sync::atomic::Ordering::SeqCst);
        if was && !on {
            let mut inner = self.inner.lock().expect("chain lock");
            self.rebuild_pending(&mut inner);
        }
    }

    /// Whether the node is committing old, certified blocks from a peer (not caught up).
    pub fn is_catching_up(&self) -> bool {
        self.catching_up.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many times the scratch state was re-derived from the whole mempool.
    pub fn pending_rebuilds(&self) -> u64 {
        self.rebuilds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Re-derives the scratch state from the committed state and the mempool, dropping (and
    /// telling the waiters of) events that no longer pass.
    fn rebuild_pending(&self, inner: &mut Inner) {
        self.rebuilds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut pending = inner.committed.clone();
        let rest: Vec<SignedEvent> = inner.mempool.drain(..).collect();
        // Checked as if in a block at the committed block's time: deterministic, and events
        // that expire later are dropped when a block is built.
        let t = pending.last_time();
        for ev in rest {
            match pending.admit(&ev, t, SignatureCheck::AlreadyVerified) {
                Ok(_) => inner.mempool.push_back(ev),
                Err(reason) => {
                    let id = ev.id();
                    inner.ids.remove(&id);
                    if let Some(ws) = inner.waiters.remove(&id) {
                        for w in ws {
                            let _ = w.send(Finality::Dropped(reason.clone()));
                        }
                    }
                }
            }
        }
        inner.pending = pending;
    }

    /// The committed height.
    pub fn height(&self) -> u64 {
        self.inner.lock().expect("chain lock").committed.height()
    }

    /// Step 1 of 3, propose: builds a block for the next height from the mempool, proposed by
    /// `proposer`, at `now` (or just after the previous block). `None` when the mempool is
    /// empty and `allow_empty` is false. The mempool is not drained: events leave it when a
    /// block that holds them is committed, whoever proposed it; events that no longer pass
    /// (expired while waiting) are dropped and their waiters told.
    pub fn propose(&self, proposer: PublicKey, now: Timestamp, allow_empty: bool) -> Option<Block> {
        let (base, batch) = {
            let inner = self.inner.lock().expect("chain lock");
            if inner.mempool.is_empty() && !allow_empty {
                return None;
            }
            let max = inner.committed.limits().max_block_events as usize;
            let batch: Vec<SignedEvent> = inner.mempool.iter().take(max).cloned().collect();
            (inner.committed.clone(), batch)
        };
        let time = Timestamp(now.0.max(base.last_time().0 + 1));
        match base.build_block_with(proposer, time, batch, SignatureCheck::AlreadyVerified) {
            Ok(built) => {
                self.drop_rejected(&built.rejected);
                self.remember(&built.block, built.executed);
                Some(built.block)
            }
            Err(e) => {
                tracing::error!(error = %e, "building a proposal failed");
                None
            }
        }
    }

    /// Step 2 of 3, validate: re-executes a proposed block on the committed state before this
    /// node votes for it: its body against its header, every event signature (except those of
    /// events this node verified on admission, matched by id and signature), every rule, every
    /// derived header field; and, with `now` (a block to vote on), a time at most
    /// [`MAX_CLOCK_SKEW_MS`] ahead of `now`. A block this node built or validated before is
    /// not executed again.
    pub fn validate(&self, block: &Block, now: Option<Timestamp>) -> Result<(), ValidateError> {
        if let Some(now) = now
            && block.header.time.0 > now.0.saturating_add(MAX_CLOCK_SKEW_MS)
        {
            return Err(ValidateError::TimeAhead {
                time: block.header.time.0,
                now: now.0,
            });
        }
        // The body must be the one the header commits to before anything is looked up by
        // the block hash.
        block.check_body()?;
        if self
            .executed
            .lock()
            .expect("executed lock")
            .contains_key(&block.header.hash())
        {
            return Ok(());
        }
        let executed = self.execute(block)?;
        self.remember(block, executed);
        Ok(())
    }

    /// Re-executes a block whose body matches its header on the committed state: signatures
    /// of the events this node did not verify on admission (matched by id and signature),
    /// then every rule and derived header field.
    fn execute(&self, block: &Block) -> Result<Executed, ValidateError> {
        let (base, unknown) = {
            let inner = self.inner.lock().expect("chain lock");
            let unknown: Vec<usize> = block
                .events
                .iter()
                .enumerate()
                .filter(|(_, ev)| inner.ids.get(&ev.id()) != Some(&ev.signature))
                .map(|(i, _)| i)
                .collect();
            (inner.committed.clone(), unknown)
        };
        // One batch for the events this node has not verified itself.
        let evs: Vec<&SignedEvent> = unknown.iter().map(|&i| &block.events[i]).collect();
        if let Some(bad) = crate::verify::first_bad(&evs) {
            let index = unknown[bad];
            let error = block.events[index]
                .verify_signature()
                .expect_err("the batch check and the single check agree (ZIP-215)");
            return Err(ValidateError::Signature { index, error });
        }
        Ok(base.execute_block(block, SignatureCheck::AlreadyVerified)?)
    }

    fn remember(&self, block: &Block, executed: Executed) {
        let mut ex = self.executed.lock().expect("executed lock");
        if ex.len() >= MAX_EXECUTED {
            ex.clear();
        }
        ex.insert(block.header.hash(), executed);
    }

    /// Step 3 of 3, commit: writes a decided block with its certificate (one flushed batch),
    /// then makes it visible. Checks the certificate against the set in force and re-executes
    /// the block unless this node already did ([`Chain::validate`], without the clock rule: a
    /// decided block is final whatever this node's clock says). Returns the validator set for
    /// the next height.
    pub fn commit(
        &self,
        block: Block,
        certificate: CommitCertificate,
    ) -> Result<ValidatorSet, CommitError> {
        let base = self.inner.lock().expect("chain lock").committed.clone();
        let height = block.header.height;
        if height != base.height() + 1 {
            return Err(CommitError::NotNext {
                height,
                committed: base.height(),
            });
        }
        certificate.verify(&block.header.checkpoint(), base.validators_for(height))?;
        block.check_body().map_err(ValidateError::from)?;
        let cached = self
            .executed
            .lock()
            .expect("executed lock")
            .remove(&block.header.hash());
        let executed = match cached {
            Some(done) => done,
            None => self.execute(&block)?,
        };
        let write = block_write(&block, &executed);
        let state = executed.state;
        let stored = CommittedBlock {
            block,
            results: executed.results,
            certificate,
        };
        self.store.commit_block(&stored, write)?;
        let next = state.validators_for(height + 1).clone();
        self.executed.lock().expect("executed lock").clear();
        self.publish(stored, state);
        // Start-up independent of chain length: every so often, a snapshot of the committed
        // state, encoded and written on a background thread (ADR 0010).
        let _ = crate::snapshot::maybe_snapshot(self);
        Ok(next)
    }

    /// A committed block and its certificate.
    pub fn committed_block(&self, height: u64) -> Option<(Block, CommitCertificate)> {
        match self.store.block(height) {
            Ok(Some(sb)) => Some((sb.block, sb.certificate)),
            _ => None,
        }
    }

    /// A receipt for a committed event: its block's header, results, certificate and the
    /// inclusion proof in that block's log.
    pub fn receipt(&self, id: &EventId) -> Result<Option<Receipt>, StoreError> {
        let Some(loc) = self.store.event(id)? else {
            return Ok(None);
        };
        // The store holds a block a moment before the committed state moves to it (write,
        // then publish): an event is final to readers only once the state says so, so that a
        // client told "final" sees the same height in every other read.
        if loc.height > self.height() {
            return Ok(None);
        }
        let sb = self
            .store
            .block(loc.height)?
            .ok_or(StoreError::CorruptBlock {
                height: loc.height,
                why: "indexed but missing".into(),
            })?;
        let event = sb.block.events[loc.index as usize].clone();
        let proof = twinledger_core::merkle::inclusion_proof::<Blake3Tree>(
            &self.store,
            loc.leaf,
            sb.block.header.log_size,
        )
        .map_err(|e| StoreError::Corrupt {
            what: "event log nodes",
            why: e.to_string(),
        })?;
        Ok(Some(Receipt {
            event,
            index: loc.index,
            leaf_index: loc.leaf,
            inclusion_proof: proof.into_iter().map(twinledger_core::Hash).collect(),
            header: sb.block.header,
            results: sb.results,
            certificate: sb.certificate,
        }))
    }

    /// The validator set of the genesis (what receipts are checked against until governance
    /// changes it).
    pub fn validators(&self) -> &ValidatorSet {
        &self.genesis.validators
    }

    /// The applied validator-set changes, `(height, governance event id)` in height order
    /// (PROTOCOL §9.3): their receipts ([`Chain::receipt`]) are the chain of changes.
    pub fn validator_set_changes(&self) -> Vec<(u64, EventId)> {
        self.set_changes.lock().expect("set changes lock").clone()
    }
}

/// Who an event concerns, for the indexes: the patient, and the author with its organisation
/// if the author is an actor.
fn concerned(
    state: &State,
    ev: &SignedEvent,
) -> (Option<PublicKey>, Option<(PublicKey, PublicKey)>) {
    let author = ev.event.author;
    let actor = state.actor(&author).map(|a| (author, a.organisation));
    (state.patient_concerned(ev), actor)
}

/// Everything the store records for a block besides the block itself: what executing it
/// derived (event ids, log nodes), plus the node's own indexes.
fn block_write(block: &Block, executed: &Executed) -> BlockWrite {
    let after = &executed.state;
    let first = block.header.log_size - block.events.len() as u64;
    let mut w = BlockWrite {
        nodes: executed.log_nodes.clone(),
        ..BlockWrite::default()
    };
    for (i, (ev, id)) in block.events.iter().zip(&executed.ids).enumerate() {
        let (leaf, id) = (first + i as u64, *id);
        w.events.push((
            id,
            EventLocation {
                height: block.header.height,
                index: u32::try_from(i).unwrap_or(u32::MAX),
                leaf,
            },
        ));
        // Index with the state after the block so that enrolments in this block are known.
        let (patient, actor) = concerned(after, ev);
        if let Some(p) = patient {
            w.index.push((Index::Patient, p, leaf, id));
        }
        if let Some((a, org)) = actor {
            w.index.push((Index::Actor, a, leaf, id));
            w.index.push((Index::Organisation, org, leaf, id));
        }
        // Indexed under the twin id bound to the author's organisation (PROTOCOL §5.6).
        // A sealed version (TwinSeal, 2.4) is a twin anchor extended: indexed alike.
        match (&ev.event.payload, actor) {
            (EventPayload::TwinAnchor(t), Some((_, org))) => {
                w.twins.push((t.twin_id(&org), t.version, id));
            }
            (EventPayload::TwinSeal(t), Some((_, org))) => {
                w.twins.push((t.anchor().twin_id(&org), t.version, id));
            }
            _ => {}
        }
    }
    w
}
