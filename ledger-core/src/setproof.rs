//! Validator-set proofs (PROTOCOL.md §9.3): which validator set is in force at a height, proved
//! offline from the genesis and the certified chain of validator-set changes since.
//!
//! Governance replaces the validator set with a `ValidatorSetChange` event (§6.8); a change
//! committed in block `h` is in force from block `h + VALIDATOR_SET_DELAY`. A receipt or a
//! checkpoint after a change is signed by the new set, so a verifier that knows only the
//! genesis set refuses genuine receipts and, worse, would accept a certificate from validators
//! that were retired. The **chain of changes** is the list of receipts (§9.2) of every change's
//! governance event, in height order. [`ValidatorSets::verify`] starts from the genesis set and
//! checks each change against the set in force at its block (its receipt, its outcome
//! `Applied`, its author and approvals), then applies it at its effective height; the result
//! gives the set in force at any height, against which receipts
//! ([`ValidatorSets::verify_receipt`]) and checkpoints ([`ValidatorSets::verify_checkpoint`])
//! are checked, the header's `validators_hash` included.
//!
//! What the chain cannot prove is that no change is missing from it. Leaving one out makes
//! every genuine receipt after it fail (its header names the set actually in force); it could
//! let a certificate forged by a quorum of a retired set pass only for a verifier that also
//! does not know the later change. [`ValidatorSets::merge`] combines chains from several
//! sources (the receipt, the verifier's own node, a witness's record): they must agree change
//! for change, and the longer one is kept.

use crate::block::Outcome;
use crate::checkpoint::{CertificateError, Checkpoint, CommitCertificate};
use crate::event::EventPayload;
use crate::event::governance::{Governance, GovernanceAction};
use crate::hash::{ChainId, EventId};
use crate::keys::{PublicKey, sig_domain};
use crate::receipt::{Receipt, ReceiptError};
use crate::state::{Genesis, VALIDATOR_SET_DELAY};
use crate::validator::{MAX_VALIDATORS, ValidatorSet, ValidatorSetError};

/// One verified validator-set change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetChange {
    /// The block that committed the governance event.
    pub height: u64,
    /// The first height the new set signs: `height + VALIDATOR_SET_DELAY`.
    pub in_force_from: u64,
    /// The governance event.
    pub event: EventId,
    /// The new set.
    pub validators: ValidatorSet,
}

/// Why a chain of validator-set changes is refused. `index` is the 0-based position of the
/// change in the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetProofError {
    /// The change's receipt does not verify against the set in force at its block.
    #[error(
        "validator-set change #{index} (block {height}) does not verify against the set in \
         force at that height: {error}"
    )]
    Receipt {
        /// Position in the chain.
        index: usize,
        /// Its block.
        height: u64,
        /// Why.
        error: ReceiptError,
    },
    /// The change is of another chain.
    #[error("validator-set change #{index} is for chain {got}, expected chain {expected}")]
    WrongChain {
        /// Position in the chain.
        index: usize,
        /// The genesis's chain.
        expected: ChainId,
        /// The change's.
        got: ChainId,
    },
    /// Changes out of height order, or closer than one change may follow another.
    #[error(
        "validator-set change #{index} is at height {height}, but the change before it is at \
         height {previous}: changes must be in height order, at least {VALIDATOR_SET_DELAY} \
         heights apart (one change pending at a time)"
    )]
    Order {
        /// Position in the chain.
        index: usize,
        /// Its block.
        height: u64,
        /// The previous change's block.
        previous: u64,
    },
    /// The event is not a validator-set change.
    #[error(
        "validator-set change #{index} (block {height}) is a {kind} event, not a validator-set change"
    )]
    NotAChange {
        /// Position in the chain.
        index: usize,
        /// Its block.
        height: u64,
        /// What it is.
        kind: String,
    },
    /// The event was not applied.
    #[error("validator-set change #{index} (block {height}) has outcome {outcome:?}, not applied")]
    NotApplied {
        /// Position in the chain.
        index: usize,
        /// Its block.
        height: u64,
        /// Its outcome.
        outcome: Outcome,
    },
    /// The author or the approvals do not satisfy §6.8 against the set in force.
    #[error("validator-set change #{index} (block {height}): {why}")]
    Governance {
        /// Position in the chain.
        index: usize,
        /// Its block.
        height: u64,
        /// Why.
        why: String,
    },
    /// The new set is not a valid validator set.
    #[error("validator-set change #{index} (block {height}) names an invalid set: {error}")]
    InvalidSet {
        /// Position in the chain.
        index: usize,
        /// Its block.
        height: u64,
        /// Why.
        error: ValidatorSetError,
    },
    /// Two chains of changes disagree.
    #[error(
        "the chains of validator-set changes disagree at change #{index}: {ours} and {theirs} \
         (two certified histories of one chain: a fork)"
    )]
    Conflict {
        /// First position where they differ.
        index: usize,
        /// One chain's change there (`height:event`).
        ours: String,
        /// The other's.
        theirs: String,
    },
}

/// The validator sets of a chain: the genesis set and every verified change, in height order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSets {
    chain_id: ChainId,
    genesis: ValidatorSet,
    changes: Vec<SetChange>,
}

impl ValidatorSets {
    /// The genesis set alone (a chain without changes).
    pub fn from_genesis(genesis: &Genesis) -> Self {
        Self {
            chain_id: genesis.chain_id(),
            genesis: genesis.validators.clone(),
            changes: Vec::new(),
        }
    }

    /// Verifies a chain of changes (receipts of `ValidatorSetChange` governance events, in
    /// height order) from the genesis, as PROTOCOL.md §9.3 specifies: for change `i` at block
    /// `h_i`, with `S_i` the set in force at `h_i` (the genesis set, or the set of the last
    /// change with `h_j + VALIDATOR_SET_DELAY <= h_i`):
    ///
    /// 1. the receipt's chain is the genesis's;
    /// 2. `h_i >= h_{i-1} + VALIDATOR_SET_DELAY` (for `i > 0`; `h_0 >= 1`);
    /// 3. the receipt verifies against `S_i` (§9.2, the header's `validators_hash` included);
    /// 4. its outcome is `Applied`;
    /// 5. the event is a governance `ValidatorSetChange`, its author is in `S_i`, its approvals
    ///    are sorted, distinct, by members of `S_i`, each verifies over `(seq, action)` and
    ///    together they hold more than two thirds of `S_i`'s power;
    /// 6. the new set is a valid set (§7); it is in force from `h_i + VALIDATOR_SET_DELAY`.
    pub fn verify(genesis: &Genesis, changes: &[Receipt]) -> Result<Self, SetProofError> {
        let mut sets = Self::from_genesis(genesis);
        for (index, r) in changes.iter().enumerate() {
            sets.push(index, r)?;
        }
        Ok(sets)
    }

    fn push(&mut self, index: usize, r: &Receipt) -> Result<(), SetProofError> {
        let height = r.header.height;
        for got in [r.header.chain_id, r.event.event.chain_id] {
            if got != self.chain_id {
                return Err(SetProofError::WrongChain {
                    index,
                    expected: self.chain_id,
                    got,
                });
            }
        }
        let previous = self.changes.last().map(|c| c.height);
        let ordered = match previous {
            Some(p) => p
                .checked_add(VALIDATOR_SET_DELAY)
                .is_some_and(|min| height >= min),
            None => height >= 1,
        };
        if !ordered {
            return Err(SetProofError::Order {
                index,
                height,
                previous: previous.unwrap_or(0),
            });
        }
        let set = self.set_at(height).clone();
        let outcome = r.verify(&set).map_err(|error| SetProofError::Receipt {
            index,
            height,
            error,
        })?;
        if outcome != Outcome::Applied {
            return Err(SetProofError::NotApplied {
                index,
                height,
                outcome,
            });
        }
        let EventPayload::Governance(g) = &r.event.event.payload else {
            return Err(SetProofError::NotAChange {
                index,
                height,
                kind: r.event.event.payload.kind().to_string(),
            });
        };
        let GovernanceAction::ValidatorSetChange { validators } = &g.action else {
            return Err(SetProofError::NotAChange {
                index,
                height,
                kind: "governance (not validator_set_change)".into(),
            });
        };
        let gov = |why: String| SetProofError::Governance { index, height, why };
        if set.get(&r.event.event.author).is_none() {
            return Err(gov(format!(
                "its author {} is not a validator of the set in force",
                r.event.event.author
            )));
        }
        check_approvals(&self.chain_id, g, &set).map_err(gov)?;
        validators
            .validate()
            .map_err(|error| SetProofError::InvalidSet {
                index,
                height,
                error,
            })?;
        self.changes.push(SetChange {
            height,
            in_force_from: height.saturating_add(VALIDATOR_SET_DELAY),
            event: r.event_id(),
            validators: validators.clone(),
        });
        Ok(())
    }

    /// The chain.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }

    /// The genesis set.
    pub fn genesis_set(&self) -> &ValidatorSet {
        &self.genesis
    }

    /// The verified changes, in height order.
    pub fn changes(&self) -> &[SetChange] {
        &self.changes
    }

    /// The set in force at `height` as far as the known changes go: the set of the last change
    /// with `in_force_from <= height`, or the genesis set.
    pub fn set_at(&self, height: u64) -> &ValidatorSet {
        self.changes
            .iter()
            .rev()
            .find(|c| c.in_force_from <= height)
            .map_or(&self.genesis, |c| &c.validators)
    }

    /// How many of the known changes are in force at `height`.
    pub fn changes_in_force_at(&self, height: u64) -> usize {
        self.changes
            .iter()
            .filter(|c| c.in_force_from <= height)
            .count()
    }

    /// Verifies a receipt (§9.2) against the set in force at its height: its chain is this
    /// chain, its header names that set, and it verifies. Returns the event's outcome.
    pub fn verify_receipt(&self, r: &Receipt) -> Result<Outcome, ReceiptError> {
        if r.header.chain_id != self.chain_id {
            return Err(ReceiptError::WrongChain {
                expected: self.chain_id,
                got: r.header.chain_id,
            });
        }
        r.verify(self.set_at(r.header.height))
    }

    /// Verifies a checkpoint's certificate against the set in force at its height; returns the
    /// signed power. (A checkpoint carries no `validators_hash`: only the certificate binds it.)
    pub fn verify_checkpoint(
        &self,
        cp: &Checkpoint,
        cert: &CommitCertificate,
    ) -> Result<u64, CertificateError> {
        cert.verify(cp, self.set_at(cp.height))
    }

    /// Combines two verified chains of changes of one chain: one must be a prefix of the other,
    /// change for change (same block, same event); the longer is returned.
    pub fn merge(self, other: Self) -> Result<Self, SetProofError> {
        if other.chain_id != self.chain_id {
            return Err(SetProofError::WrongChain {
                index: 0,
                expected: self.chain_id,
                got: other.chain_id,
            });
        }
        let name = |c: &SetChange| format!("block {} event {}", c.height, c.event);
        for (index, (a, b)) in self.changes.iter().zip(&other.changes).enumerate() {
            if a.height != b.height || a.event != b.event {
                return Err(SetProofError::Conflict {
                    index,
                    ours: name(a),
                    theirs: name(b),
                });
            }
        }
        Ok(if other.changes.len() > self.changes.len() {
            other
        } else {
            self
        })
    }
}

/// §6.8's approval rule against `set`, except the governance sequence (only the chain's state
/// knows it; the certified block vouches for it).
fn check_approvals(chain: &ChainId, g: &Governance, set: &ValidatorSet) -> Result<(), String> {
    if g.approvals.len() > MAX_VALIDATORS {
        return Err("too many approvals".into());
    }
    let body = Governance::approval_body(g.seq, &g.action);
    let mut power = 0u64;
    let mut last: Option<PublicKey> = None;
    for a in &g.approvals {
        if last.is_some_and(|l| l >= a.validator) {
            return Err(format!(
                "approval by {} is duplicated or out of order",
                a.validator
            ));
        }
        last = Some(a.validator);
        let v = set.get(&a.validator).ok_or_else(|| {
            format!(
                "approver {} is not a validator of the set in force",
                a.validator
            )
        })?;
        a.validator
            .verify(sig_domain::GOVERNANCE, chain, &body, &a.signature)
            .map_err(|_| format!("the approval by {} does not verify", a.validator))?;
        power += v.power;
    }
    if !set.is_quorum(power) {
        return Err(format!(
            "approvals hold {power} of {} voting power; more than two thirds is required",
            set.total_power()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Table tests for PROTOCOL.md §9.3 (validator-set proofs); end-to-end cases with a real
    //! chain are in `tests/setproof.rs`.
    use super::*;

    #[test]
    fn set_at_follows_effective_heights() {
        // §9.3: a change committed in block h is in force from h + VALIDATOR_SET_DELAY.
        let dc = crate::devkit::DevChain::new(1);
        let (_, a) = crate::devkit::set_with_powers("sp/a", &[1, 1]);
        let (_, b) = crate::devkit::set_with_powers("sp/b", &[2]);
        let mut sets = ValidatorSets::from_genesis(&dc.genesis);
        let g = dc.genesis.validators.clone();
        sets.changes.push(SetChange {
            height: 3,
            in_force_from: 3 + VALIDATOR_SET_DELAY,
            event: EventId::ZERO,
            validators: a.clone(),
        });
        sets.changes.push(SetChange {
            height: 5,
            in_force_from: 5 + VALIDATOR_SET_DELAY,
            event: EventId([1; 32]),
            validators: b.clone(),
        });
        let table: [(u64, &ValidatorSet, usize); 8] = [
            (0, &g, 0),
            (1, &g, 0),
            (3, &g, 0),
            (4, &g, 0),
            (5, &a, 1),
            (6, &a, 1),
            (7, &b, 2),
            (u64::MAX, &b, 2),
        ];
        for (h, want, n) in table {
            assert_eq!(sets.set_at(h), want, "height {h}");
            assert_eq!(sets.changes_in_force_at(h), n, "height {h}");
        }
    }
}
