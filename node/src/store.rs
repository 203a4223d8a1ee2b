//! Storage: blocks, certificates, the event log's Merkle nodes and the indexes, behind a small
//! key-value trait ([`Kv`]) with a sled implementation and an in-memory one for tests.
//!
//! A block and everything derived from it are written in one atomic batch and flushed before
//! the node reports the block final. Every stored block carries a blake3 checksum of its bytes,
//! checked on every read; the bytes are decoded with the canonical decoder (PROTOCOL.md §1).
//! There is no delete: the store only ever appends blocks and their derived records.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use twinledger_core::block::MAX_BLOCK_BYTES;
use twinledger_core::merkle::{Blake3Tree, NodeId, NodeSource, TreeHasher};
use twinledger_core::{ChainId, EventId, PublicKey, TwinId, codec};

use crate::layout::*;

/// Format of the store's records; a store of another format is refused.
pub const STORE_FORMAT: u8 = 1;

/// Storage failures. Each names what was being read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying database failed.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// A stored record does not verify (checksum or decoding).
    #[error("stored block {height} is corrupt: {why}")]
    CorruptBlock {
        /// Height of the block.
        height: u64,
        /// What is wrong.
        why: String,
    },
    /// A stored record other than a block does not verify.
    #[error("stored {what} is corrupt: {why}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// Key-value pairs, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered key-value store with atomic, durable batches.
pub trait Kv: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Applies every write atomically and makes it durable (flushed) before returning.
    fn commit(&self, writes: Entries) -> Result<(), StoreError>;
    /// Up to `limit` entries whose key starts with `prefix`, in key order, from `start` (a full
    /// key, inclusive) if given.
    fn scan(
        &self,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError>;
}

/// sled 0.34 (the one stable release; see ADR 0005).
#[derive(Debug)]
pub struct SledKv {
    db: sled::Db,
}

impl SledKv {
    /// Opens (or creates) a database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            // Blocks are flushed explicitly, once per block (group commit); sled's own periodic
            // flush would only add writes. Large sequential batches favour throughput mode.
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| StoreError::Io(format!("opening {}: {e}", dir.display())))?;
        Ok(Self { db })
    }
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn commit(&self, writes: Entries) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            batch.insert(k, v);
        }
        self.db.apply_batch(batch).map_err(io)?;
        // Group commit: one flush per block, never per event.
        self.db.flush().map_err(io)?;
        Ok(())
    }

    fn scan(
        &self,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let iter = match start {
            Some(s) => self.db.range(s.to_vec()..),
            None => self.db.range(prefix.to_vec()..),
        };
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(io)?;
            if !k.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// The in-memory twin of [`SledKv`], for tests.
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Kv for MemoryKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.lock().expect("memory kv lock").get(key).cloned())
    }

    fn commit(&self, writes: Entries) -> Result<(), StoreError> {
        let mut m = self.map.lock().expect("memory kv lock");
        for (k, v) in writes {
            m.insert(k, v);
        }
        Ok(())
    }

    fn scan(
        &self,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let m = self.map.lock().expect("memory kv lock");
        let from = start.unwrap_or(prefix).to_vec();
        Ok(m.range(from..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// The in-memory store with a switch that makes every write fail, as a full or broken disk
/// does: for fault tests (the node's API tests, the cluster simulation).
#[derive(Debug, Default)]
pub struct FaultyKv {
    inner: MemoryKv,
    /// While set, every write fails with an I/O error and changes nothing.
    pub fail: std::sync::atomic::AtomicBool,
    /// Writes refused so far.
    pub failures: std::sync::atomic::AtomicU32,
}

impl Kv for FaultyKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn commit(&self, writes: Entries) -> Result<(), StoreError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            self.failures
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(StoreError::Io("No space left on device".into()));
        }
        self.inner.commit(writes)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.inner.scan(prefix, start, limit)
    }
}

/// A committed block as stored: the block, its results and its commit certificate (the core's
/// [`twinledger_core::audit::CommittedBlock`], also the unit of the export stream).
pub use twinledger_core::audit::CommittedBlock;

/// Where an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLocation {
    /// Block height.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// Position in the event log (its leaf index).
    pub leaf: u64,
}

/// The secondary indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Index {
    /// Events concerning a patient (by patient id).
    Patient,
    /// Events authored by an actor.
    Actor,
    /// Events by actors of an organisation.
    Organisation,
}

/// A stored snapshot's position (what [`Store::snapshots`] lists; the bytes are read with
/// [`Store::snapshot_bytes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The height the snapshot was taken after.
    pub height: u64,
    /// The event log's size then.
    pub log_size: u64,
    slot: u8,
}

/// Everything one block adds to the store.
#[derive(Debug, Default)]
pub struct BlockWrite {
    /// Merkle nodes completed by the block's leaves.
    pub nodes: Vec<(NodeId, [u8; 32])>,
    /// Event locations.
    pub events: Vec<(EventId, EventLocation)>,
    /// Index entries: (index, key, leaf, event id).
    pub index: Vec<(Index, PublicKey, u64, EventId)>,
    /// Twin anchors: (twin, version, event id).
    pub twins: Vec<(TwinId, u64, EventId)>,
}

/// The node's store: the record layout over a [`Kv`].
#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn Kv>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// A store over any [`Kv`].
    pub fn new(kv: Arc<dyn Kv>) -> Self {
        Self { kv }
    }

    /// A sled store in `dir`.
    pub fn open_sled(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(SledKv::open(dir)?)))
    }

    /// An in-memory store.
    pub fn memory() -> Self {
        Self::new(Arc::new(MemoryKv::default()))
    }

    /// The raw key-value store (for tools and tests that inspect or damage it).
    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    /// The chain this store belongs to, if initialised.
    pub fn chain_id(&self) -> Result<Option<ChainId>, StoreError> {
        match self.kv.get(META_CHAIN)? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 32] = v.try_into().map_err(|_| StoreError::Corrupt {
                    what: "chain id",
                    why: "not 32 bytes".into(),
                })?;
                Ok(Some(ChainId(b)))
            }
        }
    }

    /// Binds an empty store to a chain, or checks that it is bound to this one and of this
    /// format.
    pub fn init(&self, chain_id: ChainId) -> Result<(), InitError> {
        match self.chain_id()? {
            Some(c) if c != chain_id => Err(InitError::OtherChain {
                store: c,
                genesis: chain_id,
            }),
            Some(_) => {
                let f = self.kv.get(META_FORMAT)?;
                if f.as_deref() != Some(&[STORE_FORMAT][..]) {
                    return Err(InitError::Format(f));
                }
                Ok(())
            }
            None => Ok(self.kv.commit(vec![
                (META_CHAIN.to_vec(), chain_id.0.to_vec()),
                (META_FORMAT.to_vec(), vec![STORE_FORMAT]),
                (META_TIP.to_vec(), 0u64.to_be_bytes().to_vec()),
            ])?),
        }
    }

    /// What this validator signed in a consensus slot, if anything (`slot` is the engine's
    /// slot key). The value is the encoded signed value (`Option<Checkpoint>`).
    pub fn signed(&self, slot: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut k = SIGNED.to_vec();
        k.extend_from_slice(slot);
        self.kv.get(&k)
    }

    /// Records durably (flushed) what this validator is about to sign in `slot`. The caller
    /// checks [`Store::signed`] first; this never overwrites a different value.
    pub fn record_signed(&self, slot: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut k = SIGNED.to_vec();
        k.extend_from_slice(slot);
        match self.kv.get(&k)? {
            Some(v) if v != value => Err(StoreError::Corrupt {
                what: "signing record",
                why: "refusing to overwrite a signed slot with another value".into(),
            }),
            Some(_) => Ok(()),
            None => self.kv.commit(vec![(k, value.to_vec())]),
        }
    }

    /// Stores a state snapshot taken after block `height` (event log of `log_size` events),
    /// with a blake3 checksum, in one flushed batch, over the older of the two snapshot slots
    /// (or the one already holding `height`): the newest snapshot before it stays readable.
    pub fn put_snapshot(&self, height: u64, log_size: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let have = self.snapshots_in_slots()?;
        let slot = have
            .iter()
            .find(|(_, m)| m.is_some_and(|m| m.height == height))
            .or_else(|| have.iter().find(|(_, m)| m.is_none()))
            .or_else(|| have.iter().min_by_key(|(_, m)| m.map(|m| m.height)))
            .map_or(0, |(slot, _)| *slot);
        let mut meta = height.to_be_bytes().to_vec();
        meta.extend_from_slice(&log_size.to_be_bytes());
        let mut payload = Vec::with_capacity(48 + bytes.len());
        payload.extend_from_slice(&[0; 32]);
        payload.extend_from_slice(&meta);
        payload.extend_from_slice(bytes);
        let sum = blake3::hash(&payload[32..]);
        payload[..32].copy_from_slice(sum.as_bytes());
        let key = |prefix: &[u8]| [prefix, &[slot]].concat();
        self.kv.commit(vec![
            (key(SNAPSHOT_DATA), payload),
            (key(SNAPSHOT_META), meta),
        ])
    }

    fn snapshots_in_slots(&self) -> Result<Vec<(u8, Option<SnapshotMeta>)>, StoreError> {
        (0..SNAPSHOT_SLOTS)
            .map(|slot| {
                let v = self.kv.get(&[SNAPSHOT_META, &[slot]].concat())?;
                Ok((
                    slot,
                    v.and_then(|v| {
                        let v: [u8; 16] = v.try_into().ok()?;
                        Some(SnapshotMeta {
                            height: u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
                            log_size: u64::from_be_bytes(v[8..].try_into().expect("8 bytes")),
                            slot,
                        })
                    }),
                ))
            })
            .collect()
    }

    /// The stored snapshots, newest first (their positions only; cheap).
    pub fn snapshots(&self) -> Result<Vec<SnapshotMeta>, StoreError> {
        let mut all: Vec<SnapshotMeta> = self
            .snapshots_in_slots()?
            .into_iter()
            .filter_map(|(_, m)| m)
            .collect();
        all.sort_by_key(|m| std::cmp::Reverse(m.height));
        Ok(all)
    }

    /// The bytes of a stored snapshot, checked against their checksum and position.
    pub fn snapshot_bytes(&self, meta: &SnapshotMeta) -> Result<Vec<u8>, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt {
            what: "snapshot",
            why: format!("at height {}: {why}", meta.height),
        };
        let mut v = self
            .kv
            .get(&[SNAPSHOT_DATA, &[meta.slot]].concat())?
            .ok_or_else(|| corrupt("missing"))?;
        if v.len() < 48 {
            return Err(corrupt("shorter than its header"));
        }
        if blake3::hash(&v[32..]).as_bytes() != &v[..32] {
            return Err(corrupt("checksum mismatch"));
        }
        let mut pos = meta.height.to_be_bytes().to_vec();
        pos.extend_from_slice(&meta.log_size.to_be_bytes());
        if v[32..48] != pos[..] {
            return Err(corrupt("holds another height"));
        }
        Ok(v.split_off(48))
    }

    /// Height of the last committed block (0 if none).
    pub fn tip(&self) -> Result<u64, StoreError> {
        match self.kv.get(META_TIP)? {
            None => Ok(0),
            Some(v) => Ok(u64::from_be_bytes(v.try_into().map_err(|_| {
                StoreError::Corrupt {
                    what: "tip",
                    why: "not 8 bytes".into(),
                }
            })?)),
        }
    }

    /// Writes a block and everything derived from it in one atomic, flushed batch, and moves
    /// the tip. Checks the block's bytes decode back to the same block before writing.
    pub fn commit_block(&self, sb: &CommittedBlock, w: BlockWrite) -> Result<(), StoreError> {
        let height = sb.block.header.height;
        let bytes = codec::encode(sb);
        // Check before writing: what we store must read back as what we meant.
        let back: CommittedBlock =
            codec::decode("stored block", &bytes, MAX_BLOCK_BYTES).map_err(|e| {
                StoreError::CorruptBlock {
                    height,
                    why: e.to_string(),
                }
            })?;
        if &back != sb {
            return Err(StoreError::CorruptBlock {
                height,
                why: "does not round-trip".into(),
            });
        }
        let mut value = blake3::hash(&bytes).as_bytes().to_vec();
        value.extend_from_slice(&bytes);
        let mut writes = Vec::with_capacity(2 + w.nodes.len() + w.events.len() + w.index.len());
        writes.push((block_key(height), value));
        writes.extend(self.tile_writes(height, &w.nodes)?);
        for (id, loc) in w.events {
            writes.push((event_key(&id), codec::encode(&loc)));
        }
        for (ix, key, leaf, id) in w.index {
            writes.push((index_key(ix, &key, leaf), id.0.to_vec()));
        }
        for (twin, version, id) in w.twins {
            writes.push((twin_key(&twin, version), id.0.to_vec()));
        }
        writes.push((META_TIP.to_vec(), height.to_be_bytes().to_vec()));
        self.kv.commit(writes)
    }

    /// The tile records a block's new Merkle nodes extend (nodes at levels `8t`, in order).
    fn tile_writes(
        &self,
        height: u64,
        nodes: &[(NodeId, [u8; 32])],
    ) -> Result<Entries, StoreError> {
        let mut tiles: BTreeMap<(u8, u64), Vec<u8>> = BTreeMap::new();
        for (id, hash) in nodes {
            let Some((t, n, at)) = stored_at(*id) else {
                continue;
            };
            let tile = match tiles.entry((t, n)) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(self.kv.get(&tile_key(t, n))?.unwrap_or_default())
                }
            };
            // Appends only, in order: the tile must hold exactly the nodes before this one.
            let have = (tile.len() / 32) as u64;
            if have != at || tile.len() % 32 != 0 {
                return Err(StoreError::CorruptBlock {
                    height,
                    why: format!(
                        "Merkle tile ({t}, {n}) holds {have} hashes, node {id} does not follow"
                    ),
                });
            }
            tile.extend_from_slice(hash);
        }
        Ok(tiles
            .into_iter()
            .map(|((t, n), v)| (tile_key(t, n), v))
            .collect())
    }

    /// Reads a block, checking its checksum and canonical decoding.
    pub fn block(&self, height: u64) -> Result<Option<CommittedBlock>, StoreError> {
        let Some(v) = self.kv.get(&block_key(height))? else {
            return Ok(None);
        };
        Self::decode_block(height, &v).map(Some)
    }

    fn decode_block(height: u64, v: &[u8]) -> Result<CommittedBlock, StoreError> {
        let corrupt = |why: String| StoreError::CorruptBlock { height, why };
        if v.len() < 32 {
            return Err(corrupt("shorter than its checksum".into()));
        }
        let (sum, bytes) = v.split_at(32);
        if blake3::hash(bytes).as_bytes() != sum {
            return Err(corrupt("checksum mismatch".into()));
        }
        let sb: CommittedBlock = codec::decode("stored block", bytes, MAX_BLOCK_BYTES)
            .map_err(|e| corrupt(e.to_string()))?;
        if sb.block.header.height != height {
            return Err(corrupt(format!(
                "record holds height {}",
                sb.block.header.height
            )));
        }
        Ok(sb)
    }

    /// Where an event is.
    pub fn event(&self, id: &EventId) -> Result<Option<EventLocation>, StoreError> {
        match self.kv.get(&event_key(id))? {
            None => Ok(None),
            Some(v) => codec::decode("event location", &v, 64)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    what: "event location",
                    why: e.to_string(),
                }),
        }
    }

    /// Records an auditor's cosignature of the checkpoint at `height` (flushed).
    pub fn put_cosignature(
        &self,
        height: u64,
        auditor: &PublicKey,
        sig: &twinledger_core::Signature,
    ) -> Result<(), StoreError> {
        self.kv
            .commit(vec![(cosignature_key(height, auditor), sig.0.to_vec())])
    }

    /// The auditors that cosigned the checkpoint at `height`, with their signatures.
    pub fn cosignatures(
        &self,
        height: u64,
    ) -> Result<Vec<(PublicKey, twinledger_core::Signature)>, StoreError> {
        self.kv
            .scan(&cosignature_prefix(height), None, 1024)?
            .into_iter()
            .map(|(k, v)| {
                let corrupt = || StoreError::Corrupt {
                    what: "cosignature",
                    why: "malformed record".into(),
                };
                let key: [u8; 32] = k[k.len() - 32..].try_into().map_err(|_| corrupt())?;
                let sig: [u8; 64] = v.try_into().map_err(|_| corrupt())?;
                Ok((
                    PublicKey::from_ed25519_bytes(&key).map_err(|_| corrupt())?,
                    twinledger_core::Signature(sig),
                ))
            })
            .collect()
    }

    /// The event that anchored `version` of `twin`.
    pub fn twin_anchor(&self, twin: &TwinId, version: u64) -> Result<Option<EventId>, StoreError> {
        match self.kv.get(&twin_key(twin, version))? {
            None => Ok(None),
            Some(v) => Ok(Some(EventId(v.try_into().map_err(|_| {
                StoreError::Corrupt {
                    what: "twin anchor index",
                    why: "not 32 bytes".into(),
                }
            })?))),
        }
    }

    /// Event ids in an index for `key`, in log order, from leaf `from`, at most `limit`.
    pub fn index(
        &self,
        ix: Index,
        key: &PublicKey,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, EventId)>, StoreError> {
        let prefix = index_key_prefix(ix, key);
        let start = index_key(ix, key, from);
        self.kv
            .scan(&prefix, Some(&start), limit)?
            .into_iter()
            .map(|(k, v)| {
                let leaf = u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes"));
                let id: [u8; 32] = v.try_into().map_err(|_| StoreError::Corrupt {
                    what: "index entry",
                    why: "not 32 bytes".into(),
                })?;
                Ok((leaf, EventId(id)))
            })
            .collect()
    }
}

impl NodeSource for Store {
    fn node(&self, id: NodeId) -> Option<[u8; 32]> {
        let (t, n, first, r) = read_from(id)?;
        let tile = self.kv.get(&tile_key(t, n)).ok()??;
        let start = usize::try_from(first).ok()? * 32;
        let end = start + (32usize << r);
        let mut level: Vec<[u8; 32]> = tile
            .get(start..end)?
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunk"))
            .collect();
        while level.len() > 1 {
            level = level
                .chunks_exact(2)
                .map(|p| Blake3Tree::node(&p[0], &p[1]))
                .collect();
        }
        level.first().copied()
    }
}

/// Why a store cannot be used for a genesis.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Written by another chain.
    #[error(
        "the data dir holds chain {store}, but the genesis is chain {genesis}: refusing to mix chains"
    )]
    OtherChain {
        /// The store's chain.
        store: ChainId,
        /// The genesis's chain.
        genesis: ChainId,
    },
    /// Another store format.
    #[error("the data dir has store format {0:?}, this node reads format {STORE_FORMAT}")]
    Format(Option<Vec<u8>>),
    /// I/O.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use twinledger_core::merkle::{self, Frontier, MemoryTree};

    use super::*;

    /// Tiles give back every perfect-subtree node, and the same proofs as a tree that keeps
    /// every node, across tile and level boundaries and blocks of uneven sizes.
    #[test]
    fn tiles_serve_every_node_and_proof() {
        let store = Store::memory();
        let mut mem = MemoryTree::<Blake3Tree>::new();
        let mut frontier = Frontier::new();
        let mut leaf = 0u64;
        for (height, size) in [1u64, 255, 1, 300, 7, 1000, 3000, 33]
            .into_iter()
            .enumerate()
        {
            let mut nodes = Vec::new();
            for _ in 0..size {
                let h = Blake3Tree::leaf(&leaf.to_le_bytes());
                nodes.extend(frontier.push::<Blake3Tree>(h));
                mem.push_leaf_hash(h);
                leaf += 1;
            }
            let writes = store.tile_writes(height as u64, &nodes).unwrap();
            store.kv.commit(writes).unwrap();
        }
        let n = mem.size();
        for level in 0..13u8 {
            for index in 0..(n >> level) {
                let id = NodeId::new(level, index);
                assert_eq!(store.node(id), mem.node(id), "{id}");
            }
            assert_eq!(store.node(NodeId::new(level, n >> level)), None);
        }
        for i in [0, 1, 255, 256, 257, 4000, n - 1] {
            assert_eq!(
                merkle::inclusion_proof::<Blake3Tree>(&store, i, n).unwrap(),
                mem.inclusion_proof(i, n).unwrap()
            );
        }
        assert_eq!(
            merkle::consistency_proof::<Blake3Tree>(&store, 300, n).unwrap(),
            mem.consistency_proof(300, n).unwrap()
        );
        assert_eq!(
            merkle::root_at::<Blake3Tree>(&store, n).unwrap(),
            mem.root()
        );
    }
}
