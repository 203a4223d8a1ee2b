//! The store's record layout in one place (ADR 0005): every key prefix and key encoding, and
//! the arithmetic of Merkle tiles. `store.rs` reads and writes records only through these.
//!
//! | prefix | key | value |
//! | --- | --- | --- |
//! | `m/chain_id`, `m/format`, `m/tip` | — | the chain id, the store format, the tip height |
//! | `b/` | height (u64 BE) | blake3 checksum ‖ the committed block (block, results, certificate) |
//! | `e/` | event id | its location (height, index, leaf) |
//! | `t/` | tile level `t` (u8) ‖ tile number (u64 BE) | up to 256 node hashes of level `8t` |
//! | `w/` | twin id ‖ version (u64 BE) | the anchoring event's id |
//! | `p/`, `a/`, `o/` | patient / actor / organisation key ‖ leaf (u64 BE) | event id |
//! | `c/` | height (u64 BE) ‖ auditor key | the auditor's cosignature |
//! | `s/` | height (u64 BE) ‖ round (u32 BE) ‖ slot kind | what this validator signed |
//! | `z/m`, `z/d` | slot (u8) | snapshot metadata, snapshot bytes (ADR 0010) |
//!
//! > **Architecture invariant:** the store has no delete. Records are only ever added (tiles
//! > and snapshot slots are extended or overwritten in place, never removed).

use twinledger_core::merkle::NodeId;
use twinledger_core::{EventId, PublicKey, TwinId};

use crate::store::Index;

pub(crate) const META_CHAIN: &[u8] = b"m/chain_id";
pub(crate) const META_FORMAT: &[u8] = b"m/format";
pub(crate) const META_TIP: &[u8] = b"m/tip";
/// The signing record: `s/` + height (u64 BE) + round (u32 BE) + slot kind → what was signed.
pub(crate) const SIGNED: &[u8] = b"s/";
/// State snapshots (ADR 0010), in two slots overwritten in turn (the store has no delete):
/// `z/m` + slot → height (u64 BE) || log size (u64 BE); `z/d` + slot → blake3 checksum of the
/// rest || height || log size || the snapshot's bytes. Both written in one flushed batch.
pub(crate) const SNAPSHOT_META: &[u8] = b"z/m";
pub(crate) const SNAPSHOT_DATA: &[u8] = b"z/d";
pub(crate) const SNAPSHOT_SLOTS: u8 = 2;

pub(crate) fn block_key(h: u64) -> Vec<u8> {
    let mut k = b"b/".to_vec();
    k.extend_from_slice(&h.to_be_bytes());
    k
}

pub(crate) fn event_key(id: &EventId) -> Vec<u8> {
    let mut k = b"e/".to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

pub(crate) fn twin_key(twin: &TwinId, version: u64) -> Vec<u8> {
    let mut k = b"w/".to_vec();
    k.extend_from_slice(twin.as_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(crate) fn index_prefix(ix: Index) -> &'static [u8] {
    match ix {
        Index::Patient => b"p/",
        Index::Actor => b"a/",
        Index::Organisation => b"o/",
    }
}

/// The index entries of `key`: `prefix ‖ key`.
pub(crate) fn index_key_prefix(ix: Index, key: &PublicKey) -> Vec<u8> {
    let mut k = index_prefix(ix).to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

pub(crate) fn index_key(ix: Index, key: &PublicKey, leaf: u64) -> Vec<u8> {
    let mut k = index_key_prefix(ix, key);
    k.extend_from_slice(&leaf.to_be_bytes());
    k
}

/// The cosignatures of the checkpoint at `height`: `c/ ‖ height`.
pub(crate) fn cosignature_prefix(height: u64) -> Vec<u8> {
    let mut k = b"c/".to_vec();
    k.extend_from_slice(&height.to_be_bytes());
    k
}

pub(crate) fn cosignature_key(height: u64, auditor: &PublicKey) -> Vec<u8> {
    let mut k = cosignature_prefix(height);
    k.extend_from_slice(auditor.as_bytes());
    k
}

/// Merkle nodes are stored in tiles (the idea of C2SP tlog-tiles): tile `(t, n)` holds the
/// hashes of the nodes at level `8t` with indexes `256n..256n+255`, concatenated. Nodes at the
/// seven levels in between are recomputed from their tile (at most 128 hashes). A block of 10,000
/// events writes about 40 tile records instead of 20,000 node records.
pub(crate) const TILE_HEIGHT: u8 = 8;
pub(crate) const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

pub(crate) fn tile_key(t: u8, n: u64) -> Vec<u8> {
    let mut k = b"t/".to_vec();
    k.push(t);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// Where a stored node goes: `Some((t, n, i))`, the `i`-th hash of tile `(t, n)`, for a node
/// at a tile level (`8t`); `None` for the levels in between, which are not stored.
pub(crate) fn stored_at(id: NodeId) -> Option<(u8, u64, u64)> {
    id.level.is_multiple_of(TILE_HEIGHT).then_some((
        id.level / TILE_HEIGHT,
        id.index / TILE_WIDTH,
        id.index % TILE_WIDTH,
    ))
}

/// Where to read any node from: the tile `(t, n)`, the first of its hashes under the node and
/// how many levels above them the node is (`r`; `2^r` hashes are combined).
pub(crate) fn read_from(id: NodeId) -> Option<(u8, u64, u64, u8)> {
    let t = id.level / TILE_HEIGHT;
    let r = id.level % TILE_HEIGHT;
    // `checked_shl` would let high bits fall off: a multiplication refuses them.
    let first = id.index.checked_mul(1u64 << r)?;
    Some((t, first / TILE_WIDTH, first % TILE_WIDTH, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_arithmetic_places_every_node_in_one_tile() {
        // A node at a tile level is stored; the levels between are not.
        assert_eq!(
            stored_at(NodeId {
                level: 0,
                index: 257
            }),
            Some((0, 1, 1))
        );
        assert_eq!(stored_at(NodeId { level: 8, index: 3 }), Some((1, 0, 3)));
        assert_eq!(stored_at(NodeId { level: 3, index: 3 }), None);
        // A node three levels above the leaves is read from 8 leaf hashes of tile (0, n).
        assert_eq!(
            read_from(NodeId {
                level: 3,
                index: 40
            }),
            Some((0, 1, 64, 3))
        );
        // Reading a stored node reads exactly itself.
        let id = NodeId {
            level: 8,
            index: 300,
        };
        let (t, n, i) = stored_at(id).unwrap();
        assert_eq!(read_from(id), Some((t, n, i, 0)));
        // Indexes that would overflow are refused, not wrapped.
        assert_eq!(
            read_from(NodeId {
                level: 7,
                index: u64::MAX
            }),
            None
        );
    }
}
