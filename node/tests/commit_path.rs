//! The one commit path (issue #13): every block a node writes, with one validator or many, goes
//! through `Chain::propose` / `Chain::validate` / `Chain::commit`. These tests drive those
//! three steps directly, with honest and lying inputs: a Byzantine proposer's forged event, a
//! certificate that does not make a block final, a block that is not the next one, and a node
//! catching up with a mempool full of live events.

#[path = "../benches/common/mod.rs"]
mod bench_common;
mod common;

use std::sync::Arc;

use twinledger_core::devkit::dev_key;
use twinledger_core::state::SignatureCheck;
use twinledger_core::{Block, CommitCertificate, CommitVote, Keypair, SignedEvent, Timestamp};
use twinledger_node::chain::{Chain, CommitError, ValidateError, now};
use twinledger_node::consensus::solo::Solo;
use twinledger_node::open_chain;
use twinledger_node::store::Store;

fn chain() -> (Arc<Chain>, common::Keys) {
    let k = common::keys();
    let g = common::genesis(&k);
    let chain = open_chain(&g, Store::memory(), k.validator.clone(), false).unwrap();
    (chain, k)
}

/// A consent grant by a fresh patient `label/i` to `org`, valid for an hour (the benches'
/// event).
fn grant(chain: &Chain, label: &str, i: u64, org: &Keypair) -> SignedEvent {
    bench_common::grant(chain.chain_id(), label, i, org)
}

/// A block of `events` on the committed tip, built as the validator would (not through this
/// node's mempool: another proposer's block).
fn foreign_block(chain: &Chain, k: &common::Keys, events: Vec<SignedEvent>) -> Block {
    let st = chain.state();
    let time = Timestamp(now().0.max(st.last_time().0 + 1));
    let built = st
        .build_block_with(k.validator.public(), time, events, SignatureCheck::Verify)
        .unwrap();
    assert!(built.rejected.is_empty());
    built.block
}

fn certify(block: &Block, signer: &Keypair) -> CommitCertificate {
    let vote = CommitVote {
        checkpoint: block.header.checkpoint(),
        round: 0,
    };
    CommitCertificate::new(0, vec![vote.sign(signer)])
}

#[test]
fn a_single_validator_commits_through_the_same_three_steps() {
    let (chain, k) = chain();
    let solo = Solo::new(chain.clone(), k.validator.clone());
    assert_eq!(solo.step(now()).unwrap(), None, "nothing to commit");
    for i in 0..5 {
        chain
            .submit_verified(grant(&chain, "solo", i, &k.hospital), None)
            .unwrap();
    }
    assert_eq!(solo.step(now()).unwrap(), Some(1));
    assert_eq!(chain.height(), 1);
    assert_eq!(chain.mempool_len(), 0);
    let (block, cert) = chain.committed_block(1).unwrap();
    assert_eq!(block.events.len(), 5);
    cert.verify(&block.header.checkpoint(), chain.validators())
        .unwrap();
    // The block's own proposal: its events were the mempool's first, nothing is re-admitted.
    assert_eq!(chain.pending_rebuilds(), 0);
}

#[test]
fn a_proposed_block_with_a_forged_event_signature_is_refused_naming_it_and_changes_nothing() {
    let (chain, k) = chain();
    let events: Vec<SignedEvent> = (0..4)
        .map(|i| grant(&chain, "forge", i, &k.hospital))
        .collect();
    let mut block = foreign_block(&chain, &k, events);
    // A Byzantine proposer forges one event's signature and builds a header that matches the
    // forged body: the only thing wrong with the block is that signature.
    block.events[2].signature.0[10] ^= 1;
    let rebuilt = chain
        .state()
        .build_block_with(
            block.header.proposer,
            block.header.time,
            block.events.clone(),
            SignatureCheck::AlreadyVerified,
        )
        .unwrap();
    let forged = rebuilt.block;
    match chain.validate(&forged, Some(now())) {
        Err(ValidateError::Signature { index: 2, .. }) => {}
        other => panic!("expected a signature error naming event 2, got {other:?}"),
    }
    // Certified by the (single) validator anyway: commit re-executes and refuses it.
    let cert = certify(&forged, &k.validator);
    match chain.commit(forged, cert) {
        Err(CommitError::Invalid(ValidateError::Signature { index: 2, .. })) => {}
        other => panic!("expected the commit to refuse event 2's signature, got {other:?}"),
    }
    assert_eq!(chain.height(), 0);
    assert!(chain.committed_block(1).is_none());
}

#[test]
fn a_block_certified_by_a_key_outside_the_set_is_not_committed() {
    let (chain, k) = chain();
    let block = foreign_block(&chain, &k, vec![grant(&chain, "cert", 0, &k.hospital)]);
    let stranger = dev_key("commit-path/stranger");
    match chain.commit(block.clone(), certify(&block, &stranger)) {
        Err(CommitError::Certificate(_)) => {}
        other => panic!("expected a certificate error, got {other:?}"),
    }
    // An empty certificate neither.
    match chain.commit(block.clone(), CommitCertificate::new(0, vec![])) {
        Err(CommitError::Certificate(_)) => {}
        other => panic!("expected a certificate error, got {other:?}"),
    }
    assert_eq!(chain.height(), 0);
    // The genuine certificate commits it.
    chain
        .commit(block.clone(), certify(&block, &k.validator))
        .unwrap();
    assert_eq!(chain.height(), 1);
    // The same block again is not the next one.
    match chain.commit(block.clone(), certify(&block, &k.validator)) {
        Err(CommitError::NotNext {
            height: 1,
            committed: 1,
        }) => {}
        other => panic!("expected NotNext, got {other:?}"),
    }
}

#[test]
fn a_node_catching_up_does_not_readmit_its_mempool_after_every_old_block() {
    let (chain, k) = chain();
    // A mempool of live events (as a far-behind node receives them by gossip)...
    for i in 0..300 {
        chain
            .submit_verified(grant(&chain, "live", i, &k.hospital), None)
            .unwrap();
    }
    let live = chain.mempool_len();
    assert_eq!(live, 300);
    // ...while it commits old certified blocks whose events it never saw.
    let before = chain.pending_rebuilds();
    chain.set_catching_up(true);
    for h in 0..20u64 {
        let evs = (0..5)
            .map(|i| grant(&chain, "old", h * 5 + i, &k.hospital))
            .collect();
        let block = foreign_block(&chain, &k, evs);
        let cert = certify(&block, &k.validator);
        chain.commit(block, cert).unwrap();
    }
    assert_eq!(chain.height(), 20);
    assert_eq!(
        chain.pending_rebuilds(),
        before,
        "no re-admission while catching up"
    );
    chain.set_catching_up(false);
    assert_eq!(chain.pending_rebuilds(), before + 1, "one when it ends");
    assert_eq!(
        chain.mempool_len(),
        live,
        "the live events are still pending"
    );
    // At the live edge, a block holding an event this node never admitted re-derives it.
    let block = foreign_block(&chain, &k, vec![grant(&chain, "edge", 0, &k.hospital)]);
    let cert = certify(&block, &k.validator);
    chain.commit(block, cert).unwrap();
    assert_eq!(chain.pending_rebuilds(), before + 2);
}
