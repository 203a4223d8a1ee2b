//! Receipts (PROTOCOL.md §9.2): what a requester gets back for an event, checkable offline
//! against the validator set in force at its height.
//!
//! A receipt carries the event, its position, the header, results and certificate of the block
//! that holds it, and the event's inclusion proof in that block's event log. Verification checks
//! that the header names the validator set it is checked against, the certificate over the
//! header's checkpoint, the results against the header's results hash, the inclusion proof
//! against the header's log root and size, and returns the decision. Which set is in force at a
//! height follows from the genesis and the certified chain of validator-set changes
//! ([`crate::setproof`], §9.3); [`crate::setproof::ValidatorSets::verify_receipt`] does both.

use serde::{Deserialize, Serialize};

use crate::block::{BlockHeader, BlockResults, Decision, Outcome};
use crate::checkpoint::{CertificateError, CommitCertificate};
use crate::event::SignedEvent;
use crate::hash::{ChainId, EventId, Hash};
use crate::merkle::{self, Blake3Tree, MerkleError};
use crate::validator::ValidatorSet;

/// Why a receipt does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The event's signature does not verify.
    #[error("the event's signature does not verify")]
    EventSignature,
    /// The event, or the block, is of another chain than expected.
    #[error("the receipt is for chain {got}, expected chain {expected}")]
    WrongChain {
        /// The chain checked against.
        expected: ChainId,
        /// The event's or the header's chain.
        got: ChainId,
    },
    /// The header names another validator set than the one given for its height.
    #[error(
        "block {height} names validator set {named}, but the validator set in force at that \
         height, as given, hashes to {given} (a validator-set change missing from the chain of \
         changes, or a block signed by a set that is not in force)"
    )]
    ValidatorsHash {
        /// The block height.
        height: u64,
        /// `header.validators_hash`.
        named: Hash,
        /// The hash of the set given.
        given: Hash,
    },
    /// The certificate does not make the block final.
    #[error("the block's certificate does not verify: {0}")]
    Certificate(#[from] CertificateError),
    /// The results do not hash to the header's results hash.
    #[error("the results do not match the block header's results hash")]
    Results,
    /// The event's position is outside the block.
    #[error("event index {index} is outside the block's {count} results")]
    Index {
        /// The index.
        index: u32,
        /// Results in the block.
        count: usize,
    },
    /// The leaf index is not within the block's range of the log.
    #[error("leaf {leaf} is not one of the block's leaves")]
    Leaf {
        /// The leaf index.
        leaf: u64,
    },
    /// The inclusion proof does not verify.
    #[error("the inclusion proof does not verify: {0}")]
    Inclusion(#[from] MerkleError),
}

/// Proof that an event is final, and of its decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The event.
    pub event: SignedEvent,
    /// Its position in the block.
    pub index: u32,
    /// Its position in the event log.
    pub leaf_index: u64,
    /// RFC 9162 inclusion proof of the leaf in the log of `header.log_size` leaves.
    pub inclusion_proof: Vec<Hash>,
    /// The header of the block that holds it.
    pub header: BlockHeader,
    /// That block's results.
    pub results: BlockResults,
    /// That block's commit certificate.
    pub certificate: CommitCertificate,
}

impl Receipt {
    /// The event id.
    pub fn event_id(&self) -> EventId {
        self.event.id()
    }

    /// Verifies the receipt against the validator set in force at its height and returns the
    /// event's outcome (PROTOCOL.md §9.2). Nothing but the receipt and the validator set is
    /// needed; the set in force at the height comes from the genesis and the chain of
    /// validator-set changes ([`crate::setproof::ValidatorSets::verify_receipt`]).
    pub fn verify(&self, validators: &ValidatorSet) -> Result<Outcome, ReceiptError> {
        if self.event.event.chain_id != self.header.chain_id {
            return Err(ReceiptError::WrongChain {
                expected: self.header.chain_id,
                got: self.event.event.chain_id,
            });
        }
        self.event
            .verify_signature()
            .map_err(|_| ReceiptError::EventSignature)?;
        let given = validators.hash();
        if self.header.validators_hash != given {
            return Err(ReceiptError::ValidatorsHash {
                height: self.header.height,
                named: self.header.validators_hash,
                given,
            });
        }
        self.certificate
            .verify(&self.header.checkpoint(), validators)?;
        if self.results.hash() != self.header.results_hash {
            return Err(ReceiptError::Results);
        }
        let outcome =
            *self
                .results
                .outcomes
                .get(self.index as usize)
                .ok_or(ReceiptError::Index {
                    index: self.index,
                    count: self.results.outcomes.len(),
                })?;
        // The block's leaves are the last `event_count` leaves of the log at its size.
        let first = self
            .header
            .log_size
            .checked_sub(u64::from(self.header.event_count))
            .ok_or(ReceiptError::Leaf {
                leaf: self.leaf_index,
            })?;
        if self.leaf_index != first + u64::from(self.index) {
            return Err(ReceiptError::Leaf {
                leaf: self.leaf_index,
            });
        }
        let proof: Vec<[u8; 32]> = self.inclusion_proof.iter().map(|h| h.0).collect();
        merkle::verify_inclusion::<Blake3Tree>(
            self.leaf_index,
            self.header.log_size,
            &self.event.leaf_hash(),
            &proof,
            self.header.log_root.as_bytes(),
        )?;
        Ok(outcome)
    }

    /// The decision, if the event is an access or break-glass request (after [`Receipt::verify`]).
    pub fn decision(&self) -> Option<Decision> {
        match self.results.outcomes.get(self.index as usize) {
            Some(Outcome::Access(d)) => Some(*d),
            _ => None,
        }
    }
}
