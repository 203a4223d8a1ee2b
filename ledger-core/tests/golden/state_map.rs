//! The state map of PROTOCOL.md §6.10, transcribed from the document alone (not from `jmt` or
//! `twinledger_core::statemap`): key, value, leaf and node hashing, the root of a set of
//! records as the sparse binary tree the document describes, and proof verification from the
//! proof's bytes. The golden tests check the reference chain's state hashes and the pinned
//! proofs with it, as an independent implementation would.

use std::collections::BTreeMap;

use twinledger_core::Hash;

/// `H_d(x)`: BLAKE3 in key-derivation mode.
fn h(context: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    for p in parts {
        hasher.update(p);
    }
    *hasher.finalize().as_bytes()
}

/// The empty subtree: 32 ASCII bytes.
pub const PLACEHOLDER: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

/// `H_"twinledger v2 state-key"(table || key)`.
pub fn key_hash(table: u8, key: &[u8]) -> [u8; 32] {
    h("twinledger v2 state-key", &[&[table], key])
}

/// `H_"twinledger v2 state-map"(value)`.
pub fn value_hash(value: &[u8]) -> [u8; 32] {
    h("twinledger v2 state-map", &[value])
}

/// `H_"twinledger v2 state-map"("JMT::LeafNode" || key_hash || value_hash)`.
pub fn leaf(key_hash: &[u8; 32], value_hash: &[u8; 32]) -> [u8; 32] {
    h(
        "twinledger v2 state-map",
        &[b"JMT::LeafNode", key_hash, value_hash],
    )
}

/// `H_"twinledger v2 state-map"("JMT::IntrnalNode" || left || right)`.
pub fn internal(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    h(
        "twinledger v2 state-map",
        &[b"JMT::IntrnalNode", left, right],
    )
}

/// Bit `i` of a key hash, most significant bit of byte 0 first.
pub fn bit(key: &[u8; 32], i: usize) -> bool {
    key[i / 8] >> (7 - i % 8) & 1 == 1
}

/// The records of a map, by key hash: `(key hash → value hash)`.
pub type Leaves = BTreeMap<[u8; 32], [u8; 32]>;

/// The records `(table, key, value)` as leaves.
pub fn leaves<'a>(records: impl IntoIterator<Item = (u8, &'a [u8], &'a [u8])>) -> Leaves {
    records
        .into_iter()
        .map(|(t, k, v)| (key_hash(t, k), value_hash(v)))
        .collect()
}

/// The root: the subtree of the key hashes that share their first `depth` bits is the
/// placeholder when empty, the leaf's hash when it holds one record, else the internal node
/// over its two halves (bit `depth` = 0 left, 1 right).
pub fn root(leaves: &Leaves) -> Hash {
    let all: Vec<([u8; 32], [u8; 32])> = leaves.iter().map(|(k, v)| (*k, *v)).collect();
    Hash(subtree(&all, 0))
}

fn subtree(sorted: &[([u8; 32], [u8; 32])], depth: usize) -> [u8; 32] {
    match sorted {
        [] => PLACEHOLDER,
        [(k, v)] => leaf(k, v),
        _ => {
            let split = sorted.partition_point(|(k, _)| !bit(k, depth));
            internal(
                &subtree(&sorted[..split], depth + 1),
                &subtree(&sorted[split..], depth + 1),
            )
        }
    }
}

/// A proof decoded from its bytes: `value: Option<Vec<u8>> || leaf: Option<(kh, vh)> ||
/// siblings: Vec<0 | 1 left right | 2 kh vh>`.
pub struct Proof {
    pub value: Option<Vec<u8>>,
    pub leaf: Option<([u8; 32], [u8; 32])>,
    pub siblings: Vec<[u8; 32]>,
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let b = bytes[*at];
        *at += 1;
        x |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return x;
        }
    }
    panic!("varint too long")
}

fn take32(bytes: &[u8], at: &mut usize) -> [u8; 32] {
    let out = bytes[*at..*at + 32].try_into().unwrap();
    *at += 32;
    out
}

/// Decodes a proof, refusing trailing bytes and more than 256 siblings.
pub fn decode_proof(bytes: &[u8]) -> Result<Proof, String> {
    let mut at = 1;
    let value = match bytes.first() {
        Some(0) => None,
        Some(1) => {
            let len = usize::try_from(varint(bytes, &mut at)).unwrap();
            let v = bytes.get(at..at + len).ok_or("short value")?.to_vec();
            at += len;
            Some(v)
        }
        _ => return Err("bad value tag".into()),
    };
    let proof_leaf = match bytes.get(at) {
        Some(0) => {
            at += 1;
            None
        }
        Some(1) => {
            at += 1;
            Some((take32(bytes, &mut at), take32(bytes, &mut at)))
        }
        _ => return Err("bad leaf tag".into()),
    };
    let n = varint(bytes, &mut at);
    if n > 256 {
        return Err("more than 256 siblings".into());
    }
    let mut siblings = Vec::new();
    for _ in 0..n {
        let tag = bytes[at];
        at += 1;
        siblings.push(match tag {
            0 => PLACEHOLDER,
            1 => {
                let l = take32(bytes, &mut at);
                internal(&l, &take32(bytes, &mut at))
            }
            2 => {
                let k = take32(bytes, &mut at);
                leaf(&k, &take32(bytes, &mut at))
            }
            _ => return Err("bad sibling tag".into()),
        });
    }
    if at != bytes.len() {
        return Err("trailing bytes".into());
    }
    Ok(Proof {
        value,
        leaf: proof_leaf,
        siblings,
    })
}

/// §6.10 verification: the value `table[key]` proven (`None`: proven absent) against `root`.
pub fn verify(
    root: &Hash,
    table: u8,
    key: &[u8],
    proof: &Proof,
) -> Result<Option<Vec<u8>>, String> {
    let kh = key_hash(table, key);
    let n = proof.siblings.len();
    let start = match (&proof.value, &proof.leaf) {
        (Some(v), Some((lk, lv))) => {
            if *lk != kh || *lv != value_hash(v) {
                return Err("leaf is not the record".into());
            }
            leaf(lk, lv)
        }
        (Some(_), None) => return Err("a value without a leaf".into()),
        (None, Some((lk, lv))) => {
            if *lk == kh {
                return Err("the key is present".into());
            }
            if (0..n).any(|i| bit(lk, i) != bit(&kh, i)) {
                return Err("the leaf is not on the key's path".into());
            }
            leaf(lk, lv)
        }
        (None, None) => PLACEHOLDER,
    };
    let mut acc = start;
    for (i, sib) in proof.siblings.iter().enumerate() {
        let depth = n - 1 - i;
        acc = if bit(&kh, depth) {
            internal(sib, &acc)
        } else {
            internal(&acc, sib)
        };
    }
    if acc != root.0 {
        return Err("root mismatch".into());
    }
    Ok(proof.value.clone())
}
