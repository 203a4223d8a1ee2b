//! The published RFC 6962 / RFC 9162 Merkle test vectors (transparency-dev/merkle, kept in
//! `shared/testdata/rfc6962`), run against `twinledger_core::merkle` instantiated with SHA-256.
//!
//! Every JSON file under the directory is read at test time (recursively, so a new vector file is
//! picked up without a code change) and dispatched on its fields:
//! * `tree.json` (`leaf_inputs_hex`, `root_by_size_hex`): RFC 9162 section 2.1.1 roots;
//! * inclusion vectors (`leafIdx`, ...): RFC 9162 section 2.1.3;
//! * consistency vectors (`size1`, ...): RFC 9162 section 2.1.4.
//!
//! Verification must succeed exactly when `wantErr` is false; for those vectors the proof our
//! generator builds from the eight `tree.json` leaves must equal the published one.

mod common;

use common::Sha256Tree;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use twinledger_core::merkle::{
    Frontier, MemoryTree, TreeHasher, mth, root_at, verify_consistency, verify_inclusion,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/rfc6962");

#[derive(Deserialize)]
struct TreeVector {
    leaf_inputs_hex: Vec<String>,
    root_by_size_hex: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionVector {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    /// `null` in some files: the empty proof.
    proof: Option<Vec<String>>,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsistencyVector {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    /// `null` in some files: the empty proof.
    proof: Option<Vec<String>>,
    want_err: bool,
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {dir:?}: {e}"));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            out.push(path);
        }
    }
}

fn b64(s: &str) -> Vec<u8> {
    STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}"))
}

fn b64_list(list: Option<&Vec<String>>) -> Vec<Vec<u8>> {
    list.map(|l| l.iter().map(|s| b64(s)).collect())
        .unwrap_or_default()
}

fn hex32(s: &str) -> [u8; 32] {
    let bytes = hex_bytes(s);
    bytes.try_into().expect("32-byte hex root")
}

fn hex_bytes(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// The tree of `tree.json`'s eight leaves, the one the happy-path proofs were made from.
fn reference_tree(dir: &Path) -> (TreeVector, MemoryTree<Sha256Tree>) {
    let text = std::fs::read_to_string(dir.join("tree.json")).expect("tree.json");
    let tv: TreeVector = serde_json::from_str(&text).expect("tree.json format");
    let mut tree = MemoryTree::<Sha256Tree>::new();
    for leaf in &tv.leaf_inputs_hex {
        tree.push_leaf_data(&hex_bytes(leaf));
    }
    (tv, tree)
}

#[derive(Default, Debug)]
struct Counts {
    files: usize,
    tree_roots: usize,
    inclusion: usize,
    consistency: usize,
    happy: usize,
    generated_compared: usize,
    roots_compared: usize,
}

#[test]
fn rfc6962_vectors() {
    let dir = Path::new(VECTORS);
    let mut files = Vec::new();
    json_files(dir, &mut files);
    files.sort();

    let (_, tree) = reference_tree(dir);
    let mut counts = Counts::default();
    let mut failures = Vec::new();

    for path in &files {
        let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        counts.files += 1;
        if value.get("leaf_inputs_hex").is_some() {
            let tv: TreeVector = serde_json::from_value(value).expect("tree vector");
            check_tree(&tv, &mut counts, &mut failures);
        } else if value.get("leafIdx").is_some() {
            let v: InclusionVector = serde_json::from_value(value).expect("inclusion vector");
            check_inclusion(&name, &v, &tree, &mut counts, &mut failures);
        } else if value.get("size1").is_some() {
            let v: ConsistencyVector = serde_json::from_value(value).expect("consistency vector");
            check_consistency(&name, &v, &tree, &mut counts, &mut failures);
        } else {
            failures.push(format!("{name}: unknown vector format"));
        }
    }

    eprintln!("RFC 6962 vectors: {counts:?}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // 197 files today; fewer means the directory is missing or truncated.
    assert!(
        counts.files > 190,
        "only {} vector files under {VECTORS}",
        counts.files
    );
    assert_eq!(counts.tree_roots, 9, "tree.json sizes 0..=8");
    // Every happy-path vector so far fits the eight-leaf tree.
    assert_eq!(counts.generated_compared, counts.happy);
    assert!(counts.happy >= 12, "happy-path vectors: {}", counts.happy);
    assert!(counts.roots_compared >= 10);
}

/// RFC 9162 section 2.1.1: the root of every prefix of the eight leaves, four ways.
fn check_tree(tv: &TreeVector, counts: &mut Counts, failures: &mut Vec<String>) {
    let leaves: Vec<[u8; 32]> = tv
        .leaf_inputs_hex
        .iter()
        .map(|l| Sha256Tree::leaf(&hex_bytes(l)))
        .collect();
    let mut tree = MemoryTree::<Sha256Tree>::new();
    let mut frontier = Frontier::new();
    for (size, want) in tv.root_by_size_hex.iter().enumerate() {
        let want = hex32(want);
        if size > 0 {
            tree.push_leaf_hash(leaves[size - 1]);
            frontier.push::<Sha256Tree>(leaves[size - 1]);
        }
        let size64 = size as u64;
        let got = [
            ("mth", mth::<Sha256Tree>(&leaves[..size])),
            ("MemoryTree::root", tree.root()),
            ("Frontier::root", frontier.root::<Sha256Tree>()),
            (
                "root_at",
                root_at::<Sha256Tree>(&tree, size64).expect("root_at"),
            ),
        ];
        for (what, root) in got {
            if root != want {
                failures.push(format!("tree.json: {what} of size {size} differs"));
            }
        }
        counts.tree_roots += 1;
    }
}

fn check_inclusion(
    name: &str,
    v: &InclusionVector,
    tree: &MemoryTree<Sha256Tree>,
    counts: &mut Counts,
    failures: &mut Vec<String>,
) {
    counts.inclusion += 1;
    let proof = b64_list(v.proof.as_ref());
    let root = b64(&v.root);
    let leaf = b64(&v.leaf_hash);
    let result = verify_inclusion::<Sha256Tree>(v.leaf_idx, v.tree_size, &leaf, &proof, &root);
    if result.is_ok() == v.want_err {
        failures.push(format!("{name}: wantErr {} but got {result:?}", v.want_err));
    }
    if v.want_err {
        return;
    }
    counts.happy += 1;
    if v.tree_size <= tree.size() {
        counts.generated_compared += 1;
        match tree.inclusion_proof(v.leaf_idx, v.tree_size) {
            Ok(ours) if ours.iter().map(|h| h.to_vec()).eq(proof.iter().cloned()) => {}
            other => failures.push(format!("{name}: generated proof {other:?}")),
        }
        // Vectors built from the tree.json leaves must also agree on the root.
        if tree
            .leaf_hash(v.leaf_idx)
            .is_some_and(|l| l[..] == leaf[..])
        {
            counts.roots_compared += 1;
            if tree.root_at(v.tree_size).ok().map(|r| r.to_vec()) != Some(root) {
                failures.push(format!("{name}: root differs from the tree.json tree"));
            }
        }
    }
}

fn check_consistency(
    name: &str,
    v: &ConsistencyVector,
    tree: &MemoryTree<Sha256Tree>,
    counts: &mut Counts,
    failures: &mut Vec<String>,
) {
    counts.consistency += 1;
    let proof = b64_list(v.proof.as_ref());
    let root1 = b64(&v.root1);
    let root2 = b64(&v.root2);
    let result = verify_consistency::<Sha256Tree>(v.size1, v.size2, &proof, &root1, &root2);
    if result.is_ok() == v.want_err {
        failures.push(format!("{name}: wantErr {} but got {result:?}", v.want_err));
    }
    if v.want_err {
        return;
    }
    counts.happy += 1;
    if v.size2 <= tree.size() {
        counts.generated_compared += 1;
        match tree.consistency_proof(v.size1, v.size2) {
            Ok(ours) if ours.iter().map(|h| h.to_vec()).eq(proof.iter().cloned()) => {}
            other => failures.push(format!("{name}: generated proof {other:?}")),
        }
        let ours = (tree.root_at(v.size1), tree.root_at(v.size2));
        if let (Ok(r1), Ok(r2)) = ours
            && r1[..] == root1[..]
        {
            counts.roots_compared += 1;
            if r2[..] != root2[..] {
                failures.push(format!("{name}: root2 differs from the tree.json tree"));
            }
        }
    }
}
