//! Building blocks of the ZIP-215 edge cases (PROTOCOL.md §3, 2.1), shared by `tests/zip215.rs`
//! and the `zip215` vectors of `tests/golden.rs`. Written from ZIP-215 and RFC 8032 with
//! curve25519-dalek's group arithmetic; the rule under test is `twinledger_core::keys::zip215`.
#![allow(dead_code)]

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};
use twinledger_core::hash::ChainId;
use twinledger_core::keys::{Keypair, PublicKey, Signature, sig_domain, signing_message};

/// The group order l = 2^252 + 27742317777372353535851937790883648493, little-endian.
pub const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// The message of the ZIP-215 small-order cases (as in Zcash's test suite).
pub const SMALL_ORDER_MSG: &[u8] = b"Zcash";

/// `a + b` as 256-bit little-endian integers (no overflow for the values used here).
pub fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s.to_le_bytes()[0];
        carry = s >> 8;
    }
    assert_eq!(carry, 0, "no overflow");
    out
}

fn decodes(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    CompressedEdwardsY(*bytes).decompress()
}

/// The 8 points of order dividing 8, canonically encoded.
pub fn canonical_small_order() -> Vec<[u8; 32]> {
    EIGHT_TORSION
        .iter()
        .map(|p| p.compress().to_bytes())
        .collect()
}

/// Every non-canonical encoding of a small-order point: a `y` written as `y + p` (only
/// `y < 19` fits in 255 bits), either sign bit, and `x = 0` (y = ±1) with the sign bit set.
/// Six in all: (p+0, ±), (p+1, ±), (1, −), (−1, −).
pub fn non_canonical_small_order() -> Vec<[u8; 32]> {
    let mut candidates = Vec::new();
    for y in 0..19u8 {
        // p + y = 2^255 - 19 + y, little-endian: 0xed + y, then 0xff..., top byte 0x7f.
        let mut e = [0xffu8; 32];
        e[0] = 0xed + y;
        e[31] = 0x7f;
        candidates.push(e);
        e[31] |= 0x80;
        candidates.push(e);
    }
    let mut one_neg = [0u8; 32];
    one_neg[0] = 1;
    one_neg[31] = 0x80;
    candidates.push(one_neg);
    let mut minus_one_neg = [0xffu8; 32];
    minus_one_neg[0] = 0xec;
    candidates.push(minus_one_neg);
    let out: Vec<_> = candidates
        .into_iter()
        .filter(|e| decodes(e).is_some_and(|p| p.is_small_order()))
        .collect();
    for e in &out {
        assert_ne!(
            &decodes(e).unwrap().compress().to_bytes(),
            e,
            "non-canonical"
        );
    }
    out
}

/// The 14 encodings of small-order points ZIP-215 enumerates (8 canonical, 6 not).
pub fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut all = canonical_small_order();
    all.extend(non_canonical_small_order());
    all
}

/// The signature `R || S` with `S = 0`.
pub fn r_and_zero_s(r: &[u8; 32]) -> Signature {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(r);
    Signature(sig)
}

/// The 196 cases: every small-order `A` with every small-order `R`, `S = 0`, message "Zcash".
/// `[8][0]B = 0 = [8]R + [8][k]A`: all valid under ZIP-215.
pub fn small_order_cases() -> Vec<([u8; 32], Signature)> {
    let enc = small_order_encodings();
    let mut out = Vec::new();
    for a in &enc {
        for r in &enc {
            out.push((*a, r_and_zero_s(r)));
        }
    }
    out
}

/// `k = SHA-512(R || A || M) mod l`.
pub fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let h: [u8; 64] = Sha512::new()
        .chain_update(r)
        .chain_update(a)
        .chain_update(msg)
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&h)
}

/// RFC 8032 §5.1.5: the secret scalar of a seed (the clamped first half of SHA-512(seed)).
pub fn secret_scalar(seed: &[u8; 32]) -> Scalar {
    let h: [u8; 64] = Sha512::digest(seed).into();
    let mut a = [0u8; 32];
    a.copy_from_slice(&h[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    Scalar::from_bytes_mod_order(a)
}

/// A signature by `seed`'s key over `msg` whose `R` is the identity point and `S = k·a`: the
/// cofactorless equation holds exactly, yet ed25519-dalek's `verify_strict` (the 2.0 rule)
/// refused it for its small-order `R`. Valid under ZIP-215.
pub fn small_order_r_signature(seed: &[u8; 32], msg: &[u8]) -> Signature {
    let key = Keypair::from_secret(seed);
    let r = EdwardsPoint::default().compress().to_bytes(); // the identity: y = 1
    let k = challenge(&r, key.public().as_bytes(), msg);
    let s = k * secret_scalar(seed);
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(s.as_bytes());
    Signature(sig)
}

/// A key of mixed order (`A = [a]B + T`, `T` of order 8) and a signature by `a` over `msg`
/// made for that key: `[S]B = R + [k]A − [k]T`, so only the cofactored equation holds (for
/// `k` not a multiple of 8). The key is not small-order: a valid identity.
pub fn mixed_order_signature(seed: &[u8; 32], msg: &[u8]) -> ([u8; 32], Signature) {
    let a = secret_scalar(seed);
    let key = (ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1])
        .compress()
        .to_bytes();
    // A deterministic nonce, as RFC 8032 does it (from the seed and the message).
    let nonce: [u8; 64] = Sha512::new()
        .chain_update(seed)
        .chain_update(msg)
        .finalize()
        .into();
    let r_scalar = Scalar::from_bytes_mod_order_wide(&nonce);
    let r = (ED25519_BASEPOINT_POINT * r_scalar).compress().to_bytes();
    let s = r_scalar + challenge(&r, &key, msg) * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(s.as_bytes());
    (key, Signature(sig))
}

/// `sig` with `S` replaced by `S + l` (same value mod l, not canonical).
pub fn s_plus_l(sig: &Signature) -> Signature {
    let mut s = [0u8; 32];
    s.copy_from_slice(&sig.0[32..]);
    let mut out = sig.0;
    out[32..].copy_from_slice(&add_le(&s, &L));
    Signature(out)
}

/// The first 32-byte `y` encoding (sign bit clear) that is not a curve point.
pub fn not_a_point() -> [u8; 32] {
    (2u8..)
        .map(|y| {
            let mut e = [0u8; 32];
            e[0] = y;
            e
        })
        .find(|e| decodes(e).is_none())
        .unwrap()
}

/// A valid event-domain signature by the key of `seed` over `body`: (key, signed message,
/// signature).
pub fn signed(seed: u8, body: &[u8]) -> (PublicKey, Vec<u8>, Signature) {
    let chain = ChainId([3; 32]);
    let key = Keypair::from_secret(&[seed; 32]);
    (
        key.public(),
        signing_message(sig_domain::EVENT, &chain, body),
        key.sign(sig_domain::EVENT, &chain, body),
    )
}
