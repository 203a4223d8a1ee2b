//! State snapshots (issue #13, ADR 0010): everything a [`State`] holds that cannot be derived,
//! as one versioned, postcard-encoded value, and the rebuild that checks it.
//!
//! A snapshot is node-local (it is never hashed or signed, so it is not in PROTOCOL.md): a node
//! writes one every so often and, on start-up, rebuilds its state from the latest one instead of
//! replaying the chain from genesis. [`State::from_snapshot`] rebuilds the typed maps, the
//! derived indexes (a patient's unrevoked grants, delegations by patient and delegate, the
//! review queue) and the authenticated state map from the records, and refuses a snapshot
//! whose rebuilt map root is not the root it claims; [`State::check_header`] then binds the
//! rebuilt state to a certified block header (height, block hash, time, state hash, log root
//! and size, validators hash). A state is used only after both checks pass.

use rpds::RedBlackTreeMapSync as Map;
use serde::{Deserialize, Serialize};

use super::records::*;
use super::tx::Slot;
use super::{Genesis, GenesisError, Limits, State};
use crate::block::BlockHeader;
use crate::hash::{ChainId, EventId, Hash, TwinId};
use crate::keys::PublicKey;
use crate::merkle::{Blake3Tree, Frontier};
use crate::statemap::{StateMap, Table};
use crate::time::Timestamp;
use crate::validator::ValidatorSet;

/// The snapshot format version.
/// 2 (protocol 2.4): adds the sealed and release tables.
/// 3 (protocol 2.5): adds the observer table.
pub const SNAPSHOT_VERSION: u8 = 3;

/// Everything a [`State`] holds that is not derivable, at one height: the chain position, the
/// event log's frontier, the validator sets, the governance sequence and every record of every
/// table of PROTOCOL.md §6.10, each table sorted by key (strictly increasing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u8,
    /// The chain (the genesis hash).
    pub chain_id: ChainId,
    /// The chain limits (fixed by the genesis).
    pub limits: Limits,
    /// Height of the last applied block.
    pub height: u64,
    /// Hash of the last applied block.
    pub last_block_hash: Hash,
    /// Time of the last applied block.
    pub last_time: Timestamp,
    /// The state-map root the records must rebuild to (the block's `state_hash`).
    pub state_root: Hash,
    /// The event log's right edge.
    pub log: Frontier,
    /// The validator set in force.
    pub validators: ValidatorSet,
    /// A scheduled set and the height it comes into force at.
    pub pending_validators: Option<(u64, ValidatorSet)>,
    /// The governance sequence.
    pub governance_seq: u64,
    /// Table nonce.
    pub nonces: Vec<(PublicKey, u64)>,
    /// Table patient.
    pub patients: Vec<(PublicKey, PatientRecord)>,
    /// Table patient-key.
    pub patient_keys: Vec<(PublicKey, PatientKey)>,
    /// Table organisation.
    pub orgs: Vec<(PublicKey, OrgRecord)>,
    /// Table actor.
    pub actors: Vec<(PublicKey, ActorRecord)>,
    /// Table auditor.
    pub auditors: Vec<(PublicKey, bool)>,
    /// Table grant.
    pub grants: Vec<(EventId, GrantRecord)>,
    /// Table delegation.
    pub delegations: Vec<(EventId, DelegationRecord)>,
    /// Table break-glass.
    pub break_glass: Vec<(EventId, BreakGlassRecord)>,
    /// Table twin.
    pub twins: Vec<(TwinId, TwinRecord)>,
    /// Table pending-validators (every scheduled change, in force or not).
    pub scheduled_validators: Vec<(u64, Hash)>,
    /// Table misbehaviour.
    pub misbehaviour: Vec<(Slot, EventId)>,
    /// Table patient-events.
    pub patient_events: Vec<(PublicKey, PatientEvents)>,
    /// Table sealed (2.4).
    pub sealed: Vec<((TwinId, u64), SealedRecord)>,
    /// Table release (2.4).
    pub releases: Vec<(EventId, EventId)>,
    /// Table observer (2.5).
    pub observers: Vec<(PublicKey, ObserverRecord)>,
}

/// Why a snapshot is refused. Each names what differs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not decode.
    #[error("snapshot does not decode: {0}")]
    Decode(String),
    /// Another format version.
    #[error("snapshot version {got} is not supported (this node reads version {SNAPSHOT_VERSION})")]
    Version {
        /// The snapshot's version.
        got: u8,
    },
    /// The genesis is invalid.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// Taken on another chain.
    #[error("snapshot is of chain {snapshot}, the genesis is chain {genesis}")]
    WrongChain {
        /// The snapshot's chain.
        snapshot: ChainId,
        /// The genesis's chain.
        genesis: ChainId,
    },
    /// Limits other than the genesis's.
    #[error("snapshot limits {snapshot:?} are not the genesis limits {genesis:?}")]
    Limits {
        /// The snapshot's.
        snapshot: Limits,
        /// The genesis's.
        genesis: Limits,
    },
    /// A table's records are not in strictly increasing key order.
    #[error("snapshot table {table}: record {index} is not after the one before it")]
    Unsorted {
        /// The table.
        table: &'static str,
        /// Position of the first record out of order.
        index: usize,
    },
    /// The pending validator set is not the one its pending-validators record names, or not
    /// after the snapshot's height.
    #[error("snapshot pending validator set (in force from {at}) is not the one scheduled")]
    PendingValidators {
        /// The height it claims to be in force from.
        at: u64,
    },
    /// The records rebuild to another state-map root than the one claimed.
    #[error("snapshot records rebuild to state root {rebuilt}, the snapshot claims {claimed}")]
    RootMismatch {
        /// The snapshot's claim.
        claimed: Hash,
        /// The root of its records.
        rebuilt: Hash,
    },
    /// The rebuilt state disagrees with a block header at its height.
    #[error("snapshot {field} is {snapshot}, block {height}'s header says {header}")]
    Header {
        /// The header's height.
        height: u64,
        /// Which field.
        field: &'static str,
        /// The snapshot's value.
        snapshot: String,
        /// The header's value.
        header: String,
    },
}

fn sorted<K: Ord, V>(v: &[(K, V)]) -> Option<usize> {
    v.windows(2).position(|w| w[0].0 >= w[1].0).map(|i| i + 1)
}

fn to_map<K: Ord + Clone, V: Clone>(
    table: Table,
    v: &[(K, V)],
) -> Result<Map<K, V>, SnapshotError> {
    if let Some(index) = sorted(v) {
        return Err(SnapshotError::Unsorted {
            table: table.name(),
            index,
        });
    }
    let mut m = Map::new_sync();
    for (k, r) in v {
        m.insert_mut(k.clone(), r.clone());
    }
    Ok(m)
}

fn to_vec<K: Ord + Clone, V: Clone>(m: &Map<K, V>) -> Vec<(K, V)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Snapshot {
    /// The snapshot's encoding (postcard, as every format of this crate).
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a snapshot. Keys are not checked to be valid curve points while decoding (that
    /// costs a point decompression per key, the bulk of a large snapshot's decoding): every key
    /// byte is committed to by the state root that [`State::from_snapshot`] checks, and every
    /// key that entered a certified state was checked when it did.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let (snap, rest): (Snapshot, &[u8]) =
            crate::keys::with_unchecked_keys(|| postcard::take_from_bytes(bytes))
                .map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Decode(format!(
                "{} bytes after the snapshot",
                rest.len()
            )));
        }
        Ok(snap)
    }
}

impl State {
    /// A snapshot of this state: the records of every table in key order, and everything else
    /// the state holds that is not derived from them. O(records).
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            chain_id: self.chain_id,
            limits: self.limits.clone(),
            height: self.height,
            last_block_hash: self.last_block_hash,
            last_time: self.last_time,
            state_root: self.map.root(),
            log: self.log.clone(),
            validators: self.validators.clone(),
            pending_validators: self.pending_validators.clone(),
            governance_seq: self.governance_seq,
            nonces: to_vec(&self.nonces),
            patients: to_vec(&self.patients),
            patient_keys: to_vec(&self.patient_keys),
            orgs: to_vec(&self.orgs),
            actors: to_vec(&self.actors),
            auditors: to_vec(&self.auditors),
            grants: to_vec(&self.grants),
            delegations: to_vec(&self.delegations),
            break_glass: to_vec(&self.break_glass),
            twins: to_vec(&self.twins),
            scheduled_validators: to_vec(&self.scheduled_validators),
            misbehaviour: to_vec(&self.misbehaviour),
            patient_events: to_vec(&self.patient_events),
            sealed: to_vec(&self.sealed),
            releases: to_vec(&self.releases),
            observers: to_vec(&self.observers),
        }
    }

    /// Rebuilds the state a snapshot records, for the chain of `genesis`: checks the version,
    /// the chain id and the limits against the genesis, that every table is in strictly
    /// increasing key order, that the pending validator set is the scheduled one, rebuilds the
    /// derived indexes and the state map from the records, and refuses the snapshot unless the
    /// rebuilt map's root is the root it claims. The caller must then check the state against
    /// the certified header at its height ([`State::check_header`]): the snapshot's claim alone
    /// is only as good as the disk it came from.
    pub fn from_snapshot(genesis: &Genesis, snap: Snapshot) -> Result<State, SnapshotError> {
        if snap.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::Version { got: snap.version });
        }
        genesis.validate()?;
        let chain_id = genesis.chain_id();
        if snap.chain_id != chain_id {
            return Err(SnapshotError::WrongChain {
                snapshot: snap.chain_id,
                genesis: chain_id,
            });
        }
        if snap.limits != genesis.limits {
            return Err(SnapshotError::Limits {
                snapshot: snap.limits,
                genesis: genesis.limits.clone(),
            });
        }
        let grants = to_map(Table::Grant, &snap.grants)?;
        let delegations = to_map(Table::Delegation, &snap.delegations)?;
        let break_glass = to_map(Table::BreakGlass, &snap.break_glass)?;
        let scheduled_validators = to_map(Table::PendingValidators, &snap.scheduled_validators)?;
        // The derived indexes, exactly as the `Tx` writes keep them.
        let mut patient_grants = Map::new_sync();
        for (id, g) in grants.iter().filter(|(_, g)| g.revoked_at.is_none()) {
            patient_grants.insert_mut((g.grant.patient, *id), ());
        }
        let mut patient_delegates = Map::new_sync();
        let mut delegate_delegations = Map::new_sync();
        for (id, d) in delegations.iter().filter(|(_, d)| d.revoked_at.is_none()) {
            patient_delegates.insert_mut((d.patient, d.delegate, *id), ());
            delegate_delegations.insert_mut((d.delegate, *id), ());
        }
        let mut review_queue = Map::new_sync();
        for (id, _) in break_glass.iter().filter(|(_, b)| b.review.is_none()) {
            review_queue.insert_mut(*id, ());
        }
        if let Some((at, set)) = &snap.pending_validators
            && (*at <= snap.height || scheduled_validators.get(at) != Some(&set.hash()))
        {
            return Err(SnapshotError::PendingValidators { at: *at });
        }
        let mut st = State {
            chain_id,
            limits: genesis.limits.clone(),
            height: snap.height,
            last_block_hash: snap.last_block_hash,
            last_time: snap.last_time,
            map: StateMap::new(),
            log: snap.log,
            validators: snap.validators,
            pending_validators: snap.pending_validators,
            governance_seq: snap.governance_seq,
            nonces: to_map(Table::Nonce, &snap.nonces)?,
            patients: to_map(Table::Patient, &snap.patients)?,
            patient_keys: to_map(Table::PatientKey, &snap.patient_keys)?,
            orgs: to_map(Table::Org, &snap.orgs)?,
            actors: to_map(Table::Actor, &snap.actors)?,
            auditors: to_map(Table::Auditor, &snap.auditors)?,
            grants,
            patient_grants,
            delegations,
            patient_delegates,
            delegate_delegations,
            break_glass,
            review_queue,
            twins: to_map(Table::Twin, &snap.twins)?,
            scheduled_validators,
            misbehaviour: to_map(Table::Misbehaviour, &snap.misbehaviour)?,
            patient_events: to_map(Table::PatientEvents, &snap.patient_events)?,
            sealed: to_map(Table::Sealed, &snap.sealed)?,
            releases: to_map(Table::Release, &snap.releases)?,
            observers: to_map(Table::Observer, &snap.observers)?,
        };
        // The governance-seq record is written on every increment and never before the first:
        // a sequence above zero is the record, zero is its absence (`typed_records`).
        st.map = StateMap::build(
            st.typed_records()
                .into_iter()
                .map(|(table, key, value)| (crate::statemap::key_hash(table, &key), value))
                .collect(),
        );
        let rebuilt = st.map.root();
        if rebuilt != snap.state_root {
            return Err(SnapshotError::RootMismatch {
                claimed: snap.state_root,
                rebuilt,
            });
        }
        Ok(st)
    }

    /// Checks this state against the header of the block it claims to be after: height, block
    /// hash, time, state hash (the state-map root), event-log root and size, and the validators
    /// hash of the set in force. What a node checks a rebuilt snapshot against (the header of
    /// its own certified, stored block at that height) before using it.
    pub fn check_header(&self, header: &BlockHeader) -> Result<(), SnapshotError> {
        let height = header.height;
        let differs = |field, snapshot: String, header: String| SnapshotError::Header {
            height,
            field,
            snapshot,
            header,
        };
        if self.chain_id != header.chain_id {
            return Err(differs(
                "chain_id",
                self.chain_id.to_string(),
                header.chain_id.to_string(),
            ));
        }
        if self.height != height {
            return Err(differs(
                "height",
                self.height.to_string(),
                height.to_string(),
            ));
        }
        let log_root = Hash(self.log.root::<Blake3Tree>());
        let validators_hash = self.validators.hash();
        for (field, ours, theirs) in [
            ("block hash", self.last_block_hash, header.hash()),
            ("state_hash", self.map.root(), header.state_hash),
            ("log_root", log_root, header.log_root),
            ("validators_hash", validators_hash, header.validators_hash),
        ] {
            if ours != theirs {
                return Err(differs(field, ours.to_hex(), theirs.to_hex()));
            }
        }
        if self.log.size() != header.log_size {
            return Err(differs(
                "log_size",
                self.log.size().to_string(),
                header.log_size.to_string(),
            ));
        }
        if self.last_time != header.time {
            return Err(differs(
                "time",
                self.last_time.0.to_string(),
                header.time.0.to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::statemap::{StateMap, Table, key_hash};

    fn record(i: u32, salt: u8) -> (Table, Vec<u8>, Vec<u8>) {
        (
            Table::Grant,
            i.to_be_bytes().to_vec(),
            vec![salt; 1 + (i % 7) as usize],
        )
    }

    /// The one-pass build a snapshot is rebuilt with makes the same tree as inserting the
    /// records one block at a time: the same root, the same proofs, and the same root and
    /// proofs after a later update that changes some records and adds others.
    #[test]
    fn a_map_built_in_one_pass_is_the_map_built_by_updates() {
        let mut grown = StateMap::new();
        for chunk in (0..3000u32).collect::<Vec<_>>().chunks(700) {
            grown.set_records(chunk.iter().map(|i| record(*i, 1)));
        }
        let built = StateMap::build(
            (0..3000u32)
                .map(|i| record(i, 1))
                .map(|(t, k, v)| (key_hash(t, &k), v))
                .collect(),
        );
        assert_eq!(built.root(), grown.root());
        assert_eq!(built.len(), grown.len());
        let (mut a, mut b) = (grown, built);
        let writes: BTreeMap<_, _> = (2500..3600u32)
            .step_by(3)
            .map(|i| record(i, 2))
            .map(|(t, k, v)| (key_hash(t, &k), v))
            .collect();
        a.update(writes.clone());
        b.update(writes);
        assert_eq!(a.root(), b.root());
        for i in [0u32, 1, 2501, 2999, 3001, 3599, 9999] {
            let k = i.to_be_bytes();
            assert_eq!(
                a.prove(Table::Grant, &k).to_bytes(),
                b.prove(Table::Grant, &k).to_bytes(),
                "{i}"
            );
        }
        assert_eq!(StateMap::build(Vec::new()).root(), StateMap::new().root());
    }
}
