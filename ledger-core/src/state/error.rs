//! Typed reasons for refusing an event, a block or a genesis. Each names the problem.

use crate::codec::CodecError;
use crate::hash::{ChainId, EventId, Hash};
use crate::keys::PublicKey;
use crate::time::Timestamp;
use crate::validator::ValidatorSetError;

/// Why an event is refused. A refused event changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// Signed for another chain.
    #[error("wrong chain id: event is for {got}, this chain is {expected}")]
    WrongChain {
        /// This chain.
        expected: ChainId,
        /// The event's.
        got: ChainId,
    },
    /// Signature does not verify.
    #[error("bad signature by {0}")]
    BadSignature(PublicKey),
    /// Sequence number is not the author's next one (a replay, a gap or a reorder).
    #[error("wrong sequence number for {author}: expected {expected}, got {got}")]
    WrongSequence {
        /// The author.
        author: PublicKey,
        /// Their next sequence number.
        expected: u64,
        /// The event's.
        got: u64,
    },
    /// The block's time is past the event's deadline.
    #[error("expired: event deadline {not_after} is before block time {time}")]
    Expired {
        /// The event's deadline.
        not_after: Timestamp,
        /// The block time.
        time: Timestamp,
    },
    /// The deadline is further ahead than the chain allows (bounds how long a signed event can
    /// be held back).
    #[error("event deadline {not_after} is more than {max_ms} ms after block time {time}")]
    DeadlineTooFar {
        /// The event's deadline.
        not_after: Timestamp,
        /// The block time.
        time: Timestamp,
        /// The chain's limit.
        max_ms: u64,
    },
    /// Encoded event over the chain's size limit.
    #[error("event is {size} bytes, over the chain's limit of {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The author is not enrolled in a role that may send this event.
    #[error("unknown author {author} for a {kind} event")]
    UnknownAuthor {
        /// The author.
        author: PublicKey,
        /// The event kind.
        kind: &'static str,
    },
    /// The author (or its organisation) was revoked.
    #[error("author {0} has been revoked")]
    RevokedAuthor(PublicKey),
    /// The author key was rotated away by its patient.
    #[error("key {0} was rotated away and can no longer sign")]
    RetiredKey(PublicKey),
    /// The author may not act for this patient (not the patient, no live delegation covering it).
    #[error("{author} may not act for patient {patient}: {why}")]
    NotAuthorisedForPatient {
        /// The author.
        author: PublicKey,
        /// The patient.
        patient: PublicKey,
        /// Why not.
        why: &'static str,
    },
    /// The author may not do this.
    #[error("{author} may not {what}")]
    NotPermitted {
        /// The author.
        author: PublicKey,
        /// What was attempted.
        what: &'static str,
    },
    /// A referenced grant, delegation or break-glass access does not exist (for this patient).
    #[error("unknown {what} {id}")]
    UnknownReference {
        /// What kind of thing.
        what: &'static str,
        /// Its id.
        id: EventId,
    },
    /// Already revoked / reviewed.
    #[error("{what} {id} was already {done}")]
    AlreadyDone {
        /// What kind of thing.
        what: &'static str,
        /// Its id.
        id: EventId,
        /// Revoked or reviewed.
        done: &'static str,
    },
    /// A grant or delegation with nothing in it.
    #[error("empty {0}: at least one code is required")]
    EmptyScope(&'static str),
    /// A validity window that ends before it starts, or has already ended.
    #[error("invalid validity window: {0}")]
    InvalidWindow(&'static str),
    /// A delegate tried to grant or revoke beyond its delegation.
    #[error("outside the delegation's scope")]
    OutsideDelegation,
    /// The key is already used by another party or for another purpose.
    #[error("key {0} is already in use on this chain")]
    KeyInUse(PublicKey),
    /// The grantee does not exist or was revoked.
    #[error("grantee {0} is not a live actor or organisation")]
    UnknownGrantee(PublicKey),
    /// A per-patient or per-chain limit is reached.
    #[error("limit reached: {what} (max {max})")]
    LimitReached {
        /// Which limit.
        what: &'static str,
        /// Its value.
        max: u64,
    },
    /// A twin anchor that does not follow the twin's history.
    #[error("twin anchor refused: {0}")]
    TwinAnchor(&'static str),
    /// A sealed-replica event (seal, key release, erasure) that breaks its rule (§6.12).
    #[error("sealed twin event refused: {0}")]
    Sealed(&'static str),
    /// A governance event without a valid quorum, or for the wrong governance sequence.
    #[error("governance refused: {0}")]
    Governance(String),
    /// Double-sign evidence that does not verify, is stale, or is already recorded.
    #[error("misbehaviour evidence refused: {0}")]
    Misbehaviour(String),
    /// A malformed field (name, set).
    #[error("invalid field: {0}")]
    InvalidField(String),
}

/// Why a block is refused. A refused block changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Encoding problem.
    #[error("malformed block: {0}")]
    Codec(#[from] CodecError),
    /// Block for another chain.
    #[error("block is for chain {got}, this chain is {expected}")]
    WrongChain {
        /// This chain.
        expected: ChainId,
        /// The block's.
        got: ChainId,
    },
    /// Not the next height.
    #[error("block height {got}, expected {expected}")]
    WrongHeight {
        /// Next height.
        expected: u64,
        /// The block's.
        got: u64,
    },
    /// Previous-hash link broken.
    #[error("block {height}: previous hash {got} does not match {expected}")]
    BrokenLink {
        /// Height.
        height: u64,
        /// Our tip's hash.
        expected: Hash,
        /// The block's.
        got: Hash,
    },
    /// Time not after the previous block's.
    #[error("block {height}: time {time} is not after the previous block's {previous}")]
    TimeNotIncreasing {
        /// Height.
        height: u64,
        /// The block's.
        time: Timestamp,
        /// Previous.
        previous: Timestamp,
    },
    /// Proposer not in the validator set in force.
    #[error("block {height}: proposer {proposer} is not a validator at this height")]
    UnknownProposer {
        /// Height.
        height: u64,
        /// The proposer.
        proposer: PublicKey,
    },
    /// Too many events.
    #[error("block {height} holds {count} events, over the limit of {max}")]
    TooManyEvents {
        /// Height.
        height: u64,
        /// Count.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// One event is invalid: the whole block is refused.
    #[error("block {height}, event #{index} ({id}): {reason}")]
    InvalidEvent {
        /// Height.
        height: u64,
        /// Position in the block.
        index: usize,
        /// Event id.
        id: EventId,
        /// Why.
        reason: RejectReason,
    },
    /// A header field differs from what re-execution derives.
    #[error("block {height}: header {field} is {got}, re-execution gives {expected}")]
    HeaderMismatch {
        /// Height.
        height: u64,
        /// Which field.
        field: &'static str,
        /// Derived.
        expected: String,
        /// In the header.
        got: String,
    },
}

/// Why a genesis is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Bad validator set.
    #[error("genesis validators: {0}")]
    Validators(#[from] ValidatorSetError),
    /// A key is used twice.
    #[error("genesis: key {0} appears more than once")]
    DuplicateKey(PublicKey),
    /// A reference to an organisation that is not listed.
    #[error("genesis: {what} refers to unknown organisation {org}")]
    UnknownOrganisation {
        /// Who refers to it.
        what: &'static str,
        /// The organisation key.
        org: PublicKey,
    },
    /// A limit out of its range.
    #[error("genesis limit {name} = {value} is out of range {min}..={max}")]
    LimitOutOfRange {
        /// The limit.
        name: &'static str,
        /// Its value.
        value: u64,
        /// Minimum.
        min: u64,
        /// Maximum.
        max: u64,
    },
    /// A malformed field.
    #[error("genesis: {0}")]
    Invalid(String),
}
