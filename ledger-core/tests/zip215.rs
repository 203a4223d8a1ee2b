//! The protocol's signature rule is ZIP-215 (PROTOCOL.md §3 since 2.1, ADR 0009). The node's
//! batch check (ed25519-zebra's equation) is tested to decide as this rule does in
//! `node/tests/zip215_batch.rs`.
//!
//! ZIP-215: `A` and `R` must decode to curve points, non-canonical encodings accepted; `S < l`;
//! only the cofactored equation `[8][S]B = [8]R + [8][k]A`. The edge cases are Zcash's 196:
//! every small-order `A` with every small-order `R` (8 canonical and 6 non-canonical encodings
//! each) and `S = 0`, all valid. Small-order keys are refused as identities (`PublicKey`), so
//! those cases go through the rule on raw bytes (`keys::zip215`).

#[path = "zip215/cases.rs"]
mod cases;

use cases::*;
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::traits::IsIdentity as _;
use twinledger_core::hash::ChainId;
use twinledger_core::keys::{
    KeyError, Keypair, PublicKey, sig_domain, signing_message, verify_batch, zip215,
};

#[test]
fn there_are_fourteen_small_order_encodings_and_196_cases() {
    assert_eq!(canonical_small_order().len(), 8);
    assert_eq!(non_canonical_small_order().len(), 6);
    let mut all = small_order_encodings();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 14, "distinct encodings");
    assert_eq!(small_order_cases().len(), 196);
}

#[test]
fn small_order_edge_cases_are_accepted_as_zip215_says() {
    let cases = small_order_cases();
    for (a, sig) in &cases {
        assert_eq!(
            zip215::verify(a, SMALL_ORDER_MSG, sig),
            Ok(()),
            "A {} R {}",
            hex::encode(a),
            hex::encode(&sig.0[..32])
        );
        assert_eq!(zip215::verify_batch(&[(*a, SMALL_ORDER_MSG, *sig)]), Ok(()));
    }
    let batch: Vec<_> = cases
        .iter()
        .map(|(a, sig)| (*a, SMALL_ORDER_MSG, *sig))
        .collect();
    assert_eq!(zip215::verify_batch(&batch), Ok(()));
    // Pairs, so the batch equation (not the single fallback) decides each mix.
    for pair in batch.chunks(2) {
        assert_eq!(zip215::verify_batch(pair), Ok(()));
    }
}

#[test]
fn small_order_keys_are_not_identities() {
    for a in small_order_encodings() {
        assert_eq!(
            PublicKey::from_ed25519_bytes(&a),
            Err(KeyError::InvalidPoint),
            "{}",
            hex::encode(a)
        );
    }
}

/// Key decoding is unchanged in 2.1: a non-canonical encoding (`y + p`) of a point that is not
/// of small order is an identity, as in 2.0 (nobody knows the secret of such a point).
#[test]
fn non_canonical_keys_of_large_order_are_identities_as_before() {
    let accepted: Vec<[u8; 32]> = (2..19u8)
        .flat_map(|y| [0x7f, 0xff].map(|top| (y, top)))
        .map(|(y, top)| {
            let mut e = [0xffu8; 32];
            e[0] = 0xed + y;
            e[31] = top;
            e
        })
        .filter(|e| PublicKey::from_ed25519_bytes(e).is_ok())
        .collect();
    assert!(!accepted.is_empty());
}

#[test]
fn s_at_or_above_l_is_refused() {
    // S = l with small-order A and R: the equation would hold for S mod l = 0.
    let enc = small_order_encodings();
    let mut sig = r_and_zero_s(&enc[0]);
    sig.0[32..].copy_from_slice(&L);
    assert_eq!(
        zip215::verify(&enc[1], SMALL_ORDER_MSG, &sig),
        Err(KeyError::BadSignature)
    );
    // S + l of a valid signature.
    let (key, msg, good) = signed(7, b"body");
    let bad = s_plus_l(&good);
    assert_eq!(key.verify_raw(&msg, &good), Ok(()));
    assert_eq!(key.verify_raw(&msg, &bad), Err(KeyError::BadSignature));
    let items = vec![
        signed(1, b"a"),
        (key, msg.clone(), bad),
        (key, msg, good),
        (key, b"other".to_vec(), good),
    ];
    assert_eq!(verify_batch(&items), Err(1));
    assert_eq!(
        zip215::verify_batch(&[
            (enc[1], SMALL_ORDER_MSG, r_and_zero_s(&enc[0])),
            (enc[1], SMALL_ORDER_MSG, sig)
        ]),
        Err(1)
    );
}

#[test]
fn a_key_or_r_that_is_not_a_point_is_refused() {
    let np = not_a_point();
    let (key, msg, good) = signed(9, b"body");
    assert_eq!(
        zip215::verify(&np, &msg, &good),
        Err(KeyError::InvalidPoint)
    );
    assert_eq!(
        PublicKey::from_ed25519_bytes(&np),
        Err(KeyError::InvalidPoint)
    );
    let mut bad = good;
    bad.0[..32].copy_from_slice(&np);
    assert_eq!(key.verify_raw(&msg, &bad), Err(KeyError::BadSignature));
    assert_eq!(
        verify_batch(&[(key, msg.clone(), good), (key, msg, bad)]),
        Err(1)
    );
}

#[test]
fn a_valid_signature_of_a_random_key_is_accepted() {
    // "Random": a seed from a hash, not a chosen one.
    let seed = *blake3::hash(b"zip215 random key").as_bytes();
    let key = Keypair::from_secret(&seed);
    let chain = ChainId([5; 32]);
    let sig = key.sign(sig_domain::COMMIT, &chain, b"vote");
    assert_eq!(
        key.public()
            .verify(sig_domain::COMMIT, &chain, b"vote", &sig),
        Ok(())
    );
    let msg = signing_message(sig_domain::COMMIT, &chain, b"vote");
    assert_eq!(zip215::verify(key.public().as_bytes(), &msg, &sig), Ok(()));
}

/// 2.1 accepts more than 2.0 did: a small-order `R` (which `verify_strict` refused) and a
/// mixed-order key's signature that only the cofactored equation accepts.
#[test]
fn signatures_verify_strict_refused_are_valid_under_zip215() {
    use ed25519_dalek::Verifier as _;

    let seed = [41u8; 32];
    let (key, msg, _) = signed(41, b"body");
    let sig = small_order_r_signature(&seed, &msg);
    let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    assert!(key.verifying_key().verify_strict(&msg, &dalek_sig).is_err());
    assert!(key.verifying_key().verify(&msg, &dalek_sig).is_ok());
    assert_eq!(key.verify_raw(&msg, &sig), Ok(()));
    assert_eq!(
        verify_batch(&[signed(1, b"x"), (key, msg.clone(), sig)]),
        Ok(())
    );

    // The torsion part T of the mixed key has order 8 ([4]T is not the identity).
    assert!(!(EIGHT_TORSION[1] * curve25519_dalek::Scalar::from(4u8)).is_identity());
    let (mixed, sig) = mixed_order_signature(&seed, &msg);
    let mixed = PublicKey::from_ed25519_bytes(&mixed).expect("a mixed-order key is an identity");
    let dalek_sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    assert!(
        mixed
            .verifying_key()
            .verify_strict(&msg, &dalek_sig)
            .is_err(),
        "only the cofactored equation holds"
    );
    assert_eq!(mixed.verify_raw(&msg, &sig), Ok(()));
    assert_eq!(verify_batch(&[(mixed, msg, sig), signed(2, b"y")]), Ok(()));
}

#[test]
fn the_first_bad_index_is_named() {
    let mut items: Vec<_> = (0..6u8).map(|i| signed(i + 40, &[i])).collect();
    assert_eq!(verify_batch(&items), Ok(()));
    items[5].2.0[0] ^= 1;
    assert_eq!(verify_batch(&items), Err(5));
    items[3].2.0[40] ^= 1;
    assert_eq!(verify_batch(&items), Err(3));
    assert_eq!(verify_batch(&items[4..]), Err(1));
    assert_eq!(verify_batch(&items[..3]), Ok(()));
    assert_eq!(verify_batch(&items[3..4]), Err(0));
    assert_eq!(verify_batch(&[]), Ok(()));
}
