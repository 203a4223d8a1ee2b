//! Receipts (PROTOCOL.md §9.2) verify offline against the validator set alone, and fail after
//! any byte of their canonical encoding is changed.

mod common;

use common::*;
use twinledger_core::devkit::DevChain;
use twinledger_core::*;

fn receipt() -> (DevChain, Receipt) {
    let mut chain = DevChain::new(4);
    let alice = patient("alice");
    let phys = chain.physician.clone();
    let g = chain.event(&alice, vitals_grant(&alice.public(), &phys.public()));
    chain.commit(vec![g.clone()]);
    let filler = chain.event(
        &phys,
        access_payload(
            &alice.public(),
            DataCategory::Genetic,
            Purpose::Treat,
            Action::Read,
        ),
    );
    let a = chain.event(
        &phys,
        access_payload(
            &alice.public(),
            DataCategory::VitalSigns,
            Purpose::Treat,
            Action::Read,
        ),
    );
    let c = chain.commit(vec![filler, a.clone()]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let index = 1u32;
    let leaf = c.block.header.log_size - 2 + 1;
    let proof = chain
        .log
        .inclusion_proof(leaf, c.block.header.log_size)
        .unwrap();
    let r = Receipt {
        event: a,
        index,
        leaf_index: leaf,
        inclusion_proof: proof.into_iter().map(Hash).collect(),
        header: c.block.header.clone(),
        results: c.results.clone(),
        certificate: c.certificate.clone(),
    };
    (chain, r)
}

#[test]
fn a_receipt_proves_its_decision() {
    let (chain, r) = receipt();
    let g = chain.blocks[0].block.events[0].id();
    assert_eq!(
        r.verify(chain.validator_set()).unwrap(),
        Outcome::Access(Decision::Permit { grant: g })
    );
    // Another validator set does not accept it.
    let other = DevChain::new(3);
    assert!(r.verify(other.validator_set()).is_err());
}

#[test]
fn any_byte_change_breaks_a_receipt() {
    let (chain, r) = receipt();
    let bytes = codec::encode(&r);
    let mut still_valid = Vec::new();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            if let Ok(changed) = codec::decode::<Receipt>("receipt", &b, 1 << 20)
                && changed.verify(chain.validator_set()).is_ok()
            {
                still_valid.push(i);
            }
        }
    }
    assert!(
        still_valid.is_empty(),
        "bytes {still_valid:?} can change without breaking the receipt"
    );
}
