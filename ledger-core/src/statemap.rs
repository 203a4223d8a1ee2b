//! The authenticated state map (PROTOCOL.md §6.10, ADR 0008): every record of the state as one
//! Jellyfish Merkle Tree (the `jmt` crate) keyed by `H_"twinledger v2 state-key"(table || key)`,
//! hashed with BLAKE3 (domain `twinledger v2 state-map`). Its root is each block's `state_hash`;
//! [`StateProof`]s prove a record's value, or its absence, against that root.
//!
//! The state keeps only the latest version of the tree: its nodes in a persistent ordered map
//! (cloned in O(1) with the rest of the state), the nodes a block makes stale dropped. Versions
//! are internal to this store (they never enter a hash): one per update that wrote something.

use std::collections::BTreeMap;

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, SimpleHasher, Version};
use rpds::RedBlackTreeMapSync as Map;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::hash::{Hash, domain};

/// The root of the empty map: jmt's placeholder, the 32 ASCII bytes
/// `SPARSE_MERKLE_PLACEHOLDER_HASH__`. Also the hash of an empty subtree.
pub const EMPTY_ROOT: Hash = Hash(*b"SPARSE_MERKLE_PLACEHOLDER_HASH__");

/// Prefix of a leaf's hashed bytes (jmt's `LEAF_DOMAIN_SEPARATOR`).
pub const LEAF_PREFIX: &[u8] = b"JMT::LeafNode";
/// Prefix of an internal node's hashed bytes (jmt's `INTERNAL_DOMAIN_SEPARATOR`, sic).
pub const INTERNAL_PREFIX: &[u8] = b"JMT::IntrnalNode";

/// Most siblings a proof may carry (the tree's depth in bits).
pub const MAX_PROOF_SIBLINGS: usize = 256;

/// The tree's hash: BLAKE3 in key-derivation mode, context `twinledger v2 state-map`.
#[derive(Clone, Debug)]
pub struct MapHasher(blake3::Hasher);

impl SimpleHasher for MapHasher {
    fn new() -> Self {
        // Deriving the context key costs a compression; do it once and clone the hasher.
        static START: std::sync::OnceLock<blake3::Hasher> = std::sync::OnceLock::new();
        Self(
            START
                .get_or_init(|| blake3::Hasher::new_derive_key(domain::STATE_MAP))
                .clone(),
        )
    }
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// The tables of the state map (PROTOCOL.md §6.10). A record's map key is its table's tag (the
/// variant index, one byte) followed by the canonical encoding of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    /// 0: author key → its next sequence number (`u64`).
    Nonce,
    /// 1: patient id → [`crate::state::records::PatientRecord`].
    Patient,
    /// 2: key → [`crate::state::records::PatientKey`].
    PatientKey,
    /// 3: organisation key → [`crate::state::records::OrgRecord`].
    Org,
    /// 4: actor key → [`crate::state::records::ActorRecord`].
    Actor,
    /// 5: auditor key → live (`bool`).
    Auditor,
    /// 6: grant id → [`crate::state::records::GrantRecord`].
    Grant,
    /// 7: delegation id → [`crate::state::records::DelegationRecord`].
    Delegation,
    /// 8: break-glass request id → [`crate::state::records::BreakGlassRecord`].
    BreakGlass,
    /// 9: twin id → [`crate::state::records::TwinRecord`].
    Twin,
    /// 10: height from which a scheduled set is in force → its validator-set hash.
    PendingValidators,
    /// 11: `()` → the governance sequence (`u64`).
    GovernanceSeq,
    /// 12: (validator, height, round, kind) → the evidence event's id.
    Misbehaviour,
    /// 13: patient id → [`crate::state::records::PatientEvents`] (count and chain head of the
    /// events that concern the patient).
    PatientEvents,
    /// 14 (2.4): (twin id, version) → [`crate::state::records::SealedRecord`].
    Sealed,
    /// 15 (2.4): access request id → the key release that answered it (its event id).
    Release,
    /// 16 (2.5): observer key → [`crate::state::records::ObserverRecord`].
    Observer,
}

impl Table {
    /// Every table, by tag.
    pub const ALL: [Table; 17] = [
        Table::Nonce,
        Table::Patient,
        Table::PatientKey,
        Table::Org,
        Table::Actor,
        Table::Auditor,
        Table::Grant,
        Table::Delegation,
        Table::BreakGlass,
        Table::Twin,
        Table::PendingValidators,
        Table::GovernanceSeq,
        Table::Misbehaviour,
        Table::PatientEvents,
        Table::Sealed,
        Table::Release,
        Table::Observer,
    ];

    /// The one-byte tag.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The table of a tag.
    pub fn from_tag(tag: u8) -> Option<Table> {
        Self::ALL.get(usize::from(tag)).copied()
    }

    /// The name PROTOCOL.md §6.10 gives the table.
    pub fn name(self) -> &'static str {
        match self {
            Table::Nonce => "nonce",
            Table::Patient => "patient",
            Table::PatientKey => "patient-key",
            Table::Org => "organisation",
            Table::Actor => "actor",
            Table::Auditor => "auditor",
            Table::Grant => "grant",
            Table::Delegation => "delegation",
            Table::BreakGlass => "break-glass",
            Table::Twin => "twin",
            Table::PendingValidators => "pending-validators",
            Table::GovernanceSeq => "governance-seq",
            Table::Misbehaviour => "misbehaviour",
            Table::PatientEvents => "patient-events",
            Table::Sealed => "sealed",
            Table::Release => "release",
            Table::Observer => "observer",
        }
    }
}

/// The map key hash of a record: `H_"twinledger v2 state-key"(tag || key)`, `key` being the
/// canonical encoding of the record's key.
pub fn key_hash(table: Table, key: &[u8]) -> Hash {
    static START: std::sync::OnceLock<blake3::Hasher> = std::sync::OnceLock::new();
    let mut h = START
        .get_or_init(|| blake3::Hasher::new_derive_key(domain::STATE_KEY))
        .clone();
    h.update(&[table.tag()]);
    h.update(key);
    Hash(*h.finalize().as_bytes())
}

/// The hash of a stored value (its canonical encoding): `H_"twinledger v2 state-map"(value)`.
pub fn value_hash(value: &[u8]) -> Hash {
    Hash(MapHasher::hash(value))
}

/// A leaf's hash: `H_map("JMT::LeafNode" || key_hash || value_hash)`.
pub fn leaf_hash(key_hash: &Hash, value_hash: &Hash) -> Hash {
    let mut h = MapHasher::new();
    h.update(LEAF_PREFIX);
    h.update(key_hash.as_bytes());
    h.update(value_hash.as_bytes());
    Hash(h.finalize())
}

/// An internal node's hash: `H_map("JMT::IntrnalNode" || left || right)`.
pub fn internal_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = MapHasher::new();
    h.update(INTERNAL_PREFIX);
    h.update(left.as_bytes());
    h.update(right.as_bytes());
    Hash(h.finalize())
}

/// The latest version of the tree, held in persistent maps (what [`crate::State`] keeps; also
/// usable alone, e.g. to check the layout against a reference model).
#[derive(Clone, Debug)]
pub struct StateMap {
    nodes: Map<NodeKey, Node>,
    values: Map<[u8; 32], Vec<u8>>,
    version: Option<Version>,
    root: Hash,
}

impl Default for StateMap {
    fn default() -> Self {
        Self {
            nodes: Map::new_sync(),
            values: Map::new_sync(),
            version: None,
            root: EMPTY_ROOT,
        }
    }
}

impl TreeReader for StateMap {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        _max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        // Only the latest version is kept, and reads only ever ask for it.
        Ok(self.values.get(&key_hash.0).cloned())
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("the state map is never restored from chunks")
    }
}

impl StateMap {
    /// The root of the latest version.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.size()
    }

    /// Whether the map holds no value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The stored value of `table[key]`, `key` canonically encoded.
    pub fn get(&self, table: Table, key: &[u8]) -> Option<&[u8]> {
        self.values.get(&key_hash(table, key).0).map(Vec::as_slice)
    }

    /// An empty map (root [`EMPTY_ROOT`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `table[key] = value` for every record of `records` (keys and values canonically
    /// encoded) as one new version; of two writes of one record the later wins.
    pub fn set_records(&mut self, records: impl IntoIterator<Item = (Table, Vec<u8>, Vec<u8>)>) {
        self.update(
            records
                .into_iter()
                .map(|(t, k, v)| (key_hash(t, &k), v))
                .collect(),
        );
    }

    /// A map holding exactly `records` (key hash → value), built in one pass with jmt's batch
    /// insertion, which makes every node once (what a state snapshot is rebuilt with;
    /// [`StateMap::update`] on an empty map gives the same tree, inserting key by key).
    pub(crate) fn build(records: Vec<(Hash, Vec<u8>)>) -> Self {
        let mut map = Self::default();
        if records.is_empty() {
            return map;
        }
        let (roots, batch) = JellyfishMerkleTree::<_, MapHasher>::new(&map)
            .batch_put_value_sets(
                vec![
                    records
                        .into_iter()
                        .map(|(k, v)| (KeyHash(k.0), v))
                        .collect(),
                ],
                None,
                0,
            )
            .expect("an empty map has no node to miss");
        for (key, node) in batch.node_batch.nodes() {
            map.nodes.insert_mut(key.clone(), node.clone());
        }
        for ((_, key), value) in batch.node_batch.values() {
            if let Some(v) = value {
                map.values.insert_mut(key.0, v.clone());
            }
        }
        map.version = Some(0);
        map.root = Hash(roots[0].0);
        map
    }

    /// Sets every `(key hash → value)` of `writes` as one new version. No writes: nothing
    /// changes (the root stays).
    pub(crate) fn update(&mut self, writes: BTreeMap<Hash, Vec<u8>>) {
        if writes.is_empty() {
            return;
        }
        let next = self.version.map_or(0, |v| v + 1);
        let (root, batch) = JellyfishMerkleTree::<_, MapHasher>::new(&*self)
            .put_value_set(
                writes.into_iter().map(|(k, v)| (KeyHash(k.0), Some(v))),
                next,
            )
            .expect("the in-memory map holds every node of its latest version");
        for stale in &batch.stale_node_index_batch {
            self.nodes.remove_mut(&stale.node_key);
        }
        for (key, node) in batch.node_batch.nodes() {
            self.nodes.insert_mut(key.clone(), node.clone());
        }
        for ((_, key), value) in batch.node_batch.values() {
            match value {
                Some(v) => self.values.insert_mut(key.0, v.clone()),
                None => {
                    self.values.remove_mut(&key.0);
                }
            }
        }
        self.version = Some(next);
        self.root = Hash(root.0);
    }

    /// The value of `table[key]` (or its absence) with its proof against [`StateMap::root`].
    pub fn prove(&self, table: Table, key: &[u8]) -> StateProof {
        let Some(version) = self.version else {
            return StateProof {
                value: None,
                leaf: None,
                siblings: Vec::new(),
            };
        };
        let kh = key_hash(table, key);
        let (value, proof) = JellyfishMerkleTree::<_, MapHasher>::new(self)
            .get_with_proof(KeyHash(kh.0), version)
            .expect("the in-memory map holds every node of its latest version");
        // jmt keeps the proof's fields private; its serde form is the wire form of §6.10.
        let wire: WireProof = codec::decode("state proof", &codec::encode(&proof), usize::MAX)
            .expect("jmt's proof has the documented layout");
        StateProof {
            value,
            leaf: wire.leaf,
            siblings: wire.siblings,
        }
    }
}

/// A proof leaf: the key hash and value hash of the one record in the proven subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofLeaf {
    /// The record's key hash.
    pub key_hash: Hash,
    /// Its value hash.
    pub value_hash: Hash,
}

/// A sibling on the path from the proven position to the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProofNode {
    /// 0: an empty subtree (hash [`EMPTY_ROOT`]).
    Null,
    /// 1: a subtree of two or more records, given by its two children's hashes.
    Internal {
        /// Left child's hash.
        left: Hash,
        /// Right child's hash.
        right: Hash,
    },
    /// 2: a subtree of one record.
    Leaf(ProofLeaf),
}

impl ProofNode {
    /// The sibling's hash.
    pub fn hash(&self) -> Hash {
        match self {
            ProofNode::Null => EMPTY_ROOT,
            ProofNode::Internal { left, right } => internal_hash(left, right),
            ProofNode::Leaf(l) => leaf_hash(&l.key_hash, &l.value_hash),
        }
    }
}

/// jmt's `SparseMerkleProof` as its serde derive lays it out.
#[derive(Serialize, Deserialize)]
struct WireProof {
    leaf: Option<ProofLeaf>,
    siblings: Vec<ProofNode>,
}

/// Why a state proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateProofError {
    /// The proof carries a value other than the one expected (or one where absence was
    /// expected, or none where a value was).
    #[error("the proof's value is not the expected one: {0}")]
    ValueMismatch(&'static str),
    /// The Merkle part does not prove the claim against the root.
    #[error("invalid state proof: {0}")]
    Invalid(String),
}

/// The value of one record of the state map, or its absence, with the Merkle proof against a
/// root (PROTOCOL.md §6.10). Canonical encoding: `value: Option<Vec<u8>> || leaf:
/// Option<ProofLeaf> || siblings: Vec<ProofNode>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateProof {
    /// The record's stored value (its canonical encoding), or `None`: absent.
    pub value: Option<Vec<u8>>,
    /// The one record of the subtree the proof reaches, if that subtree is not empty.
    pub leaf: Option<ProofLeaf>,
    /// Siblings from the bottom of the path to the root.
    pub siblings: Vec<ProofNode>,
}

impl StateProof {
    /// Checks that `table[key]` has the value `expected` (canonically encoded), or is absent
    /// when `expected` is `None`, in the map whose root is `root`.
    pub fn verify<K: Serialize, V: Serialize>(
        &self,
        root: Hash,
        table: Table,
        key: &K,
        expected: Option<&V>,
    ) -> Result<(), StateProofError> {
        let expected = expected.map(codec::encode);
        self.verify_bytes(root, table, &codec::encode(key), expected.as_deref())
    }

    /// [`StateProof::verify`] with the key and the expected value already encoded.
    pub fn verify_bytes(
        &self,
        root: Hash,
        table: Table,
        key: &[u8],
        expected: Option<&[u8]>,
    ) -> Result<(), StateProofError> {
        match (self.value.as_deref(), expected) {
            (Some(a), Some(b)) if a != b => return Err(StateProofError::ValueMismatch("differs")),
            (Some(_), None) => return Err(StateProofError::ValueMismatch("present, not absent")),
            (None, Some(_)) => return Err(StateProofError::ValueMismatch("absent, not present")),
            _ => {}
        }
        self.verify_value(root, table, key).map(|_| ())
    }

    /// Checks the proof against `root` for `table[key]` (encoded) and returns the value it
    /// proves, `None` meaning proven absent.
    pub fn verify_value(
        &self,
        root: Hash,
        table: Table,
        key: &[u8],
    ) -> Result<Option<&[u8]>, StateProofError> {
        if self.siblings.len() > MAX_PROOF_SIBLINGS {
            return Err(StateProofError::Invalid(format!(
                "{} siblings, at most {MAX_PROOF_SIBLINGS}",
                self.siblings.len()
            )));
        }
        let kh = KeyHash(key_hash(table, key).0);
        let wire = WireProof {
            leaf: self.leaf,
            siblings: self.siblings.clone(),
        };
        let proof: jmt::proof::SparseMerkleProof<MapHasher> =
            codec::decode("state proof", &codec::encode(&wire), usize::MAX)
                .map_err(|e| StateProofError::Invalid(e.to_string()))?;
        proof
            .verify(RootHash(root.0), kh, self.value.as_deref())
            .map_err(|e| StateProofError::Invalid(e.to_string()))?;
        Ok(self.value.as_deref())
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a canonical encoding of at most `max` bytes.
    pub fn from_bytes(bytes: &[u8], max: usize) -> Result<Self, codec::CodecError> {
        codec::decode("state proof", bytes, max)
    }
}
