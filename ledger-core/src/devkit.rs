//! A deterministic in-memory chain for examples, tests and benchmarks.
//!
//! Keys are derived from labels (blake3 in key-derivation mode), never from an RNG, so every run
//! produces the same chain, byte for byte. The chain commits each block the way validators
//! will: the proposer builds it, every validator signs the checkpoint, and the block is
//! re-applied from the previous state as an independent validator would before it is accepted.
//! This is a development aid, not a node: nothing is persisted.

use std::collections::BTreeMap;

use crate::audit::CommittedBlock;
use crate::checkpoint::{CommitCertificate, CommitVote};
use crate::codes::Role;
use crate::event::{Event, EventPayload, SignedEvent};
use crate::hash::EventId;
use crate::keys::{Keypair, PublicKey};
use crate::merkle::{Blake3Tree, MemoryTree};
use crate::state::{BlockError, Genesis, GenesisActor, GenesisOrg, Limits, RejectReason, State};
use crate::time::Timestamp;
use crate::validator::{Validator, ValidatorSet};

/// A key derived from a label: the same label always gives the same key. For development only.
pub fn dev_key(label: &str) -> Keypair {
    let seed = blake3::derive_key("twinledger devkit key v1", label.as_bytes());
    Keypair::from_secret(&seed)
}

/// Patient `i`'s first event (keys `dev_key("<label>/patient/<i>")`): a consent grant of vital
/// signs for treatment, read only, to the organisation `org`, valid until `not_after`, signed.
/// The event of the load benchmarks (`node/benches`, the WAN bed): each patient's sequence 0,
/// so any number of them are independent.
pub fn patient_grant(
    chain: crate::hash::ChainId,
    label: &str,
    i: u64,
    org: &PublicKey,
    not_after: Timestamp,
) -> SignedEvent {
    use crate::codes::{Action, DataCategory, Purpose};
    use crate::event::consent::{ConsentGrant, Grantee};
    use crate::event::delegation::Scope;
    let p = dev_key(&format!("{label}/patient/{i}"));
    Event::new(
        chain,
        p.public(),
        0,
        not_after,
        EventPayload::ConsentGrant(ConsentGrant {
            patient: p.public(),
            grantee: Grantee::Organisation(*org),
            scope: Scope {
                categories: [DataCategory::VitalSigns].into_iter().collect(),
                purposes: [Purpose::Treat].into_iter().collect(),
                actions: [Action::Read].into_iter().collect(),
            },
            valid_from: Timestamp(0),
            valid_until: None,
        }),
    )
    .sign(&p)
}

/// A validator set whose validators have `powers`, assigned in set (key) order, with keys
/// `dev_key("<label>/<i>")`; returns the keys in set order and the set. Each validator is its
/// own organisation.
pub fn set_with_powers(label: &str, powers: &[u64]) -> (Vec<PublicKey>, ValidatorSet) {
    let mut keys: Vec<PublicKey> = (0..powers.len())
        .map(|i| dev_key(&format!("{label}/{i}")).public())
        .collect();
    keys.sort();
    let set = ValidatorSet::new(
        keys.iter()
            .zip(powers)
            .map(|(key, &power)| Validator {
                key: *key,
                organisation: *key,
                power,
            })
            .collect(),
    )
    .expect("powers 1..=2^48, at most 256 validators");
    (keys, set)
}

/// The genesis time of dev chains: 2026-01-01T00:00:00Z.
pub const DEV_GENESIS_TIME: Timestamp = Timestamp(1_767_225_600_000);

/// Block interval of dev chains, ms.
pub const DEV_BLOCK_INTERVAL_MS: u64 = 1000;

/// A block a dev chain committed: the [`CommittedBlock`] a node stores and exports (read its
/// fields through it: `c.block`, `c.results`, `c.certificate`), with the candidates its
/// proposer refused.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The block, its results and its certificate.
    pub committed: CommittedBlock,
    /// Candidates that were refused, with the reason.
    pub rejected: Vec<(EventId, RejectReason)>,
}

impl std::ops::Deref for Committed {
    type Target = CommittedBlock;

    fn deref(&self) -> &CommittedBlock {
        &self.committed
    }
}

/// A dev chain: one hospital, `n` validators run by it, an auditor, and enrolled actors.
#[derive(Debug)]
pub struct DevChain {
    /// The genesis.
    pub genesis: Genesis,
    /// State after the last block.
    pub state: State,
    /// Validator consensus keys.
    pub validators: Vec<Keypair>,
    /// The hospital (organisation) key.
    pub hospital: Keypair,
    /// A second organisation (a research institute).
    pub institute: Keypair,
    /// An auditor.
    pub auditor: Keypair,
    /// A physician at the hospital.
    pub physician: Keypair,
    /// A nurse at the hospital.
    pub nurse: Keypair,
    /// A researcher at the institute.
    pub researcher: Keypair,
    /// The hospital's privacy officer.
    pub privacy_officer: Keypair,
    /// Every committed block.
    pub blocks: Vec<Committed>,
    /// The event log, every perfect subtree kept (for proofs).
    pub log: MemoryTree<Blake3Tree>,
    next_seq: BTreeMap<PublicKey, u64>,
}

impl DevChain {
    /// A dev chain with `validators` validators (1..=16) and default limits.
    pub fn new(validators: usize) -> Self {
        Self::with_limits(validators, Limits::default())
    }

    /// A dev chain with the given limits.
    pub fn with_limits(validators: usize, limits: Limits) -> Self {
        let hospital = dev_key("org/st-mary-hospital");
        let institute = dev_key("org/genome-institute");
        let vkeys: Vec<Keypair> = (0..validators.clamp(1, 16))
            .map(|i| dev_key(&format!("validator/{i}")))
            .collect();
        let set = ValidatorSet::new(
            vkeys
                .iter()
                .map(|k| Validator {
                    key: k.public(),
                    organisation: hospital.public(),
                    power: 1,
                })
                .collect(),
        )
        .expect("dev validator set is valid");
        let physician = dev_key("actor/dr-house");
        let nurse = dev_key("actor/nurse-joy");
        let researcher = dev_key("actor/researcher-curie");
        let privacy_officer = dev_key("actor/privacy-officer");
        let auditor = dev_key("auditor/regulator");
        let actor = |k: &Keypair, org: &Keypair, role| GenesisActor {
            key: k.public(),
            organisation: org.public(),
            role,
        };
        let genesis = Genesis {
            version: crate::state::GENESIS_VERSION,
            chain_name: "twinledger-dev".into(),
            genesis_time: DEV_GENESIS_TIME,
            organisations: vec![
                GenesisOrg {
                    key: hospital.public(),
                    name: "St Mary Hospital".into(),
                },
                GenesisOrg {
                    key: institute.public(),
                    name: "Genome Institute".into(),
                },
            ],
            validators: set,
            auditors: vec![auditor.public()],
            actors: vec![
                actor(&physician, &hospital, Role::Physician),
                actor(&nurse, &hospital, Role::Nurse),
                actor(&researcher, &institute, Role::Researcher),
                actor(&privacy_officer, &hospital, Role::PrivacyOfficer),
            ],
            limits,
        };
        let state = State::from_genesis(&genesis).expect("dev genesis is valid");
        Self {
            genesis,
            state,
            validators: vkeys,
            hospital,
            institute,
            auditor,
            physician,
            nurse,
            researcher,
            privacy_officer,
            blocks: Vec::new(),
            log: MemoryTree::new(),
            next_seq: BTreeMap::new(),
        }
    }

    /// Time of the next block.
    pub fn next_time(&self) -> Timestamp {
        self.state.last_time().plus_ms(DEV_BLOCK_INTERVAL_MS)
    }

    /// Signs `payload` as `key` with its next sequence number (counting events made but not
    /// yet committed) and a deadline one hour after the next block time.
    pub fn event(&mut self, key: &Keypair, payload: EventPayload) -> SignedEvent {
        let author = key.public();
        let seq = self
            .next_seq
            .get(&author)
            .copied()
            .unwrap_or_else(|| self.state.next_seq(&author));
        self.next_seq.insert(author, seq + 1);
        Event::new(
            self.state.chain_id(),
            author,
            seq,
            self.next_time().plus_ms(3_600_000),
            payload,
        )
        .sign(key)
    }

    /// Commits a block of `events` (refused ones are left out and reported).
    pub fn commit(&mut self, events: Vec<SignedEvent>) -> Committed {
        self.try_commit(events).expect("dev block is valid")
    }

    /// Like [`DevChain::commit`], returning block-level errors.
    pub fn try_commit(&mut self, events: Vec<SignedEvent>) -> Result<Committed, BlockError> {
        let height = self.state.height() + 1;
        let set = self.state.validators_for(height).clone();
        // Round-robin proposer: a dev chain has no consensus rounds, and its validators hold
        // all the power, so any proposer of the set in force gives a valid block.
        let n = set.validators().len() as u64;
        let proposer_key = set.validators()[usize::try_from(height % n).unwrap_or(0)].key;
        let built = self
            .state
            .build_block(proposer_key, self.next_time(), events)?;
        // An independent validator re-executes the block from the previous state.
        let (state, results) = self.state.apply_block(&built.block)?;
        debug_assert_eq!(results, built.executed.results);
        let vote = CommitVote {
            checkpoint: built.block.header.checkpoint(),
            round: 0,
        };
        let sigs = self
            .validators
            .iter()
            .filter(|k| set.get(&k.public()).is_some())
            .map(|k| vote.sign(k))
            .collect();
        let certificate = CommitCertificate::new(0, sigs);
        certificate
            .verify(&vote.checkpoint, &set)
            .expect("dev validators hold all the power");
        for ev in &built.block.events {
            self.log.push_leaf_hash(ev.leaf_hash());
        }
        self.state = state;
        self.next_seq.clear();
        let c = Committed {
            committed: CommittedBlock {
                block: built.block,
                results,
                certificate,
            },
            rejected: built.rejected,
        };
        self.blocks.push(c.clone());
        Ok(c)
    }

    /// The validator set of the genesis.
    pub fn validator_set(&self) -> &ValidatorSet {
        &self.genesis.validators
    }
}
