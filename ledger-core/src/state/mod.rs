//! The consent state machine (PROTOCOL.md §6): `apply(state, block) -> (state, results)`.
//!
//! The state is a set of persistent (structure-sharing) ordered maps, so cloning it is O(1)
//! and a block, or a single event, is applied to a copy that replaces the original only when
//! everything checked out: a refused event or block changes nothing. Iteration order is the key
//! order, never a hash order, so every node derives the same decisions and the same state hash.
//! Every record is also in the authenticated state map ([`crate::statemap`], PROTOCOL.md §6.10),
//! whose root after a block is that block's state hash.

mod error;
pub mod records;
mod snapshot;
mod tx;

use rpds::RedBlackTreeMapSync as Map;
use serde::{Deserialize, Serialize};

pub use error::{BlockError, GenesisError, RejectReason};
use records::*;
pub use snapshot::{SNAPSHOT_VERSION, Snapshot, SnapshotError};
pub(crate) use tx::{Ctx, Tx};
use tx::{Slot, Write};

use crate::block::{BLOCK_VERSION, Block, BlockHeader, BlockResults, Outcome};
use crate::codec;
use crate::codes::Role;
use crate::event::{Concerns, EventPayload, SignedEvent};
use crate::hash::{ChainId, EventId, Hash, TwinId, domain, hash_in};
use crate::keys::PublicKey;
use crate::merkle::{Blake3Tree, Frontier, NodeId, TreeHasher, mth};
pub use crate::statemap::Table;
use crate::statemap::{StateMap, StateProof};
use crate::time::Timestamp;
use crate::validator::{ValidatorSet, ValidatorSetError};

/// A validator-set change made in block `h` is in force from block `h + VALIDATOR_SET_DELAY`,
/// so the set that must sign block `h + 1` is already known when block `h` is final.
pub const VALIDATOR_SET_DELAY: u64 = 2;

/// Chain-wide limits, fixed in genesis. Every one has a hard range (see [`Limits::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest signed event encoding, bytes (256..=65536; default 4096).
    pub max_event_bytes: u32,
    /// Most events in one block (1..=10000; default 1000).
    pub max_block_events: u32,
    /// Most grants one patient may hold, active or expired, revoked ones excluded
    /// (1..=65536; default 1024). Bounds the work of one access decision.
    pub max_grants_per_patient: u32,
    /// Latest deadline an event may carry, relative to block time, ms (1s..=7 days; default 1 day).
    pub max_event_ttl_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 4096,
            max_block_events: 1000,
            max_grants_per_patient: 1024,
            max_event_ttl_ms: 24 * 3600 * 1000,
        }
    }
}

impl Limits {
    /// Checks every limit against its hard range.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let check = |name, value: u64, min, max| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(GenesisError::LimitOutOfRange {
                    name,
                    value,
                    min,
                    max,
                })
            }
        };
        check(
            "max_event_bytes",
            u64::from(self.max_event_bytes),
            256,
            65536,
        )?;
        check(
            "max_block_events",
            u64::from(self.max_block_events),
            1,
            10_000,
        )?;
        check(
            "max_grants_per_patient",
            u64::from(self.max_grants_per_patient),
            1,
            65536,
        )?;
        check(
            "max_event_ttl_ms",
            self.max_event_ttl_ms,
            1000,
            7 * 24 * 3600 * 1000,
        )
    }
}

/// An organisation listed in genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisOrg {
    /// The organisation's key.
    pub key: PublicKey,
    /// Its name.
    pub name: String,
}

/// An actor enrolled in genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisActor {
    /// The actor's key.
    pub key: PublicKey,
    /// Its organisation (listed in `organisations`).
    pub organisation: PublicKey,
    /// Its role.
    pub role: Role,
}

/// What the state machine starts from. The genesis *file* (JSON, with network addresses) is
/// the genesis crate's; this is its ledger content, and the chain id is its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// [`GENESIS_VERSION`].
    pub version: u8,
    /// Human name of the chain (1..=64 bytes, no control characters).
    pub chain_name: String,
    /// Time of the genesis; block 1 must be later.
    pub genesis_time: Timestamp,
    /// Member organisations.
    pub organisations: Vec<GenesisOrg>,
    /// The initial validator set.
    pub validators: ValidatorSet,
    /// Auditors (read everything, may review break-glass).
    pub auditors: Vec<PublicKey>,
    /// Initially enrolled actors.
    pub actors: Vec<GenesisActor>,
    /// Chain limits.
    pub limits: Limits,
}

/// The genesis format version.
pub const GENESIS_VERSION: u8 = 1;

/// Checks a display name: 1..=max bytes, no control characters.
pub(crate) fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() || name.len() > max {
        return Err(format!(
            "{what} must be 1..={max} bytes, got {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(())
}

impl Genesis {
    /// The chain id: blake3 (domain `chain-id`) of the canonical encoding.
    pub fn chain_id(&self) -> ChainId {
        ChainId(hash_in(domain::CHAIN_ID, &codec::encode(self)).0)
    }

    /// Checks the genesis: limits, validator set, unique keys, known organisations, names.
    pub fn validate(&self) -> Result<(), GenesisError> {
        codec::check_version("genesis", self.version, GENESIS_VERSION)
            .map_err(|e| GenesisError::Invalid(e.to_string()))?;
        check_name("chain name", &self.chain_name, 64).map_err(GenesisError::Invalid)?;
        self.limits.validate()?;
        self.validators.validate()?;
        let mut seen = std::collections::BTreeSet::new();
        let orgs: std::collections::BTreeSet<_> =
            self.organisations.iter().map(|o| o.key).collect();
        for o in &self.organisations {
            check_name("organisation name", &o.name, 128).map_err(GenesisError::Invalid)?;
            if !seen.insert(o.key) {
                return Err(GenesisError::DuplicateKey(o.key));
            }
        }
        for k in self
            .auditors
            .iter()
            .chain(self.actors.iter().map(|a| &a.key))
        {
            if !seen.insert(*k) {
                return Err(GenesisError::DuplicateKey(*k));
            }
        }
        for a in &self.actors {
            if !orgs.contains(&a.organisation) {
                return Err(GenesisError::UnknownOrganisation {
                    what: "actor",
                    org: a.organisation,
                });
            }
        }
        for v in self.validators.validators() {
            if !orgs.contains(&v.organisation) {
                return Err(GenesisError::UnknownOrganisation {
                    what: "validator",
                    org: v.organisation,
                });
            }
            // A consensus key is only a consensus key: it must not also be a party's key.
            if seen.contains(&v.key) {
                return Err(GenesisError::DuplicateKey(v.key));
            }
        }
        Ok(())
    }
}

/// The whole ledger state after some block.
#[derive(Clone, Debug)]
pub struct State {
    chain_id: ChainId,
    limits: Limits,
    height: u64,
    last_block_hash: Hash,
    last_time: Timestamp,
    /// The authenticated map of every record, as of the last block.
    map: StateMap,
    log: Frontier,
    validators: ValidatorSet,
    pending_validators: Option<(u64, ValidatorSet)>,
    governance_seq: u64,
    // The records, one typed map per table of §6.10, private to this module: a record is
    // written only through its `Tx` method (`tx.rs`), which also logs it for the state map and
    // updates the indexes derived from it.
    nonces: Map<PublicKey, u64>,
    patients: Map<PublicKey, PatientRecord>,
    patient_keys: Map<PublicKey, PatientKey>,
    orgs: Map<PublicKey, OrgRecord>,
    actors: Map<PublicKey, ActorRecord>,
    auditors: Map<PublicKey, bool>,
    grants: Map<EventId, GrantRecord>,
    /// (patient, grant) for every unrevoked grant: what an access decision scans. Derived.
    patient_grants: Map<(PublicKey, EventId), ()>,
    delegations: Map<EventId, DelegationRecord>,
    /// (patient, delegate, delegation) for every unrevoked delegation. Derived.
    patient_delegates: Map<(PublicKey, PublicKey, EventId), ()>,
    /// (delegate, delegation) for every unrevoked delegation: the entries of
    /// `patient_delegates`, looked up by delegate. Derived, in memory only: not in the state
    /// map, so it changes no state root.
    delegate_delegations: Map<(PublicKey, EventId), ()>,
    break_glass: Map<EventId, BreakGlassRecord>,
    /// Break-glass accesses not yet signed off: the review queue. Derived.
    review_queue: Map<EventId, ()>,
    twins: Map<TwinId, TwinRecord>,
    /// Every scheduled validator-set change: the height it is in force from → the set's hash
    /// (table pending-validators; a record stays after its set comes into force).
    scheduled_validators: Map<u64, Hash>,
    /// Recorded double signs: (validator, height, round, kind) → the evidence event.
    misbehaviour: Map<Slot, EventId>,
    /// Per patient: count and chain head of the events concerning them.
    patient_events: Map<PublicKey, PatientEvents>,
    /// Sealed twin versions (2.4): (twin id, version) → record.
    sealed: Map<(TwinId, u64), SealedRecord>,
    /// Key releases (2.4): access request id → the release event.
    releases: Map<EventId, EventId>,
    /// Observers added or removed by governance (2.5).
    observers: Map<PublicKey, ObserverRecord>,
}

impl State {
    /// The state before block 1.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, GenesisError> {
        genesis.validate()?;
        let chain_id = genesis.chain_id();
        let mut st = Self {
            chain_id,
            limits: genesis.limits.clone(),
            height: 0,
            // Block 1 links to the chain id, binding the chain to its genesis.
            last_block_hash: Hash(chain_id.0),
            last_time: genesis.genesis_time,
            map: StateMap::default(),
            log: Frontier::new(),
            validators: genesis.validators.clone(),
            pending_validators: None,
            governance_seq: 0,
            nonces: Map::new_sync(),
            patients: Map::new_sync(),
            patient_keys: Map::new_sync(),
            orgs: Map::new_sync(),
            actors: Map::new_sync(),
            auditors: Map::new_sync(),
            grants: Map::new_sync(),
            patient_grants: Map::new_sync(),
            delegations: Map::new_sync(),
            patient_delegates: Map::new_sync(),
            delegate_delegations: Map::new_sync(),
            break_glass: Map::new_sync(),
            review_queue: Map::new_sync(),
            twins: Map::new_sync(),
            scheduled_validators: Map::new_sync(),
            misbehaviour: Map::new_sync(),
            patient_events: Map::new_sync(),
            sealed: Map::new_sync(),
            releases: Map::new_sync(),
            observers: Map::new_sync(),
        };
        // The genesis records are the map's first version (§6.10, §10.1); their keys are
        // distinct (validated), so the order of the writes does not matter.
        let mut tx = Tx::new(&mut st);
        for o in &genesis.organisations {
            tx.put_org(
                o.key,
                OrgRecord {
                    name: o.name.clone(),
                    live: true,
                },
            );
        }
        for a in &genesis.actors {
            tx.put_actor(
                a.key,
                ActorRecord {
                    organisation: a.organisation,
                    role: a.role,
                    live: true,
                },
            );
        }
        for k in &genesis.auditors {
            tx.put_auditor(*k, true);
        }
        let writes = tx.into_writes();
        st.map.update(last_writes(writes));
        Ok(st)
    }

    /// The chain id.
    pub fn chain_id(&self) -> ChainId {
        self.chain_id
    }
    /// The chain limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// Height of the last applied block (0 before block 1).
    pub fn height(&self) -> u64 {
        self.height
    }
    /// Hash of the last applied block (the chain id before block 1).
    pub fn last_block_hash(&self) -> Hash {
        self.last_block_hash
    }
    /// Time of the last applied block (genesis time before block 1).
    pub fn last_time(&self) -> Timestamp {
        self.last_time
    }
    /// The state commitment after the last block (its header's `state_hash`): the root of the
    /// state map (§6.10). Before block 1, the root of the genesis records.
    pub fn state_hash(&self) -> Hash {
        self.map.root()
    }
    /// The root of the state map after the last block; the same as [`State::state_hash`].
    pub fn state_root(&self) -> Hash {
        self.map.root()
    }
    /// The value of `table[key]` in the state map after the last block, with its proof against
    /// [`State::state_root`]: a membership proof when present, a non-membership proof when
    /// absent (§6.10). `key` is the table's key type (e.g. a `PublicKey`, an `EventId`).
    pub fn prove<K: Serialize>(&self, table: Table, key: &K) -> StateProof {
        self.map.prove(table, &codec::encode(key))
    }
    /// The stored value (canonical encoding) of `table[key]` after the last block.
    pub fn map_value<K: Serialize>(&self, table: Table, key: &K) -> Option<&[u8]> {
        self.map.get(table, &codec::encode(key))
    }
    /// Number of records in the state map after the last block.
    pub fn map_len(&self) -> usize {
        self.map.len()
    }
    /// How many accepted events concern `patient`, and the head of their chain (§6.10,
    /// patient-events); `None` when none does.
    pub fn patient_events(&self, patient: &PublicKey) -> Option<&PatientEvents> {
        self.patient_events.get(patient)
    }
    /// Number of events in the log.
    pub fn log_size(&self) -> u64 {
        self.log.size()
    }
    /// Root of the event log.
    pub fn log_root(&self) -> Hash {
        Hash(self.log.root::<Blake3Tree>())
    }
    /// The log's right edge (for stores that rebuild or check it).
    pub fn log_frontier(&self) -> &Frontier {
        &self.log
    }
    /// The validator set that signed the last applied block (the genesis set before block 1).
    pub fn validators_in_force(&self) -> &ValidatorSet {
        &self.validators
    }
    /// The validator set that signs the block at `height` (`height` > current height).
    pub fn validators_for(&self, height: u64) -> &ValidatorSet {
        match &self.pending_validators {
            Some((at, set)) if *at <= height => set,
            _ => &self.validators,
        }
    }
    /// The next sequence number `author` must use.
    pub fn next_seq(&self, author: &PublicKey) -> u64 {
        self.nonces.get(author).copied().unwrap_or(0)
    }
    /// A grant.
    pub fn grant(&self, id: &EventId) -> Option<&GrantRecord> {
        self.grants.get(id)
    }
    /// Whether a grant counts at `time` (PROTOCOL §6.1 condition 4): not revoked, inside its
    /// window, and made by the patient or by a delegate whose delegation is live at `time`.
    pub fn grant_in_force(&self, g: &GrantRecord, time: Timestamp) -> bool {
        g.active_at(time)
            && match g.granted_by {
                GrantedBy::Patient => true,
                GrantedBy::Delegate(d) => self.delegation(&d).is_some_and(|d| d.live_at(time)),
            }
    }
    /// Grants of a patient that are not revoked (active, future or expired), by id.
    pub fn patient_grants(
        &self,
        patient: &PublicKey,
    ) -> impl Iterator<Item = (&EventId, &GrantRecord)> {
        let lo = (*patient, EventId::ZERO);
        let hi = (*patient, EventId([0xff; 32]));
        self.patient_grants
            .range(lo..=hi)
            .filter_map(|((_, id), ())| self.grants.get(id).map(|g| (id, g)))
    }
    /// A delegation.
    pub fn delegation(&self, id: &EventId) -> Option<&DelegationRecord> {
        self.delegations.get(id)
    }
    /// The patient an event concerns, if any (a break-glass review concerns the patient of the
    /// access it reviews). What a node indexes events by and checks reads against.
    pub fn patient_concerned(&self, ev: &SignedEvent) -> Option<PublicKey> {
        match ev.event.payload.concerns() {
            Concerns::Patient(p) => Some(p),
            Concerns::ReviewOf(request) => self.break_glass(&request).map(|b| b.patient),
            Concerns::Nobody => None,
        }
    }

    /// Double signs recorded on chain: (validator, height, round, kind) → the evidence event.
    pub fn misbehaviours(
        &self,
    ) -> impl Iterator<Item = (&(PublicKey, u64, u32, crate::consensus::VoteKind), &EventId)> {
        self.misbehaviour.iter()
    }

    /// Whether `key` holds a live delegation from `patient` at `time`.
    pub fn is_live_delegate(&self, patient: &PublicKey, key: &PublicKey, time: Timestamp) -> bool {
        let lo = (*patient, *key, EventId::ZERO);
        let hi = (*patient, *key, EventId([0xff; 32]));
        self.patient_delegates
            .range(lo..=hi)
            .any(|((_, _, id), ())| self.delegations.get(id).is_some_and(|d| d.live_at(time)))
    }
    /// Whether `key` holds a live delegation from any patient at `time` (a lookup by delegate
    /// in a derived in-memory index; the state root does not depend on it).
    pub fn is_live_delegate_of_anyone(&self, key: &PublicKey, time: Timestamp) -> bool {
        let lo = (*key, EventId::ZERO);
        let hi = (*key, EventId([0xff; 32]));
        self.delegate_delegations
            .range(lo..=hi)
            .any(|((_, id), ())| self.delegations.get(id).is_some_and(|d| d.live_at(time)))
    }
    /// The delegations from `patient` to `key` that are live at `time`, with their ids.
    pub fn live_delegations<'a>(
        &'a self,
        patient: &PublicKey,
        key: &PublicKey,
        time: Timestamp,
    ) -> impl Iterator<Item = (&'a EventId, &'a DelegationRecord)> + 'a {
        let lo = (*patient, *key, EventId::ZERO);
        let hi = (*patient, *key, EventId([0xff; 32]));
        self.patient_delegates
            .range(lo..=hi)
            .filter_map(|((_, _, id), ())| self.delegations.get(id).map(|d| (id, d)))
            .filter(move |(_, d)| d.live_at(time))
    }
    /// A patient by id.
    pub fn patient(&self, id: &PublicKey) -> Option<&PatientRecord> {
        self.patients.get(id)
    }
    /// The patient a key belongs to (current or retired).
    pub fn patient_of_key(&self, key: &PublicKey) -> Option<&PatientKey> {
        self.patient_keys.get(key)
    }
    /// An actor.
    pub fn actor(&self, key: &PublicKey) -> Option<&ActorRecord> {
        self.actors.get(key)
    }
    /// An organisation.
    pub fn organisation(&self, key: &PublicKey) -> Option<&OrgRecord> {
        self.orgs.get(key)
    }
    /// Whether `key` is a live auditor.
    pub fn is_auditor(&self, key: &PublicKey) -> bool {
        self.auditors.get(key).copied().unwrap_or(false)
    }
    /// A break-glass access and its review.
    pub fn break_glass(&self, id: &EventId) -> Option<&BreakGlassRecord> {
        self.break_glass.get(id)
    }
    /// Break-glass accesses awaiting review, oldest id first.
    pub fn review_queue(&self) -> impl Iterator<Item = &EventId> {
        self.review_queue.keys()
    }
    /// A sealed twin version (2.4), erased or not.
    pub fn sealed(&self, twin: &TwinId, version: u64) -> Option<&SealedRecord> {
        self.sealed.get(&(*twin, version))
    }
    /// Every organisation record, by key.
    pub fn organisations(&self) -> impl Iterator<Item = (&PublicKey, &OrgRecord)> {
        self.orgs.iter()
    }
    /// An observer's record (2.5): added or removed by governance.
    pub fn observer(&self, key: &PublicKey) -> Option<&ObserverRecord> {
        self.observers.get(key)
    }
    /// Every observer record (2.5), by key.
    pub fn observers(&self) -> impl Iterator<Item = (&PublicKey, &ObserverRecord)> {
        self.observers.iter()
    }
    /// The key release that answered an access request, if any (2.4).
    pub fn release_of(&self, access: &EventId) -> Option<&EventId> {
        self.releases.get(access)
    }
    /// A twin's latest anchored version.
    pub fn twin(&self, id: &TwinId) -> Option<&TwinRecord> {
        self.twins.get(id)
    }
    /// The next governance sequence number approvals must sign.
    pub fn governance_seq(&self) -> u64 {
        self.governance_seq
    }
    /// The auditor record of `key`: `Some(live)` once enrolled, `None` if never.
    pub(crate) fn auditor(&self, key: &PublicKey) -> Option<bool> {
        self.auditors.get(key).copied()
    }
    /// Whether a double sign in `slot` is recorded.
    pub(crate) fn misbehaviour_recorded(&self, slot: &Slot) -> bool {
        self.misbehaviour.contains_key(slot)
    }

    /// Every record the typed maps hold, as state-map records (table, encoded key, encoded
    /// value): what the state map must hold, and nothing else (§6.10).
    fn typed_records(&self) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        fn add<'a, K: Serialize + 'a, V: Serialize + 'a>(
            out: &mut Vec<(Table, Vec<u8>, Vec<u8>)>,
            table: Table,
            records: impl Iterator<Item = (&'a K, &'a V)>,
        ) {
            out.extend(records.map(|(k, v)| (table, codec::encode(k), codec::encode(v))));
        }
        let mut out = Vec::new();
        add(&mut out, Table::Nonce, self.nonces.iter());
        add(&mut out, Table::Patient, self.patients.iter());
        add(&mut out, Table::PatientKey, self.patient_keys.iter());
        add(&mut out, Table::Org, self.orgs.iter());
        add(&mut out, Table::Actor, self.actors.iter());
        add(&mut out, Table::Auditor, self.auditors.iter());
        add(&mut out, Table::Grant, self.grants.iter());
        add(&mut out, Table::Delegation, self.delegations.iter());
        add(&mut out, Table::BreakGlass, self.break_glass.iter());
        add(&mut out, Table::Twin, self.twins.iter());
        add(
            &mut out,
            Table::PendingValidators,
            self.scheduled_validators.iter(),
        );
        if self.governance_seq > 0 {
            add(
                &mut out,
                Table::GovernanceSeq,
                std::iter::once((&(), &self.governance_seq)),
            );
        }
        add(&mut out, Table::Misbehaviour, self.misbehaviour.iter());
        add(&mut out, Table::PatientEvents, self.patient_events.iter());
        add(&mut out, Table::Sealed, self.sealed.iter());
        add(&mut out, Table::Release, self.releases.iter());
        add(&mut out, Table::Observer, self.observers.iter());
        out
    }

    /// Checks the invariant of the typed writes (`Tx`): every record of every typed map is in
    /// the state map with the same encoding, the state map holds nothing else (a map rebuilt
    /// from the typed records has the same root), and the derived indexes (unrevoked grants by
    /// patient, unrevoked delegations by patient and delegate, the review queue) are exactly
    /// what the records imply. For tests; it walks the whole state.
    #[doc(hidden)]
    pub fn check_map_consistency(&self) -> Result<(), String> {
        let records = self.typed_records();
        for (table, key, value) in &records {
            match self.map.get(*table, key) {
                Some(v) if v == value.as_slice() => {}
                Some(v) => {
                    return Err(format!(
                        "{}[{}] is {} in the state map but {} in the state",
                        table.name(),
                        hex::encode(key),
                        hex::encode(v),
                        hex::encode(value)
                    ));
                }
                None => {
                    return Err(format!(
                        "{}[{}] is in the state but not in the state map",
                        table.name(),
                        hex::encode(key)
                    ));
                }
            }
        }
        if self.map.len() != records.len() {
            return Err(format!(
                "the state map holds {} records, the state {}",
                self.map.len(),
                records.len()
            ));
        }
        let mut rebuilt = StateMap::new();
        rebuilt.set_records(records);
        if rebuilt.root() != self.map.root() {
            return Err(format!(
                "the state map's root {} is not the root {} of the state's records",
                self.map.root().to_hex(),
                rebuilt.root().to_hex()
            ));
        }
        let index = |what: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "the index of {what} is out of step with the records"
                ))
            }
        };
        index(
            "unrevoked grants",
            self.patient_grants.keys().copied().eq(self
                .grants
                .iter()
                .filter(|(_, g)| g.revoked_at.is_none())
                .map(|(id, g)| (g.grant.patient, *id))
                .collect::<std::collections::BTreeSet<_>>()),
        )?;
        index(
            "unrevoked delegations",
            self.patient_delegates.keys().copied().eq(self
                .delegations
                .iter()
                .filter(|(_, d)| d.revoked_at.is_none())
                .map(|(id, d)| (d.patient, d.delegate, *id))
                .collect::<std::collections::BTreeSet<_>>()),
        )?;
        index(
            "unrevoked delegations by delegate",
            self.delegate_delegations.keys().copied().eq(self
                .patient_delegates
                .keys()
                .map(|(_, d, id)| (*d, *id))
                .collect::<std::collections::BTreeSet<_>>()),
        )?;
        index(
            "break-glass accesses awaiting review",
            self.review_queue.keys().copied().eq(self
                .break_glass
                .iter()
                .filter(|(_, b)| b.review.is_none())
                .map(|(id, _)| *id)),
        )?;
        let pending = self
            .pending_validators
            .as_ref()
            .is_none_or(|(at, set)| self.scheduled_validators.get(at) == Some(&set.hash()));
        index("the pending validator set", pending)
    }

    /// Checks and applies one event at block `height` and `time`; on refusal nothing changes.
    /// `writes` receives the state-hash write log of the event (`None`: not wanted, not made).
    #[allow(clippy::too_many_arguments)]
    fn apply_event(
        &mut self,
        ev: &SignedEvent,
        bytes: &[u8],
        height: u64,
        time: Timestamp,
        sigs: SignatureCheck,
        writes: Option<&mut Vec<Write>>,
    ) -> Result<(EventId, Outcome), RejectReason> {
        let e = &ev.event;
        // Decoders check the version too; events also arrive inside blocks (proposals,
        // exports), so the rule is enforced where every event is applied (PROTOCOL.md §5).
        if e.version != crate::event::EVENT_VERSION {
            return Err(RejectReason::InvalidField(format!(
                "event version {} is not supported (this protocol has version {})",
                e.version,
                crate::event::EVENT_VERSION
            )));
        }
        if e.chain_id != self.chain_id {
            return Err(RejectReason::WrongChain {
                expected: self.chain_id,
                got: e.chain_id,
            });
        }
        let max = self.limits.max_event_bytes as usize;
        let encoded_len = bytes.len();
        if encoded_len > max {
            return Err(RejectReason::TooLarge {
                size: encoded_len,
                max,
            });
        }
        if time > e.not_after {
            return Err(RejectReason::Expired {
                not_after: e.not_after,
                time,
            });
        }
        if e.not_after.0 - time.0 > self.limits.max_event_ttl_ms {
            return Err(RejectReason::DeadlineTooFar {
                not_after: e.not_after,
                time,
                max_ms: self.limits.max_event_ttl_ms,
            });
        }
        let expected = self.next_seq(&e.author);
        if e.seq != expected {
            return Err(RejectReason::WrongSequence {
                author: e.author,
                expected,
                got: e.seq,
            });
        }
        if self.patient_keys.get(&e.author).is_some_and(|k| k.retired) {
            return Err(RejectReason::RetiredKey(e.author));
        }
        // Signature last among the cheap checks: it is the expensive one.
        if sigs == SignatureCheck::Verify {
            ev.verify_signature()
                .map_err(|_| RejectReason::BadSignature(e.author))?;
        }

        let id = SignedEvent::id_from_bytes(bytes);
        debug_assert_eq!(
            id,
            ev.id(),
            "the unsigned encoding is a prefix of the signed one"
        );
        let cx = Ctx {
            id,
            author: e.author,
            time,
            height,
            kind: e.payload.kind(),
        };
        // Decided on the state before the event (a review concerns the patient of its access).
        let concerned = self.patient_concerned(ev);
        // Applied in place; a refusal after some writes undoes them (Tx::roll_back).
        let mut tx = if writes.is_some() {
            Tx::new(self)
        } else {
            Tx::unlogged(self)
        };
        let applied = (|| {
            let outcome = match &e.payload {
                EventPayload::ConsentGrant(p) => p.apply(&mut tx, &cx)?,
                EventPayload::ConsentRevoke(p) => p.apply(&mut tx, &cx)?,
                EventPayload::DelegateGrant(p) => p.apply(&mut tx, &cx)?,
                EventPayload::DelegateRevoke(p) => p.apply(&mut tx, &cx)?,
                EventPayload::KeyRotation(p) => p.apply(&mut tx, &cx)?,
                EventPayload::AccessRequest(p) => p.apply(&mut tx, &cx)?,
                EventPayload::BreakGlassRequest(p) => p.apply(&mut tx, &cx)?,
                EventPayload::BreakGlassReview(p) => p.apply(&mut tx, &cx)?,
                EventPayload::TwinAnchor(p) => p.apply(&mut tx, &cx)?,
                EventPayload::ActorEnrol(p) => p.apply(&mut tx, &cx)?,
                EventPayload::ActorRevoke(p) => p.apply(&mut tx, &cx)?,
                EventPayload::Governance(p) => p.apply(&mut tx, &cx)?,
                EventPayload::Misbehaviour(p) => p.apply(&mut tx, &cx)?,
                EventPayload::TwinSeal(p) => p.apply(&mut tx, &cx)?,
                EventPayload::KeyRelease(p) => p.apply(&mut tx, &cx)?,
                EventPayload::TwinErase(p) => p.apply(&mut tx, &cx)?,
            };
            Ok::<_, RejectReason>(outcome)
        })();
        let outcome = match applied {
            Ok(o) => o,
            Err(reason) => {
                tx.roll_back();
                return Err(reason);
            }
        };
        if let Some(p) = concerned {
            tx.chain_patient_event(p, &id);
        }
        // `e.seq` is the author's next sequence number (checked above): it becomes `e.seq + 1`.
        tx.bump_nonce(&e.author);
        if let Some(writes) = writes {
            writes.extend(tx.into_writes());
        }
        Ok((id, outcome))
    }

    /// Checks one event against this state as if it were put in the next block at `time`,
    /// without changing anything: what a node runs on submission and on mempool entry.
    pub fn check_event(&self, ev: &SignedEvent, time: Timestamp) -> Result<EventId, RejectReason> {
        let mut scratch = self.clone();
        scratch.admit(ev, time, SignatureCheck::Verify)
    }

    /// Applies one event to this state as if it were put in the next block at `time`: what a
    /// node's mempool does to a scratch copy of the committed state, so that a second event of
    /// the same author is checked after the first. On refusal nothing changes.
    pub fn admit(
        &mut self,
        ev: &SignedEvent,
        time: Timestamp,
        sigs: SignatureCheck,
    ) -> Result<EventId, RejectReason> {
        let bytes = ev.to_bytes();
        self.apply_event(ev, &bytes, self.height + 1, time, sigs, None)
            .map(|(id, _)| id)
    }

    fn start_block(&self, height: u64) -> Self {
        let mut st = self.clone();
        if let Some((at, set)) = &st.pending_validators
            && *at <= height
        {
            st.validators = set.clone();
            st.pending_validators = None;
        }
        st
    }

    fn check_block_frame(&self, header: &BlockHeader, count: usize) -> Result<(), BlockError> {
        let height = self.height + 1;
        if header.chain_id != self.chain_id {
            return Err(BlockError::WrongChain {
                expected: self.chain_id,
                got: header.chain_id,
            });
        }
        if header.height != height {
            return Err(BlockError::WrongHeight {
                expected: height,
                got: header.height,
            });
        }
        if header.prev_hash != self.last_block_hash {
            return Err(BlockError::BrokenLink {
                height,
                expected: self.last_block_hash,
                got: header.prev_hash,
            });
        }
        if header.time <= self.last_time {
            return Err(BlockError::TimeNotIncreasing {
                height,
                time: header.time,
                previous: self.last_time,
            });
        }
        if self.validators_for(height).get(&header.proposer).is_none() {
            return Err(BlockError::UnknownProposer {
                height,
                proposer: header.proposer,
            });
        }
        let max = self.limits.max_block_events as usize;
        if count > max {
            return Err(BlockError::TooManyEvents { height, count, max });
        }
        Ok(())
    }

    fn finish_block(
        mut self,
        header_in: BlockHeader,
        leaves: &[[u8; 32]],
        writes: Vec<Write>,
    ) -> (Self, BlockHeader) {
        let mut header = header_in;
        self.map.update(last_writes(writes));
        header.state_hash = self.map.root();
        header.events_root = Hash(mth::<Blake3Tree>(leaves));
        header.log_size = self.log.size();
        header.log_root = Hash(self.log.root::<Blake3Tree>());
        header.validators_hash = self.validators.hash();
        self.height = header.height;
        self.last_time = header.time;
        self.last_block_hash = header.hash();
        (self, header)
    }

    /// Applies one event of a block being applied or built, and appends its leaf to the event
    /// log: the one event loop of [`State::execute_block`] and [`State::build_block_with`].
    /// On a refusal nothing of the event is kept.
    fn step_event(
        &mut self,
        ev: &SignedEvent,
        height: u64,
        time: Timestamp,
        sigs: SignatureCheck,
        out: &mut Derived,
    ) -> Result<(), RejectReason> {
        let bytes = ev.to_bytes();
        let (id, outcome) =
            self.apply_event(ev, &bytes, height, time, sigs, Some(&mut out.writes))?;
        let leaf = Blake3Tree::leaf(&bytes);
        out.log_nodes.extend(self.log.push::<Blake3Tree>(leaf));
        out.leaves.push(leaf);
        out.outcomes.push(outcome);
        out.ids.push(id);
        Ok(())
    }

    /// Applies a block: checks its frame (chain, height, link, time, proposer, size), applies
    /// every event in order (any refused event refuses the whole block), then checks every
    /// derived header field (events root, log root and size, results hash, state hash,
    /// validators hash). Returns the new state and the block's results; `self` is unchanged.
    pub fn apply_block(&self, block: &Block) -> Result<(State, BlockResults), BlockError> {
        self.apply_block_with(block, SignatureCheck::Verify)
    }

    /// [`State::apply_block`] with a choice of event-signature checking. `AlreadyVerified` is
    /// for a node replaying blocks it verified before it stored them (their integrity anchored by
    /// the hash chain and a verified certificate); everything else is still checked.
    pub fn apply_block_with(
        &self,
        block: &Block,
        sigs: SignatureCheck,
    ) -> Result<(State, BlockResults), BlockError> {
        self.execute_block(block, sigs)
            .map(|e| (e.state, e.results))
    }

    /// [`State::apply_block_with`], returning everything applying the block derived: the new
    /// state, the results, the event ids and the event-log nodes the block's leaves completed
    /// (what a node stores to serve inclusion proofs; it need not hash anything again).
    pub fn execute_block(
        &self,
        block: &Block,
        sigs: SignatureCheck,
    ) -> Result<Executed, BlockError> {
        let h = &block.header;
        codec::check_version("block", h.version, BLOCK_VERSION)?;
        self.check_block_frame(h, block.events.len())?;
        if h.event_count as usize != block.events.len() {
            return Err(BlockError::HeaderMismatch {
                height: h.height,
                field: "event_count",
                expected: block.events.len().to_string(),
                got: h.event_count.to_string(),
            });
        }
        let mut st = self.start_block(h.height);
        let mut out = Derived::with_capacity(block.events.len());
        for (index, ev) in block.events.iter().enumerate() {
            st.step_event(ev, h.height, h.time, sigs, &mut out)
                .map_err(|reason| BlockError::InvalidEvent {
                    height: h.height,
                    index,
                    id: ev.id(),
                    reason,
                })?;
        }
        let results = BlockResults {
            outcomes: out.outcomes,
        };
        let mut derived = h.clone();
        derived.results_hash = results.hash();
        let (st, derived) = st.finish_block(derived, &out.leaves, out.writes);
        for (field, want, got) in [
            ("events_root", derived.events_root, h.events_root),
            ("log_root", derived.log_root, h.log_root),
            ("results_hash", derived.results_hash, h.results_hash),
            ("state_hash", derived.state_hash, h.state_hash),
            (
                "validators_hash",
                derived.validators_hash,
                h.validators_hash,
            ),
        ] {
            if want != got {
                return Err(BlockError::HeaderMismatch {
                    height: h.height,
                    field,
                    expected: want.to_hex(),
                    got: got.to_hex(),
                });
            }
        }
        if derived.log_size != h.log_size {
            return Err(BlockError::HeaderMismatch {
                height: h.height,
                field: "log_size",
                expected: derived.log_size.to_string(),
                got: h.log_size.to_string(),
            });
        }
        Ok(Executed {
            state: st,
            results,
            ids: out.ids,
            log_nodes: out.log_nodes,
        })
    }

    /// Builds the next block as `proposer` at `time` from candidate events, in the given order:
    /// each candidate is checked against the state as it stands after the ones before it;
    /// refused ones are left out and reported, at most `max_block_events` are taken.
    pub fn build_block(
        &self,
        proposer: PublicKey,
        time: Timestamp,
        candidates: impl IntoIterator<Item = SignedEvent>,
    ) -> Result<BuiltBlock, BlockError> {
        self.build_block_with(proposer, time, candidates, SignatureCheck::Verify)
    }

    /// [`State::build_block`] for candidates whose signatures the caller already verified
    /// (`AlreadyVerified`), e.g. on mempool admission.
    pub fn build_block_with(
        &self,
        proposer: PublicKey,
        time: Timestamp,
        candidates: impl IntoIterator<Item = SignedEvent>,
        sigs: SignatureCheck,
    ) -> Result<BuiltBlock, BlockError> {
        let height = self.height + 1;
        let mut header = BlockHeader {
            version: BLOCK_VERSION,
            chain_id: self.chain_id,
            height,
            prev_hash: self.last_block_hash,
            time,
            proposer,
            event_count: 0,
            events_root: Hash::ZERO,
            log_size: 0,
            log_root: Hash::ZERO,
            results_hash: Hash::ZERO,
            state_hash: Hash::ZERO,
            validators_hash: Hash::ZERO,
        };
        self.check_block_frame(&header, 0)?;
        let max = self.limits.max_block_events as usize;
        let mut st = self.start_block(height);
        let mut out = Derived::with_capacity(0);
        let mut events = Vec::new();
        let mut rejected = Vec::new();
        for ev in candidates {
            if events.len() == max {
                break;
            }
            match st.step_event(&ev, height, time, sigs, &mut out) {
                Ok(()) => events.push(ev),
                Err(reason) => rejected.push((ev.id(), reason)),
            }
        }
        let results = BlockResults {
            outcomes: out.outcomes,
        };
        header.results_hash = results.hash();
        header.event_count = u32::try_from(events.len()).expect("bounded by max_block_events");
        let (state, header) = st.finish_block(header, &out.leaves, out.writes);
        Ok(BuiltBlock {
            block: Block { header, events },
            executed: Executed {
                state,
                results,
                ids: out.ids,
                log_nodes: out.log_nodes,
            },
            rejected,
        })
    }
}

/// The state-map update of a sequence of writes: the last write of a record is its new value
/// (§6.10).
fn last_writes(writes: Vec<Write>) -> std::collections::BTreeMap<Hash, Vec<u8>> {
    let mut entries = std::collections::BTreeMap::new();
    for w in writes {
        entries.insert(crate::statemap::key_hash(w.table, &w.key), w.value);
    }
    entries
}

/// What the event loop of a block accumulates.
struct Derived {
    writes: Vec<Write>,
    outcomes: Vec<Outcome>,
    leaves: Vec<[u8; 32]>,
    ids: Vec<EventId>,
    log_nodes: Vec<(NodeId, [u8; 32])>,
}

impl Derived {
    fn with_capacity(n: usize) -> Self {
        Self {
            writes: Vec::new(),
            outcomes: Vec::with_capacity(n),
            leaves: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            log_nodes: Vec::with_capacity(2 * n),
        }
    }
}

/// Everything applying or building a block derives (Tessera's integrate returns the tiles it
/// computed in the same way): the storage layer writes it and hashes nothing again.
#[derive(Clone, Debug)]
pub struct Executed {
    /// The state after the block.
    pub state: State,
    /// The block's results.
    pub results: BlockResults,
    /// The id of every event, in block order.
    pub ids: Vec<EventId>,
    /// The event-log nodes the block's leaves completed, level 0 (the leaves) included, in
    /// the order [`Frontier::push`] returns them.
    pub log_nodes: Vec<(NodeId, [u8; 32])>,
}

/// Whether event signatures are checked while applying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Verify every event signature (validators re-executing a proposal, auditors).
    Verify,
    /// The caller verified them already (mempool admission, replay of the node's own store).
    AlreadyVerified,
}

/// A block made by [`State::build_block`].
#[derive(Debug)]
pub struct BuiltBlock {
    /// The block (to be signed by the validators).
    pub block: Block,
    /// What executing it derived (state after it, results, ids, log nodes).
    pub executed: Executed,
    /// Candidates left out, with the reason.
    pub rejected: Vec<(EventId, RejectReason)>,
}

/// Convenience form of [`State::apply_block`].
pub fn apply(state: &State, block: &Block) -> Result<(State, BlockResults), BlockError> {
    state.apply_block(block)
}

impl From<ValidatorSetError> for RejectReason {
    fn from(e: ValidatorSetError) -> Self {
        RejectReason::Governance(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devkit::DevChain;

    /// A write through its `Tx` method keeps the typed maps, the indexes and the state map in
    /// step; a record set, a map entry added or an index entry made behind `Tx`'s back is
    /// caught by `check_map_consistency`.
    #[test]
    fn map_consistency_catches_a_write_made_behind_tx() {
        let chain = DevChain::new(4);
        let base = chain.state.clone();
        base.check_map_consistency().unwrap();
        let auditor = chain.auditor.public();

        let mut st = base.clone();
        let mut tx = Tx::new(&mut st);
        tx.put_auditor(auditor, false);
        tx.bump_nonce(&auditor);
        let writes = tx.into_writes();
        st.map.update(last_writes(writes));
        st.check_map_consistency().unwrap();

        let mut st = base.clone();
        st.auditors.insert_mut(auditor, false);
        let e = st.check_map_consistency().unwrap_err();
        assert!(e.contains("auditor["), "{e}");

        let mut st = base.clone();
        st.nonces.insert_mut(auditor, 1);
        let e = st.check_map_consistency().unwrap_err();
        assert!(e.contains("not in the state map"), "{e}");

        let mut st = base.clone();
        st.map.set_records([(Table::Twin, vec![1; 32], vec![2])]);
        let e = st.check_map_consistency().unwrap_err();
        assert!(e.contains("holds"), "{e}");

        let mut st = base.clone();
        st.review_queue.insert_mut(EventId::ZERO, ());
        let e = st.check_map_consistency().unwrap_err();
        assert!(e.contains("awaiting review"), "{e}");
    }
}
