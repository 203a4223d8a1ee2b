//! Blocks, the hash chain and block results (PROTOCOL.md §8).

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::codec::{self, CodecError};
use crate::event::{MAX_EVENT_BYTES, SignedEvent};
use crate::hash::{ChainId, EventId, Hash, domain, hash_in};
use crate::keys::PublicKey;
use crate::merkle::{Blake3Tree, TreeHasher, mth};
use crate::time::Timestamp;

/// The block format version.
pub const BLOCK_VERSION: u8 = 1;

/// Hard ceiling on one encoded block (10,000 events of the largest size a genesis may allow
/// would not fit: genesis limits keep real blocks far below this).
pub const MAX_BLOCK_BYTES: usize = 64 * 1024 * 1024;

/// A block header. Its hash is the block hash; validators sign it (through a checkpoint).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// [`BLOCK_VERSION`].
    pub version: u8,
    /// The chain.
    pub chain_id: ChainId,
    /// 1 for the first block.
    pub height: u64,
    /// Hash of the previous block (the chain id for block 1).
    pub prev_hash: Hash,
    /// Block time, strictly after the previous block's (and after genesis time).
    pub time: Timestamp,
    /// The validator that proposed it.
    pub proposer: PublicKey,
    /// Number of events in the block.
    pub event_count: u32,
    /// RFC 9162 root over this block's events (same leaves as the log).
    pub events_root: Hash,
    /// Size of the whole event log after this block.
    pub log_size: u64,
    /// RFC 9162 root of the whole event log after this block.
    pub log_root: Hash,
    /// Hash of this block's [`BlockResults`].
    pub results_hash: Hash,
    /// The chained state commitment after this block.
    pub state_hash: Hash,
    /// Hash of the validator set in force at this height (the one that must sign it).
    pub validators_hash: Hash,
}

impl BlockHeader {
    /// The block hash: blake3 (domain `block-header`) of the canonical header encoding.
    pub fn hash(&self) -> Hash {
        hash_in(domain::BLOCK_HEADER, &codec::encode(self))
    }

    /// The checkpoint validators sign for this block.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            version: crate::checkpoint::CHECKPOINT_VERSION,
            chain_id: self.chain_id,
            height: self.height,
            log_size: self.log_size,
            log_root: self.log_root,
            block_hash: self.hash(),
        }
    }
}

/// A block: a header and its events in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The events, in the order they were applied.
    pub events: Vec<SignedEvent>,
}

impl Block {
    /// The block hash.
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }
    /// Decodes a block, refusing oversized, malformed, non-canonical or unknown-version input
    /// and any event over the hard event limit. Does not check anything else: apply it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let b: Self = codec::decode("block", bytes, MAX_BLOCK_BYTES)?;
        codec::check_version("block", b.header.version, BLOCK_VERSION)?;
        for ev in &b.events {
            codec::check_version("event", ev.event.version, crate::event::EVENT_VERSION)?;
            let size = codec::encode(ev).len();
            if size > MAX_EVENT_BYTES {
                return Err(CodecError::TooLarge {
                    what: "event",
                    size,
                    max: MAX_EVENT_BYTES,
                });
            }
        }
        Ok(b)
    }

    /// Whether the body is the one the header commits to: as many events as `event_count`,
    /// and their leaves (PROTOCOL.md §8.1, over each event's signed encoding) hash to
    /// `events_root`. A body that passes is exactly the proposer's, signatures included, so
    /// a node may key what it caches about a block by the block hash only after this check.
    /// Costs one BLAKE3 per event and per tree node; executes nothing.
    pub fn check_body(&self) -> Result<(), BodyMismatch> {
        let h = &self.header;
        if h.event_count as usize != self.events.len() {
            return Err(BodyMismatch::EventCount {
                height: h.height,
                header: h.event_count,
                body: self.events.len(),
            });
        }
        let leaves: Vec<[u8; 32]> = self
            .events
            .iter()
            .map(|ev| <Blake3Tree as TreeHasher>::leaf(&ev.to_bytes()))
            .collect();
        if Hash(mth::<Blake3Tree>(&leaves)) != h.events_root {
            return Err(BodyMismatch::EventsRoot { height: h.height });
        }
        Ok(())
    }
}

/// A block body that is not the one its header commits to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyMismatch {
    /// The header counts another number of events.
    #[error("block {height}: the header counts {header} events, the body holds {body}")]
    EventCount {
        /// Height.
        height: u64,
        /// `event_count` in the header.
        header: u32,
        /// Events in the body.
        body: usize,
    },
    /// The events do not hash to the header's `events_root`.
    #[error("block {height}: the events do not hash to the header's events_root")]
    EventsRoot {
        /// Height.
        height: u64,
    },
}

/// Why an access was denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// No active grant (by the patient or a live delegate) covers actor, category, purpose
    /// and action at the block's time: deny by default.
    NoCoveringGrant,
    /// Break-glass by a role that may not break glass.
    RoleMayNotBreakGlass,
    /// An access or break-glass request signed by an enrolled actor whose enrolment was revoked
    /// (PROTOCOL.md §6.1, 2.2): recorded so that auditors see the attempt, never permitted.
    ActorRevoked,
    /// An access or break-glass request signed by an actor of an organisation that was revoked
    /// (PROTOCOL.md §6.1, 2.2).
    OrganisationRevoked,
}

/// The ledger's decision on an access or break-glass request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Permitted by this grant.
    Permit {
        /// The grant (its event id).
        grant: EventId,
    },
    /// Denied.
    Deny {
        /// Why.
        reason: DenyReason,
    },
    /// Emergency access: permitted, flagged, and queued for review.
    BreakGlass,
}

impl Decision {
    /// Whether the access may go ahead.
    pub fn is_permitted(&self) -> bool {
        !matches!(self, Decision::Deny { .. })
    }
}

/// What applying one event produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A non-access event took effect.
    Applied,
    /// An access or break-glass request was decided.
    Access(Decision),
}

/// The results of a block: one outcome per event, in block order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockResults {
    /// One per event.
    pub outcomes: Vec<Outcome>,
}

impl BlockResults {
    /// blake3 (domain `block-results`) of the canonical encoding; in the header.
    pub fn hash(&self) -> Hash {
        hash_in(domain::RESULTS, &codec::encode(self))
    }
}
