//! PROTOCOL.md §6.11: recording double-sign evidence. Table tests: each case is one rule.

mod common;

use twinledger_core::consensus::{DoubleSign, Vote, VoteKind};
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::*;

fn evidence(chain: &DevChain, signer: &Keypair, height: u64) -> DoubleSign {
    let cp = chain.blocks[0].block.header.checkpoint();
    let vote = |value| Vote {
        chain_id: chain.state.chain_id(),
        height,
        round: 0,
        kind: VoteKind::Prevote,
        value,
    };
    DoubleSign {
        first: vote(Some(Checkpoint { height, ..cp })).sign(signer),
        second: vote(None).sign(signer),
    }
    .canonical()
}

fn setup() -> DevChain {
    let mut chain = DevChain::new(4);
    chain.commit(vec![]);
    chain
}

fn refused(chain: &mut DevChain, author: &Keypair, ds: DoubleSign) -> RejectReason {
    let ev = chain.event(author, EventPayload::Misbehaviour(ds));
    let c = chain.commit(vec![ev]);
    assert_eq!(c.rejected.len(), 1, "expected a refusal");
    c.rejected[0].1.clone()
}

#[test]
fn s6_11_valid_evidence_is_recorded_once_naming_the_validator() {
    let mut chain = setup();
    let (v0, v2) = (chain.validators[0].clone(), chain.validators[2].clone());
    let ds = evidence(&chain, &v2, 1);
    let ev = chain.event(&v0, EventPayload::Misbehaviour(ds));
    let c = chain.commit(vec![ev]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let recorded: Vec<_> = chain.state.misbehaviours().map(|(k, _)| *k).collect();
    assert_eq!(recorded, vec![(v2.public(), 1, 0, VoteKind::Prevote)]);
    // The same slot again (by another reporter): refused, named.
    let v1 = chain.validators[1].clone();
    let r = refused(&mut chain, &v1, ds);
    assert_eq!(
        r,
        RejectReason::Misbehaviour("this double sign is already recorded".into())
    );
}

#[test]
fn s6_11_reporter_must_be_a_validator() {
    let mut chain = setup();
    let v2 = chain.validators[2].clone();
    let ds = evidence(&chain, &v2, 1);
    let phys = chain.physician.clone();
    let r = refused(&mut chain, &phys, ds);
    assert_eq!(
        r,
        RejectReason::Misbehaviour("the reporter is not a validator at this height".into())
    );
}

#[test]
fn s6_11_evidence_must_verify_and_be_in_the_past() {
    let mut chain = setup();
    let v0 = chain.validators[0].clone();
    // Signed by someone outside the set.
    let stranger = dev_key("stranger");
    let ds = evidence(&chain, &stranger, 1);
    let r = refused(&mut chain, &v0, ds);
    assert!(matches!(r, RejectReason::Misbehaviour(m) if m.contains("is not a validator")));
    // For a future height.
    let v3 = chain.validators[3].clone();
    let ds = evidence(&chain, &v3, 99);
    let r = refused(&mut chain, &v0, ds);
    assert_eq!(
        r,
        RejectReason::Misbehaviour("the evidence is for a height after this block".into())
    );
    // A forged second signature.
    let mut ds = evidence(&chain, &v3, 1);
    ds.second.signature = ds.first.signature;
    let r = refused(&mut chain, &v0, ds);
    assert!(matches!(r, RejectReason::Misbehaviour(m) if m.contains("does not verify")));
    assert_eq!(chain.state.misbehaviours().count(), 0);
}
