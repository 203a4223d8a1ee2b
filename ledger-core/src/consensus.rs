//! Consensus messages: what validators sign while agreeing on a block (PROTOCOL.md §12).
//!
//! The Tendermint algorithm itself runs in the node (Malachite's pure driver, ADR 0006); this
//! module fixes the bytes it signs, so that every signature a validator makes is specified,
//! versioned and checkable offline:
//!
//! - a **precommit for a block** is exactly a [`CommitVote`] (domain `twinledger/v1/commit`),
//!   so the precommits of a decided round *are* its [`crate::CommitCertificate`];
//! - prevotes and nil precommits are [`VoteBody`] (domain `twinledger/v1/vote`), which can never
//!   be mistaken for a commit signature;
//! - proposals are [`ProposalBody`] (domain `twinledger/v1/proposal`);
//! - two signed votes by one validator for different values at one height, round and type are
//!   [`DoubleSign`] evidence, which anyone can check against the validator set.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CommitVote};
use crate::codec;
use crate::hash::ChainId;
use crate::keys::{Keypair, PublicKey, Signature, sig_domain, signing_message};
use crate::validator::ValidatorSet;

/// Version byte of [`VoteBody`] and [`ProposalBody`].
pub const CONSENSUS_VERSION: u8 = 1;

/// The two kinds of vote in a Tendermint round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteKind {
    /// First-phase vote.
    Prevote,
    /// Second-phase vote; a quorum of precommits for a block commits it.
    Precommit,
}

/// A vote: for a block (named by its checkpoint) or for nil.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Chain.
    pub chain_id: ChainId,
    /// Height voted on.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// The block's checkpoint, or `None` for nil.
    pub value: Option<Checkpoint>,
}

/// The signed body of every vote except a precommit for a block (domain `twinledger/v1/vote`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteBody {
    /// [`CONSENSUS_VERSION`].
    pub version: u8,
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Kind.
    pub kind: VoteKind,
    /// Checkpoint voted for, or nil.
    pub value: Option<Checkpoint>,
}

impl Vote {
    /// The bytes the validator signs (PROTOCOL.md §12.1).
    pub fn signing_message(&self) -> Vec<u8> {
        match (self.kind, self.value) {
            (VoteKind::Precommit, Some(checkpoint)) => CommitVote {
                checkpoint,
                round: self.round,
            }
            .signing_message(),
            _ => signing_message(
                sig_domain::VOTE,
                &self.chain_id,
                &codec::encode(&self.body()),
            ),
        }
    }

    /// Whether the vote is well formed: a value, if any, names this chain and height.
    pub fn check(&self) -> Result<(), ConsensusError> {
        if let Some(cp) = &self.value {
            if cp.version != crate::checkpoint::CHECKPOINT_VERSION {
                return Err(ConsensusError::Version(cp.version));
            }
            if cp.chain_id != self.chain_id {
                return Err(ConsensusError::WrongChain);
            }
            if cp.height != self.height {
                return Err(ConsensusError::HeightMismatch {
                    message: self.height,
                    value: cp.height,
                });
            }
        }
        Ok(())
    }

    /// Signs as `key`.
    pub fn sign(self, key: &Keypair) -> SignedVote {
        let signature = match (self.kind, self.value) {
            (VoteKind::Precommit, Some(checkpoint)) => {
                CommitVote {
                    checkpoint,
                    round: self.round,
                }
                .sign(key)
                .signature
            }
            _ => key.sign(
                sig_domain::VOTE,
                &self.chain_id,
                &codec::encode(&self.body()),
            ),
        };
        SignedVote {
            vote: self,
            validator: key.public(),
            signature,
        }
    }

    fn body(&self) -> VoteBody {
        VoteBody {
            version: CONSENSUS_VERSION,
            height: self.height,
            round: self.round,
            kind: self.kind,
            value: self.value,
        }
    }
}

/// A vote with its validator and signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVote {
    /// The vote.
    pub vote: Vote,
    /// Who signed it.
    pub validator: PublicKey,
    /// The signature over [`Vote::signing_message`].
    pub signature: Signature,
}

impl SignedVote {
    /// Checks form, chain, membership and signature against the set in force at the height.
    pub fn verify(&self, chain_id: &ChainId, set: &ValidatorSet) -> Result<(), ConsensusError> {
        if self.vote.chain_id != *chain_id {
            return Err(ConsensusError::WrongChain);
        }
        self.vote.check()?;
        if set.get(&self.validator).is_none() {
            return Err(ConsensusError::NotAValidator(self.validator));
        }
        self.validator
            .verify_raw(&self.vote.signing_message(), &self.signature)
            .map_err(|_| ConsensusError::BadSignature(self.validator))
    }
}

/// A block proposal: the proposer vouches for a block (named by its checkpoint) at a height and
/// round, with the round of the polka that justifies re-proposing it (`pol_round`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalBody {
    /// [`CONSENSUS_VERSION`].
    pub version: u8,
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Proof-of-lock round, if the value is re-proposed.
    pub pol_round: Option<u32>,
    /// The proposed block's checkpoint.
    pub value: Checkpoint,
}

impl ProposalBody {
    /// The signed bytes (domain `twinledger/v1/proposal`, PROTOCOL.md §12.2).
    pub fn signing_message(&self) -> Vec<u8> {
        signing_message(
            sig_domain::PROPOSAL,
            &self.value.chain_id,
            &codec::encode(self),
        )
    }

    /// Signs as `key`.
    pub fn sign(self, key: &Keypair) -> SignedProposal {
        let signature = key.sign(
            sig_domain::PROPOSAL,
            &self.value.chain_id,
            &codec::encode(&self),
        );
        SignedProposal {
            proposal: self,
            proposer: key.public(),
            signature,
        }
    }
}

/// A proposal with its proposer and signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProposal {
    /// The proposal.
    pub proposal: ProposalBody,
    /// Who signed it (must be [`proposer`] for the height and round).
    pub proposer: PublicKey,
    /// Signature over [`ProposalBody::signing_message`].
    pub signature: Signature,
}

impl SignedProposal {
    /// Checks version, chain, height, that the signer is the round's proposer, and the signature.
    pub fn verify(&self, chain_id: &ChainId, set: &ValidatorSet) -> Result<(), ConsensusError> {
        let p = &self.proposal;
        if p.version != CONSENSUS_VERSION {
            return Err(ConsensusError::Version(p.version));
        }
        if p.value.version != crate::checkpoint::CHECKPOINT_VERSION {
            return Err(ConsensusError::Version(p.value.version));
        }
        if p.value.chain_id != *chain_id {
            return Err(ConsensusError::WrongChain);
        }
        if p.value.height != p.height {
            return Err(ConsensusError::HeightMismatch {
                message: p.height,
                value: p.value.height,
            });
        }
        if p.pol_round.is_some_and(|r| r >= p.round) {
            return Err(ConsensusError::PolRound);
        }
        let expected = proposer(set, p.height, p.round);
        if self.proposer != expected {
            return Err(ConsensusError::NotTheProposer {
                signer: self.proposer,
                expected,
            });
        }
        self.proposer
            .verify_raw(&p.signing_message(), &self.signature)
            .map_err(|_| ConsensusError::BadSignature(self.proposer))
    }
}

/// The proposer of `round` at `height` (PROTOCOL.md §12.3, protocol 1.2): weighted round
/// robin that spreads each validator's turns evenly instead of giving it consecutive slots.
///
/// The slot is `height + round`, taken modulo the total power `T`. Validators of equal power
/// form a class, whose slots they share in turn (in set order); the classes are the leaves of a
/// Huffman tree built on their weights (members × power), and each inner node hands its slots
/// to its two children in the proportion of their weights, spread evenly (the left child gets
/// local slot `y` exactly when `⌊(y·W_L + ⌊W/2⌋)/W⌋` steps up at `y`). So every validator
/// proposes exactly `p` of any `T` consecutive slots, a set of equal powers rotates in set
/// order, and no window of slots strays far from a validator's share (§12.3 gives the bounds).
///
/// A pure function of the set, height and round: O(n log n) in the number of validators and
/// independent of the powers' size; 128-bit arithmetic, no value above 2^114.
pub fn proposer(set: &ValidatorSet, height: u64, round: u32) -> PublicKey {
    let total = u128::from(set.total_power());
    // total ≥ 1 (a set is never empty, every power ≥ 1): the modulo is defined.
    let mut x = (u128::from(height) + u128::from(round)) % total;
    let tree = ProposerTree::new(set);
    let mut node = tree.nodes.len() - 1; // the root: the last node made (or the only class)
    loop {
        match tree.nodes[node].kind {
            NodeKind::Inner { left, right } => {
                let w = tree.nodes[node].weight;
                let w_left = tree.nodes[left].weight;
                // x < w ≤ 2^56 and w_left < w: the products stay below 2^113.
                let left_before = |y: u128| (y * w_left + w / 2) / w;
                let before = left_before(x);
                if left_before(x + 1) > before {
                    x = before;
                    node = left;
                } else {
                    x -= before;
                    node = right;
                }
            }
            NodeKind::Class { class } => {
                let members = &tree.classes[class];
                // x < members × power; the members take the class's slots in turn.
                let turn = x % members.len() as u128;
                return members[usize::try_from(turn).unwrap_or(0)];
            }
        }
    }
}

/// The Huffman tree of PROTOCOL.md §12.3 step 2. Node `i` has rank `i`: the classes first
/// (ascending power), then the inner nodes in the order they are made.
struct ProposerTree {
    /// Members of each class, in set order; classes in ascending order of power.
    classes: Vec<Vec<PublicKey>>,
    nodes: Vec<TreeNode>,
}

struct TreeNode {
    weight: u128,
    kind: NodeKind,
}

#[derive(Clone, Copy)]
enum NodeKind {
    Class { class: usize },
    Inner { left: usize, right: usize },
}

impl ProposerTree {
    fn new(set: &ValidatorSet) -> Self {
        let mut by_power: std::collections::BTreeMap<u64, Vec<PublicKey>> =
            std::collections::BTreeMap::new();
        for v in set.validators() {
            by_power.entry(v.power).or_default().push(v.key);
        }
        let mut nodes = Vec::with_capacity(2 * by_power.len());
        let mut classes = Vec::with_capacity(by_power.len());
        for (power, members) in by_power {
            nodes.push(TreeNode {
                weight: u128::from(power) * members.len() as u128,
                kind: NodeKind::Class {
                    class: classes.len(),
                },
            });
            classes.push(members);
        }
        // Smallest (weight, rank) first.
        let mut queue: std::collections::BinaryHeap<std::cmp::Reverse<(u128, usize)>> = nodes
            .iter()
            .enumerate()
            .map(|(rank, n)| std::cmp::Reverse((n.weight, rank)))
            .collect();
        while let (Some(std::cmp::Reverse((wa, a))), Some(std::cmp::Reverse((wb, b)))) =
            (queue.pop(), queue.pop())
        {
            let rank = nodes.len();
            nodes.push(TreeNode {
                weight: wa + wb,
                kind: NodeKind::Inner { left: b, right: a },
            });
            queue.push(std::cmp::Reverse((wa + wb, rank)));
        }
        Self { classes, nodes }
    }
}

/// Two signed votes by one validator for different values at the same height, round and kind:
/// proof that it broke the protocol (PROTOCOL.md §12.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoubleSign {
    /// One vote.
    pub first: SignedVote,
    /// The conflicting vote.
    pub second: SignedVote,
}

impl DoubleSign {
    /// The validator that signed both.
    pub fn validator(&self) -> PublicKey {
        self.first.validator
    }

    /// Where it happened: (height, round, kind).
    pub fn slot(&self) -> (u64, u32, VoteKind) {
        (
            self.first.vote.height,
            self.first.vote.round,
            self.first.vote.kind,
        )
    }

    /// Checks that this is real evidence against the set in force at its height: same signer,
    /// same chain, height, round and kind, different values, both signatures valid.
    pub fn verify(&self, chain_id: &ChainId, set: &ValidatorSet) -> Result<(), ConsensusError> {
        let (a, b) = (&self.first, &self.second);
        if a.validator != b.validator {
            return Err(ConsensusError::Evidence(
                "the two votes have different signers",
            ));
        }
        if (a.vote.height, a.vote.round, a.vote.kind) != (b.vote.height, b.vote.round, b.vote.kind)
        {
            return Err(ConsensusError::Evidence(
                "the two votes are for different heights, rounds or kinds",
            ));
        }
        if a.vote.value == b.vote.value {
            return Err(ConsensusError::Evidence(
                "the two votes are for the same value",
            ));
        }
        a.verify(chain_id, set)?;
        b.verify(chain_id, set)
    }

    /// The same evidence with its two votes in canonical order (by signing message), so that
    /// the pair (a, b) and (b, a) are recorded once.
    pub fn canonical(self) -> Self {
        if self.first.vote.signing_message() <= self.second.vote.signing_message() {
            self
        } else {
            Self {
                first: self.second,
                second: self.first,
            }
        }
    }
}

/// Why a consensus message or evidence is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// Another chain's message.
    #[error("consensus message is for another chain")]
    WrongChain,
    /// Unknown version.
    #[error("consensus message version {0} is not supported (expected {CONSENSUS_VERSION})")]
    Version(u8),
    /// The value's height differs from the message's.
    #[error("message is for height {message} but its block checkpoint is for height {value}")]
    HeightMismatch {
        /// Message height.
        message: u64,
        /// Checkpoint height.
        value: u64,
    },
    /// Signer not in the set in force.
    #[error("{0} is not a validator at this height")]
    NotAValidator(PublicKey),
    /// Signature does not verify.
    #[error("signature by {0} does not verify")]
    BadSignature(PublicKey),
    /// Proposal from the wrong validator.
    #[error("proposal signed by {signer}, but the proposer of this round is {expected}")]
    NotTheProposer {
        /// Who signed.
        signer: PublicKey,
        /// Who should have.
        expected: PublicKey,
    },
    /// `pol_round` not below `round`.
    #[error("proposal's proof-of-lock round is not before its round")]
    PolRound,
    /// Not valid evidence.
    #[error("not double-sign evidence: {0}")]
    Evidence(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CommitCertificate, CommitSig};
    use crate::devkit::dev_key;
    use crate::hash::Hash;
    use crate::validator::Validator;

    fn setup(n: usize) -> (ChainId, Vec<Keypair>, ValidatorSet) {
        let keys: Vec<Keypair> = (0..n).map(|i| dev_key(&format!("validator/{i}"))).collect();
        let set = ValidatorSet::new(
            keys.iter()
                .map(|k| Validator {
                    key: k.public(),
                    organisation: dev_key("org").public(),
                    power: 1,
                })
                .collect(),
        )
        .unwrap();
        (ChainId([7; 32]), keys, set)
    }

    fn cp(chain_id: ChainId, height: u64, tag: u8) -> Checkpoint {
        Checkpoint {
            version: crate::checkpoint::CHECKPOINT_VERSION,
            chain_id,
            height,
            log_size: 10,
            log_root: Hash([1; 32]),
            block_hash: Hash([tag; 32]),
        }
    }

    fn vote(chain_id: ChainId, kind: VoteKind, value: Option<Checkpoint>) -> Vote {
        Vote {
            chain_id,
            height: 5,
            round: 2,
            kind,
            value,
        }
    }

    /// §12.1: the precommits of a decided round are its commit certificate, unchanged (§9).
    #[test]
    fn s12_1_precommits_for_a_block_form_a_commit_certificate() {
        let (chain, keys, set) = setup(4);
        let value = cp(chain, 5, 9);
        let sigs: Vec<CommitSig> = keys[..3]
            .iter()
            .map(|k| {
                let sv = vote(chain, VoteKind::Precommit, Some(value)).sign(k);
                sv.verify(&chain, &set).unwrap();
                CommitSig {
                    validator: sv.validator,
                    signature: sv.signature,
                }
            })
            .collect();
        CommitCertificate::new(2, sigs)
            .verify(&value, &set)
            .unwrap();
    }

    /// §12.1: a prevote for the same block is signed in another domain: it can never count as
    /// a commit signature, and a nil precommit differs from a nil prevote.
    #[test]
    fn s12_1_prevotes_and_nil_votes_are_not_commit_signatures() {
        let (chain, keys, set) = setup(4);
        let value = cp(chain, 5, 9);
        let sigs: Vec<CommitSig> = keys[..4]
            .iter()
            .map(|k| {
                let sv = vote(chain, VoteKind::Prevote, Some(value)).sign(k);
                CommitSig {
                    validator: sv.validator,
                    signature: sv.signature,
                }
            })
            .collect();
        assert!(matches!(
            CommitCertificate::new(2, sigs).verify(&value, &set),
            Err(crate::checkpoint::CertificateError::BadSignature(_))
        ));
        let nil_pre = vote(chain, VoteKind::Prevote, None).signing_message();
        let nil_com = vote(chain, VoteKind::Precommit, None).signing_message();
        assert_ne!(nil_pre, nil_com);
        assert!(nil_pre.starts_with(b"\x12twinledger/v1/vote"));
    }

    /// §12.1: refusals, each named.
    #[test]
    fn s12_1_bad_votes_are_refused_by_name() {
        let (chain, keys, set) = setup(4);
        let other = ChainId([8; 32]);
        let good = vote(chain, VoteKind::Prevote, Some(cp(chain, 5, 1))).sign(&keys[0]);
        good.verify(&chain, &set).unwrap();
        assert_eq!(good.verify(&other, &set), Err(ConsensusError::WrongChain));
        let wrong_height = vote(chain, VoteKind::Prevote, Some(cp(chain, 6, 1))).sign(&keys[0]);
        assert_eq!(
            wrong_height.verify(&chain, &set),
            Err(ConsensusError::HeightMismatch {
                message: 5,
                value: 6
            })
        );
        let stranger = dev_key("not-a-validator");
        let sv = vote(chain, VoteKind::Prevote, None).sign(&stranger);
        assert_eq!(
            sv.verify(&chain, &set),
            Err(ConsensusError::NotAValidator(stranger.public()))
        );
        let mut forged = good;
        forged.vote.round = 3;
        assert_eq!(
            forged.verify(&chain, &set),
            Err(ConsensusError::BadSignature(keys[0].public()))
        );
    }

    /// A set with these powers, assigned in set (key) order; its keys in that order.
    fn weighted(powers: &[u64]) -> (Vec<PublicKey>, ValidatorSet) {
        crate::devkit::set_with_powers("v", powers)
    }

    /// The proposers' positions in the set for heights `0..len` at round 0.
    fn turns(powers: &[u64], len: u64) -> Vec<usize> {
        let (keys, set) = weighted(powers);
        (0..len)
            .map(|h| {
                let who = proposer(&set, h, 0);
                keys.iter().position(|k| *k == who).unwrap()
            })
            .collect()
    }

    /// §12.3 (1.2): turns are spread, not consecutive; equal powers rotate in set order. In 1.1
    /// `[3, 1]` gave A A A B and `[4, 4]` gave A A A A B B B B.
    #[test]
    fn s12_3_proposer_turns_are_interleaved() {
        assert_eq!(turns(&[1, 1, 1, 1], 8), [0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(turns(&[3, 1], 8), [0, 0, 1, 0, 0, 0, 1, 0]);
        assert_eq!(turns(&[4, 4], 8), [0, 1, 0, 1, 0, 1, 0, 1]);
        assert_eq!(turns(&[2, 1, 1], 8), [0, 1, 0, 2, 0, 1, 0, 2]);
        assert_eq!(
            turns(&[5, 3], 16),
            [0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0]
        );
        assert_eq!(
            turns(&[1, 2, 5], 16),
            [2, 1, 2, 2, 0, 2, 1, 2, 2, 1, 2, 2, 0, 2, 1, 2]
        );
        // Equal powers of any size: slot s goes to the validator at s mod n, as in 1.1 for
        // power 1.
        assert_eq!(turns(&[7, 7, 7], 6), [0, 1, 2, 0, 1, 2]);
    }

    /// §12.3: each validator's share of slots is its share of the power, the next round moves
    /// to the next slot, and the choice is the same however the set was listed.
    #[test]
    fn s12_3_proposer_is_weighted_round_robin() {
        let (keys, set) = weighted(&[1, 2, 5]);
        let mut count = std::collections::BTreeMap::new();
        for h in 1..=800u64 {
            *count.entry(proposer(&set, h, 0)).or_insert(0u32) += 1;
        }
        for v in set.validators() {
            assert_eq!(count[&v.key], 100 * u32::try_from(v.power).unwrap());
        }
        assert_eq!(proposer(&set, 10, 1), proposer(&set, 11, 0));
        assert_eq!(proposer(&set, 10, 5), proposer(&set, 15, 0));
        let mut reversed: Vec<Validator> = set.validators().to_vec();
        reversed.reverse();
        let same = ValidatorSet::new(reversed).unwrap();
        for h in 0..16 {
            assert_eq!(proposer(&set, h, 3), proposer(&same, h, 3));
        }
        assert!(keys.contains(&proposer(&set, 0, 0)));
    }

    /// §12.3: the largest heights, rounds and powers do not overflow (slot up to 2^64 + 2^32,
    /// total power up to 2^56), and the result is always a member of the set.
    #[test]
    fn s12_3_proposer_at_the_limits() {
        let max = crate::validator::MAX_POWER;
        let (keys, set) = weighted(&[max, max - 1, 1, max / 3, 2, max, 3]);
        for (h, r) in [
            (u64::MAX, u32::MAX),
            (u64::MAX, 0),
            (0, u32::MAX),
            (u64::MAX - 1, 1),
            (1 << 63, 7),
        ] {
            assert!(keys.contains(&proposer(&set, h, r)));
        }
        // 256 validators of the largest power: the total is 2^56, and the set rotates.
        let keys: Vec<PublicKey> = {
            let mut k: Vec<PublicKey> = (0..256)
                .map(|i| dev_key(&format!("big/{i}")).public())
                .collect();
            k.sort();
            k
        };
        let big = ValidatorSet::new(
            keys.iter()
                .map(|key| Validator {
                    key: *key,
                    organisation: *key,
                    power: max,
                })
                .collect(),
        )
        .unwrap();
        assert_eq!(big.total_power(), 1 << 56);
        assert_eq!(proposer(&big, u64::MAX, u32::MAX), {
            let slot = u128::from(u64::MAX) + u128::from(u32::MAX);
            keys[usize::try_from(slot % 256).unwrap()]
        });
    }

    /// §12.2: proposals must come from the round's proposer, with a valid signature.
    #[test]
    fn s12_2_proposals_are_checked() {
        let (chain, keys, set) = setup(4);
        let (h, r) = (5, 1);
        let who = proposer(&set, h, r);
        let key = keys.iter().find(|k| k.public() == who).unwrap();
        let body = ProposalBody {
            version: CONSENSUS_VERSION,
            height: h,
            round: r,
            pol_round: None,
            value: cp(chain, h, 3),
        };
        body.sign(key).verify(&chain, &set).unwrap();
        let other = keys.iter().find(|k| k.public() != who).unwrap();
        assert_eq!(
            body.sign(other).verify(&chain, &set),
            Err(ConsensusError::NotTheProposer {
                signer: other.public(),
                expected: who
            })
        );
        let mut bad = body.sign(key);
        bad.proposal.value.block_hash = Hash([4; 32]);
        assert_eq!(
            bad.verify(&chain, &set),
            Err(ConsensusError::BadSignature(who))
        );
        let pol = ProposalBody {
            pol_round: Some(1),
            ..body
        };
        assert_eq!(
            pol.sign(key).verify(&chain, &set),
            Err(ConsensusError::PolRound)
        );
    }

    /// §12.4: double-sign evidence: accepted only for two different values at one slot, both
    /// signed by the accused.
    #[test]
    fn s12_4_double_sign_evidence() {
        let (chain, keys, set) = setup(4);
        let a = vote(chain, VoteKind::Precommit, Some(cp(chain, 5, 1))).sign(&keys[1]);
        let b = vote(chain, VoteKind::Precommit, Some(cp(chain, 5, 2))).sign(&keys[1]);
        let nil = vote(chain, VoteKind::Precommit, None).sign(&keys[1]);
        let ev = DoubleSign {
            first: a,
            second: b,
        };
        ev.verify(&chain, &set).unwrap();
        assert_eq!(ev.validator(), keys[1].public());
        assert_eq!(
            ev.canonical(),
            DoubleSign {
                first: b,
                second: a
            }
            .canonical()
        );
        DoubleSign {
            first: a,
            second: nil,
        }
        .verify(&chain, &set)
        .unwrap();
        let same = DoubleSign {
            first: a,
            second: a,
        };
        assert_eq!(
            same.verify(&chain, &set),
            Err(ConsensusError::Evidence(
                "the two votes are for the same value"
            ))
        );
        let other_signer = vote(chain, VoteKind::Precommit, Some(cp(chain, 5, 2))).sign(&keys[2]);
        assert!(matches!(
            DoubleSign {
                first: a,
                second: other_signer
            }
            .verify(&chain, &set),
            Err(ConsensusError::Evidence(_))
        ));
        let mut next_round = vote(chain, VoteKind::Precommit, Some(cp(chain, 5, 2)));
        next_round.round = 3;
        assert!(matches!(
            DoubleSign {
                first: a,
                second: next_round.sign(&keys[1])
            }
            .verify(&chain, &set),
            Err(ConsensusError::Evidence(_))
        ));
        let mut forged = b;
        forged.signature = a.signature;
        assert_eq!(
            DoubleSign {
                first: a,
                second: forged
            }
            .verify(&chain, &set),
            Err(ConsensusError::BadSignature(keys[1].public()))
        );
    }
}
