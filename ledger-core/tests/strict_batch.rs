//! `keys::verify_batch` follows the protocol's signature rule (PROTOCOL.md §3, `verify_strict`)
//! and nothing weaker (issue #10 §5).
//!
//! The crafted signature: `R` is the identity point (small order) and `S = k·a mod l`, with `a`
//! the signer's secret scalar and `k = SHA-512(R || A || M)`. Then `[S]B = [k]A = R + [k]A`, so
//! the cofactorless equation holds exactly: ed25519-dalek's `verify` and its batch check accept
//! it, while `verify_strict` refuses it for its small-order `R`. Any holder of a key can make
//! such a signature, so a verifier that accepted it would disagree with the validators about
//! which events are valid.

use ed25519_dalek::Verifier as _;
use sha2::{Digest, Sha512};
use twinledger_core::hash::ChainId;
use twinledger_core::keys::{Keypair, Signature, sig_domain, signing_message, verify_batch};

/// The group order l = 2^252 + 27742317777372353535851937790883648493, little-endian limbs.
const L: [u64; 4] = [
    0x5812_631a_5cf5_d3ed,
    0x14de_f9de_a2f7_9cd6,
    0x0000_0000_0000_0000,
    0x1000_0000_0000_0000,
];

fn geq(a: &[u64; 4], b: &[u64; 4]) -> bool {
    for i in (0..4).rev() {
        if a[i] != b[i] {
            return a[i] > b[i];
        }
    }
    true
}

fn sub(a: &mut [u64; 4], b: &[u64; 4]) {
    let mut borrow = false;
    for i in 0..4 {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        a[i] = d;
        borrow = b1 || b2;
    }
}

fn add(a: &mut [u64; 4], b: &[u64; 4]) {
    let mut carry = false;
    for i in 0..4 {
        let (s, c1) = a[i].overflowing_add(b[i]);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        a[i] = s;
        carry = c1 || c2;
    }
    assert!(!carry, "values stay below 2^254");
}

/// `(2x + bit) mod l` for `x < l` (no overflow: 2x + 1 < 2^254).
fn double_add_bit(x: &mut [u64; 4], bit: bool) {
    let mut carry = u64::from(bit);
    for limb in x.iter_mut() {
        let next = *limb >> 63;
        *limb = (*limb << 1) | carry;
        carry = next;
    }
    if geq(x, &L) {
        sub(x, &L);
    }
}

/// A little-endian byte string as an integer mod l.
fn reduce(le: &[u8]) -> [u64; 4] {
    let mut x = [0u64; 4];
    for byte in le.iter().rev() {
        for bit in (0..8).rev() {
            double_add_bit(&mut x, (byte >> bit) & 1 == 1);
        }
    }
    x
}

/// `a·b mod l` for `a, b < l`, by double-and-add over the bits of `b`.
fn mul(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    let mut acc = [0u64; 4];
    for i in (0..256).rev() {
        double_add_bit(&mut acc, false);
        if (b[i / 64] >> (i % 64)) & 1 == 1 {
            add(&mut acc, a);
            if geq(&acc, &L) {
                sub(&mut acc, &L);
            }
        }
    }
    acc
}

fn to_le_bytes(x: &[u64; 4]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, limb) in x.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
    }
    out
}

/// A signature by `seed`'s key over `msg` with `R` = the identity point (see the module doc).
fn small_order_r_signature(seed: &[u8; 32], msg: &[u8]) -> Signature {
    let key = Keypair::from_secret(seed);
    // RFC 8032 §5.1.5: the secret scalar is the clamped first half of SHA-512(seed).
    let h = Sha512::digest(seed);
    let mut a = [0u8; 32];
    a.copy_from_slice(&h[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let mut r = [0u8; 32];
    r[0] = 1; // the identity point: y = 1, x = 0
    let k = Sha512::new()
        .chain_update(r)
        .chain_update(key.public().as_bytes())
        .chain_update(msg)
        .finalize();
    let s = mul(&reduce(&k), &reduce(&a));
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(&to_le_bytes(&s));
    Signature(sig)
}

#[test]
fn scalar_arithmetic_matches_the_group_order() {
    // l mod l = 0, (l - 1)·(l - 1) = 1 mod l, 2^256 mod l = 2^256 - 15·l (a known small value).
    assert_eq!(reduce(&to_le_bytes(&L)), [0; 4]);
    let mut lm1 = L;
    sub(&mut lm1, &[1, 0, 0, 0]);
    assert_eq!(mul(&lm1, &lm1), [1, 0, 0, 0]);
    let mut two_256 = vec![0u8; 32];
    two_256.push(1);
    let mut want = [0u64; 4];
    for _ in 0..15 {
        add(&mut want, &L);
    }
    // 2^256 - 15·l, computed as the two's complement of 15·l in 256 bits.
    let neg: [u64; 4] = {
        let mut x = [!want[0], !want[1], !want[2], !want[3]];
        add(&mut x, &[1, 0, 0, 0]);
        x
    };
    assert_eq!(reduce(&two_256), neg);
}

/// Issue #10 §5: a signature that only the cofactorless equation accepts is refused, and the
/// index named is the first bad one.
#[test]
fn verify_batch_refuses_what_verify_strict_refuses() {
    let chain = ChainId([3; 32]);
    let seeds: Vec<[u8; 32]> = (0..6u8).map(|i| [i + 40; 32]).collect();
    let mut items: Vec<_> = seeds
        .iter()
        .enumerate()
        .map(|(i, seed)| {
            let key = Keypair::from_secret(seed);
            let body = [u8::try_from(i).unwrap()];
            (
                key.public(),
                signing_message(sig_domain::EVENT, &chain, &body),
                key.sign(sig_domain::EVENT, &chain, &body),
            )
        })
        .collect();
    assert_eq!(verify_batch(&items), Ok(()));

    let bad = 3;
    let forged = small_order_r_signature(&seeds[bad], &items[bad].1);
    items[bad].2 = forged;

    // The weaker checks accept it...
    let (key, msg, sig) = &items[bad];
    let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    assert!(
        key.verifying_key().verify(msg, &dalek_sig).is_ok(),
        "the cofactorless single check accepts the crafted signature"
    );
    let msgs: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_slice()).collect();
    let sigs: Vec<_> = items
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    let keys: Vec<_> = items.iter().map(|(k, _, _)| k.verifying_key()).collect();
    assert!(
        ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok(),
        "dalek's batch check accepts the crafted signature"
    );
    // ...the protocol's rule does not, and neither does verify_batch.
    assert!(key.verify_raw(msg, sig).is_err());
    assert_eq!(verify_batch(&items), Err(bad));

    // The first bad index is named when there are several.
    items[5].2.0[0] ^= 1;
    assert_eq!(verify_batch(&items), Err(bad));
    assert_eq!(verify_batch(&items[bad + 1..]), Err(5 - bad - 1));
    assert_eq!(verify_batch(&[]), Ok(()));
}
