//! The consensus engine: Malachite's Tendermint driver (`arc-malachitebft-core-driver`, the
//! algorithm of Buchman, Kwon, Milosevic 2018 as a pure state machine) wrapped with what the
//! driver leaves to its host: signing (after a durable signing record), checking every incoming
//! signature, holding block bodies, re-executing proposed blocks, building commit certificates,
//! buffering messages for the next heights, pushing decisions to peers that are behind,
//! rebroadcasting, collecting double-sign evidence, and logging every driver input to the
//! consensus write-ahead log ([`super::wal`]) so that a restarted validator replays its height
//! through this same input path and comes back locked exactly as before.
//!
//! The engine performs no I/O and reads no clock: time comes in with each call, timers go out
//! as [`Effect::Schedule`], messages go out as [`Effect::Broadcast`], and everything touching
//! the ledger or the disk goes through the [`App`] trait. That is what lets
//! `tests/tests/cluster.rs` run many validators in one thread under a seeded, replayable
//! schedule of drops, delays, reorders, crashes and Byzantine peers.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use malachitebft_core_driver::{Driver, Input, Output, ThresholdParams};
use malachitebft_core_types::{
    LinearTimeouts, Round, SignedMessage, Timeout, TimeoutKind, Validity,
};
use serde::{Deserialize, Serialize};
use twinledger_core::consensus::{self as tc, DoubleSign, VoteKind};
use twinledger_core::{
    Block, BodyMismatch, ChainId, Checkpoint, CommitCertificate, CommitSig, Keypair, PublicKey,
    ValidatorSet,
};

use super::context::{Addr, BlockId, Ctx, Height, Proposal, Validators, Vote};
use super::wal::{TimeoutStep, Wal, WalEntry};
use crate::chain::{CommitError, ValidateError};

/// Most messages held for the next height from one validator (a peer ahead of us sends its
/// votes for the next height before we have committed this one). They are verified against the
/// next height's validator set before they are held; beyond the quota they are dropped, and the
/// decision push and sync recover.
pub const MAX_FUTURE_PER_VALIDATOR: usize = 32;
/// Of those, at most this many proposals (each carries a whole block).
pub const MAX_FUTURE_PROPOSALS_PER_VALIDATOR: usize = 2;
/// Most candidate blocks held for one height. At most one proposal per round is accepted (from
/// that round's proposer); when full, blocks of past rounds that are neither locked nor valid
/// are dropped first.
pub const MAX_CANDIDATE_BLOCKS: usize = 64;
/// Least time between two `Status` announcements made because peers are further ahead (ms).
pub const STATUS_INTERVAL_MS: u64 = 1000;
/// Votes for rounds further ahead of ours than this are refused (each round held costs memory).
pub const MAX_ROUNDS_AHEAD: u32 = 64;

/// A message between validators (the payload of consensus gossip).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Msg {
    /// A signed proposal and the block it names.
    Proposal {
        /// The signed proposal.
        proposal: tc::SignedProposal,
        /// The block (its checkpoint must equal the proposal's value).
        block: Block,
    },
    /// A signed vote.
    Vote(tc::SignedVote),
    /// "I am deciding this height": peers that are past it answer with its [`Msg::Decision`].
    /// Sent when a node makes no progress for a while and after each height it catches up.
    Status {
        /// The sender's current (undecided) height.
        height: u64,
    },
    /// A committed block with its certificate, for validators that missed the decision.
    Decision {
        /// The block.
        block: Block,
        /// Its commit certificate.
        certificate: CommitCertificate,
    },
}

impl Msg {
    /// The height the message is about.
    pub fn height(&self) -> u64 {
        match self {
            Msg::Proposal { proposal, .. } => proposal.proposal.height,
            Msg::Vote(v) => v.vote.height,
            Msg::Decision { block, .. } => block.header.height,
            Msg::Status { height } => *height,
        }
    }
}

/// A signing slot: what one validator may sign at most one value for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// A proposal at (height, round).
    Proposal(u64, u32),
    /// A vote at (height, round, kind).
    Vote(u64, u32, VoteKind),
}

/// The signing record refused: this validator already signed another value in this slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to sign {slot:?}: another value was signed in this slot before")]
pub struct AlreadySigned {
    /// The slot.
    pub slot: Slot,
}

/// What the engine needs from the ledger and the disk.
pub trait App {
    /// A block for `height` on the committed tip, or `None` to wait (nothing to propose yet and
    /// the idle interval has not passed). `now` is ms since the epoch.
    fn build_block(&mut self, height: u64, now: u64) -> Option<Block>;
    /// Re-executes `block` on the committed tip: its body against its header, every event,
    /// every derived header field, and, when `now` is given (a block to vote on, not one that
    /// already carries a certificate), a block time not too far ahead of `now`. `Err` names the
    /// first problem.
    fn validate_block(&mut self, block: &Block, now: Option<u64>) -> Result<(), ValidateError>;
    /// The validator set in force at `height`, if the committed state already fixes it (it
    /// does for the next height: set changes take effect two heights after their block).
    fn validators_for(&self, height: u64) -> Option<ValidatorSet>;
    /// Makes a decided block durable and visible; returns the validator set for the next
    /// height. An error halts the engine (it never votes on top of an unwritten block).
    fn commit(
        &mut self,
        block: Block,
        certificate: CommitCertificate,
    ) -> Result<ValidatorSet, CommitError>;
    /// Durably records that this validator signs `value` in `slot`, before it signs. Refuses
    /// if another value was recorded for the slot (also across restarts).
    fn record_signature(
        &mut self,
        slot: Slot,
        value: Option<Checkpoint>,
    ) -> Result<(), AlreadySigned>;
    /// A committed block with its certificate (to help a peer that is behind).
    fn committed(&self, height: u64) -> Option<(Block, CommitCertificate)>;
}

/// What the engine asks the runtime to do.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Send to every peer.
    Broadcast(Msg),
    /// Call [`Engine::timeout`] with these arguments after `after`.
    Schedule {
        /// Height the timeout belongs to.
        height: u64,
        /// The timeout.
        timeout: Timeout,
        /// Delay.
        after: Duration,
    },
    /// A height was committed (durably, through [`App::commit`]).
    Committed(u64),
    /// A validator double-signed; the runtime records it on chain.
    Evidence(DoubleSign),
    /// A peer proved (with a commit certificate that verifies) that `height` is decided: this
    /// node is behind and should fetch the blocks it misses by block sync. Only certified
    /// claims produce this, so an unsigned `Status` cannot steer sync.
    SyncTarget(u64),
    /// The engine stopped: committing or logging failed. The runtime must stop the node.
    Halted(String),
}

/// Tunables (from the node configuration).
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Tendermint step timeouts.
    pub timeouts: LinearTimeouts,
    /// Resend our last proposal and votes of the current round if the height has not moved
    /// for this long (recovers from lost messages).
    pub rebroadcast: Duration,
    /// Least time between two pushes of one committed height to peers that are behind.
    pub decision_push: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            // Malachite's defaults: generous step timeouts cost nothing on the happy path
            // (steps advance on quorums, not timers) and avoid failed rounds under load.
            timeouts: LinearTimeouts {
                propose: Duration::from_millis(3000),
                propose_delta: Duration::from_millis(500),
                prevote: Duration::from_millis(1000),
                prevote_delta: Duration::from_millis(500),
                precommit: Duration::from_millis(1000),
                precommit_delta: Duration::from_millis(500),
                rebroadcast: Duration::from_secs(5),
                max_timeout: Duration::from_secs(30),
            },
            rebroadcast: Duration::from_millis(2000),
            decision_push: Duration::from_millis(1000),
        }
    }
}

/// Why an incoming message was not used (for logs and metrics; the message changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Signature, membership, chain or form.
    #[error(transparent)]
    Invalid(#[from] tc::ConsensusError),
    /// The block sent with a proposal is not the one it names.
    #[error("the block sent with the proposal does not match the proposal's checkpoint")]
    BlockMismatch,
    /// A block body that is not the one its header commits to.
    #[error("block body: {0}")]
    Body(#[from] BodyMismatch),
    /// A second, different proposal for a round that already has one: the proposer equivocated
    /// (the first one stands).
    #[error("a different proposal for round {0} was already accepted from its proposer")]
    ConflictingProposal(u32),
    /// The candidate blocks of this height fill the table and none can be dropped.
    #[error("{0} candidate blocks are held for this height already; proposal dropped")]
    CandidatesFull(usize),
    /// Over the per-validator quota of messages held for the next height.
    #[error("validator {0} is over its quota of messages held for the next height")]
    OverQuota(PublicKey),
    /// A decision whose certificate does not verify.
    #[error("decision certificate: {0}")]
    Certificate(String),
    /// Too far ahead, or the buffer is full.
    #[error("message for height {0} is too far ahead; dropped")]
    TooFarAhead(u64),
    /// A vote for a round too far ahead.
    #[error("vote for round {0} is too far ahead of this node's round")]
    RoundTooFarAhead(u32),
    /// Driver refused it.
    #[error("consensus driver: {0}")]
    Driver(String),
}

/// The consensus engine of one validator (or observer: `key` = `None`).
pub struct Engine<A: App> {
    ctx: Ctx,
    key: Option<Keypair>,
    cfg: EngineConfig,
    app: A,
    driver: Driver<Ctx>,
    height: u64,
    set: ValidatorSet,
    /// Candidate blocks of this height, by checkpoint.
    blocks: HashMap<Checkpoint, Block>,
    /// Validation results of candidate blocks.
    validity: HashMap<Checkpoint, bool>,
    /// Our signed messages of this height (to rebroadcast).
    mine: Vec<Msg>,
    /// Signed votes received this height, by (validator, round, kind): the first, and at most
    /// one conflicting one (evidence). Commit certificates are made of these.
    votes: HashMap<(PublicKey, u32, VoteKind), Vec<tc::SignedVote>>,
    /// The proposal accepted for each round of this height (one per round, from its proposer).
    proposals: HashMap<u32, Checkpoint>,
    /// The driver decided this value but the precommits held do not make a certificate yet:
    /// retried as precommits arrive.
    decided: Option<Checkpoint>,
    /// A GetValue not answered yet (height, round).
    pending_value: Option<(u64, Round)>,
    /// Verified messages for the next height, with their signer.
    future: VecDeque<(PublicKey, Msg)>,
    reported: HashSet<(PublicKey, u64, u32, VoteKind)>,
    /// When this node last announced its height because peers were ahead.
    last_status: Option<u64>,
    /// When the last decision was pushed to peers that are behind (one push per interval,
    /// whatever asks for it, so old messages cannot make this node amplify).
    last_push: Option<u64>,
    /// The consensus write-ahead log.
    wal: Box<dyn Wal>,
    /// Replaying the log: inputs are not logged again and own messages are not sent until the
    /// replay ends (then every own message of the height is re-sent).
    replaying: bool,
    /// Own messages met while replaying (re-sent when the replay ends).
    replayed_own: Vec<Msg>,
    last_progress: u64,
    /// Rebroadcasts since the last progress.
    stalls: u64,
    halted: bool,
}

impl<A: App> std::fmt::Debug for Engine<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("height", &self.height)
            .field("round", &self.driver.round())
            .finish_non_exhaustive()
    }
}

impl<A: App> Engine<A> {
    /// An engine at `height` (the committed tip + 1) with the set in force there. Call
    /// [`Engine::start`] to begin.
    pub fn new(
        chain_id: ChainId,
        key: Option<Keypair>,
        cfg: EngineConfig,
        app: A,
        wal: Box<dyn Wal>,
        height: u64,
        set: ValidatorSet,
    ) -> Self {
        let ctx = Ctx { chain_id };
        // An observer drives the same state machine under an address that is in no set: it
        // never proposes and its votes are never emitted (see `sign_and_send`).
        let address = Addr(key.as_ref().map_or(
            PublicKey::from_ed25519_bytes(&OBSERVER).expect("observer placeholder"),
            |k| k.public(),
        ));
        let driver = Driver::new(
            ctx,
            Height(height),
            Validators::new(&set),
            address,
            ThresholdParams::default(),
        );
        Self {
            ctx,
            key,
            cfg,
            app,
            driver,
            height,
            set,
            blocks: HashMap::new(),
            validity: HashMap::new(),
            mine: Vec::new(),
            votes: HashMap::new(),
            proposals: HashMap::new(),
            decided: None,
            pending_value: None,
            future: VecDeque::new(),
            reported: HashSet::new(),
            last_push: None,
            last_status: None,
            wal,
            replaying: false,
            replayed_own: Vec::new(),
            last_progress: 0,
            stalls: 0,
            halted: false,
        }
    }

    /// The height being decided.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The current round.
    pub fn round(&self) -> u32 {
        self.driver.round().as_u32().unwrap_or(0)
    }

    /// Whether committing failed (the engine does nothing more).
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// Messages held for the next height (bounded per validator).
    pub fn buffered(&self) -> usize {
        self.future.len()
    }

    /// The app (for tests and the runtime).
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The app, mutably.
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// Starts the current height: round 0, then the replay of the write-ahead log if it holds
    /// this height (a restart mid-height), after which every message this validator signed at
    /// this height is sent again; otherwise the log is cut for this height.
    pub fn start(&mut self, now: u64) -> Vec<Effect> {
        self.last_progress = now;
        let mut fx = Vec::new();
        let entries = match self.wal.entries() {
            Ok(e) => e,
            Err(e) => {
                self.halt(format!("reading the consensus WAL: {e}"), &mut fx);
                return fx;
            }
        };
        self.enter_round(Round::new(0), now, &mut fx);
        if entries.first() == Some(&WalEntry::Height(self.height)) {
            let n = entries.len() - 1;
            self.replay(entries, now, &mut fx);
            tracing::info!(
                height = self.height,
                round = self.round(),
                entries = n,
                "consensus WAL replayed"
            );
        } else if let Err(e) = self.wal.start_height(self.height) {
            self.halt(format!("writing the consensus WAL: {e}"), &mut fx);
            return fx;
        }
        self.drain_future(now, &mut fx);
        // Announce the height: peers that are past it answer with a certified decision, the
        // sync target of a node that was down.
        self.last_status = Some(now);
        fx.push(Effect::Broadcast(Msg::Status {
            height: self.height,
        }));
        fx
    }

    /// Feeds the logged inputs of this height back through the normal input path.
    fn replay(&mut self, entries: Vec<WalEntry>, now: u64, fx: &mut Vec<Effect>) {
        let start = self.height;
        self.replaying = true;
        let me = self.key.as_ref().map(|k| k.public());
        for entry in entries.into_iter().skip(1) {
            if self.halted || self.height != start {
                break;
            }
            match entry {
                WalEntry::Height(_) => {}
                WalEntry::Vote(v) if Some(v.validator) == me => self.replay_own_vote(v, now, fx),
                WalEntry::Vote(v) => {
                    if let Err(e) = self.on_vote(v, now, fx) {
                        tracing::warn!(error = %e, "logged vote refused on replay");
                    }
                }
                WalEntry::Proposal {
                    proposal,
                    block,
                    valid,
                } if Some(proposal.proposer) == me => {
                    self.replay_own_proposal(proposal, block, valid, now, fx)
                }
                WalEntry::Proposal {
                    proposal,
                    block,
                    valid,
                } => {
                    if let Err(e) = self.accept_proposal(proposal, block, Some(valid), now, fx) {
                        tracing::warn!(error = %e, "logged proposal refused on replay");
                    }
                }
                WalEntry::Timeout { round, step } => {
                    let kind = match step {
                        TimeoutStep::Propose => TimeoutKind::Propose,
                        TimeoutStep::Prevote => TimeoutKind::Prevote,
                        TimeoutStep::Precommit => TimeoutKind::Precommit,
                    };
                    self.feed(
                        Input::TimeoutElapsed(Timeout::new(Round::new(round), kind)),
                        now,
                        fx,
                    );
                }
            }
        }
        self.replaying = false;
        let own = std::mem::take(&mut self.replayed_own);
        if self.height == start {
            // Re-send exactly what was signed: peers may never have received it.
            fx.extend(own.into_iter().map(Effect::Broadcast));
        }
    }

    /// An own vote from the log. Usually the driver has just produced it again from the same
    /// inputs (then it is already held); if not, it is fed as the input it was, provided the
    /// signing record agrees that this is what was signed.
    fn replay_own_vote(&mut self, v: tc::SignedVote, now: u64, fx: &mut Vec<Effect>) {
        let held = self
            .votes
            .get(&(v.validator, v.vote.round, v.vote.kind))
            .is_some_and(|h| h.iter().any(|x| x.vote.value == v.vote.value));
        if held {
            return;
        }
        let slot = Slot::Vote(v.vote.height, v.vote.round, v.vote.kind);
        if let Err(e) = self.app.record_signature(slot, v.vote.value) {
            tracing::warn!(error = %e, "logged own vote disagrees with the signing record; skipped");
            return;
        }
        self.votes
            .entry((v.validator, v.vote.round, v.vote.kind))
            .or_default()
            .push(v);
        let msg = Msg::Vote(v);
        self.mine.push(msg.clone());
        self.replayed_own.push(msg);
        let signed = SignedMessage::new(Vote::from_signed(&v), v.signature);
        self.feed(Input::Vote(signed), now, fx);
    }

    /// An own proposal from the log: the value is given to the driver again (it then proposes
    /// it again, signing the same bytes), or, if the driver is past asking, fed as the input
    /// it was.
    fn replay_own_proposal(
        &mut self,
        p: tc::SignedProposal,
        block: Block,
        valid: bool,
        now: u64,
        fx: &mut Vec<Effect>,
    ) {
        let (round, cp) = (p.proposal.round, p.proposal.value);
        if self.proposals.get(&round) == Some(&cp) {
            return;
        }
        self.blocks.insert(cp, block);
        self.validity.insert(cp, valid);
        if self.pending_value == Some((self.height, Round::new(round))) {
            self.pending_value = None;
            self.feed(Input::ProposeValue(Round::new(round), BlockId(cp)), now, fx);
            return;
        }
        let slot = Slot::Proposal(p.proposal.height, round);
        if let Err(e) = self.app.record_signature(slot, Some(cp)) {
            tracing::warn!(error = %e, "logged own proposal disagrees with the signing record; skipped");
            return;
        }
        self.proposals.insert(round, cp);
        if let Some(block) = self.blocks.get(&cp) {
            let msg = Msg::Proposal {
                proposal: p,
                block: block.clone(),
            };
            self.mine.push(msg.clone());
            self.replayed_own.push(msg);
        }
        let signed = SignedMessage::new(Proposal::from_signed(&p), p.signature);
        self.feed(Input::Proposal(signed, Validity::from_bool(valid)), now, fx);
    }

    /// A message from a peer.
    pub fn message(&mut self, msg: Msg, now: u64) -> (Vec<Effect>, Result<(), Refused>) {
        let mut fx = Vec::new();
        let r = self.on_message(msg, now, &mut fx);
        (fx, r)
    }

    /// A timer set by [`Effect::Schedule`] fired.
    pub fn timeout(&mut self, height: u64, timeout: Timeout, now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.halted || height != self.height {
            return fx;
        }
        let step = match timeout.kind {
            TimeoutKind::Propose => Some(TimeoutStep::Propose),
            TimeoutKind::Prevote => Some(TimeoutStep::Prevote),
            TimeoutKind::Precommit => Some(TimeoutStep::Precommit),
            _ => None,
        };
        if let (Some(step), Some(round)) = (step, timeout.round.as_u32())
            && !self.log(&WalEntry::Timeout { round, step }, &mut fx)
        {
            return fx;
        }
        self.feed(Input::TimeoutElapsed(timeout), now, &mut fx);
        fx
    }

    /// Periodic call: retries a pending block build, rebroadcasts if stuck.
    pub fn tick(&mut self, now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        if self.halted {
            return fx;
        }
        if let Some((h, round)) = self.pending_value
            && h == self.height
        {
            self.try_propose(round, now, &mut fx);
        }
        if now.saturating_sub(self.last_progress) >= ms(self.cfg.rebroadcast) {
            self.last_progress = now;
            self.stalls += 1;
            // Votes and status are small: resend them every time. A proposal carries a whole
            // block: resend it only every third time, so that a slow network is not flooded
            // with copies of the block it is still delivering.
            let with_proposal = self.stalls.is_multiple_of(3);
            fx.extend(
                self.mine
                    .iter()
                    .filter(|m| with_proposal || matches!(m, Msg::Vote(_)))
                    .cloned()
                    .map(Effect::Broadcast),
            );
            fx.push(Effect::Broadcast(Msg::Status {
                height: self.height,
            }));
        }
        fx
    }

    /// Appends `entry` to the WAL (unless replaying it); false if the engine halted.
    fn log(&mut self, entry: &WalEntry, fx: &mut Vec<Effect>) -> bool {
        if self.replaying {
            return true;
        }
        match self.wal.append(entry) {
            Ok(()) => true,
            Err(e) => {
                self.halt(format!("writing the consensus WAL: {e}"), fx);
                false
            }
        }
    }

    /// Appends an own message and makes the log durable (before it is signed on record and
    /// sent); false if the engine halted.
    fn log_own(&mut self, entry: &WalEntry, fx: &mut Vec<Effect>) -> bool {
        if self.replaying {
            return true;
        }
        match self.wal.append(entry).and_then(|()| self.wal.flush()) {
            Ok(()) => true,
            Err(e) => {
                self.halt(format!("writing the consensus WAL: {e}"), fx);
                false
            }
        }
    }

    fn halt(&mut self, why: String, fx: &mut Vec<Effect>) {
        self.halted = true;
        fx.push(Effect::Halted(why));
    }

    fn on_message(&mut self, msg: Msg, now: u64, fx: &mut Vec<Effect>) -> Result<(), Refused> {
        if self.halted {
            return Ok(());
        }
        let h = msg.height();
        if let Msg::Status { height } = msg {
            if height < self.height {
                self.push_latest_decision(now, fx);
            }
            return Ok(());
        }
        if h < self.height {
            // A peer is behind: one push of the latest decision per interval, whatever the
            // number of old messages (no amplification). One height behind, that is the block
            // it misses; further behind, its certificate is the peer's sync target.
            self.push_latest_decision(now, fx);
            return Ok(());
        }
        if h > self.height {
            return self.on_future(msg, h, now, fx);
        }
        match msg {
            Msg::Vote(v) => self.on_vote(v, now, fx),
            Msg::Proposal { proposal, block } => {
                self.accept_proposal(proposal, block, None, now, fx)
            }
            Msg::Decision { block, certificate } => self.on_decision(block, certificate, now, fx),
            Msg::Status { .. } => Ok(()),
        }
    }

    /// A message for a later height: a certified decision is a sync target; a vote or proposal
    /// for the next height is verified against that height's set and held, within the
    /// signer's quota; anything further ahead is dropped.
    fn on_future(
        &mut self,
        msg: Msg,
        h: u64,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Refused> {
        let set = self.app.validators_for(h);
        if let Msg::Decision { block, certificate } = &msg {
            // The set at `h` may not be known yet; the current one certifies the common case.
            let set = set.as_ref().unwrap_or(&self.set);
            certificate
                .verify(&block.header.checkpoint(), set)
                .map_err(|e| Refused::Certificate(e.to_string()))?;
            fx.push(Effect::SyncTarget(h));
            return Ok(());
        }
        if h > self.height + 1 {
            // Peers are further ahead: say where we are (at most once a second), so that one
            // of them answers with a certified decision to sync from. The message itself is
            // not used.
            if self
                .last_status
                .is_none_or(|t| now.saturating_sub(t) >= STATUS_INTERVAL_MS)
            {
                self.last_status = Some(now);
                fx.push(Effect::Broadcast(Msg::Status {
                    height: self.height,
                }));
            }
            return Err(Refused::TooFarAhead(h));
        }
        let Some(set) = set else {
            return Err(Refused::TooFarAhead(h));
        };
        let signer = match &msg {
            Msg::Vote(v) => {
                v.verify(&self.ctx.chain_id, &set)?;
                v.validator
            }
            Msg::Proposal { proposal, block } => {
                proposal.verify(&self.ctx.chain_id, &set)?;
                if block.header.checkpoint() != proposal.proposal.value {
                    return Err(Refused::BlockMismatch);
                }
                block.check_body()?;
                proposal.proposer
            }
            Msg::Decision { .. } | Msg::Status { .. } => return Ok(()),
        };
        let (count, proposals) = self
            .future
            .iter()
            .filter(|(k, _)| *k == signer)
            .fold((0, 0), |(c, p), (_, m)| {
                (c + 1, p + usize::from(matches!(m, Msg::Proposal { .. })))
            });
        let is_proposal = matches!(msg, Msg::Proposal { .. });
        if count >= MAX_FUTURE_PER_VALIDATOR
            || (is_proposal && proposals >= MAX_FUTURE_PROPOSALS_PER_VALIDATOR)
        {
            return Err(Refused::OverQuota(signer));
        }
        self.future.push_back((signer, msg));
        Ok(())
    }

    fn on_vote(
        &mut self,
        v: tc::SignedVote,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Refused> {
        v.verify(&self.ctx.chain_id, &self.set)?;
        if v.vote.round > self.round().saturating_add(MAX_ROUNDS_AHEAD) {
            return Err(Refused::RoundTooFarAhead(v.vote.round));
        }
        let held = self
            .votes
            .entry((v.validator, v.vote.round, v.vote.kind))
            .or_default();
        if held.iter().any(|h| h.vote.value == v.vote.value) {
            return Ok(()); // a duplicate
        }
        if held.len() >= 2 {
            return Ok(()); // already holding evidence against this validator for this slot
        }
        held.push(v);
        if !self.log(&WalEntry::Vote(v), fx) {
            return Ok(());
        }
        let signed = SignedMessage::new(Vote::from_signed(&v), v.signature);
        self.feed(Input::Vote(signed), now, fx);
        self.collect_evidence(fx);
        self.retry_decision(now, fx);
        Ok(())
    }

    /// A proposal with its block. `known`: the validity logged for it (replay); otherwise the
    /// block is re-executed here.
    fn accept_proposal(
        &mut self,
        p: tc::SignedProposal,
        block: Block,
        known: Option<bool>,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Refused> {
        p.verify(&self.ctx.chain_id, &self.set)?;
        let (round, cp) = (p.proposal.round, p.proposal.value);
        if round > self.round().saturating_add(MAX_ROUNDS_AHEAD) {
            return Err(Refused::RoundTooFarAhead(round));
        }
        if block.header.checkpoint() != cp {
            return Err(Refused::BlockMismatch);
        }
        block.check_body()?;
        match self.proposals.get(&round) {
            Some(c) if *c == cp => return Ok(()), // a duplicate
            Some(_) => return Err(Refused::ConflictingProposal(round)),
            None => {}
        }
        if !self.blocks.contains_key(&cp) {
            self.make_room();
            if self.blocks.len() >= MAX_CANDIDATE_BLOCKS {
                return Err(Refused::CandidatesFull(self.blocks.len()));
            }
        }
        self.proposals.insert(round, cp);
        // Bodies are checked against their headers: every copy of `cp` is the same block.
        self.blocks.entry(cp).or_insert(block);
        let valid = match known {
            Some(v) => {
                self.validity.entry(cp).or_insert(v);
                v
            }
            None => self.check_block(&cp, now),
        };
        if !self.replaying {
            let block = self.blocks.get(&cp).expect("just inserted").clone();
            if !self.log(
                &WalEntry::Proposal {
                    proposal: p,
                    block,
                    valid,
                },
                fx,
            ) {
                return Ok(());
            }
        }
        let signed = SignedMessage::new(Proposal::from_signed(&p), p.signature);
        self.feed(Input::Proposal(signed, Validity::from_bool(valid)), now, fx);
        Ok(())
    }

    /// Drops candidate blocks of past rounds that the driver neither locked nor holds as valid.
    fn make_room(&mut self) {
        if self.blocks.len() < MAX_CANDIDATE_BLOCKS {
            return;
        }
        let rs = self.driver.round_state();
        let mut keep: HashSet<Checkpoint> = [rs.locked.as_ref(), rs.valid.as_ref()]
            .into_iter()
            .flatten()
            .map(|rv| rv.value.0)
            .collect();
        let current = self.round();
        keep.extend(
            self.proposals
                .iter()
                .filter(|(r, _)| **r >= current)
                .map(|(_, cp)| *cp),
        );
        self.blocks.retain(|cp, _| keep.contains(cp));
    }

    fn on_decision(
        &mut self,
        block: Block,
        cert: CommitCertificate,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Refused> {
        let cp = block.header.checkpoint();
        cert.verify(&cp, &self.set)
            .map_err(|e| Refused::Certificate(e.to_string()))?;
        block.check_body()?;
        // More than two thirds of the power precommitted this block: it is decided whatever
        // round we are in. It must still re-execute here before it is written; that check is
        // made on this block itself, never through a verdict cached when voting (the clock
        // rule, for one, applies to voting only).
        if let Err(why) = self.app.validate_block(&block, None) {
            return Err(Refused::Certificate(format!(
                "the certified block does not re-execute on this node's state: {why}"
            )));
        }
        self.blocks.insert(cp, block);
        self.validity.insert(cp, true);
        self.decide(cp, cert, now, fx);
        // Catching up: ask for the next one straight away.
        fx.push(Effect::Broadcast(Msg::Status {
            height: self.height,
        }));
        Ok(())
    }

    /// Validation for voting, cached per block (bodies are checked against their headers
    /// before they are held, so a checkpoint names one body).
    fn check_block(&mut self, cp: &Checkpoint, now: u64) -> bool {
        if let Some(v) = self.validity.get(cp) {
            return *v;
        }
        let Some(block) = self.blocks.get(cp) else {
            return false;
        };
        let events = block.events.len();
        let t0 = std::time::Instant::now();
        let ok = match self.app.validate_block(block, Some(now)) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(height = self.height, %why, "proposed block is invalid");
                false
            }
        };
        tracing::debug!(
            height = self.height,
            round = self.round(),
            events,
            ok,
            ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            "proposal re-executed"
        );
        self.validity.insert(*cp, ok);
        ok
    }

    fn enter_round(&mut self, round: Round, now: u64, fx: &mut Vec<Effect>) {
        let proposer = tc::proposer(&self.set, self.height, round.as_u32().unwrap_or(0));
        self.feed(
            Input::NewRound(Height(self.height), round, Addr(proposer)),
            now,
            fx,
        );
    }

    /// Feeds the driver and acts on its outputs until none are left.
    fn feed(&mut self, input: Input<Ctx>, now: u64, fx: &mut Vec<Effect>) {
        let height_before = self.height;
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            // Decided and moved on (or halted): what is left belongs to the old height.
            if self.halted || self.height != height_before {
                return;
            }
            let outputs = match self.driver.process(input) {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, "driver refused input");
                    continue;
                }
            };
            for out in outputs {
                if self.halted || self.height != height_before {
                    break; // decided and moved on: the rest belongs to the old height
                }
                match out {
                    Output::NewRound(_, round) => {
                        self.last_progress = now;
                        self.stalls = 0;
                        self.mine.clear();
                        let proposer =
                            tc::proposer(&self.set, self.height, round.as_u32().unwrap_or(0));
                        queue.push_back(Input::NewRound(
                            Height(self.height),
                            round,
                            Addr(proposer),
                        ));
                    }
                    Output::GetValue(_, round, _) => {
                        self.pending_value = Some((self.height, round));
                        if let Some(input) = self.build_value(round, now) {
                            queue.push_back(input);
                        }
                    }
                    Output::Propose(p) => {
                        if let Some(input) = self.sign_proposal(p, fx) {
                            queue.push_back(input);
                        }
                    }
                    Output::Vote(v) => {
                        if let Some(input) = self.sign_vote(v, fx) {
                            queue.push_back(input);
                        }
                    }
                    Output::ScheduleTimeout(t) => fx.push(Effect::Schedule {
                        height: self.height,
                        timeout: t,
                        after: self.cfg.timeouts.duration_for(t),
                    }),
                    Output::Decide(round, p) => {
                        let cp = p.value.0;
                        match self
                            .certificate(round.as_u32().unwrap_or(0), &cp)
                            .or_else(|| self.any_certificate(&cp))
                        {
                            Some(cert) => self.decide(cp, cert, now, fx),
                            None => {
                                // The driver counted a quorum the held precommits do not
                                // certify yet: keep the decision and retry as precommits
                                // arrive (a peer's decision push also completes it).
                                tracing::warn!(
                                    height = self.height,
                                    "decided; waiting for the precommits that certify it"
                                );
                                self.decided = Some(cp);
                            }
                        }
                    }
                }
            }
        }
    }

    fn retry_decision(&mut self, now: u64, fx: &mut Vec<Effect>) {
        if let Some(cp) = self.decided
            && let Some(cert) = self.any_certificate(&cp)
        {
            self.decide(cp, cert, now, fx);
        }
    }

    fn try_propose(&mut self, round: Round, now: u64, fx: &mut Vec<Effect>) {
        if let Some(input) = self.build_value(round, now) {
            self.feed(input, now, fx);
        }
    }

    fn build_value(&mut self, round: Round, now: u64) -> Option<Input<Ctx>> {
        self.key.as_ref()?;
        if self.replaying {
            // The logged proposal (if there is one) answers; otherwise the next tick builds.
            return None;
        }
        let block = self.app.build_block(self.height, now)?;
        let cp = block.header.checkpoint();
        self.blocks.insert(cp, block);
        self.validity.insert(cp, true);
        self.pending_value = None;
        Some(Input::ProposeValue(round, BlockId(cp)))
    }

    fn sign_proposal(&mut self, p: Proposal, fx: &mut Vec<Effect>) -> Option<Input<Ctx>> {
        let key = self.key.as_ref()?;
        let body = p.body();
        let signed = body.sign(key);
        let block = self.blocks.get(&body.value)?.clone();
        // Logged and flushed first, then the signing record, then sent.
        if !self.log_own(
            &WalEntry::Proposal {
                proposal: signed,
                block: block.clone(),
                valid: true,
            },
            fx,
        ) {
            return None;
        }
        let slot = Slot::Proposal(body.height, body.round);
        if let Err(e) = self.app.record_signature(slot, Some(body.value)) {
            tracing::warn!(error = %e, "not proposing");
            return None;
        }
        self.proposals.insert(body.round, body.value);
        let msg = Msg::Proposal {
            proposal: signed,
            block,
        };
        self.mine.push(msg.clone());
        if self.replaying {
            self.replayed_own.push(msg);
        } else {
            fx.push(Effect::Broadcast(msg));
        }
        Some(Input::Proposal(
            SignedMessage::new(p, signed.signature),
            Validity::Valid,
        ))
    }

    fn sign_vote(&mut self, v: Vote, fx: &mut Vec<Effect>) -> Option<Input<Ctx>> {
        let key = self.key.as_ref()?;
        // Not a validator at this height: no vote.
        self.set.get(&key.public())?;
        let core = v.to_core(self.ctx.chain_id);
        let signed = core.sign(key);
        // Logged and flushed first, then the signing record, then sent.
        if !self.log_own(&WalEntry::Vote(signed), fx) {
            return None;
        }
        let slot = Slot::Vote(core.height, core.round, core.kind);
        if let Err(e) = self.app.record_signature(slot, core.value) {
            tracing::warn!(error = %e, "not voting");
            return None;
        }
        self.votes
            .entry((signed.validator, core.round, core.kind))
            .or_default()
            .push(signed);
        let msg = Msg::Vote(signed);
        self.mine.push(msg.clone());
        if self.replaying {
            self.replayed_own.push(msg);
        } else {
            fx.push(Effect::Broadcast(msg));
        }
        Some(Input::Vote(SignedMessage::new(v, signed.signature)))
    }

    /// The commit certificate of `round` for `cp`: every precommit for it we hold.
    fn certificate(&self, round: u32, cp: &Checkpoint) -> Option<CommitCertificate> {
        let sigs: Vec<CommitSig> = self
            .votes
            .iter()
            .filter(|((_, r, k), _)| *r == round && *k == VoteKind::Precommit)
            .filter_map(|(_, held)| held.iter().find(|sv| sv.vote.value.as_ref() == Some(cp)))
            .map(|sv| CommitSig {
                validator: sv.validator,
                signature: sv.signature,
            })
            .collect();
        let cert = CommitCertificate::new(round, sigs);
        cert.verify(cp, &self.set).ok().map(|_| cert)
    }

    /// A certificate for `cp` from the precommits of any round.
    fn any_certificate(&self, cp: &Checkpoint) -> Option<CommitCertificate> {
        let rounds: BTreeSet<u32> = self
            .votes
            .iter()
            .filter(|((_, _, k), held)| {
                *k == VoteKind::Precommit && held.iter().any(|v| v.vote.value.as_ref() == Some(cp))
            })
            .map(|((_, r, _), _)| *r)
            .collect();
        rounds.into_iter().find_map(|r| self.certificate(r, cp))
    }

    fn decide(&mut self, cp: Checkpoint, cert: CommitCertificate, now: u64, fx: &mut Vec<Effect>) {
        let Some(block) = self.blocks.remove(&cp) else {
            tracing::error!(height = self.height, "decided a block we do not hold");
            self.decided = Some(cp);
            return;
        };
        self.collect_evidence(fx);
        let (round, events) = (cert.round, block.events.len());
        let t0 = std::time::Instant::now();
        let next_set = match self.app.commit(block, cert) {
            Ok(s) => s,
            Err(e) => {
                self.halt(e.to_string(), fx);
                return;
            }
        };
        tracing::debug!(
            height = self.height,
            round,
            events,
            commit_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            "decided"
        );
        fx.push(Effect::Committed(self.height));
        self.height += 1;
        // The block is durable: only now is the log of its height cut.
        if let Err(e) = self.wal.start_height(self.height) {
            self.halt(format!("writing the consensus WAL: {e}"), fx);
            return;
        }
        self.set = next_set;
        self.driver
            .move_to_height(Height(self.height), Validators::new(&self.set));
        self.blocks.clear();
        self.validity.clear();
        self.mine.clear();
        self.votes.clear();
        self.proposals.clear();
        self.decided = None;
        self.replayed_own.clear();
        self.pending_value = None;
        self.last_progress = now;
        self.enter_round(Round::new(0), now, fx);
        self.drain_future(now, fx);
    }

    fn drain_future(&mut self, now: u64, fx: &mut Vec<Effect>) {
        let start = self.height;
        let pending: Vec<(PublicKey, Msg)> = self.future.drain(..).collect();
        for (signer, msg) in pending {
            if self.height != start {
                // Decided again while draining: keep the rest for the next pass.
                self.future.push_back((signer, msg));
                continue;
            }
            if let Err(e) = self.on_message(msg, now, fx) {
                tracing::debug!(error = %e, "buffered message refused");
            }
        }
        if self.height != start {
            self.drain_future(now, fx);
        }
    }

    /// Sends the last committed block with its certificate, at most once per
    /// `decision_push` interval.
    fn push_latest_decision(&mut self, now: u64, fx: &mut Vec<Effect>) {
        if self
            .last_push
            .is_some_and(|t| now.saturating_sub(t) < ms(self.cfg.decision_push))
        {
            return;
        }
        let h = self.height - 1;
        if h == 0 {
            return;
        }
        if let Some((block, certificate)) = self.app.committed(h) {
            self.last_push = Some(now);
            fx.push(Effect::Broadcast(Msg::Decision { block, certificate }));
        }
    }

    fn collect_evidence(&mut self, fx: &mut Vec<Effect>) {
        let map = self.driver.votes_mut().take_evidence();
        for (_, pairs) in map.iter() {
            for (a, b) in pairs {
                let ev = DoubleSign {
                    first: self.signed_of(a),
                    second: self.signed_of(b),
                }
                .canonical();
                let (h, r, k) = ev.slot();
                if ev.verify(&self.ctx.chain_id, &self.set).is_ok()
                    && self.reported.insert((ev.validator(), h, r, k))
                {
                    tracing::warn!(validator = %ev.validator(), height = h, round = r, ?k, "double sign detected");
                    fx.push(Effect::Evidence(ev));
                }
            }
        }
    }

    fn signed_of(&self, v: &SignedMessage<Ctx, Vote>) -> tc::SignedVote {
        tc::SignedVote {
            vote: v.message.to_core(self.ctx.chain_id),
            validator: v.message.validator.0,
            signature: v.signature,
        }
    }
}

/// A valid curve point that is nobody's key: the observer's placeholder address.
const OBSERVER: [u8; 32] = {
    // The ed25519 base point's encoding.
    let mut b = [0x66u8; 32];
    b[0] = 0x58;
    b
};

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
