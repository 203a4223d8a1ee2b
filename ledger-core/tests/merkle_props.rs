//! Property tests of `twinledger_core::merkle` against a reference written directly from
//! RFC 9162 section 2.1 (recursive `MTH`, `PATH` and `SUBPROOF`), with blake3 and SHA-256, and a
//! cross-check against the `ct-merkle` crate (SHA-256).
//!
//! Mutations: flipping any bit of a proof element, root or leaf hash, changing a leaf index or
//! the old size (`size1`) by one, or truncating or extending a proof must make verification
//! fail. Changing the tree size of an inclusion proof, or the new size (`size2`) of a consistency
//! proof, by one does not always do so: an RFC 9162 proof does not fix that size (the inclusion
//! proof of leaf 0 in a tree of 3 leaves also verifies as a proof in a tree of 4 leaves against
//! the same root, see `size_is_not_bound_by_an_inclusion_proof`). For those mutations the
//! verifier must agree exactly with a reference verifier that evaluates the RFC's recursive
//! proof structure for the claimed sizes.

mod common;

use common::Sha256Tree;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use sha2::Sha256;
use twinledger_core::merkle::{
    Blake3Tree, Frontier, MemoryTree, NodeId, NodeSource, TreeHasher, mth, root_at,
    verify_consistency, verify_inclusion,
};

// ---------------------------------------------------------------------------------------------
// Reference: RFC 9162 section 2.1, transcribed.
// ---------------------------------------------------------------------------------------------

/// The largest power of two smaller than `n` (`n > 1`): the split point `k` of section 2.1.1.
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Section 2.1.1: `MTH(D[n])`.
fn ref_mth<H: TreeHasher>(d: &[[u8; 32]]) -> [u8; 32] {
    match d.len() {
        0 => H::empty(),
        1 => d[0],
        n => {
            let k = split(n);
            H::node(&ref_mth::<H>(&d[..k]), &ref_mth::<H>(&d[k..]))
        }
    }
}

/// Section 2.1.3.1: `PATH(m, D[n])`.
fn ref_path<H: TreeHasher>(m: usize, d: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let n = d.len();
    if n == 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut p = ref_path::<H>(m, &d[..k]);
        p.push(ref_mth::<H>(&d[k..]));
        p
    } else {
        let mut p = ref_path::<H>(m - k, &d[k..]);
        p.push(ref_mth::<H>(&d[..k]));
        p
    }
}

/// Section 2.1.4.1: `SUBPROOF(m, D[n], b)`.
fn ref_subproof<H: TreeHasher>(m: usize, d: &[[u8; 32]], b: bool) -> Vec<[u8; 32]> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![ref_mth::<H>(d)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = ref_subproof::<H>(m, &d[..k], b);
        p.push(ref_mth::<H>(&d[k..]));
        p
    } else {
        let mut p = ref_subproof::<H>(m - k, &d[k..], false);
        p.push(ref_mth::<H>(&d[..k]));
        p
    }
}

/// Section 2.1.4.1: `PROOF(m, D[n]) = SUBPROOF(m, D[n], true)`.
fn ref_proof<H: TreeHasher>(m: usize, d: &[[u8; 32]]) -> Vec<[u8; 32]> {
    ref_subproof::<H>(m, d, true)
}

/// The shape of a recomputation: how a verifier combines the proof elements (`P(i)`) with the
/// value it starts from (`Seed`: the leaf hash, or the old root).
#[derive(Debug, Clone, PartialEq)]
enum Sym {
    Seed,
    P(usize),
    Node(Box<Sym>, Box<Sym>),
}

fn node(l: Sym, r: Sym) -> Sym {
    Sym::Node(Box::new(l), Box::new(r))
}

/// The root of `D[n]` in terms of the leaf `m` (`Seed`) and the elements of `PATH(m, D[n])`,
/// following the recursion of section 2.1.3.1.
fn sym_path(m: u64, n: u64, next: &mut usize) -> Sym {
    if n == 1 {
        return Sym::Seed;
    }
    let k = split(usize::try_from(n).unwrap()) as u64;
    if m < k {
        let sub = sym_path(m, k, next);
        let p = Sym::P(*next);
        *next += 1;
        node(sub, p)
    } else {
        let sub = sym_path(m - k, n - k, next);
        let p = Sym::P(*next);
        *next += 1;
        node(p, sub)
    }
}

/// The (old, new) roots in terms of the old root (`Seed`) and the elements of
/// `SUBPROOF(m, D[n], b)`, following the recursion of section 2.1.4.1.
fn sym_subproof(m: u64, n: u64, b: bool, next: &mut usize) -> (Sym, Sym) {
    if m == n {
        if b {
            return (Sym::Seed, Sym::Seed);
        }
        let p = Sym::P(*next);
        *next += 1;
        return (p.clone(), p);
    }
    let k = split(usize::try_from(n).unwrap()) as u64;
    if m <= k {
        let (old, new) = sym_subproof(m, k, b, next);
        let p = Sym::P(*next);
        *next += 1;
        (old, node(new, p))
    } else {
        let (old, new) = sym_subproof(m - k, n - k, false, next);
        let p = Sym::P(*next);
        *next += 1;
        (node(p.clone(), old), node(p, new))
    }
}

fn eval<H: TreeHasher>(s: &Sym, seed: &[u8; 32], proof: &[[u8; 32]]) -> [u8; 32] {
    match s {
        Sym::Seed => *seed,
        Sym::P(i) => proof[*i],
        Sym::Node(l, r) => H::node(&eval::<H>(l, seed, proof), &eval::<H>(r, seed, proof)),
    }
}

/// Reference inclusion verifier: the proof has the length `PATH(index, D[size])` has, and
/// recombining it in that recursion's shape gives the root.
fn ref_verify_inclusion<H: TreeHasher>(
    index: u64,
    size: u64,
    leaf: &[u8; 32],
    proof: &[[u8; 32]],
    root: &[u8; 32],
) -> bool {
    if index >= size {
        return false;
    }
    let mut len = 0;
    let shape = sym_path(index, size, &mut len);
    len == proof.len() && eval::<H>(&shape, leaf, proof) == *root
}

/// Reference consistency verifier: `0 < size1 <= size2`; equal sizes need an empty proof and
/// equal roots; otherwise the proof has the length of `PROOF(size1, D[size2])` and recombining it
/// in that recursion's shape gives both roots.
fn ref_verify_consistency<H: TreeHasher>(
    size1: u64,
    size2: u64,
    proof: &[[u8; 32]],
    root1: &[u8; 32],
    root2: &[u8; 32],
) -> bool {
    if size1 == 0 || size1 > size2 {
        return false;
    }
    if size1 == size2 {
        return proof.is_empty() && root1 == root2;
    }
    let mut len = 0;
    let (old, new) = sym_subproof(size1, size2, true, &mut len);
    len == proof.len()
        && eval::<H>(&old, root1, proof) == *root1
        && eval::<H>(&new, root1, proof) == *root2
}

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

fn leaf_data(salt: u64, i: u64) -> Vec<u8> {
    let mut v = salt.to_le_bytes().to_vec();
    v.extend_from_slice(&i.to_le_bytes());
    v
}

fn build<H: TreeHasher>(salt: u64, size: u64) -> (MemoryTree<H>, Vec<[u8; 32]>) {
    let mut tree = MemoryTree::<H>::new();
    for i in 0..size {
        tree.push_leaf_data(&leaf_data(salt, i));
    }
    let leaves = (0..size).map(|i| tree.leaf_hash(i).unwrap()).collect();
    (tree, leaves)
}

fn flip(h: &[u8; 32], bit: usize) -> [u8; 32] {
    let mut out = *h;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

fn usize_of(x: u64) -> usize {
    usize::try_from(x).unwrap()
}

fn one_off(x: u64) -> impl Iterator<Item = u64> {
    [x.checked_sub(1), x.checked_add(1)].into_iter().flatten()
}

/// Everything about one inclusion proof; `Err` names the first violated property.
/// `flips`: also flip every bit of every proof element, the root and the leaf hash.
fn check_inclusion<H: TreeHasher>(
    salt: u64,
    index: u64,
    size: u64,
    flips: bool,
) -> Result<(), String> {
    let (tree, leaves) = build::<H>(salt, size);
    let root = tree.root();
    let leaf = leaves[usize_of(index)];
    let proof = tree
        .inclusion_proof(index, size)
        .map_err(|e| e.to_string())?;

    if proof != ref_path::<H>(usize_of(index), &leaves) {
        return Err("proof differs from the RFC 9162 2.1.3.1 PATH reference".into());
    }
    if root != ref_mth::<H>(&leaves) || root != mth::<H>(&leaves) {
        return Err("root differs from the reference MTH".into());
    }
    if let Err(e) = verify_inclusion::<H>(index, size, &leaf, &proof, &root) {
        return Err(format!("honest proof rejected: {e}"));
    }
    if !ref_verify_inclusion::<H>(index, size, &leaf, &proof, &root) {
        return Err("reference verifier rejects the honest proof".into());
    }
    let rejects = |i: u64, n: u64, l: &[u8; 32], p: &[[u8; 32]], r: &[u8; 32]| {
        verify_inclusion::<H>(i, n, l, p, r).is_err()
    };
    for (e, element) in proof.iter().enumerate().filter(|_| flips) {
        for bit in 0..256 {
            let mut p = proof.clone();
            p[e] = flip(element, bit);
            if !rejects(index, size, &leaf, &p, &root) {
                return Err(format!("accepted with bit {bit} of element {e} flipped"));
            }
        }
    }
    for bit in (0..256).filter(|_| flips) {
        if !rejects(index, size, &leaf, &proof, &flip(&root, bit)) {
            return Err(format!("accepted with root bit {bit} flipped"));
        }
        if !rejects(index, size, &flip(&leaf, bit), &proof, &root) {
            return Err(format!("accepted with leaf bit {bit} flipped"));
        }
    }
    for i in one_off(index) {
        if !rejects(i, size, &leaf, &proof, &root) {
            return Err(format!("accepted as leaf {i}"));
        }
    }
    for n in one_off(size) {
        let ours = verify_inclusion::<H>(index, n, &leaf, &proof, &root).is_ok();
        if ours != ref_verify_inclusion::<H>(index, n, &leaf, &proof, &root) {
            return Err(format!(
                "size {n}: verifier says {ours}, reference disagrees"
            ));
        }
    }
    if let Some((_, shorter)) = proof.split_last()
        && !rejects(index, size, &leaf, shorter, &root)
    {
        return Err("accepted a truncated proof".into());
    }
    let mut longer = proof.clone();
    longer.push(root);
    if !rejects(index, size, &leaf, &longer, &root) {
        return Err("accepted an extended proof".into());
    }
    Ok(())
}

/// Everything about one consistency proof; `Err` names the first violated property.
/// `flips`: also flip every bit of every proof element and of both roots.
fn check_consistency<H: TreeHasher>(
    salt: u64,
    size1: u64,
    size2: u64,
    flips: bool,
) -> Result<(), String> {
    let (tree, leaves) = build::<H>(salt, size2);
    let root1 = tree.root_at(size1).map_err(|e| e.to_string())?;
    let root2 = tree.root();
    let proof = tree
        .consistency_proof(size1, size2)
        .map_err(|e| e.to_string())?;

    if proof != ref_proof::<H>(usize_of(size1), &leaves) {
        return Err("proof differs from the RFC 9162 2.1.4.1 SUBPROOF reference".into());
    }
    if root1 != ref_mth::<H>(&leaves[..usize_of(size1)]) {
        return Err("historical root differs from the reference MTH".into());
    }
    if let Err(e) = verify_consistency::<H>(size1, size2, &proof, &root1, &root2) {
        return Err(format!("honest proof rejected: {e}"));
    }
    if !ref_verify_consistency::<H>(size1, size2, &proof, &root1, &root2) {
        return Err("reference verifier rejects the honest proof".into());
    }
    let rejects = |m: u64, n: u64, p: &[[u8; 32]], r1: &[u8; 32], r2: &[u8; 32]| {
        verify_consistency::<H>(m, n, p, r1, r2).is_err()
    };
    for (e, element) in proof.iter().enumerate().filter(|_| flips) {
        for bit in 0..256 {
            let mut p = proof.clone();
            p[e] = flip(element, bit);
            if !rejects(size1, size2, &p, &root1, &root2) {
                return Err(format!("accepted with bit {bit} of element {e} flipped"));
            }
        }
    }
    for bit in (0..256).filter(|_| flips) {
        if !rejects(size1, size2, &proof, &flip(&root1, bit), &root2) {
            return Err(format!("accepted with old root bit {bit} flipped"));
        }
        if !rejects(size1, size2, &proof, &root1, &flip(&root2, bit)) {
            return Err(format!("accepted with new root bit {bit} flipped"));
        }
    }
    for m in one_off(size1) {
        if !rejects(m, size2, &proof, &root1, &root2) {
            return Err(format!("accepted as old size {m}"));
        }
    }
    for n in one_off(size2) {
        let ours = verify_consistency::<H>(size1, n, &proof, &root1, &root2).is_ok();
        if ours != ref_verify_consistency::<H>(size1, n, &proof, &root1, &root2) {
            return Err(format!(
                "new size {n}: verifier says {ours}, reference disagrees"
            ));
        }
    }
    if let Some((_, shorter)) = proof.split_last()
        && !rejects(size1, size2, shorter, &root1, &root2)
    {
        return Err("accepted a truncated proof".into());
    }
    let mut longer = proof.clone();
    longer.push(root2);
    if !rejects(size1, size2, &longer, &root1, &root2) {
        return Err("accepted an extended proof".into());
    }
    Ok(())
}

/// Frontier root, `root_at`, `Frontier::from_source` and the nodes `push` reports, at every size.
fn check_frontier<H: TreeHasher>(salt: u64, size: u64) -> Result<(), String> {
    let (tree, leaves) = build::<H>(salt, size);
    let mut frontier = Frontier::new();
    if frontier.root::<H>() != mth::<H>(&[]) {
        return Err("empty frontier root".into());
    }
    for (i, leaf) in leaves.iter().enumerate() {
        let completed = frontier.push::<H>(*leaf);
        let n = i as u64 + 1;
        if completed.first() != Some(&(NodeId::leaf(i as u64), *leaf)) {
            return Err(format!("push {n}: first completed node is not the leaf"));
        }
        if completed.len() != 1 + (i as u64).trailing_ones() as usize {
            return Err(format!("push {n}: {} nodes completed", completed.len()));
        }
        for (id, hash) in &completed {
            if tree.node(*id) != Some(*hash) {
                return Err(format!(
                    "push {n}: completed node {id} differs from the tree"
                ));
            }
        }
        let want = mth::<H>(&leaves[..=i]);
        if want != ref_mth::<H>(&leaves[..=i]) {
            return Err(format!("size {n}: mth differs from the RFC reference"));
        }
        if frontier.root::<H>() != want {
            return Err(format!("size {n}: Frontier::root differs from mth"));
        }
        if root_at::<H>(&tree, n) != Ok(want) {
            return Err(format!("size {n}: root_at differs from mth"));
        }
        if Frontier::from_source(&tree, n).as_ref() != Ok(&frontier) {
            return Err(format!("size {n}: Frontier::from_source differs"));
        }
    }
    let json = serde_json::to_string(&frontier).map_err(|e| e.to_string())?;
    if serde_json::from_str::<Frontier>(&json).map_err(|e| e.to_string())? != frontier {
        return Err("frontier serde round trip".into());
    }
    Ok(())
}

/// Roots, proofs and verification against `ct-merkle` 0.3 with SHA-256, which hashes leaf data
/// itself: our proofs must equal its proofs and pass its verifier.
fn check_ct_merkle(salt: u64, index: u64, size1: u64, size2: u64) -> Result<(), String> {
    let (tree, _) = build::<Sha256Tree>(salt, size2);
    let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    for i in 0..size1 {
        ct.push(leaf_data(salt, i));
    }
    let ct_root1 = ct.root();
    for i in size1..size2 {
        ct.push(leaf_data(salt, i));
    }
    let ct_root2 = ct.root();
    let concat = |p: Vec<[u8; 32]>| p.concat();

    if ct_root1.as_bytes().as_slice() != tree.root_at(size1).unwrap().as_slice()
        || ct_root2.as_bytes().as_slice() != tree.root().as_slice()
    {
        return Err("roots differ from ct-merkle".into());
    }
    let ours = concat(tree.inclusion_proof(index, size2).unwrap());
    if ct.prove_inclusion(usize_of(index)).as_bytes() != ours.as_slice() {
        return Err("inclusion proof differs from ct-merkle".into());
    }
    let proof = InclusionProof::<Sha256>::try_from_bytes(ours).map_err(|e| e.to_string())?;
    ct_root2
        .verify_inclusion(&leaf_data(salt, index), index, &proof)
        .map_err(|e| format!("ct-merkle rejects our inclusion proof: {e}"))?;

    let ours = concat(tree.consistency_proof(size1, size2).unwrap());
    if ct.prove_consistency(usize_of(size2 - size1)).as_bytes() != ours.as_slice() {
        return Err("consistency proof differs from ct-merkle".into());
    }
    let proof = ConsistencyProof::<Sha256>::try_from_bytes(ours).map_err(|e| e.to_string())?;
    ct_root2
        .verify_consistency(&ct_root1, &proof)
        .map_err(|e| format!("ct-merkle rejects our consistency proof: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Strategies and properties.
// ---------------------------------------------------------------------------------------------

const MAX: u64 = 600;

/// (size, index < size).
fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX).prop_flat_map(|size| (Just(size), 0..size))
}

/// (size1 <= size2), with equal sizes and powers of two drawn more often than by chance.
fn two_sizes() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        6 => (1..=MAX).prop_flat_map(|size2| (1..=size2, Just(size2))),
        1 => (1..=MAX).prop_map(|size| (size, size)),
        1 => (0..10u32, 1..=MAX).prop_map(|(k, size2)| ((1u64 << k).min(size2), size2)),
        1 => (1..10u32, 0..MAX)
            .prop_map(|(k, extra)| (1u64 << k, ((1u64 << k) + extra).min(MAX))),
    ]
}

/// `cases` cases; a failing case is saved beside this file (`merkle_props.proptest-regressions`).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn as_prop(result: Result<(), String>) -> Result<(), TestCaseError> {
    result.map_err(TestCaseError::fail)
}

// The workspace builds dependencies (blake3, sha2) with opt-level 2 in test builds; without that
// SHA-256 is about ten times slower, hence fewer SHA-256 cases than blake3 ones.
proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn inclusion_blake3((size, index) in size_and_index(), salt in any::<u64>()) {
        as_prop(check_inclusion::<Blake3Tree>(salt, index, size, true))?;
    }

    #[test]
    fn consistency_blake3((size1, size2) in two_sizes(), salt in any::<u64>()) {
        as_prop(check_consistency::<Blake3Tree>(salt, size1, size2, true))?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn ct_merkle_agrees(
        ((size1, size2), index_seed) in (two_sizes(), any::<u64>()),
        salt in any::<u64>(),
    ) {
        as_prop(check_ct_merkle(salt, index_seed % size2, size1, size2))?;
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn inclusion_sha256((size, index) in size_and_index(), salt in any::<u64>()) {
        as_prop(check_inclusion::<Sha256Tree>(salt, index, size, true))?;
    }

    #[test]
    fn consistency_sha256((size1, size2) in two_sizes(), salt in any::<u64>()) {
        as_prop(check_consistency::<Sha256Tree>(salt, size1, size2, true))?;
    }
}

proptest! {
    // Quadratic in the size (a reference MTH at every size): fewer cases.
    #![proptest_config(config(48))]

    #[test]
    fn frontier_blake3(size in 1..=MAX, salt in any::<u64>()) {
        as_prop(check_frontier::<Blake3Tree>(salt, size))?;
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn frontier_sha256(size in 1..=MAX, salt in any::<u64>()) {
        as_prop(check_frontier::<Sha256Tree>(salt, size))?;
    }
}

/// Every (index, size) and (size1, size2) up to 40 leaves with the structural and one-off
/// checks above (bit flips are left to the properties), and the number of one-off size
/// mutations that still verify, all of them predicted by the reference.
#[test]
fn exhaustive_small_trees() {
    let mut checked = 0;
    for size in 1..=40 {
        for index in 0..size {
            check_inclusion::<Sha256Tree>(7, index, size, false)
                .unwrap_or_else(|e| panic!("inclusion ({index}, {size}): {e}"));
            checked += 1;
        }
        for size1 in 1..=size {
            check_consistency::<Sha256Tree>(7, size1, size, false)
                .unwrap_or_else(|e| panic!("consistency ({size1}, {size}): {e}"));
            check_ct_merkle(7, size1 - 1, size1, size)
                .unwrap_or_else(|e| panic!("ct-merkle ({size1}, {size}): {e}"));
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * 820);

    // [inclusion size - 1, size + 1, consistency size2 - 1, size2 + 1]
    let mut still_verify = [0usize; 4];
    let (tree, _) = build::<Sha256Tree>(7, 40);
    for size in 1..=40u64 {
        let root = tree.root_at(size).unwrap();
        for index in 0..size {
            let leaf = tree.leaf_hash(index).unwrap();
            let proof = tree.inclusion_proof(index, size).unwrap();
            for (slot, n) in [(0, size - 1), (1, size + 1)] {
                let ok = verify_inclusion::<Sha256Tree>(index, n, &leaf, &proof, &root).is_ok();
                still_verify[slot] += usize::from(ok);
            }
        }
        for size1 in 1..size {
            let root1 = tree.root_at(size1).unwrap();
            let proof = tree.consistency_proof(size1, size).unwrap();
            for (slot, n) in [(2, size - 1), (3, size + 1)] {
                let ok = verify_consistency::<Sha256Tree>(size1, n, &proof, &root1, &root).is_ok();
                still_verify[slot] += usize::from(ok);
            }
        }
    }
    eprintln!(
        "one-off size mutations that still verify, sizes <= 40 \
         [inclusion size-1, size+1, consistency size2-1, size2+1]: {still_verify:?}"
    );
    assert!(still_verify.iter().all(|&n| n > 0));
}

/// RFC 9162 inclusion proofs do not fix the tree size: `PATH(0, D[3]) = [b, c]` recombines as
/// `H(H(a, b), c)` under size 4 as well, so the proof verifies with size 4 and the size-3 root.
#[test]
fn size_is_not_bound_by_an_inclusion_proof() {
    let (tree, _) = build::<Sha256Tree>(1, 3);
    let (leaf, root) = (tree.leaf_hash(0).unwrap(), tree.root());
    let proof = tree.inclusion_proof(0, 3).unwrap();
    assert_eq!(
        verify_inclusion::<Sha256Tree>(0, 3, &leaf, &proof, &root),
        Ok(())
    );
    assert_eq!(
        verify_inclusion::<Sha256Tree>(0, 4, &leaf, &proof, &root),
        Ok(())
    );
    assert!(ref_verify_inclusion::<Sha256Tree>(
        0, 4, &leaf, &proof, &root
    ));
    assert!(verify_inclusion::<Sha256Tree>(0, 2, &leaf, &proof, &root).is_err());
}
