//! Table tests of the consent rules, one per rule of PROTOCOL.md §6, each naming its rule.

mod common;

use DataCategory::*;
use Purpose::*;
use common::*;
use twinledger_core::codes::Role;
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::break_glass::{BreakGlassReview, Finding};
use twinledger_core::event::consent::Grantee;
use twinledger_core::event::delegation::{DelegateGrant, DelegateRevoke, Scope};
use twinledger_core::event::governance::{Governance, GovernanceAction};
use twinledger_core::event::integrity::TwinAnchor;
use twinledger_core::event::membership::{ActorEnrol, ActorRevoke};
use twinledger_core::event::rotation::KeyRotation;
use twinledger_core::keys::sig_domain;
use twinledger_core::state::{BlockError, SignatureCheck};
use twinledger_core::*;

const DENY: Decision = Decision::Deny {
    reason: DenyReason::NoCoveringGrant,
};

fn permit(grant: EventId) -> Decision {
    Decision::Permit { grant }
}

struct World {
    chain: DevChain,
    alice: Keypair,
    phys: Keypair,
    nurse: Keypair,
    researcher: Keypair,
}

fn world() -> World {
    let chain = DevChain::new(1);
    World {
        alice: patient("alice"),
        phys: chain.physician.clone(),
        nurse: chain.nurse.clone(),
        researcher: chain.researcher.clone(),
        chain,
    }
}

impl World {
    fn grant(
        &mut self,
        grantee: Grantee,
        c: &[DataCategory],
        p: &[Purpose],
        a: &[Action],
    ) -> EventId {
        let alice = self.alice.clone();
        let ev = self
            .chain
            .event(&alice, grant_payload(&alice.public(), grantee, c, p, a));
        commit_one(&mut self.chain, ev)
    }

    fn ask(&mut self, who: &Keypair, c: DataCategory, p: Purpose, a: Action) -> Decision {
        let ev = self
            .chain
            .event(who, access_payload(&self.alice.public(), c, p, a));
        let com = self.chain.commit(vec![ev]);
        assert!(com.rejected.is_empty(), "{:?}", com.rejected);
        decision(&com, 0)
    }
}

/// §6.1 deny by default: with no grant at all, access is denied, and the denial is recorded.
#[test]
fn rule_6_1_deny_by_default() {
    let mut w = world();
    let phys = w.phys.clone();
    assert_eq!(w.ask(&phys, VitalSigns, Treat, Action::Read), DENY);
    assert_eq!(
        w.chain.state.log_size(),
        1,
        "a denied request is still logged"
    );
}

/// §6.1 an actor grantee covers exactly that actor; the decision names the grant.
#[test]
fn rule_6_1_actor_grant_covers_that_actor_only() {
    let mut w = world();
    let (phys, nurse) = (w.phys.clone(), w.nurse.clone());
    let g = w.grant(
        Grantee::Actor(phys.public()),
        &[VitalSigns],
        &[Treat],
        &[Action::Read],
    );
    assert_eq!(w.ask(&phys, VitalSigns, Treat, Action::Read), permit(g));
    assert_eq!(w.ask(&nurse, VitalSigns, Treat, Action::Read), DENY);
}

/// §6.1 an organisation grantee covers every actor of that organisation, and nobody else.
#[test]
fn rule_6_1_organisation_grant() {
    let mut w = world();
    let (phys, nurse, res) = (w.phys.clone(), w.nurse.clone(), w.researcher.clone());
    let hosp = w.chain.hospital.public();
    let g = w.grant(
        Grantee::Organisation(hosp),
        &[Imaging],
        &[Treat],
        &[Action::Read],
    );
    assert_eq!(w.ask(&phys, Imaging, Treat, Action::Read), permit(g));
    assert_eq!(w.ask(&nurse, Imaging, Treat, Action::Read), permit(g));
    assert_eq!(w.ask(&res, Imaging, Treat, Action::Read), DENY);
}

/// §6.1 a role grantee covers actors with that role (in the named organisation, if any).
#[test]
fn rule_6_1_role_grant() {
    let mut w = world();
    let (phys, nurse, res) = (w.phys.clone(), w.nurse.clone(), w.researcher.clone());
    let inst = w.chain.institute.public();
    let g = w.grant(
        Grantee::Role {
            role: Role::Researcher,
            organisation: Some(inst),
        },
        &[VitalSigns],
        &[Research],
        &[Action::Read, Action::Use],
    );
    assert_eq!(w.ask(&res, VitalSigns, Research, Action::Use), permit(g));
    assert_eq!(w.ask(&phys, VitalSigns, Research, Action::Use), DENY);
    let g2 = w.grant(
        Grantee::Role {
            role: Role::Nurse,
            organisation: None,
        },
        &[Activity],
        &[Treat],
        &[Action::Read],
    );
    assert_eq!(w.ask(&nurse, Activity, Treat, Action::Read), permit(g2));
}

/// §6.1 category, purpose and action must all be covered: "share my heart data for research,
/// never my genome".
#[test]
fn rule_6_1_heart_not_genome() {
    let mut w = world();
    let res = w.researcher.clone();
    let inst = w.chain.institute.public();
    let g = w.grant(
        Grantee::Organisation(inst),
        &[VitalSigns, Activity],
        &[Research],
        &[Action::Read],
    );
    assert_eq!(w.ask(&res, VitalSigns, Research, Action::Read), permit(g));
    assert_eq!(
        w.ask(&res, Genetic, Research, Action::Read),
        DENY,
        "never my genome"
    );
    assert_eq!(
        w.ask(&res, VitalSigns, Payment, Action::Read),
        DENY,
        "wrong purpose"
    );
    assert_eq!(
        w.ask(&res, VitalSigns, Research, Action::Disclose),
        DENY,
        "wrong action"
    );
}

/// §6.1 validity window: not before `valid_from`, not at or after `valid_until`.
#[test]
fn rule_6_1_validity_window() {
    let mut w = world();
    let phys = w.phys.clone();
    let alice = w.alice.clone();
    let t = w.chain.next_time();
    let mut p = grant_payload(
        &alice.public(),
        Grantee::Actor(phys.public()),
        &[Laboratory],
        &[Treat],
        &[Action::Read],
    );
    if let EventPayload::ConsentGrant(g) = &mut p {
        g.valid_from = t.plus_ms(2000); // two blocks later
        g.valid_until = Some(t.plus_ms(4000));
    }
    let ev = w.chain.event(&alice, p);
    let g = commit_one(&mut w.chain, ev); // block at t
    assert_eq!(
        w.ask(&phys, Laboratory, Treat, Action::Read),
        DENY,
        "t+1s: not yet valid"
    );
    assert_eq!(
        w.ask(&phys, Laboratory, Treat, Action::Read),
        permit(g),
        "t+2s: valid"
    );
    assert_eq!(
        w.ask(&phys, Laboratory, Treat, Action::Read),
        permit(g),
        "t+3s: valid"
    );
    assert_eq!(
        w.ask(&phys, Laboratory, Treat, Action::Read),
        DENY,
        "t+4s: expired"
    );
}

/// §6.2 a grant that has already expired, or whose window is empty, is refused.
#[test]
fn rule_6_2_expired_or_empty_grants_are_refused() {
    let mut w = world();
    let alice = w.alice.clone();
    let phys = w.phys.public();
    let mut p = grant_payload(
        &alice.public(),
        Grantee::Actor(phys),
        &[Laboratory],
        &[Treat],
        &[Action::Read],
    );
    if let EventPayload::ConsentGrant(g) = &mut p {
        g.valid_until = Some(Timestamp(1));
    }
    let ev = w.chain.event(&alice, p);
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::InvalidWindow(_)
    ));
    let ev = w.chain.event(
        &alice,
        grant_payload(
            &alice.public(),
            Grantee::Actor(phys),
            &[],
            &[Treat],
            &[Action::Read],
        ),
    );
    assert_eq!(
        refuse_one(&mut w.chain, ev),
        RejectReason::EmptyScope("categories")
    );
    let stranger = dev_key("nobody");
    let ev = w.chain.event(
        &alice,
        grant_payload(
            &alice.public(),
            Grantee::Actor(stranger.public()),
            &[Laboratory],
            &[Treat],
            &[Action::Read],
        ),
    );
    assert_eq!(
        refuse_one(&mut w.chain, ev),
        RejectReason::UnknownGrantee(stranger.public())
    );
}

/// §6.2 a revoke takes effect from its place in the block that holds it, and is never
/// retroactive: the earlier permit stays recorded as it was.
#[test]
fn rule_6_2_revoke_from_its_block_on_never_retroactive() {
    let mut w = world();
    let phys = w.phys.clone();
    let alice = w.alice.clone();
    let g = w.grant(
        Grantee::Actor(phys.public()),
        &[VitalSigns],
        &[Treat],
        &[Action::Read],
    );
    assert_eq!(w.ask(&phys, VitalSigns, Treat, Action::Read), permit(g));
    let earlier_block = w.chain.blocks.len() - 1;
    // One block: a request before the revoke, the revoke, a request after it.
    let before = w.chain.event(
        &phys,
        access_payload(&alice.public(), VitalSigns, Treat, Action::Read),
    );
    let revoke = w.chain.event(&alice, revoke_payload(&alice.public(), g));
    let after = w.chain.event(
        &phys,
        access_payload(&alice.public(), VitalSigns, Treat, Action::Read),
    );
    let c = w.chain.commit(vec![before, revoke, after]);
    assert_eq!(decision(&c, 0), permit(g));
    assert_eq!(decision(&c, 2), DENY);
    assert_eq!(
        w.ask(&phys, VitalSigns, Treat, Action::Read),
        DENY,
        "and in every later block"
    );
    assert_eq!(
        decision(&w.chain.blocks[earlier_block], 0),
        permit(g),
        "history unchanged"
    );
    // Revoking twice is refused.
    let again = w.chain.event(&alice, revoke_payload(&alice.public(), g));
    assert!(matches!(
        refuse_one(&mut w.chain, again),
        RejectReason::AlreadyDone { .. }
    ));
}

/// §6.2 only the patient (or a delegate) may grant or revoke for a patient.
#[test]
fn rule_6_2_only_the_patient_grants() {
    let mut w = world();
    let alice = w.alice.clone();
    let mallory = patient("mallory");
    let phys = w.phys.public();
    let ev = w.chain.event(
        &mallory,
        grant_payload(
            &alice.public(),
            Grantee::Actor(phys),
            &[Genetic],
            &[Research],
            &[Action::Read],
        ),
    );
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::NotAuthorisedForPatient { .. }
    ));
}

/// §6.3 a delegate acts within the delegation's scope only, and its grants count only while the
/// delegation is live.
#[test]
fn rule_6_3_delegation_scope_and_liveness() {
    let mut w = world();
    let alice = w.alice.clone();
    let guardian = dev_key("guardian/bob");
    let phys = w.phys.clone();
    let scope = Scope {
        categories: cats(&[VitalSigns, Imaging]),
        purposes: purposes(&[Treat]),
        actions: actions(&[Action::Read]),
    };
    let ev = w.chain.event(
        &alice,
        EventPayload::DelegateGrant(DelegateGrant {
            patient: alice.public(),
            delegate: guardian.public(),
            scope,
            valid_until: None,
        }),
    );
    let d = commit_one(&mut w.chain, ev);
    // Within scope: accepted and effective.
    let ev = w.chain.event(
        &guardian,
        grant_payload(
            &alice.public(),
            Grantee::Actor(phys.public()),
            &[Imaging],
            &[Treat],
            &[Action::Read],
        ),
    );
    let g = commit_one(&mut w.chain, ev);
    assert_eq!(w.ask(&phys, Imaging, Treat, Action::Read), permit(g));
    // Outside scope: refused.
    let ev = w.chain.event(
        &guardian,
        grant_payload(
            &alice.public(),
            Grantee::Actor(phys.public()),
            &[Genetic],
            &[Treat],
            &[Action::Read],
        ),
    );
    assert_eq!(
        refuse_one(&mut w.chain, ev),
        RejectReason::OutsideDelegation
    );
    // A delegate cannot delegate further.
    let ev = w.chain.event(
        &guardian,
        EventPayload::DelegateGrant(DelegateGrant {
            patient: alice.public(),
            delegate: dev_key("guardian/carol").public(),
            scope,
            valid_until: None,
        }),
    );
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::NotAuthorisedForPatient { .. }
    ));
    // Delegation revoked: the delegate's grant stops counting, the delegate can no longer act.
    let ev = w.chain.event(
        &alice,
        EventPayload::DelegateRevoke(DelegateRevoke {
            patient: alice.public(),
            delegation: d,
        }),
    );
    commit_one(&mut w.chain, ev);
    assert_eq!(w.ask(&phys, Imaging, Treat, Action::Read), DENY);
    let ev = w.chain.event(
        &guardian,
        grant_payload(
            &alice.public(),
            Grantee::Actor(phys.public()),
            &[Imaging],
            &[Treat],
            &[Action::Read],
        ),
    );
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::NotAuthorisedForPatient { .. }
    ));
}

/// §6.4 key rotation: the old key can never sign again, consents follow the patient, the new
/// key acts for the patient, and the new key must prove possession.
#[test]
fn rule_6_4_key_rotation() {
    let mut w = world();
    let alice = w.alice.clone();
    let phys = w.phys.clone();
    let g = w.grant(
        Grantee::Actor(phys.public()),
        &[VitalSigns],
        &[Treat],
        &[Action::Read],
    );
    let new = dev_key("patient/alice-2027");
    let chain_id = w.chain.state.chain_id();
    let body = KeyRotation::proof_body(&alice.public(), &new.public());
    // A proof by the wrong key is refused.
    let wrong = dev_key("someone-else").sign(sig_domain::KEY_ROTATION, &chain_id, &body);
    let ev = w.chain.event(
        &alice,
        EventPayload::KeyRotation(KeyRotation {
            patient: alice.public(),
            new_key: new.public(),
            new_key_proof: wrong,
        }),
    );
    assert_eq!(
        refuse_one(&mut w.chain, ev),
        RejectReason::BadSignature(new.public())
    );
    let proof = new.sign(sig_domain::KEY_ROTATION, &chain_id, &body);
    let ev = w.chain.event(
        &alice,
        EventPayload::KeyRotation(KeyRotation {
            patient: alice.public(),
            new_key: new.public(),
            new_key_proof: proof,
        }),
    );
    commit_one(&mut w.chain, ev);
    assert_eq!(
        w.ask(&phys, VitalSigns, Treat, Action::Read),
        permit(g),
        "consent follows the patient"
    );
    let ev = w.chain.event(&alice, revoke_payload(&alice.public(), g));
    assert_eq!(
        refuse_one(&mut w.chain, ev),
        RejectReason::RetiredKey(alice.public())
    );
    let ev = w.chain.event(&new, revoke_payload(&alice.public(), g));
    commit_one(&mut w.chain, ev);
    assert_eq!(w.ask(&phys, VitalSigns, Treat, Action::Read), DENY);
}

/// §6.5 break-glass: permitted for clinical roles, flagged, queued for review until a privacy
/// officer of the same organisation (or an auditor) signs it off; others are denied and recorded.
#[test]
fn rule_6_5_break_glass_and_review() {
    let mut w = world();
    let alice = w.alice.clone();
    let phys = w.phys.clone();
    let res = w.researcher.clone();
    let ev = w
        .chain
        .event(&phys, break_glass_payload(&alice.public(), Imaging));
    let bg = ev.id();
    let c = w.chain.commit(vec![ev]);
    assert_eq!(decision(&c, 0), Decision::BreakGlass);
    assert_eq!(
        w.chain.state.review_queue().copied().collect::<Vec<_>>(),
        vec![bg]
    );
    // A researcher may not break glass: denied, recorded, not queued.
    let ev = w
        .chain
        .event(&res, break_glass_payload(&alice.public(), Imaging));
    let c = w.chain.commit(vec![ev]);
    assert_eq!(
        decision(&c, 0),
        Decision::Deny {
            reason: DenyReason::RoleMayNotBreakGlass
        }
    );
    assert_eq!(w.chain.state.review_queue().count(), 1);
    let review = |f| {
        EventPayload::BreakGlassReview(BreakGlassReview {
            request: bg,
            finding: f,
            notes: Commitment::new(&[1; 32], b"ok"),
        })
    };
    // Not by the requester, not by another role.
    let ev = w.chain.event(&phys, review(Finding::Justified));
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::NotPermitted { .. }
    ));
    let nurse = w.nurse.clone();
    let ev = w.chain.event(&nurse, review(Finding::Justified));
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::NotPermitted { .. }
    ));
    // The privacy officer signs off: the queue empties, the finding is kept.
    let po = w.chain.privacy_officer.clone();
    let ev = w.chain.event(&po, review(Finding::Justified));
    commit_one(&mut w.chain, ev);
    assert_eq!(w.chain.state.review_queue().count(), 0);
    assert_eq!(
        w.chain
            .state
            .break_glass(&bg)
            .unwrap()
            .review
            .unwrap()
            .finding,
        Finding::Justified
    );
    // Only once.
    let auditor = w.chain.auditor.clone();
    let ev = w.chain.event(&auditor, review(Finding::Unjustified));
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::AlreadyDone { .. }
    ));
}

/// §6.6 twin anchors: versions strictly increase, the patient is fixed, and the twin id is
/// bound to the anchoring actor's organisation (§5.6: `TwinId::bound(organisation, local)`).
#[test]
fn rule_6_6_twin_anchor_history() {
    let mut w = world();
    let alice = w.alice.public();
    let phys = w.phys.clone();
    let hospital = w.chain.hospital.public();
    let anchor = |v: u64, patient: PublicKey| {
        EventPayload::TwinAnchor(TwinAnchor {
            twin: LocalTwinId([4; 32]),
            patient,
            version: v,
            state_hash: Hash([u8::try_from(v).unwrap(); 32]),
        })
    };
    let ev = w.chain.event(&phys, anchor(1, alice));
    commit_one(&mut w.chain, ev);
    let ev = w.chain.event(&phys, anchor(1, alice));
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::TwinAnchor("version is not after the last anchored version")
    ));
    let ev = w.chain.event(&phys, anchor(2, patient("bob").public()));
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::TwinAnchor("the twin belongs to another patient")
    ));
    let ev = w.chain.event(&phys, anchor(2, alice));
    commit_one(&mut w.chain, ev);
    let id = TwinId::bound(&hospital, &LocalTwinId([4; 32]));
    assert_eq!(w.chain.state.twin(&id).unwrap().version, 2);
    assert_eq!(w.chain.state.twin(&id).unwrap().organisation, hospital);
    // The local id itself is not a twin id the ledger records.
    assert!(w.chain.state.twin(&TwinId([4; 32])).is_none());
}

/// §6.6 no squatting: an actor of another organisation that anchors the hospital's local id
/// first (in an earlier block) creates its own twin; the hospital's anchor is still applied,
/// under a different id, and neither record touches the other.
#[test]
fn rule_6_6_twin_squatting_in_an_earlier_block_takes_nothing() {
    let mut w = world();
    let alice = w.alice.public();
    let (phys, res) = (w.phys.clone(), w.researcher.clone());
    let (hospital, institute) = (w.chain.hospital.public(), w.chain.institute.public());
    let local = LocalTwinId::from_label(&[7; 32], "MRN-0001");
    let anchor = |v: u64, h: u8| {
        EventPayload::TwinAnchor(TwinAnchor {
            twin: local,
            patient: alice,
            version: v,
            state_hash: Hash([h; 32]),
        })
    };
    // The squatter anchors version 5 first, to block the custodian's versions 1..=5.
    let ev = w.chain.event(&res, anchor(5, 0xbb));
    commit_one(&mut w.chain, ev);
    let ev = w.chain.event(&phys, anchor(1, 0xaa));
    let a_event = commit_one(&mut w.chain, ev);
    let (a, b) = (
        TwinId::bound(&hospital, &local),
        TwinId::bound(&institute, &local),
    );
    assert_ne!(a, b);
    let rec = *w.chain.state.twin(&a).unwrap();
    assert_eq!(
        (rec.organisation, rec.version, rec.state_hash, rec.event),
        (hospital, 1, Hash([0xaa; 32]), a_event)
    );
    let squat = *w.chain.state.twin(&b).unwrap();
    assert_eq!((squat.organisation, squat.version), (institute, 5));
}

/// §6.6 no squatting within a block: the squatter's anchor of the hospital's local id comes
/// before the hospital's in the same block; both are applied, to distinct twins.
#[test]
fn rule_6_6_twin_squatting_in_the_same_block_takes_nothing() {
    let mut w = world();
    let alice = w.alice.public();
    let (phys, res) = (w.phys.clone(), w.researcher.clone());
    let (hospital, institute) = (w.chain.hospital.public(), w.chain.institute.public());
    let local = LocalTwinId::from_label(&[7; 32], "MRN-0001");
    let anchor = |v: u64, h: u8| {
        EventPayload::TwinAnchor(TwinAnchor {
            twin: local,
            patient: alice,
            version: v,
            state_hash: Hash([h; 32]),
        })
    };
    let squat = w.chain.event(&res, anchor(9, 0xbb));
    let honest = w.chain.event(&phys, anchor(1, 0xaa));
    let honest_id = honest.id();
    let c = w.chain.commit(vec![squat, honest]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    assert_eq!(c.block.events.len(), 2);
    let rec = *w
        .chain
        .state
        .twin(&TwinId::bound(&hospital, &local))
        .unwrap();
    assert_eq!(
        (rec.organisation, rec.patient, rec.version, rec.event),
        (hospital, alice, 1, honest_id)
    );
    let other = *w
        .chain
        .state
        .twin(&TwinId::bound(&institute, &local))
        .unwrap();
    assert_eq!((other.organisation, other.version), (institute, 9));
    // The hospital's next version follows its own history, not the squatter's.
    let ev = w.chain.event(&phys, anchor(2, 0xac));
    commit_one(&mut w.chain, ev);
}

/// §6.7 actors: unknown actors are refused; a revoked actor (or an actor of a revoked
/// organisation) is refused; only the enrolling organisation revokes.
#[test]
fn rule_6_7_membership() {
    let mut w = world();
    let alice = w.alice.public();
    let stranger = dev_key("actor/stranger");
    let ev = w.chain.event(
        &stranger,
        access_payload(&alice, VitalSigns, Treat, Action::Read),
    );
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::UnknownAuthor { .. }
    ));
    let hosp = w.chain.hospital.clone();
    let inst = w.chain.institute.clone();
    let ev = w.chain.event(
        &hosp,
        EventPayload::ActorEnrol(ActorEnrol {
            actor: stranger.public(),
            role: Role::Nurse,
        }),
    );
    commit_one(&mut w.chain, ev);
    let ev = w.chain.event(
        &stranger,
        access_payload(&alice, VitalSigns, Treat, Action::Read),
    );
    commit_one(&mut w.chain, ev);
    let ev = w.chain.event(
        &inst,
        EventPayload::ActorRevoke(ActorRevoke {
            actor: stranger.public(),
        }),
    );
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::NotPermitted { .. }
    ));
    let ev = w.chain.event(
        &hosp,
        EventPayload::ActorRevoke(ActorRevoke {
            actor: stranger.public(),
        }),
    );
    commit_one(&mut w.chain, ev);
    // 2.2: the revoked actor's access attempt is accepted and denied (§6.1), not refused.
    let ev = w.chain.event(
        &stranger,
        access_payload(&alice, VitalSigns, Treat, Action::Read),
    );
    let c = w.chain.commit(vec![ev]);
    assert_eq!(
        decision(&c, 0),
        Decision::Deny {
            reason: DenyReason::ActorRevoked
        }
    );
    // Its other events are still refused.
    let ev = w.chain.event(
        &stranger,
        EventPayload::TwinAnchor(TwinAnchor {
            twin: LocalTwinId([7; 32]),
            patient: alice,
            version: 1,
            state_hash: Hash([1; 32]),
        }),
    );
    assert_eq!(
        refuse_one(&mut w.chain, ev),
        RejectReason::RevokedAuthor(stranger.public())
    );
}

/// §6.8 governance needs more than 2/3 of the power, and approvals cannot be replayed; a
/// validator-set change is in force from two blocks later, and revoking an organisation stops
/// its actors.
#[test]
fn rule_6_8_governance() {
    let mut w = world();
    let mut chain = DevChain::new(4);
    std::mem::swap(&mut w.chain, &mut chain);
    let chain_id = w.chain.state.chain_id();
    let vals = w.chain.validators.clone();
    let inst = w.chain.institute.public();
    let action = GovernanceAction::OrgRevoke { org: inst };
    let approvals = |n: usize, seq| {
        let mut a: Vec<_> = vals[..n]
            .iter()
            .map(|k| Governance::approve(&chain_id, seq, &action, k))
            .collect();
        a.sort_by_key(|x| x.validator);
        a
    };
    // 2 of 4 is not more than two thirds.
    let ev = w.chain.event(
        &vals[0],
        EventPayload::Governance(Governance {
            seq: 0,
            action: action.clone(),
            approvals: approvals(2, 0),
        }),
    );
    assert!(
        matches!(refuse_one(&mut w.chain, ev), RejectReason::Governance(m) if m.contains("more than two thirds"))
    );
    let gov = Governance {
        seq: 0,
        action: action.clone(),
        approvals: approvals(3, 0),
    };
    let ev = w
        .chain
        .event(&vals[0], EventPayload::Governance(gov.clone()));
    commit_one(&mut w.chain, ev);
    // The researcher's organisation is revoked: its actors' access attempts are denied
    // (§6.1, 2.2), their other events refused.
    let res = w.researcher.clone();
    let ev = w.chain.event(
        &res,
        access_payload(&w.alice.public(), VitalSigns, Research, Action::Read),
    );
    let c = w.chain.commit(vec![ev]);
    assert_eq!(
        decision(&c, 0),
        Decision::Deny {
            reason: DenyReason::OrganisationRevoked
        }
    );
    let ev = w.chain.event(
        &res,
        EventPayload::TwinAnchor(TwinAnchor {
            twin: LocalTwinId([8; 32]),
            patient: w.alice.public(),
            version: 1,
            state_hash: Hash([1; 32]),
        }),
    );
    assert_eq!(
        refuse_one(&mut w.chain, ev),
        RejectReason::RevokedAuthor(res.public())
    );
    // Replaying the same approvals is refused (governance sequence moved on).
    let ev = w.chain.event(&vals[1], EventPayload::Governance(gov));
    assert!(
        matches!(refuse_one(&mut w.chain, ev), RejectReason::Governance(m) if m.contains("sequence"))
    );
    // Validator set change: in force from height h + 2.
    let new_set = ValidatorSet::new(vec![Validator {
        key: vals[0].public(),
        organisation: w.chain.hospital.public(),
        power: 1,
    }])
    .unwrap();
    let action = GovernanceAction::ValidatorSetChange {
        validators: new_set.clone(),
    };
    let mut a: Vec<_> = vals
        .iter()
        .map(|k| Governance::approve(&chain_id, 1, &action, k))
        .collect();
    a.sort_by_key(|x| x.validator);
    let ev = w.chain.event(
        &vals[0],
        EventPayload::Governance(Governance {
            seq: 1,
            action,
            approvals: a,
        }),
    );
    commit_one(&mut w.chain, ev);
    let h = w.chain.state.height();
    assert_eq!(w.chain.state.validators_for(h + 1).validators().len(), 4);
    assert_eq!(w.chain.state.validators_for(h + 2), &new_set);
    w.chain.commit(vec![]);
    w.chain.commit(vec![]);
    assert_eq!(
        w.chain.blocks.last().unwrap().certificate.signatures.len(),
        1
    );
    assert_eq!(
        w.chain.blocks.last().unwrap().block.header.validators_hash,
        new_set.hash()
    );
}

/// §6.9 every event check refuses with a typed reason and changes nothing: wrong chain, bad
/// signature, replayed or skipped sequence number, expired, deadline too far, oversized.
#[test]
fn rule_6_9_event_checks() {
    let mut w = world();
    let alice = w.alice.clone();
    let phys = w.phys.clone();
    let chain_id = w.chain.state.chain_id();
    let t = w.chain.next_time();
    let mk = |seq: u64, not_after: Timestamp, chain: ChainId, payload: EventPayload| {
        Event::new(chain, alice.public(), seq, not_after, payload).sign(&alice)
    };
    let gp = vitals_grant(&alice.public(), &phys.public());
    let ok_deadline = t.plus_ms(60_000);
    // wrong chain
    let ev = mk(0, ok_deadline, ChainId([1; 32]), gp.clone());
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::WrongChain { .. }
    ));
    // bad signature
    let mut ev = mk(0, ok_deadline, chain_id, gp.clone());
    ev.signature.0[10] ^= 1;
    assert_eq!(
        refuse_one(&mut w.chain, ev),
        RejectReason::BadSignature(alice.public())
    );
    // skipped sequence
    let ev = mk(5, w.chain.next_time().plus_ms(60_000), chain_id, gp.clone());
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::WrongSequence {
            expected: 0,
            got: 5,
            ..
        }
    ));
    // accepted, then replayed
    let ev = mk(0, w.chain.next_time().plus_ms(60_000), chain_id, gp.clone());
    commit_one(&mut w.chain, ev.clone());
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::WrongSequence {
            expected: 1,
            got: 0,
            ..
        }
    ));
    // expired
    let ev = mk(1, Timestamp(1), chain_id, gp.clone());
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::Expired { .. }
    ));
    // deadline too far ahead
    let ev = mk(
        1,
        w.chain.next_time().plus_ms(8 * 24 * 3_600_000),
        chain_id,
        gp.clone(),
    );
    assert!(matches!(
        refuse_one(&mut w.chain, ev),
        RejectReason::DeadlineTooFar { .. }
    ));
}

/// §6.9 oversized events are refused against the chain's limit.
#[test]
fn rule_6_9_oversized_event() {
    let limits = Limits {
        max_event_bytes: 256,
        ..Limits::default()
    };
    let mut chain = DevChain::with_limits(1, limits);
    let gov = chain.validators[0].clone();
    // A governance event with a long organisation name is over 256 bytes.
    let action = GovernanceAction::OrgEnrol {
        org: dev_key("org/x").public(),
        name: "x".repeat(120),
    };
    let approvals = vec![Governance::approve(
        &chain.state.chain_id(),
        0,
        &action,
        &gov,
    )];
    let ev = chain.event(
        &gov,
        EventPayload::Governance(Governance {
            seq: 0,
            action,
            approvals,
        }),
    );
    let size = ev.to_bytes().len();
    assert!(size > 256);
    assert_eq!(
        refuse_one(&mut chain, ev),
        RejectReason::TooLarge { size, max: 256 }
    );
}

/// §8 a block is refused as a whole, with the first bad height and event named, and the state is
/// unchanged: a tampered event, a wrong link, a wrong header field.
#[test]
fn rule_8_block_checks() {
    let mut w = world();
    let alice = w.alice.clone();
    let phys = w.phys.clone();
    let prev = w.chain.state.clone();
    let e1 = w
        .chain
        .event(&alice, vitals_grant(&alice.public(), &phys.public()));
    let e2 = w.chain.event(
        &phys,
        access_payload(&alice.public(), VitalSigns, Treat, Action::Read),
    );
    let built = prev
        .build_block(
            w.chain.validators[0].public(),
            w.chain.next_time(),
            vec![e1, e2],
        )
        .unwrap();
    assert!(prev.apply_block(&built.block).is_ok());

    let mut bad = built.block.clone();
    bad.events[1].signature.0[0] ^= 1;
    match prev.apply_block(&bad) {
        Err(BlockError::InvalidEvent {
            height: 1,
            index: 1,
            reason: RejectReason::BadSignature(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let mut bad = built.block.clone();
    bad.header.prev_hash = Hash([0; 32]);
    assert!(matches!(
        prev.apply_block(&bad),
        Err(BlockError::BrokenLink { height: 1, .. })
    ));
    let mut bad = built.block.clone();
    bad.header.results_hash = Hash([1; 32]);
    assert!(matches!(
        prev.apply_block(&bad),
        Err(BlockError::HeaderMismatch {
            field: "results_hash",
            ..
        })
    ));
    let mut bad = built.block.clone();
    bad.events.swap(0, 1);
    // Reordered: each event is still valid on its own, but the derived roots differ.
    assert!(matches!(
        prev.apply_block(&bad),
        Err(BlockError::HeaderMismatch {
            field: "events_root",
            ..
        })
    ));
    let mut bad = built.block.clone();
    bad.events.pop();
    assert!(prev.apply_block(&bad).is_err());
    let mut bad = built.block.clone();
    bad.header.proposer = phys.public();
    assert!(matches!(
        prev.apply_block(&bad),
        Err(BlockError::UnknownProposer { .. })
    ));
    let mut bad = built.block.clone();
    bad.header.time = prev.last_time();
    assert!(matches!(
        prev.apply_block(&bad),
        Err(BlockError::TimeNotIncreasing { .. })
    ));
    // None of these changed the state.
    assert_eq!(prev.height(), 0);
    assert_eq!(prev.log_size(), 0);
}

/// §5: an event of an unknown version is refused wherever it is applied, including inside a
/// block (a proposal or an export does not pass through the single-event decoder).
#[test]
fn rule_5_unknown_event_version_is_refused_inside_blocks() {
    let mut w = world();
    let alice = w.alice.clone();
    let phys = w.phys.clone();
    let ev = w
        .chain
        .event(&alice, vitals_grant(&alice.public(), &phys.public()));
    let mut unknown = ev.event.clone();
    unknown.version = 2;
    let signed = unknown.sign(&alice);
    match refuse_one(&mut w.chain, signed) {
        RejectReason::InvalidField(why) => assert!(why.contains("version 2"), "{why}"),
        other => panic!("refused for another reason: {other}"),
    }
}

/// §6.2 a refused event changes nothing, even when its rule had already written something: a
/// new patient's first event registers them (§6.1) before the grantee is checked, and the
/// refusal takes the registration back (the typed state and the state map stay one).
#[test]
fn a_refused_first_grant_registers_nobody() {
    let mut w = world();
    let newcomer = patient("newcomer");
    let stranger = dev_key("nobody either");
    let to_stranger = grant_payload(
        &newcomer.public(),
        Grantee::Actor(stranger.public()),
        &[Laboratory],
        &[Treat],
        &[Action::Read],
    );
    let ev = w.chain.event(&newcomer, to_stranger.clone());
    assert_eq!(
        refuse_one(&mut w.chain, ev),
        RejectReason::UnknownGrantee(stranger.public())
    );
    assert!(w.chain.state.patient(&newcomer.public()).is_none());
    assert!(w.chain.state.patient_of_key(&newcomer.public()).is_none());
    // The same on a mempool's scratch state (admission applies in place too).
    let mut scratch = w.chain.state.clone();
    let again = w.chain.event(&newcomer, to_stranger);
    assert!(
        scratch
            .admit(&again, w.chain.next_time(), SignatureCheck::Verify)
            .is_err()
    );
    assert!(scratch.patient(&newcomer.public()).is_none());
    scratch.check_map_consistency().unwrap();
    assert_eq!(scratch.next_seq(&newcomer.public()), 0);
}

/// §6.1 and §6.5 (2.2, "Requests by revoked actors"): an access or break-glass request signed
/// by an enrolled actor whose enrolment or organisation was revoked is accepted with a denial
/// naming the reason, advances the author's sequence number, concerns the patient, writes no
/// break-glass record and is never permitted, even under a grant that covers it; a key never
/// enrolled is still refused.
#[test]
fn rule_6_1_requests_by_revoked_actors_are_recorded_as_denied() {
    let mut w = world();
    let alice = w.alice.clone();
    let hosp = w.chain.hospital.clone();
    let nurse = w.nurse.clone();
    // A grant that covers the nurse: before the revocation it permits.
    let g = w
        .chain
        .event(&alice, vitals_grant(&alice.public(), &nurse.public()));
    let grant = commit_one(&mut w.chain, g);
    let ev = w.chain.event(
        &nurse,
        access_payload(&alice.public(), VitalSigns, Treat, Action::Read),
    );
    let c = w.chain.commit(vec![ev]);
    assert_eq!(decision(&c, 0), permit(grant));
    let ev = w.chain.event(
        &hosp,
        EventPayload::ActorRevoke(ActorRevoke {
            actor: nurse.public(),
        }),
    );
    commit_one(&mut w.chain, ev);

    let actor_revoked = Decision::Deny {
        reason: DenyReason::ActorRevoked,
    };
    let cases: Vec<(&str, EventPayload, Decision)> = vec![
        (
            "access under a covering grant",
            access_payload(&alice.public(), VitalSigns, Treat, Action::Read),
            actor_revoked,
        ),
        (
            "access no grant covers",
            access_payload(&alice.public(), Imaging, Treat, Action::Read),
            actor_revoked,
        ),
        (
            "break-glass by a role that may break glass",
            break_glass_payload(&alice.public(), Imaging),
            actor_revoked,
        ),
    ];
    for (what, payload, want) in cases {
        let seq = w.chain.state.next_seq(&nurse.public());
        let before = w
            .chain
            .state
            .patient_events(&alice.public())
            .map_or(0, |p| p.count);
        let ev = w.chain.event(&nurse, payload);
        let id = ev.id();
        let c = w.chain.commit(vec![ev]);
        assert!(c.rejected.is_empty(), "{what}: refused {:?}", c.rejected);
        assert_eq!(decision(&c, 0), want, "{what}");
        assert_eq!(w.chain.state.next_seq(&nurse.public()), seq + 1, "{what}");
        assert_eq!(
            w.chain.state.patient_events(&alice.public()).unwrap().count,
            before + 1,
            "{what}: the attempt is in the patient's history"
        );
        assert!(w.chain.state.break_glass(&id).is_none(), "{what}");
        w.chain.state.check_map_consistency().unwrap();
    }
    assert_eq!(w.chain.state.review_queue().count(), 0);

    // A key never enrolled is still refused, whatever it asks.
    let stranger = dev_key("actor/never-enrolled");
    for payload in [
        access_payload(&alice.public(), VitalSigns, Treat, Action::Read),
        break_glass_payload(&alice.public(), Imaging),
    ] {
        let ev = w.chain.event(&stranger, payload);
        assert!(matches!(
            refuse_one(&mut w.chain, ev),
            RejectReason::UnknownAuthor { .. }
        ));
    }

    // Re-enrolled, the nurse is permitted again under the same grant.
    let ev = w.chain.event(
        &hosp,
        EventPayload::ActorEnrol(ActorEnrol {
            actor: nurse.public(),
            role: Role::Nurse,
        }),
    );
    commit_one(&mut w.chain, ev);
    let ev = w.chain.event(
        &nurse,
        access_payload(&alice.public(), VitalSigns, Treat, Action::Read),
    );
    let c = w.chain.commit(vec![ev]);
    assert_eq!(decision(&c, 0), permit(grant));
}
