//! Malachite's `Context`: our types as seen by its Tendermint driver.
//!
//! Every Malachite type lives in this module and in `engine.rs`; what is signed and checked is
//! `twinledger_core::consensus` (PROTOCOL.md §12). The newtypes exist because Malachite's traits
//! and our core types are both foreign to this crate (orphan rule).

use std::fmt;

use malachitebft_core_types::{
    self as mc, NilOrVal, Round, SignedExtension, ValueId, VoteType, VotingPower,
};
use twinledger_core::consensus::{self as tc, VoteKind};
use twinledger_core::{ChainId, Checkpoint, PublicKey, Signature, ValidatorSet};

/// The context: which chain we agree on.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// The chain id (votes name it).
    pub chain_id: ChainId,
}

/// A validator's consensus key as a Malachite address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub PublicKey);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl mc::Address for Addr {}

/// A block height (1 is the first block).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl mc::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// The value agreed on: a block, named by its checkpoint (which commits to the block hash, the
/// event log and the chain). The block body travels beside the proposal and is kept by the
/// engine; Malachite only ever sees the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub Checkpoint);

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.0.block_hash.0;
        write!(
            f,
            "{}@{}",
            h[..6]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            self.0.height
        )
    }
}

impl mc::Value for BlockId {
    type Id = BlockId;

    fn id(&self) -> BlockId {
        *self
    }
}

/// A proposal as Malachite sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The block.
    pub value: BlockId,
    /// Proof-of-lock round (nil if fresh).
    pub pol_round: Round,
    /// Proposer.
    pub proposer: Addr,
}

impl Proposal {
    /// Our signed form's body.
    pub fn body(&self) -> tc::ProposalBody {
        tc::ProposalBody {
            version: tc::CONSENSUS_VERSION,
            height: self.height.0,
            round: self.round.as_u32().unwrap_or(0),
            pol_round: self.pol_round.as_u32(),
            value: self.value.0,
        }
    }

    /// From our signed form.
    pub fn from_signed(p: &tc::SignedProposal) -> Self {
        Self {
            height: Height(p.proposal.height),
            round: Round::new(p.proposal.round),
            value: BlockId(p.proposal.value),
            pol_round: p.proposal.pol_round.map_or(Round::Nil, Round::new),
            proposer: Addr(p.proposer),
        }
    }
}

impl mc::Proposal<Ctx> for Proposal {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &BlockId {
        &self.value
    }
    fn take_value(self) -> BlockId {
        self.value
    }
    fn pol_round(&self) -> Round {
        self.pol_round
    }
    fn validator_address(&self) -> &Addr {
        &self.proposer
    }
}

/// Unused: blocks travel whole with their proposal (Malachite's `ProposalOnly` mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoParts;

impl mc::ProposalPart<Ctx> for NoParts {
    fn is_first(&self) -> bool {
        true
    }
    fn is_last(&self) -> bool {
        true
    }
}

/// A vote as Malachite sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// Prevote or precommit.
    pub kind: VoteType,
    /// The block voted for, or nil.
    pub value: NilOrVal<BlockId>,
    /// The validator.
    pub validator: Addr,
}

impl Vote {
    /// Our form of the vote (what is signed).
    pub fn to_core(&self, chain_id: ChainId) -> tc::Vote {
        tc::Vote {
            chain_id,
            height: self.height.0,
            round: self.round.as_u32().unwrap_or(0),
            kind: match self.kind {
                VoteType::Prevote => VoteKind::Prevote,
                VoteType::Precommit => VoteKind::Precommit,
            },
            value: match self.value {
                NilOrVal::Nil => None,
                NilOrVal::Val(id) => Some(id.0),
            },
        }
    }

    /// From our signed form.
    pub fn from_signed(v: &tc::SignedVote) -> Self {
        Self {
            height: Height(v.vote.height),
            round: Round::new(v.vote.round),
            kind: match v.vote.kind {
                VoteKind::Prevote => VoteType::Prevote,
                VoteKind::Precommit => VoteType::Precommit,
            },
            value: v
                .vote
                .value
                .map_or(NilOrVal::Nil, |c| NilOrVal::Val(BlockId(c))),
            validator: Addr(v.validator),
        }
    }
}

impl mc::Vote<Ctx> for Vote {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &NilOrVal<ValueId<Ctx>> {
        &self.value
    }
    fn take_value(self) -> NilOrVal<ValueId<Ctx>> {
        self.value
    }
    fn vote_type(&self) -> VoteType {
        self.kind
    }
    fn validator_address(&self) -> &Addr {
        &self.validator
    }
    fn extension(&self) -> Option<&SignedExtension<Ctx>> {
        None
    }
    fn take_extension(&mut self) -> Option<SignedExtension<Ctx>> {
        None
    }
    fn extend(self, _extension: SignedExtension<Ctx>) -> Self {
        // Vote extensions are disabled (no `VoteExtensionPolicy::Required`): nothing to attach.
        self
    }
}

/// One validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    address: Addr,
    key: PublicKey,
    power: VotingPower,
}

impl mc::Validator<Ctx> for Validator {
    fn address(&self) -> &Addr {
        &self.address
    }
    fn public_key(&self) -> &PublicKey {
        &self.key
    }
    fn voting_power(&self) -> VotingPower {
        self.power
    }
}

/// A validator set, in key order (as ours).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validators {
    list: Vec<Validator>,
    total: VotingPower,
    /// Ours, for proposer selection.
    pub set: ValidatorSet,
}

impl Validators {
    /// From our validator set.
    pub fn new(set: &ValidatorSet) -> Self {
        let list: Vec<Validator> = set
            .validators()
            .iter()
            .map(|v| Validator {
                address: Addr(v.key),
                key: v.key,
                power: v.power,
            })
            .collect();
        Self {
            total: set.total_power(),
            list,
            set: set.clone(),
        }
    }
}

impl mc::ValidatorSet<Ctx> for Validators {
    fn count(&self) -> usize {
        self.list.len()
    }
    fn total_voting_power(&self) -> VotingPower {
        self.total
    }
    fn get_by_address(&self, address: &Addr) -> Option<&Validator> {
        self.list
            .binary_search_by(|v| v.address.cmp(address))
            .ok()
            .map(|i| &self.list[i])
    }
    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.list.get(index)
    }
}

/// Ed25519 as in `twinledger_core::keys`. Signing and verifying are done by the engine with our
/// own message formats; Malachite only stores and compares signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519;

impl mc::SigningScheme for Ed25519 {
    type DecodingError = String;
    type Signature = Signature;
    type PublicKey = PublicKey;
    // The engine signs with the node's key directly; Malachite never holds it.
    type PrivateKey = ();

    fn decode_signature(bytes: &[u8]) -> Result<Signature, String> {
        let b: [u8; 64] = bytes
            .try_into()
            .map_err(|_| format!("signature is {} bytes, expected 64", bytes.len()))?;
        Ok(Signature(b))
    }
    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }
    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, String> {
        let b: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("public key is {} bytes, expected 32", bytes.len()))?;
        PublicKey::from_ed25519_bytes(&b).map_err(|e| e.to_string())
    }
    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.as_bytes().to_vec()
    }
}

impl mc::Context for Ctx {
    type Address = Addr;
    type Height = Height;
    type ProposalPart = NoParts;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = Validators;
    type Timeouts = mc::LinearTimeouts;
    type Value = BlockId;
    type Vote = Vote;
    type Extension = ();
    type SigningScheme = Ed25519;

    fn select_proposer<'a>(
        &self,
        validator_set: &'a Validators,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        let key = tc::proposer(&validator_set.set, height.0, round.as_u32().unwrap_or(0));
        mc::ValidatorSet::get_by_address(validator_set, &Addr(key))
            .expect("the proposer is a member of the set it was chosen from")
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockId,
        pol_round: Round,
        address: Addr,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockId>,
        address: Addr,
    ) -> Vote {
        Vote {
            height,
            round,
            kind: VoteType::Prevote,
            value: value_id,
            validator: address,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<BlockId>,
        address: Addr,
    ) -> Vote {
        Vote {
            height,
            round,
            kind: VoteType::Precommit,
            value: value_id,
            validator: address,
        }
    }
}
