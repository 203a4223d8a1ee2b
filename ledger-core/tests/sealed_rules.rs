//! PROTOCOL.md §6.12 (2.4): sealed twin versions, key releases and erasures, each rule with the
//! party that lies: a custodian of another organisation or of the wrong role, a release signed
//! by someone else than the custodian, a replayed release for the same permit, a release after
//! erasure, an erasure by a stranger, a release naming another patient.

mod common;

use common::*;
use twinledger_core::codes::Role;
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::membership::ActorEnrol;
use twinledger_core::event::sealing::{KeyRelease, TwinErase, TwinSeal};
use twinledger_core::*;

struct World {
    chain: DevChain,
    alice: Keypair,
    custodian: Keypair,
}

/// The reference dev chain with a custodian (role service) enrolled by the hospital.
fn world() -> World {
    let mut chain = DevChain::new(1);
    let custodian = dev_key("actor/custodian");
    let hosp = chain.hospital.clone();
    let ev = chain.event(
        &hosp,
        EventPayload::ActorEnrol(ActorEnrol {
            actor: custodian.public(),
            role: Role::Service,
        }),
    );
    commit_one(&mut chain, ev);
    World {
        chain,
        alice: patient("alice"),
        custodian,
    }
}

fn seal(w: &World, version: u64, custodian: PublicKey) -> EventPayload {
    EventPayload::TwinSeal(TwinSeal {
        twin: LocalTwinId([0x42; 32]),
        patient: w.alice.public(),
        version,
        state_hash: Hash([1; 32]),
        category: DataCategory::VitalSigns,
        ciphertext_hash: Hash([2; 32]),
        ciphertext_size: 1234,
        custodian,
    })
}

fn twin(w: &World) -> TwinId {
    TwinId::bound(&w.chain.hospital.public(), &LocalTwinId([0x42; 32]))
}

fn release(w: &World, version: u64, access: EventId) -> EventPayload {
    EventPayload::KeyRelease(KeyRelease {
        patient: w.alice.public(),
        twin: twin(w),
        version,
        access,
        requester: w.chain.researcher.public(),
        request: Hash([3; 32]),
    })
}

fn erase(w: &World, version: u64) -> EventPayload {
    EventPayload::TwinErase(TwinErase {
        patient: w.alice.public(),
        twin: twin(w),
        version,
    })
}

fn sealed_refusal(r: RejectReason) -> &'static str {
    match r {
        RejectReason::Sealed(m) => m,
        other => panic!("refused for another reason: {other}"),
    }
}

/// §6.12 TwinSeal: the anchor rule plus a live service custodian of the author's organisation;
/// it records the twin (as an anchor does) and the sealed record.
#[test]
fn rule_6_12_a_seal_is_an_anchor_with_a_custodian_of_the_same_organisation() {
    let mut w = world();
    let phys = w.chain.physician.clone();
    // A custodian that is not a service actor (the physician), of another organisation (the
    // institute's researcher), or unknown: refused, nothing written.
    for (custodian, why) in [
        (phys.public(), "physician"),
        (w.chain.researcher.public(), "other organisation"),
        (dev_key("nobody").public(), "unknown"),
    ] {
        let ev = w.chain.event(&phys, seal(&w, 1, custodian));
        let m = sealed_refusal(refuse_one(&mut w.chain, ev));
        assert!(m.contains("custodian"), "{why}: {m}");
    }
    let ev = w.chain.event(&phys, seal(&w, 1, w.custodian.public()));
    let id = commit_one(&mut w.chain, ev);
    let rec = *w.chain.state.sealed(&twin(&w), 1).unwrap();
    assert_eq!(
        (rec.custodian, rec.event, rec.erased_at, rec.ciphertext_size),
        (w.custodian.public(), id, None, 1234)
    );
    assert_eq!(w.chain.state.twin(&twin(&w)).unwrap().version, 1);
    // The anchor rule still holds: the same version again is refused.
    let ev = w.chain.event(&phys, seal(&w, 1, w.custodian.public()));
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::TwinAnchor(_)
    ));
}

/// §6.12 KeyRelease: only the custodian, only a sealed and unerased version of that patient,
/// and one release per access request (a replay is refused).
#[test]
fn rule_6_12_one_release_per_permit_by_the_custodian_only() {
    let mut w = world();
    let phys = w.chain.physician.clone();
    let ev = w.chain.event(&phys, seal(&w, 1, w.custodian.public()));
    commit_one(&mut w.chain, ev);
    let access = EventId([9; 32]);
    // Signed by someone else than the custodian (the physician, who is a live actor).
    let ev = w.chain.event(&phys, release(&w, 1, access));
    assert!(sealed_refusal(refuse_one(&mut w.chain, ev)).contains("custodian"));
    // A version that was never sealed.
    let custodian = w.custodian.clone();
    let ev = w.chain.event(&custodian, release(&w, 2, access));
    assert!(sealed_refusal(refuse_one(&mut w.chain, ev)).contains("no such"));
    // Naming another patient than the sealed version's.
    let mut lie = release(&w, 1, access);
    if let EventPayload::KeyRelease(r) = &mut lie {
        r.patient = patient("bob").public();
    }
    let ev = w.chain.event(&custodian, lie);
    assert!(sealed_refusal(refuse_one(&mut w.chain, ev)).contains("another patient"));
    // The release, then the same permit again (a replay): refused.
    let ev = w.chain.event(&custodian, release(&w, 1, access));
    let rel = commit_one(&mut w.chain, ev);
    assert_eq!(w.chain.state.release_of(&access), Some(&rel));
    let ev = w.chain.event(&custodian, release(&w, 1, access));
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::AlreadyDone { .. }
    ));
    // A release is in the patient's history (it concerns the patient).
    assert_eq!(
        w.chain
            .state
            .patient_events(&w.alice.public())
            .unwrap()
            .count,
        2
    );
}

/// §6.12 TwinErase: the patient, a guardian of the whole scope or an actor of the hosting
/// organisation; once erased, no release; a second erasure refused.
#[test]
fn rule_6_12_erasure_by_the_patient_ends_every_release() {
    let mut w = world();
    let phys = w.chain.physician.clone();
    let ev = w.chain.event(&phys, seal(&w, 1, w.custodian.public()));
    commit_one(&mut w.chain, ev);
    // A stranger, another patient, an actor of another organisation: refused.
    for k in [
        dev_key("stranger"),
        patient("bob"),
        w.chain.researcher.clone(),
    ] {
        let ev = w.chain.event(&k, erase(&w, 1));
        let r = refuse_one(&mut w.chain, ev);
        assert!(
            matches!(
                r,
                RejectReason::Sealed(_) | RejectReason::UnknownAuthor { .. }
            ),
            "{r}"
        );
    }
    let alice = w.alice.clone();
    let ev = w.chain.event(&alice, erase(&w, 1));
    commit_one(&mut w.chain, ev);
    let h = w.chain.state.height();
    assert_eq!(
        w.chain.state.sealed(&twin(&w), 1).unwrap().erased_at,
        Some(h)
    );
    let custodian = w.custodian.clone();
    let ev = w.chain.event(&custodian, release(&w, 1, EventId([9; 32])));
    assert!(sealed_refusal(refuse_one(&mut w.chain, ev)).contains("erased"));
    let ev = w.chain.event(&alice, erase(&w, 1));
    assert!(sealed_refusal(refuse_one(&mut w.chain, ev)).contains("already erased"));
    // The hosting organisation's actor may erase too (another version).
    let ev = w.chain.event(&phys, seal(&w, 2, w.custodian.public()));
    commit_one(&mut w.chain, ev);
    let ev = w.chain.event(&phys, erase(&w, 2));
    commit_one(&mut w.chain, ev);
}

/// §6.12: the ledger does not re-check the request a release names; an auditor does. A
/// custodian that records a release against a denied request, another requester's request, or
/// a request for another category is listed, naming the release; an honest release is not.
#[test]
fn an_auditor_lists_every_release_that_does_not_answer_a_permitted_request() {
    use twinledger_core::audit::Auditor;
    use twinledger_core::event::consent::Grantee;
    use twinledger_core::state::SignatureCheck;
    let mut w = world();
    let phys = w.chain.physician.clone();
    let researcher = w.chain.researcher.clone();
    let alice = w.alice.clone();
    let ev = w.chain.event(&phys, seal(&w, 1, w.custodian.public()));
    commit_one(&mut w.chain, ev);
    let g = w.chain.event(
        &alice,
        grant_payload(
            &alice.public(),
            Grantee::Actor(researcher.public()),
            &[DataCategory::VitalSigns, DataCategory::Genetic],
            &[Purpose::Research],
            &[Action::Read],
        ),
    );
    commit_one(&mut w.chain, g);
    let ask = |w: &mut World, who: &Keypair, c: DataCategory| {
        let ev = w.chain.event(
            who,
            access_payload(&alice.public(), c, Purpose::Research, Action::Read),
        );
        commit_one(&mut w.chain, ev)
    };
    let vitals = ask(&mut w, &researcher, DataCategory::VitalSigns);
    let genome = ask(&mut w, &researcher, DataCategory::Genetic);
    let denied = ask(&mut w, &phys, DataCategory::VitalSigns); // the physician has no grant
    let custodian = w.custodian.clone();
    let release_for = |w: &mut World, access: EventId, requester: PublicKey| {
        let mut p = release(w, 1, access);
        if let EventPayload::KeyRelease(r) = &mut p {
            r.requester = requester;
        }
        let ev = w.chain.event(&custodian, p);
        commit_one(&mut w.chain, ev)
    };
    let honest = release_for(&mut w, vitals, researcher.public());
    let wrong_category = release_for(&mut w, genome, researcher.public());
    let not_permitted = release_for(&mut w, denied, phys.public());
    let stolen = release_for(&mut w, EventId([7; 32]), researcher.public());
    let mut auditor = Auditor::new(&w.chain.genesis).unwrap().checking_releases();
    for cb in &w.chain.blocks {
        auditor.check(cb, SignatureCheck::Verify).unwrap();
    }
    let s = auditor.summary();
    assert_eq!(s.key_releases, 4);
    let listed: Vec<(EventId, &str)> = s
        .unmatched_releases
        .iter()
        .map(|u| (u.release, u.why))
        .collect();
    assert!(!listed.iter().any(|(id, _)| *id == honest), "{listed:?}");
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.contains(&(
        wrong_category,
        "the request is for another category than the sealed version's"
    )));
    assert!(listed.contains(&(
        not_permitted,
        "the named request is not an earlier permitted request"
    )));
    assert!(listed.contains(&(
        stolen,
        "the named request is not an earlier permitted request"
    )));
}
