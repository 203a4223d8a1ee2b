//! The `zip215` vectors (PROTOCOL.md §3, 2.1): signatures on the edges of the ZIP-215 rule, each
//! with whether it is valid and whether its key is an identity, for an independent verifier.

use serde_json::{Value, json};
use twinledger_core::devkit::dev_key;
use twinledger_core::hash::ChainId;
use twinledger_core::keys::{PublicKey, Signature, sig_domain, signing_message, zip215};

use crate::zip215_cases::*;

struct Case {
    name: &'static str,
    why: &'static str,
    key: [u8; 32],
    msg: Vec<u8>,
    sig: Signature,
    valid: bool,
}

fn cases() -> Vec<Case> {
    let chain = ChainId([0x21; 32]);
    let signer = dev_key("zip215/signer");
    let msg = signing_message(sig_domain::EVENT, &chain, b"zip215 vector");
    let good = signer.sign(sig_domain::EVENT, &chain, b"zip215 vector");
    let key = *signer.public().as_bytes();
    let canonical = canonical_small_order();
    let non_canonical = non_canonical_small_order();
    let seed = signer.secret_bytes();
    let (mixed_key, mixed_sig) = mixed_order_signature(&seed, &msg);
    let mut s_is_l = r_and_zero_s(&canonical[2]);
    s_is_l.0[32..].copy_from_slice(&L);
    let mut r_off_curve = good;
    r_off_curve.0[..32].copy_from_slice(&not_a_point());
    let small = SMALL_ORDER_MSG.to_vec();
    vec![
        Case {
            name: "plain",
            why: "an RFC 8032 signature of an event signing message",
            key,
            msg: msg.clone(),
            sig: good,
            valid: true,
        },
        Case {
            name: "small_order_a_and_r",
            why: "A of order 8 and R of order 4, canonical, S = 0: [8]R = [8][k]A = 0",
            key: canonical[1],
            msg: small.clone(),
            sig: r_and_zero_s(&canonical[2]),
            valid: true,
        },
        Case {
            name: "non_canonical_a_and_r",
            why: "A = y 0 written as p + 0, sign bit set (order 4); R = the identity with the sign bit set; S = 0",
            key: non_canonical[1],
            msg: small.clone(),
            sig: r_and_zero_s(&non_canonical[4]),
            valid: true,
        },
        Case {
            name: "small_order_r",
            why: "R = the identity, S = k·a: verify_strict (2.0) refused it, ZIP-215 accepts",
            key,
            msg: msg.clone(),
            sig: small_order_r_signature(&seed, &msg),
            valid: true,
        },
        Case {
            name: "mixed_order_key",
            why: "A = [a]B + T, T of order 8: only the cofactored equation holds",
            key: mixed_key,
            msg: msg.clone(),
            sig: mixed_sig,
            valid: true,
        },
        Case {
            name: "s_equals_l",
            why: "small-order A and R with S = l (0 mod l): refused, S must be < l",
            key: canonical[1],
            msg: small,
            sig: s_is_l,
            valid: false,
        },
        Case {
            name: "s_plus_l",
            why: "the plain signature with S + l: refused, S must be < l",
            key,
            msg: msg.clone(),
            sig: s_plus_l(&good),
            valid: false,
        },
        Case {
            name: "r_not_a_point",
            why: "R does not decode to a curve point: refused",
            key,
            msg: msg.clone(),
            sig: r_off_curve,
            valid: false,
        },
        Case {
            name: "a_not_a_point",
            why: "A does not decode to a curve point: refused",
            key: not_a_point(),
            msg,
            sig: good,
            valid: false,
        },
    ]
}

pub fn vectors() -> Value {
    let list: Vec<Value> = cases()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "why": c.why,
                "key_hex": hex::encode(c.key),
                "message_hex": hex::encode(&c.msg),
                "signature_hex": hex::encode(c.sig.0),
                "valid": c.valid,
                "key_is_identity": PublicKey::from_ed25519_bytes(&c.key).is_ok(),
            })
        })
        .collect();
    json!({
        "note": concat!(
            "Signature validity (PROTOCOL.md §3, 2.1: ZIP-215) of `signature` = R || S by the ",
            "32 key bytes A over `message`. `key_is_identity`: whether A is accepted as a public ",
            "key (§3 refuses points that do not decode and small-order keys), which is checked ",
            "where a key is decoded, apart from the signature rule."
        ),
        "small_order_encodings": small_order_encodings().iter().map(hex::encode).collect::<Vec<_>>(),
        "cases": list,
    })
}

fn unhex<const N: usize>(v: &Value) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(v.as_str().unwrap(), &mut out).unwrap();
    out
}

/// Checks the pinned vectors: each case singly, the valid ones together in one batch, all of
/// them in one batch (the first invalid one named), and the 196 small-order cases built from
/// the pinned encodings.
pub fn check(want: &Value) {
    let v = &want["zip215"];
    let mut items = Vec::new();
    for c in v["cases"].as_array().unwrap() {
        let key: [u8; 32] = unhex(&c["key_hex"]);
        let msg = hex::decode(c["message_hex"].as_str().unwrap()).unwrap();
        let sig = Signature(unhex(&c["signature_hex"]));
        let valid = c["valid"].as_bool().unwrap();
        assert_eq!(
            zip215::verify(&key, &msg, &sig).is_ok(),
            valid,
            "{}",
            c["name"]
        );
        assert_eq!(
            PublicKey::from_ed25519_bytes(&key).is_ok(),
            c["key_is_identity"].as_bool().unwrap(),
            "{}",
            c["name"]
        );
        items.push((key, msg, sig, valid));
    }
    let all: Vec<_> = items
        .iter()
        .map(|(k, m, s, _)| (*k, m.as_slice(), *s))
        .collect();
    let first_invalid = items.iter().position(|it| !it.3).unwrap();
    assert_eq!(zip215::verify_batch(&all), Err(first_invalid));
    let valid: Vec<_> = items
        .iter()
        .filter(|it| it.3)
        .map(|(k, m, s, _)| (*k, m.as_slice(), *s))
        .collect();
    assert!(valid.len() >= 4);
    assert_eq!(zip215::verify_batch(&valid), Ok(()));

    let encodings: Vec<[u8; 32]> = v["small_order_encodings"]
        .as_array()
        .unwrap()
        .iter()
        .map(unhex)
        .collect();
    assert_eq!(encodings.len(), 14);
    let mut all = Vec::new();
    for a in &encodings {
        for r in &encodings {
            let sig = r_and_zero_s(r);
            assert_eq!(zip215::verify(a, SMALL_ORDER_MSG, &sig), Ok(()));
            all.push((*a, SMALL_ORDER_MSG, sig));
        }
    }
    assert_eq!(zip215::verify_batch(&all), Ok(()));
}
