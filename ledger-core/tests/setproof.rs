//! Validator-set proofs (PROTOCOL.md §9.3) on a real dev chain whose governance replaces the
//! validator set twice: genuine receipts after a change verify with the certified chain of
//! changes and not without it; receipts certified by retired validators are refused, naming
//! why; every tampering of the chain of changes is refused with its own reason.

mod common;

use common::*;
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::consent::Grantee;
use twinledger_core::event::governance::{Governance, GovernanceAction};
use twinledger_core::receipt::ReceiptError;
use twinledger_core::setproof::{SetProofError, ValidatorSets};
use twinledger_core::state::VALIDATOR_SET_DELAY;
use twinledger_core::*;

/// The receipt of event `index` of block `height` (§9.2), built from the dev chain's log.
fn receipt(dc: &DevChain, height: u64, index: usize) -> Receipt {
    let c = &dc.blocks[usize::try_from(height).unwrap() - 1];
    let h = &c.block.header;
    let leaf = h.log_size - u64::from(h.event_count) + index as u64;
    let proof = dc.log.inclusion_proof(leaf, h.log_size).unwrap();
    Receipt {
        event: c.block.events[index].clone(),
        index: u32::try_from(index).unwrap(),
        leaf_index: leaf,
        inclusion_proof: proof.into_iter().map(Hash).collect(),
        header: h.clone(),
        results: c.results.clone(),
        certificate: c.certificate.clone(),
    }
}

/// A new certificate over the receipt's (possibly edited) header, signed by `signers`.
fn recertify(r: &mut Receipt, signers: &[Keypair]) {
    let vote = CommitVote {
        checkpoint: r.header.checkpoint(),
        round: 0,
    };
    r.certificate = CommitCertificate::new(0, signers.iter().map(|k| vote.sign(k)).collect());
}

fn set_of(keys: &[Keypair], org: &Keypair) -> ValidatorSet {
    ValidatorSet::new(
        keys.iter()
            .map(|k| Validator {
                key: k.public(),
                organisation: org.public(),
                power: 1,
            })
            .collect(),
    )
    .unwrap()
}

/// A governance event replacing the set, approved by `approvers`, submitted by `author`.
fn change(
    dc: &mut DevChain,
    author: &Keypair,
    approvers: &[Keypair],
    to: &ValidatorSet,
) -> SignedEvent {
    let seq = dc.state.governance_seq();
    let action = GovernanceAction::ValidatorSetChange {
        validators: to.clone(),
    };
    let chain = dc.state.chain_id();
    let mut approvals: Vec<_> = approvers
        .iter()
        .map(|k| Governance::approve(&chain, seq, &action, k))
        .collect();
    approvals.sort_by_key(|a| a.validator);
    dc.event(
        author,
        EventPayload::Governance(Governance {
            seq,
            action,
            approvals,
        }),
    )
}

struct World {
    dc: DevChain,
    /// The genesis validators (retired by the first change).
    old: Vec<Keypair>,
    /// The validators of the first change.
    new: Vec<Keypair>,
    /// Receipts: the two changes (blocks 1 and 4), the grant (block 2, old set still in force),
    /// an access at block 3 (first new set) and one at block 6 (second new set).
    change1: Receipt,
    change2: Receipt,
    grant: Receipt,
    access3: Receipt,
    access6: Receipt,
}

fn world() -> World {
    let mut dc = DevChain::new(4);
    let old = dc.validators.clone();
    let new: Vec<Keypair> = (0..4)
        .map(|i| dev_key(&format!("setproof/new/{i}")))
        .collect();
    dc.validators.extend(new.iter().cloned());
    let hospital = dc.hospital.clone();
    let set1 = set_of(&new, &hospital);
    let set2 = set_of(&new[..3], &hospital);
    let alice = patient("alice");
    let phys = dc.physician.clone();

    // Block 1: the genesis validators replace themselves; in force from block 3.
    let ev = change(&mut dc, &old[0], &old, &set1);
    commit_one(&mut dc, ev);
    // Block 2: still signed by the genesis set.
    let ev = dc.event(&alice, vitals_grant(&alice.public(), &phys.public()));
    commit_one(&mut dc, ev);
    // Block 3: the first new set signs an access (repeated at block 6).
    let access = access_payload(
        &alice.public(),
        DataCategory::VitalSigns,
        Purpose::Treat,
        Action::Read,
    );
    let ev = dc.event(&phys, access.clone());
    commit_one(&mut dc, ev);
    // Block 4: the new set retires one of its own; in force from block 6.
    let ev = change(&mut dc, &new[1], &new, &set2);
    commit_one(&mut dc, ev);
    dc.commit(vec![]);
    let ev = dc.event(&phys, access);
    commit_one(&mut dc, ev);
    assert_eq!(dc.blocks[2].block.header.validators_hash, set1.hash());
    assert_eq!(dc.blocks[5].block.header.validators_hash, set2.hash());
    World {
        change1: receipt(&dc, 1, 0),
        change2: receipt(&dc, 4, 0),
        grant: receipt(&dc, 2, 0),
        access3: receipt(&dc, 3, 0),
        access6: receipt(&dc, 6, 0),
        dc,
        old,
        new,
    }
}

fn permit(w: &World) -> Outcome {
    Outcome::Access(Decision::Permit {
        grant: w.grant.event_id(),
    })
}

/// §9.3: the set in force at each height follows from the genesis and the chain of changes.
#[test]
fn the_chain_of_changes_gives_the_set_in_force_at_every_height() {
    let w = world();
    let sets =
        ValidatorSets::verify(&w.dc.genesis, &[w.change1.clone(), w.change2.clone()]).unwrap();
    assert_eq!(sets.changes().len(), 2);
    assert_eq!(sets.changes()[0].in_force_from, 1 + VALIDATOR_SET_DELAY);
    assert_eq!(sets.changes()[1].in_force_from, 4 + VALIDATOR_SET_DELAY);
    let hospital = &w.dc.hospital;
    assert_eq!(sets.set_at(2), &w.dc.genesis.validators);
    assert_eq!(sets.set_at(3), &set_of(&w.new, hospital));
    assert_eq!(sets.set_at(5), &set_of(&w.new, hospital));
    assert_eq!(sets.set_at(6), &set_of(&w.new[..3], hospital));
    for (i, b) in w.dc.blocks.iter().enumerate() {
        let h = b.block.header.height;
        assert_eq!(
            sets.set_at(h).hash(),
            b.block.header.validators_hash,
            "block {}",
            i + 1
        );
    }
}

/// §9.3: a genuine receipt after a change verifies with the chain of changes, and is refused
/// against the genesis set alone, naming the validator-set hash.
#[test]
fn a_genuine_receipt_after_a_change_needs_the_chain_of_changes() {
    let w = world();
    let both =
        ValidatorSets::verify(&w.dc.genesis, &[w.change1.clone(), w.change2.clone()]).unwrap();
    let first = ValidatorSets::verify(&w.dc.genesis, std::slice::from_ref(&w.change1)).unwrap();
    let none = ValidatorSets::from_genesis(&w.dc.genesis);
    // (chain of changes, receipt, verifies?)
    let table: [(&ValidatorSets, &Receipt, bool); 9] = [
        (&none, &w.grant, true), // block 2: the change of block 1 is still pending
        (&first, &w.grant, true),
        (&both, &w.grant, true),
        (&none, &w.access3, false),
        (&first, &w.access3, true),
        (&both, &w.access3, true),
        (&none, &w.access6, false),
        (&first, &w.access6, false), // the second change is missing
        (&both, &w.access6, true),
    ];
    for (i, (sets, r, ok)) in table.into_iter().enumerate() {
        let got = sets.verify_receipt(r);
        if ok {
            assert!(got.is_ok(), "row {i}: {got:?}");
        } else {
            assert!(
                matches!(got, Err(ReceiptError::ValidatorsHash { .. })),
                "row {i}: {got:?}"
            );
        }
    }
    assert_eq!(both.verify_receipt(&w.access3).unwrap(), permit(&w));
    assert_eq!(both.verify_receipt(&w.access6).unwrap(), permit(&w));
}

/// §9.3: a receipt certified only by retired validators after the change is refused. Without
/// the chain of changes the forged one would pass against the genesis set: that is the attack.
#[test]
fn a_receipt_certified_by_retired_validators_is_refused() {
    let w = world();
    let sets =
        ValidatorSets::verify(&w.dc.genesis, &[w.change1.clone(), w.change2.clone()]).unwrap();

    // The genuine header (naming the new set), re-certified by the retired set.
    let mut forged = w.access3.clone();
    recertify(&mut forged, &w.old[..3]);
    let err = sets.verify_receipt(&forged).unwrap_err();
    assert!(
        matches!(
            err,
            ReceiptError::Certificate(checkpoint::CertificateError::UnknownSigner(k))
                if w.old.iter().any(|o| o.public() == k)
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("is not a validator at this height"),
        "{err}"
    );

    // A header rewritten to name the retired set, certified by it.
    let mut forged = w.access3.clone();
    forged.header.validators_hash = w.dc.genesis.validators.hash();
    recertify(&mut forged, &w.old[..3]);
    assert!(
        forged.verify(&w.dc.genesis.validators).is_ok(),
        "against the genesis set alone the forgery passes"
    );
    let err = sets.verify_receipt(&forged).unwrap_err();
    assert!(
        matches!(err, ReceiptError::ValidatorsHash { height: 3, .. }),
        "{err}"
    );

    // A validator the second change retired cannot certify block 6 alone or with others.
    let mut forged = w.access6.clone();
    recertify(&mut forged, &w.new[1..]);
    assert!(matches!(
        sets.verify_receipt(&forged),
        Err(ReceiptError::Certificate(
            checkpoint::CertificateError::UnknownSigner(_)
        ))
    ));
    // The current set does verify a re-certification (the helper is sound).
    let mut again = w.access6.clone();
    recertify(&mut again, &w.new[..3]);
    assert_eq!(sets.verify_receipt(&again).unwrap(), permit(&w));
}

/// §9.3 steps 1-6: every tampering of the chain of changes is refused, naming the change.
#[test]
fn a_tampered_chain_of_changes_is_refused() {
    let w = world();
    let g = &w.dc.genesis;
    let c1 = w.change1.clone();
    let c2 = w.change2.clone();

    // Step 3: the new set inside the event changed (the event signature breaks).
    let mut bad_set = c1.clone();
    if let EventPayload::Governance(gv) = &mut bad_set.event.event.payload
        && let GovernanceAction::ValidatorSetChange { validators } = &mut gv.action
    {
        *validators = set_of(&w.old[..1], &w.dc.hospital);
    }
    // Step 3: a certificate signature changed.
    let mut bad_cert = c1.clone();
    bad_cert.certificate.signatures[0].signature.0[5] ^= 1;
    // Step 3: the second change without the first (it is certified by the first's set).
    // Step 2: out of order, repeated.
    // Step 4/5: a receipt of another kind of event.
    // Step 1: a change of another chain.
    let other = receipt(&world_other(), 1, 0);
    type Check = fn(&SetProofError) -> bool;
    let table: Vec<(&str, Vec<Receipt>, Check)> = vec![
        ("changed set", vec![bad_set], |e| {
            matches!(
                e,
                SetProofError::Receipt {
                    index: 0,
                    error: ReceiptError::EventSignature,
                    ..
                }
            )
        }),
        ("changed certificate", vec![bad_cert], |e| {
            matches!(
                e,
                SetProofError::Receipt {
                    index: 0,
                    error: ReceiptError::Certificate(_),
                    ..
                }
            )
        }),
        ("first change left out", vec![c2.clone()], |e| {
            matches!(
                e,
                SetProofError::Receipt {
                    index: 0,
                    height: 4,
                    error: ReceiptError::ValidatorsHash { .. }
                }
            )
        }),
        ("out of order", vec![c2.clone(), c1.clone()], |e| {
            matches!(e, SetProofError::Receipt { index: 0, .. })
        }),
        ("repeated", vec![c1.clone(), c1.clone()], |e| {
            matches!(
                e,
                SetProofError::Order {
                    index: 1,
                    height: 1,
                    previous: 1
                }
            )
        }),
        ("not a change", vec![w.grant.clone()], |e| {
            matches!(
                e,
                SetProofError::NotAChange {
                    index: 0,
                    height: 2,
                    ..
                }
            )
        }),
        ("another chain", vec![other], |e| {
            matches!(e, SetProofError::WrongChain { index: 0, .. })
        }),
    ];
    for (name, chain, check) in table {
        let err = ValidatorSets::verify(g, &chain).unwrap_err();
        assert!(check(&err), "{name}: {err}");
        assert!(err.to_string().contains("change #"), "{name}: {err}");
    }
}

fn world_other() -> DevChain {
    let mut dc = DevChain::new(3);
    let alice = patient("other");
    let ev = dc.event(
        &alice,
        grant_payload(
            &alice.public(),
            Grantee::Actor(dc.physician.public()),
            &[DataCategory::VitalSigns],
            &[Purpose::Treat],
            &[Action::Read],
        ),
    );
    commit_one(&mut dc, ev);
    dc
}

/// A one-event block at height 1 rebuilt around `event` and `results`, certified by `signers`:
/// what a quorum that signs an invalid block could produce.
fn forge_first_block(
    r: &Receipt,
    event: SignedEvent,
    results: BlockResults,
    signers: &[Keypair],
) -> Receipt {
    assert_eq!((r.header.height, r.header.log_size), (1, 1));
    let mut f = r.clone();
    let leaf = Hash(event.leaf_hash());
    f.event = event;
    f.header.events_root = leaf;
    f.header.log_root = leaf;
    f.header.results_hash = results.hash();
    f.results = results;
    recertify(&mut f, signers);
    f
}

/// §9.3 step 4 and 5: even a certified block is checked for what §6.8 requires of the change:
/// outcome applied, author and approvals from the set in force.
#[test]
fn a_certified_change_that_breaks_the_governance_rule_is_refused() {
    let w = world();
    let g = &w.dc.genesis;
    let c1 = &w.change1;
    let EventPayload::Governance(gov) = &c1.event.event.payload else {
        unreachable!()
    };

    // Approvals of only two of the four genesis validators, re-signed by the author.
    let mut weak = c1.event.event.clone();
    if let EventPayload::Governance(gv) = &mut weak.payload {
        gv.approvals.truncate(2);
    }
    let weak = weak.sign(&w.old[0]);
    let forged = forge_first_block(c1, weak, c1.results.clone(), &w.old);
    let err = ValidatorSets::verify(g, &[forged]).unwrap_err();
    assert!(
        matches!(&err, SetProofError::Governance { index: 0, why, .. } if why.contains("more than two thirds")),
        "{err}"
    );

    // Submitted by a key that is not a validator (a new validator before it is in force).
    let mut by_outsider = c1.event.event.clone();
    by_outsider.author = w.new[0].public();
    let by_outsider = by_outsider.sign(&w.new[0]);
    let forged = forge_first_block(c1, by_outsider, c1.results.clone(), &w.old);
    let err = ValidatorSets::verify(g, &[forged]).unwrap_err();
    assert!(
        matches!(&err, SetProofError::Governance { why, .. } if why.contains("not a validator")),
        "{err}"
    );

    // Recorded with another outcome than applied.
    let results = BlockResults {
        outcomes: vec![Outcome::Access(Decision::BreakGlass)],
    };
    let forged = forge_first_block(c1, c1.event.clone(), results, &w.old);
    let err = ValidatorSets::verify(g, &[forged]).unwrap_err();
    assert!(
        matches!(err, SetProofError::NotApplied { index: 0, .. }),
        "{err}"
    );

    // The unmodified change passes the same helper (the forgeries fail for their reason only).
    let same = forge_first_block(c1, c1.event.clone(), c1.results.clone(), &w.old);
    assert!(ValidatorSets::verify(g, &[same]).is_ok());
    assert_eq!(gov.approvals.len(), 4);
}

/// §9.3: chains from two sources must agree change for change; the longer one is kept.
#[test]
fn chains_of_changes_from_two_sources_merge_or_conflict() {
    let w = world();
    let g = &w.dc.genesis;
    let short = ValidatorSets::verify(g, std::slice::from_ref(&w.change1)).unwrap();
    let long = ValidatorSets::verify(g, &[w.change1.clone(), w.change2.clone()]).unwrap();
    let none = ValidatorSets::from_genesis(g);
    assert_eq!(short.clone().merge(long.clone()).unwrap(), long);
    assert_eq!(long.clone().merge(short.clone()).unwrap(), long);
    assert_eq!(none.clone().merge(long.clone()).unwrap(), long);

    // Another certified history (a fork signed by the genesis validators): another first change.
    let mut fork = DevChain::new(4);
    let alt = set_of(&w.new[..2], &fork.hospital);
    let old = w.old.clone();
    let ev = change(&mut fork, &old[1], &old, &alt);
    commit_one(&mut fork, ev);
    let forked = ValidatorSets::verify(g, &[receipt(&fork, 1, 0)]).unwrap();
    let err = long.merge(forked).unwrap_err();
    assert!(
        matches!(err, SetProofError::Conflict { index: 0, .. }),
        "{err}"
    );
}
