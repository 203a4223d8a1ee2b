//! TEMPORARY placeholder until the full RFC 9162 module lands (same API subset).
use serde::{Deserialize, Serialize};
pub trait TreeHasher {
    fn empty() -> [u8; 32];
    fn leaf(data: &[u8]) -> [u8; 32];
    fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32];
}
#[derive(Debug)]
pub struct Blake3Tree;
impl TreeHasher for Blake3Tree {
    fn empty() -> [u8; 32] {
        *blake3::hash(b"").as_bytes()
    }
    fn leaf(data: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&[0]);
        h.update(data);
        *h.finalize().as_bytes()
    }
    fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&[1]);
        h.update(l);
        h.update(r);
        *h.finalize().as_bytes()
    }
}
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Frontier {
    size: u64,
    stack: Vec<(u8, [u8; 32])>,
}
impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn push<H: TreeHasher>(&mut self, leaf: [u8; 32]) -> Vec<(u8, [u8; 32])> {
        let mut cur = (0u8, leaf);
        while let Some(top) = self.stack.last() {
            if top.0 != cur.0 {
                break;
            }
            let t = self.stack.pop().unwrap();
            cur = (cur.0 + 1, H::node(&t.1, &cur.1));
        }
        self.stack.push(cur);
        self.size += 1;
        vec![]
    }
    pub fn root<H: TreeHasher>(&self) -> [u8; 32] {
        let mut it = self.stack.iter().rev();
        let Some(first) = it.next() else {
            return H::empty();
        };
        let mut acc = first.1;
        for n in it {
            acc = H::node(&n.1, &acc);
        }
        acc
    }
}
pub fn mth<H: TreeHasher>(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => H::empty(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - (n - 1).leading_zeros() - 1);
            H::node(&mth::<H>(&leaves[..k]), &mth::<H>(&leaves[k..]))
        }
    }
}
#[derive(Clone, Debug)]
pub struct MemoryTree<H: TreeHasher> {
    leaves: Vec<[u8; 32]>,
    _h: std::marker::PhantomData<H>,
}
impl<H: TreeHasher> MemoryTree<H> {
    pub fn new() -> Self {
        Self {
            leaves: vec![],
            _h: std::marker::PhantomData,
        }
    }
    pub fn push_leaf_hash(&mut self, h: [u8; 32]) -> u64 {
        self.leaves.push(h);
        self.leaves.len() as u64 - 1
    }
    pub fn root(&self) -> [u8; 32] {
        mth::<H>(&self.leaves)
    }
}
