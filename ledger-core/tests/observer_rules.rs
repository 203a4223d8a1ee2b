//! PROTOCOL.md §6.8 (2.5): observers added and removed by governance, each rule with the party
//! that lies or errs: an observer for a revoked organisation, an observer added twice, a removal
//! replayed, a validator's key passed off as an observer, approvals of a past sequence replayed,
//! and too little approving power.

mod common;

use common::*;
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::governance::{Governance, GovernanceAction};
use twinledger_core::state::records::ObserverRecord;
use twinledger_core::*;

fn add(observer: &Keypair, organisation: PublicKey) -> GovernanceAction {
    GovernanceAction::ObserverAdd {
        observer: observer.public(),
        organisation,
    }
}

fn remove(observer: &Keypair) -> GovernanceAction {
    GovernanceAction::ObserverRemove {
        observer: observer.public(),
    }
}

fn governance_refusal(r: RejectReason) -> String {
    match r {
        RejectReason::Governance(why) => why,
        other => panic!("expected a governance refusal, got {other:?}"),
    }
}

/// §6.8 ObserverAdd: the record is `Some(organisation) || live`, and the sequence advances.
#[test]
fn an_observer_added_by_governance_is_recorded_live_with_its_organisation() {
    let mut chain = DevChain::new(4);
    let obs = dev_key("observer/a");
    let hosp = chain.hospital.public();
    let ev = governance_event(&mut chain, 0, add(&obs, hosp));
    commit_one(&mut chain, ev);
    assert_eq!(
        chain.state.observer(&obs.public()),
        Some(&ObserverRecord {
            organisation: Some(hosp),
            live: true
        })
    );
    assert_eq!(chain.state.governance_seq(), 1);
}

/// §6.8 ObserverAdd: `organisation` must be live.
#[test]
fn an_observer_for_a_revoked_organisation_is_refused() {
    let mut chain = DevChain::new(4);
    let inst = chain.institute.public();
    let ev = governance_event(&mut chain, 0, GovernanceAction::OrgRevoke { org: inst });
    commit_one(&mut chain, ev);
    let obs = dev_key("observer/b");
    let ev = governance_event(&mut chain, 1, add(&obs, inst));
    let why = governance_refusal(refuse_one(&mut chain, ev));
    assert!(why.contains("not a live organisation"), "{why}");
    assert_eq!(chain.state.observer(&obs.public()), None);
}

/// §6.8 ObserverAdd: a live observer cannot be added again; a removed one can.
#[test]
fn an_observer_added_twice_is_refused_and_a_removed_one_is_readmitted() {
    let mut chain = DevChain::new(4);
    let obs = dev_key("observer/c");
    let hosp = chain.hospital.public();
    let ev = governance_event(&mut chain, 0, add(&obs, hosp));
    commit_one(&mut chain, ev);
    let ev = governance_event(&mut chain, 1, add(&obs, hosp));
    let why = governance_refusal(refuse_one(&mut chain, ev));
    assert!(why.contains("already a live observer"), "{why}");
    let ev = governance_event(&mut chain, 1, remove(&obs));
    commit_one(&mut chain, ev);
    assert!(!chain.state.observer(&obs.public()).unwrap().live);
    let ev = governance_event(&mut chain, 2, add(&obs, hosp));
    commit_one(&mut chain, ev);
    assert!(chain.state.observer(&obs.public()).unwrap().live);
}

/// §6.8 ObserverRemove: refused when already removed; accepted for a key with no record (an
/// observer of a genesis file), which is then recorded removed with no organisation.
#[test]
fn a_removal_replayed_is_refused_and_a_genesis_file_observer_can_be_removed() {
    let mut chain = DevChain::new(4);
    let from_genesis_file = dev_key("observer/genesis");
    let ev = governance_event(&mut chain, 0, remove(&from_genesis_file));
    commit_one(&mut chain, ev);
    assert_eq!(
        chain.state.observer(&from_genesis_file.public()),
        Some(&ObserverRecord {
            organisation: None,
            live: false
        })
    );
    let ev = governance_event(&mut chain, 1, remove(&from_genesis_file));
    let why = governance_refusal(refuse_one(&mut chain, ev));
    assert!(why.contains("already removed"), "{why}");
}

/// §6.8 ObserverRemove keeps the organisation of the record it ends.
#[test]
fn a_removal_keeps_the_organisation_on_record() {
    let mut chain = DevChain::new(4);
    let obs = dev_key("observer/d");
    let hosp = chain.hospital.public();
    let ev = governance_event(&mut chain, 0, add(&obs, hosp));
    commit_one(&mut chain, ev);
    let ev = governance_event(&mut chain, 1, remove(&obs));
    commit_one(&mut chain, ev);
    assert_eq!(
        chain.state.observer(&obs.public()),
        Some(&ObserverRecord {
            organisation: Some(hosp),
            live: false
        })
    );
}

/// §6.8 ObserverAdd: a key of the validator set in force is not an observer.
#[test]
fn a_validator_key_passed_off_as_an_observer_is_refused() {
    let mut chain = DevChain::new(4);
    let v = chain.validators[3].clone();
    let hosp = chain.hospital.public();
    let ev = governance_event(&mut chain, 0, add(&v, hosp));
    let why = governance_refusal(refuse_one(&mut chain, ev));
    assert!(why.contains("is a validator"), "{why}");
}

/// §6.8 condition 2: approvals sign the sequence; the approvals of an applied removal, replayed
/// to remove the observer again after it was re-admitted, are refused.
#[test]
fn approvals_of_an_applied_removal_replayed_later_are_refused() {
    let mut chain = DevChain::new(4);
    let obs = dev_key("observer/e");
    let hosp = chain.hospital.public();
    let ev = governance_event(&mut chain, 0, add(&obs, hosp));
    commit_one(&mut chain, ev);
    let removal = governance_event(&mut chain, 1, remove(&obs));
    let EventPayload::Governance(old) = removal.event.payload.clone() else {
        unreachable!()
    };
    commit_one(&mut chain, removal);
    let ev = governance_event(&mut chain, 2, add(&obs, hosp));
    commit_one(&mut chain, ev);
    // A validator resubmits the old approvals (seq 1) in a new event.
    let by = chain.validators[1].clone();
    let replay = chain.event(&by, EventPayload::Governance(old));
    let why = governance_refusal(refuse_one(&mut chain, replay));
    assert!(why.contains("governance sequence 1"), "{why}");
    assert!(chain.state.observer(&obs.public()).unwrap().live);
}

/// §6.8 condition 3: approvals holding two thirds or less of the power add nobody.
#[test]
fn an_observer_approved_by_too_little_power_is_refused() {
    let mut chain = DevChain::new(4);
    let obs = dev_key("observer/f");
    let action = add(&obs, chain.hospital.public());
    let chain_id = chain.state.chain_id();
    let mut approvals: Vec<_> = chain.validators[..2]
        .iter()
        .map(|k| Governance::approve(&chain_id, 0, &action, k))
        .collect();
    approvals.sort_by_key(|a| a.validator);
    let by = chain.validators[0].clone();
    let ev = chain.event(
        &by,
        EventPayload::Governance(Governance {
            seq: 0,
            action,
            approvals,
        }),
    );
    let why = governance_refusal(refuse_one(&mut chain, ev));
    assert!(why.contains("more than two thirds"), "{why}");
    assert_eq!(chain.state.observer(&obs.public()), None);
}
