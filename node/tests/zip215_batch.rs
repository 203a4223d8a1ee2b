//! The node's batch check (`verify::batch_check`, ed25519-zebra's cofactored equation with
//! coefficients derived from the batch) decides exactly as the protocol's single rule
//! (`twinledger_core::keys::zip215::verify`, PROTOCOL.md §3, ADR 0009): on Zcash's 196
//! small-order edge cases and on random mixes of valid and forged signatures.

#[path = "../../ledger-core/tests/zip215/cases.rs"]
mod cases;

use std::sync::OnceLock;

use cases::*;
use proptest::prelude::*;
use twinledger_core::keys::{PublicKey, Signature, zip215};
use twinledger_node::verify::batch_check;

#[test]
fn the_small_order_edge_cases_pass_the_batch_equation_as_zip215_says() {
    let batch: Vec<_> = small_order_cases()
        .into_iter()
        .map(|(a, sig)| (a, SMALL_ORDER_MSG, sig))
        .collect();
    assert_eq!(batch.len(), 196);
    assert_eq!(batch_check(&batch), Ok(()));
    // Pairs, so the batch equation (not the single fallback) decides each mix.
    for pair in batch.chunks(2) {
        assert_eq!(batch_check(pair), Ok(()));
    }
    // One forged S among them is named.
    let mut forged = batch.clone();
    forged[77].2.0[32] = 1;
    assert_eq!(batch_check(&forged), Err(77));
}

/// One signature of each sort, built once: what the property test mixes.
#[derive(Clone, Debug)]
struct Item {
    key: [u8; 32],
    msg: Vec<u8>,
    sig: Signature,
}

fn pool() -> &'static [Item] {
    static POOL: OnceLock<Vec<Item>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut out = Vec::new();
        let item = |(k, m, s): (PublicKey, Vec<u8>, Signature)| Item {
            key: *k.as_bytes(),
            msg: m,
            sig: s,
        };
        for seed in 0..6u8 {
            let (k, m, s) = signed(seed, &[seed]);
            out.push(item((k, m.clone(), s))); // valid
            let mut wrong_msg = m.clone();
            wrong_msg[40] ^= 1;
            out.push(item((k, wrong_msg, s))); // another message
            let mut flipped_r = s;
            flipped_r.0[1] ^= 4;
            out.push(item((k, m.clone(), flipped_r))); // R changed
            let mut flipped_s = s;
            flipped_s.0[40] ^= 1;
            out.push(item((k, m.clone(), flipped_s))); // S changed
            out.push(item((k, m.clone(), s_plus_l(&s)))); // S >= l
            let mut np = s;
            np.0[..32].copy_from_slice(&not_a_point());
            out.push(item((k, m.clone(), np))); // R not a point
            let seed32 = [seed + 100; 32];
            let (sk, sm, _) = signed(seed + 100, b"strict");
            out.push(item((
                sk,
                sm.clone(),
                small_order_r_signature(&seed32, &sm),
            ))); // valid
            let (mk, ms) = mixed_order_signature(&seed32, &m);
            let mk = PublicKey::from_ed25519_bytes(&mk).unwrap();
            out.push(item((mk, m.clone(), ms))); // valid (cofactored only)
            let mut mixed_bad = ms;
            mixed_bad.0[33] ^= 1;
            out.push(item((mk, m, mixed_bad))); // invalid
        }
        for (i, (a, sig)) in small_order_cases().into_iter().enumerate().step_by(13) {
            out.push(Item {
                key: a,
                msg: SMALL_ORDER_MSG.to_vec(),
                sig,
            }); // valid
            let mut other = sig;
            other.0[32] = u8::try_from(i % 200).unwrap() + 1; // S != 0: invalid
            out.push(Item {
                key: a,
                msg: SMALL_ORDER_MSG.to_vec(),
                sig: other,
            });
        }
        out
    })
}

fn single_ok(it: &Item) -> bool {
    zip215::verify(&it.key, &it.msg, &it.sig).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The batch check is `Ok` iff every single verification is, and otherwise names the
    /// first signature that single verification refuses.
    #[test]
    fn single_and_batch_verification_agree_on_every_mix(
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let pool = pool();
        let items: Vec<&Item> = picks.iter().map(|i| &pool[i.index(pool.len())]).collect();
        let want = items.iter().position(|it| !single_ok(it)).map_or(Ok(()), Err);

        let raw: Vec<_> = items.iter().map(|it| (it.key, it.msg.as_slice(), it.sig)).collect();
        prop_assert_eq!(batch_check(&raw), want);

    }
}

#[test]
fn the_pool_mixes_valid_and_invalid_signatures() {
    let valid = pool().iter().filter(|it| single_ok(it)).count();
    assert!(
        valid > 10 && valid < pool().len() - 10,
        "{valid} of {}",
        pool().len()
    );
}
