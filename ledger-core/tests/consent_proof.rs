//! Consent at time t and absence (PROTOCOL.md §11.4): the §6.1 decision re-derived from the
//! patient's complete history. Table tests naming the rule they exercise, forged histories
//! refused, and a property test against the state machine itself: for every access request of
//! random histories committed with `DevChain`, the re-derived decision is the recorded one.

mod common;

use DataCategory::*;
use Purpose::*;
use common::*;
use proptest::prelude::*;
use twinledger_core::codes::Role;
use twinledger_core::consent_proof::{
    ConsentProofError, HistoryEntry, NotCovering, Requester, rederive, verify_decision,
};
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::consent::Grantee;
use twinledger_core::event::delegation::{DelegateGrant, DelegateRevoke, Scope};
use twinledger_core::event::rotation::KeyRotation;
use twinledger_core::keys::sig_domain;
use twinledger_core::state::records::GrantedBy;
use twinledger_core::*;

/// The patient an event concerns (§6.10; reviews are not generated here).
fn concerns(ev: &SignedEvent) -> Option<PublicKey> {
    match ev.event.payload.concerns() {
        twinledger_core::event::Concerns::Patient(p) => Some(p),
        _ => None,
    }
}

/// The patient's history as §11.3 yields it: every accepted event concerning them, in order.
fn history(chain: &DevChain, patient: &PublicKey) -> Vec<HistoryEntry> {
    let mut out = Vec::new();
    for c in &chain.blocks {
        for (ev, outcome) in c.block.events.iter().zip(&c.results.outcomes) {
            if concerns(ev) == Some(*patient) {
                out.push(HistoryEntry {
                    id: ev.id(),
                    event: ev.clone(),
                    outcome: *outcome,
                    height: c.block.header.height,
                    time: c.block.header.time,
                });
            }
        }
    }
    out
}

/// The requester facts of a genesis actor of the dev chain.
fn requester(chain: &DevChain, key: &PublicKey) -> Requester {
    let a = chain
        .genesis
        .actors
        .iter()
        .find(|a| a.key == *key)
        .expect("a genesis actor");
    Requester {
        key: a.key,
        organisation: a.organisation,
        role: a.role,
    }
}

fn scope(c: &[DataCategory], p: &[Purpose], a: &[Action]) -> Scope {
    Scope {
        categories: cats(c),
        purposes: purposes(p),
        actions: actions(a),
    }
}

struct W {
    chain: DevChain,
    alice: Keypair,
}

impl W {
    fn new() -> Self {
        Self {
            chain: DevChain::new(1),
            alice: patient("alice"),
        }
    }
    fn commit(&mut self, key: &Keypair, payload: EventPayload) -> EventId {
        let ev = self.chain.event(key, payload);
        commit_one(&mut self.chain, ev)
    }
    fn grant(&mut self, by: &Keypair, grantee: Grantee) -> EventId {
        let p = grant_payload(
            &self.alice.public(),
            grantee,
            &[VitalSigns],
            &[Treat],
            &[Action::Read],
        );
        self.commit(by, p)
    }
    fn ask(&mut self, who: &Keypair, c: DataCategory, p: Purpose, a: Action) -> EventId {
        let payload = access_payload(&self.alice.public(), c, p, a);
        self.commit(who, payload)
    }
    /// Re-derives and checks the request `id` against its recorded outcome.
    fn proof(&self, id: EventId) -> twinledger_core::consent_proof::ConsentProof {
        let h = history(&self.chain, &self.alice.public());
        let i = h.iter().position(|e| e.id == id).expect("in the history");
        let who = requester(&self.chain, &h[i].event.event.author);
        verify_decision(&self.alice.public(), &h, i, &who).expect("the recorded decision")
    }
}

fn reasons(p: &twinledger_core::consent_proof::ConsentProof, g: EventId) -> Vec<NotCovering> {
    p.grants
        .iter()
        .find(|c| c.grant == g)
        .expect("grant checked")
        .not_covering
        .clone()
}

/// §6.1: a permit is re-derived with its grant, which was live and covered the request.
#[test]
fn rule_6_1_permit_names_the_live_grant() {
    let mut w = W::new();
    let (alice, phys) = (w.alice.clone(), w.chain.physician.clone());
    let g = w.grant(&alice, Grantee::Actor(phys.public()));
    let r = w.ask(&phys, VitalSigns, Treat, Action::Read);
    let p = w.proof(r);
    assert_eq!(p.decision, Decision::Permit { grant: g });
    let by = p.permitting().expect("the permitting grant");
    assert!(by.covers());
    assert_eq!(by.granted_by, GrantedBy::Patient);
}

/// §6.1 deny by default: no grant at all, and each grant's failing conditions are named
/// (grantee, category, purpose, action).
#[test]
fn rule_6_1_deny_names_why_each_grant_does_not_cover() {
    let mut w = W::new();
    let (alice, phys, nurse) = (
        w.alice.clone(),
        w.chain.physician.clone(),
        w.chain.nurse.clone(),
    );
    let none = w.ask(&phys, VitalSigns, Treat, Action::Read);
    assert!(w.proof(none).grants.is_empty());
    let g = w.grant(&alice, Grantee::Actor(nurse.public()));
    let r = w.ask(&phys, Genetic, Research, Action::Update);
    let p = w.proof(r);
    assert_eq!(
        p.decision,
        Decision::Deny {
            reason: DenyReason::NoCoveringGrant
        }
    );
    assert_eq!(
        reasons(&p, g),
        vec![
            NotCovering::OtherGrantee,
            NotCovering::Category,
            NotCovering::Purpose,
            NotCovering::Action
        ]
    );
}

/// §6.1 condition 1 and §6.2: a revoked grant stops covering from its revoke on; a grant
/// outside its window (not yet valid, expired) does not cover.
#[test]
fn rule_6_1_revoked_expired_not_yet_valid() {
    let mut w = W::new();
    let (alice, phys) = (w.alice.clone(), w.chain.physician.clone());
    let g = w.grant(&alice, Grantee::Actor(phys.public()));
    let before = w.ask(&phys, VitalSigns, Treat, Action::Read);
    let rv = w.commit(&alice, revoke_payload(&alice.public(), g));
    let after = w.ask(&phys, VitalSigns, Treat, Action::Read);
    assert_eq!(w.proof(before).decision, Decision::Permit { grant: g });
    let p = w.proof(after);
    let h = history(&w.chain, &alice.public());
    let rv_height = h.iter().find(|e| e.id == rv).unwrap().height;
    assert_eq!(
        reasons(&p, g),
        vec![NotCovering::Revoked {
            at_height: rv_height,
            by: rv
        }]
    );
    // A window in the future, and one already over at the request.
    let mut future = grant_payload(
        &alice.public(),
        Grantee::Actor(phys.public()),
        &[Imaging],
        &[Treat],
        &[Action::Read],
    );
    let mut short = future.clone();
    if let EventPayload::ConsentGrant(c) = &mut future {
        c.valid_from = w.chain.next_time().plus_ms(3_600_000);
    }
    let gf = w.commit(&alice, future);
    if let EventPayload::ConsentGrant(c) = &mut short {
        c.valid_until = Some(w.chain.next_time().plus_ms(1));
    }
    let gs = w.commit(&alice, short);
    let r = w.ask(&phys, Imaging, Treat, Action::Read);
    let p = w.proof(r);
    assert!(matches!(
        reasons(&p, gf)[..],
        [NotCovering::NotYetValid { .. }]
    ));
    assert!(matches!(reasons(&p, gs)[..], [NotCovering::Expired { .. }]));
}

/// §6.1 condition 4 and §6.3: a delegate's grant covers while its delegation is live, and not
/// once the delegation is revoked.
#[test]
fn rule_6_1_delegate_grant_counts_while_delegation_is_live() {
    let mut w = W::new();
    let (alice, phys) = (w.alice.clone(), w.chain.physician.clone());
    let bob = dev_key("guardian/bob");
    let d = w.commit(
        &alice,
        EventPayload::DelegateGrant(DelegateGrant {
            patient: alice.public(),
            delegate: bob.public(),
            scope: scope(&[VitalSigns, Imaging], &[Treat], &[Action::Read]),
            valid_until: None,
        }),
    );
    let g = w.grant(&bob, Grantee::Organisation(w.chain.hospital.public()));
    let ok = w.ask(&phys, VitalSigns, Treat, Action::Read);
    let p = w.proof(ok);
    assert_eq!(p.decision, Decision::Permit { grant: g });
    assert_eq!(p.permitting().unwrap().granted_by, GrantedBy::Delegate(d));
    let dr = w.commit(
        &alice,
        EventPayload::DelegateRevoke(DelegateRevoke {
            patient: alice.public(),
            delegation: d,
        }),
    );
    let no = w.ask(&phys, VitalSigns, Treat, Action::Read);
    let p = w.proof(no);
    assert!(matches!(
        reasons(&p, g)[..],
        [NotCovering::DelegationRevoked { delegation, by, .. }] if delegation == d && by == dr
    ));
}

/// §6.1 condition 2 with a role grantee, and §6.4: grants made by the rotated-to key are the
/// patient's own.
#[test]
fn rule_6_1_role_grantee_and_key_rotation() {
    let mut w = W::new();
    let (alice, nurse, res) = (
        w.alice.clone(),
        w.chain.nurse.clone(),
        w.chain.researcher.clone(),
    );
    let new = dev_key("patient/alice-new");
    let body = KeyRotation::proof_body(&alice.public(), &new.public());
    let proof = new.sign(sig_domain::KEY_ROTATION, &w.chain.state.chain_id(), &body);
    w.commit(
        &alice,
        EventPayload::KeyRotation(KeyRotation {
            patient: alice.public(),
            new_key: new.public(),
            new_key_proof: proof,
        }),
    );
    let g = w.grant(
        &new,
        Grantee::Role {
            role: Role::Nurse,
            organisation: None,
        },
    );
    let ok = w.ask(&nurse, VitalSigns, Treat, Action::Read);
    let p = w.proof(ok);
    assert_eq!(p.decision, Decision::Permit { grant: g });
    assert_eq!(p.permitting().unwrap().granted_by, GrantedBy::Patient);
    let no = w.ask(&res, VitalSigns, Treat, Action::Read);
    assert_eq!(reasons(&w.proof(no), g), vec![NotCovering::OtherGrantee]);
}

/// §6.5: a break-glass outcome depends only on the requester's role.
#[test]
fn rule_6_5_break_glass_by_role() {
    let mut w = W::new();
    let (phys, res) = (w.chain.physician.clone(), w.chain.researcher.clone());
    let a = w.commit(&phys, break_glass_payload(&w.alice.public(), Imaging));
    let b = w.commit(&res, break_glass_payload(&w.alice.public(), Imaging));
    assert_eq!(w.proof(a).decision, Decision::BreakGlass);
    assert_eq!(
        w.proof(b).decision,
        Decision::Deny {
            reason: DenyReason::RoleMayNotBreakGlass
        }
    );
}

/// A permit whose grant the (forged) history shows revoked before the request is refused,
/// naming the revoke.
#[test]
fn forged_permit_of_a_revoked_grant_is_refused() {
    let mut w = W::new();
    let (alice, phys) = (w.alice.clone(), w.chain.physician.clone());
    let g = w.grant(&alice, Grantee::Actor(phys.public()));
    w.commit(&alice, revoke_payload(&alice.public(), g));
    let r = w.ask(&phys, VitalSigns, Treat, Action::Read);
    let mut h = history(&w.chain, &alice.public());
    let i = h.iter().position(|e| e.id == r).unwrap();
    h[i].outcome = Outcome::Access(Decision::Permit { grant: g });
    let who = requester(&w.chain, &phys.public());
    let err = verify_decision(&alice.public(), &h, i, &who).unwrap_err();
    assert!(matches!(err, ConsentProofError::Disagrees(_)));
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("grant {g} did not cover it: revoked at block")),
        "{msg}"
    );
}

/// A deny for which the history shows a live covering grant is refused: the ledger would have
/// permitted, and the grant is named.
#[test]
fn forged_deny_despite_a_covering_grant_is_refused() {
    let mut w = W::new();
    let (alice, phys) = (w.alice.clone(), w.chain.physician.clone());
    let g = w.grant(&alice, Grantee::Actor(phys.public()));
    let r = w.ask(&phys, VitalSigns, Treat, Action::Read);
    let mut h = history(&w.chain, &alice.public());
    let i = h.iter().position(|e| e.id == r).unwrap();
    h[i].outcome = Outcome::Access(Decision::Deny {
        reason: DenyReason::NoCoveringGrant,
    });
    let who = requester(&w.chain, &phys.public());
    let msg = verify_decision(&alice.public(), &h, i, &who)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&format!("grant {g}")), "{msg}");
    assert!(msg.contains("would have permitted"), "{msg}");
    // The history with the revoke left out (an omission) re-derives a permit for a request the
    // ledger denied: exactly what §11.3's completeness check exists to catch.
    let rv = w.commit(&alice, revoke_payload(&alice.public(), g));
    let denied = w.ask(&phys, VitalSigns, Treat, Action::Read);
    let h: Vec<HistoryEntry> = history(&w.chain, &alice.public())
        .into_iter()
        .filter(|e| e.id != rv)
        .collect();
    let i = h.iter().position(|e| e.id == denied).unwrap();
    assert!(matches!(
        verify_decision(&alice.public(), &h, i, &who),
        Err(ConsentProofError::Disagrees(_))
    ));
}

/// Misuse: not a request, another requester, an event the ledger would have refused.
#[test]
fn wrong_inputs_are_refused() {
    let mut w = W::new();
    let (alice, phys, nurse) = (
        w.alice.clone(),
        w.chain.physician.clone(),
        w.chain.nurse.clone(),
    );
    let g = w.grant(&alice, Grantee::Actor(phys.public()));
    let r = w.ask(&phys, VitalSigns, Treat, Action::Read);
    let h = history(&w.chain, &alice.public());
    let pid = alice.public();
    let who = requester(&w.chain, &phys.public());
    assert!(
        matches!(rederive(&pid, &h, 0, &who), Err(ConsentProofError::NotARequest { id, .. }) if id == g)
    );
    assert!(matches!(
        rederive(&pid, &h, 9, &who),
        Err(ConsentProofError::OutOfRange { .. })
    ));
    let other = requester(&w.chain, &nurse.public());
    assert!(matches!(
        rederive(&pid, &h, 1, &other),
        Err(ConsentProofError::OtherRequester { .. })
    ));
    // A grant signed by someone who may not act for the patient.
    let mut forged = h.clone();
    forged[0].event.event.author = nurse.public();
    assert!(matches!(
        rederive(&pid, &forged, 1, &who),
        Err(ConsentProofError::Inconsistent { index: 0, .. })
    ));
    assert_eq!(h[1].id, r);
}

// ---------------------------------------------------------------------------------------------
// Property: the state machine is the reference model.

const CATS: [DataCategory; 3] = [VitalSigns, Genetic, Imaging];
const PURPOSES: [Purpose; 3] = [Treat, Research, Payment];
const ACTIONS: [Action; 2] = [Action::Read, Action::Update];

#[derive(Clone, Debug)]
enum Op {
    /// A grant by the patient (`by` 0) or by delegate `by` − 1.
    Grant {
        by: u8,
        grantee: u8,
        cats: u8,
        purposes: u8,
        actions: u8,
        from: u8,
        until: Option<u8>,
    },
    Revoke(u8),
    Delegate {
        to: u8,
        cats: u8,
        purposes: u8,
        until: Option<u8>,
    },
    Undelegate(u8),
    Rotate,
    Access {
        actor: u8,
        cat: u8,
        purpose: u8,
        action: u8,
    },
    BreakGlass(u8),
    EndBlock,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..6, 1u8..8, 1u8..8, 1u8..4, 0u8..12, proptest::option::of(0u8..20)).prop_map(
            |(by, grantee, cats, purposes, actions, from, until)| Op::Grant { by, grantee, cats, purposes, actions, from, until }
        ),
        1 => any::<u8>().prop_map(Op::Revoke),
        2 => (0u8..2, 1u8..16, 1u8..16, proptest::option::of(0u8..40)).prop_map(|(to, cats, purposes, until)| Op::Delegate { to, cats: cats.min(7), purposes: purposes.min(7), until }),
        1 => any::<u8>().prop_map(Op::Undelegate),
        1 => Just(Op::Rotate),
        5 => (0u8..4, 0u8..3, 0u8..3, 0u8..2).prop_map(|(actor, cat, purpose, action)| Op::Access { actor, cat, purpose, action }),
        1 => (0u8..4).prop_map(Op::BreakGlass),
        5 => Just(Op::EndBlock),
    ]
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut chain = DevChain::new(1);
    let alice = patient("alice");
    let mut current = alice.clone();
    let delegates = [dev_key("delegate/bob"), dev_key("delegate/carol")];
    let actors = [
        chain.physician.clone(),
        chain.nurse.clone(),
        chain.researcher.clone(),
        chain.privacy_officer.clone(),
    ];
    let orgs = [chain.hospital.public(), chain.institute.public()];
    let grantees = model_grantees(&actors, &orgs);
    let base = chain.state.last_time();
    let at = |k: u8| base.plus_ms(u64::from(k) * 1000);
    let mut grants: Vec<EventId> = Vec::new();
    let mut delegations: Vec<EventId> = Vec::new();
    let mut rotations = 0u32;
    let mut pending: Vec<SignedEvent> = Vec::new();
    let mut ops = ops;
    ops.push(Op::EndBlock);
    for op in ops {
        let p = alice.public();
        match op {
            Op::Grant {
                by,
                grantee,
                cats,
                purposes,
                actions,
                from,
                until,
            } => {
                let mut payload = grant_payload(
                    &p,
                    grantees[grantee as usize],
                    &subset(&CATS, cats),
                    &subset(&PURPOSES, purposes),
                    &subset(&ACTIONS, actions),
                );
                if let EventPayload::ConsentGrant(cg) = &mut payload {
                    cg.valid_from = at(from);
                    cg.valid_until = until.map(|u| at(from.saturating_add(u).saturating_add(1)));
                }
                let key = if by == 0 {
                    current.clone()
                } else {
                    delegates[by as usize - 1].clone()
                };
                let ev = chain.event(&key, payload);
                grants.push(ev.id());
                pending.push(ev);
            }
            Op::Revoke(i) if !grants.is_empty() => {
                let g = grants[i as usize % grants.len()];
                pending.push(chain.event(&current, revoke_payload(&p, g)));
            }
            Op::Delegate {
                to,
                cats,
                purposes,
                until,
            } => {
                let ev = chain.event(
                    &current,
                    EventPayload::DelegateGrant(DelegateGrant {
                        patient: p,
                        delegate: delegates[to as usize].public(),
                        scope: scope(&subset(&CATS, cats), &subset(&PURPOSES, purposes), &ACTIONS),
                        valid_until: until
                            .map(|u| chain.next_time().plus_ms(u64::from(u) * 1000 + 1)),
                    }),
                );
                delegations.push(ev.id());
                pending.push(ev);
            }
            Op::Undelegate(i) if !delegations.is_empty() => {
                let d = delegations[i as usize % delegations.len()];
                pending.push(chain.event(
                    &current,
                    EventPayload::DelegateRevoke(DelegateRevoke {
                        patient: p,
                        delegation: d,
                    }),
                ));
            }
            Op::Rotate => {
                // Alone in its block, so that later events of the block are signed right.
                chain.commit(std::mem::take(&mut pending));
                rotations += 1;
                let new = dev_key(&format!("patient/alice-rotated-{rotations}"));
                let body = KeyRotation::proof_body(&p, &new.public());
                let proof = new.sign(sig_domain::KEY_ROTATION, &chain.state.chain_id(), &body);
                let ev = chain.event(
                    &current,
                    EventPayload::KeyRotation(KeyRotation {
                        patient: p,
                        new_key: new.public(),
                        new_key_proof: proof,
                    }),
                );
                let c = chain.commit(vec![ev]);
                if c.rejected.is_empty() {
                    current = new;
                }
            }
            Op::Access {
                actor,
                cat,
                purpose,
                action,
            } => {
                let payload = access_payload(
                    &p,
                    CATS[cat as usize],
                    PURPOSES[purpose as usize],
                    ACTIONS[action as usize],
                );
                pending.push(chain.event(&actors[actor as usize], payload));
            }
            Op::BreakGlass(actor) => {
                pending
                    .push(chain.event(&actors[actor as usize], break_glass_payload(&p, Imaging)));
            }
            Op::EndBlock => {
                // Refused events are left out, as the ledger leaves them out.
                chain.commit(std::mem::take(&mut pending));
            }
            Op::Revoke(_) | Op::Undelegate(_) => {}
        }
    }
    let p = alice.public();
    let h = history(&chain, &p);
    let (mut requests, mut permits, mut by_delegate, mut delegation_ended) = (0, 0, 0, 0);
    for (i, e) in h.iter().enumerate() {
        if !matches!(
            e.event.event.payload,
            EventPayload::AccessRequest(_) | EventPayload::BreakGlassRequest(_)
        ) {
            continue;
        }
        requests += 1;
        let who = requester(&chain, &e.event.event.author);
        let proof = rederive(&p, &h, i, &who)
            .map_err(|err| TestCaseError::fail(format!("history event {i}: {err}")))?;
        prop_assert_eq!(
            Outcome::Access(proof.decision),
            e.outcome,
            "request {} at block {}",
            e.id,
            e.height
        );
        // Any other recorded outcome is refused: a deny instead of a permit, a permit under
        // any other grant of the patient, a break-glass outcome for another role.
        let mut forged: Vec<Outcome> = proof
            .grants
            .iter()
            .map(|g| Outcome::Access(Decision::Permit { grant: g.grant }))
            .collect();
        forged.push(Outcome::Access(Decision::Deny {
            reason: DenyReason::NoCoveringGrant,
        }));
        forged.push(Outcome::Access(Decision::BreakGlass));
        forged.push(Outcome::Access(Decision::Deny {
            reason: DenyReason::RoleMayNotBreakGlass,
        }));
        for f in forged.into_iter().filter(|f| *f != e.outcome) {
            let mut hf = h.clone();
            hf[i].outcome = f;
            prop_assert!(
                matches!(
                    verify_decision(&p, &hf, i, &who),
                    Err(ConsentProofError::Disagrees(_))
                ),
                "forged outcome {:?} of request {} accepted",
                f,
                e.id
            );
        }
        // A permit's grant covers; a deny's grants each name a reason.
        match proof.decision {
            Decision::Permit { grant } => {
                permits += 1;
                if proof
                    .permitting()
                    .is_some_and(|g| g.granted_by != GrantedBy::Patient)
                {
                    by_delegate += 1;
                }
                prop_assert!(
                    proof
                        .permitting()
                        .is_some_and(|g| g.grant == grant && g.covers())
                );
            }
            Decision::Deny {
                reason: DenyReason::NoCoveringGrant,
            } => {
                prop_assert!(proof.grants.iter().all(|g| !g.covers()));
                if proof.grants.iter().any(|g| {
                    g.not_covering.iter().any(|n| {
                        matches!(
                            n,
                            NotCovering::DelegationRevoked { .. }
                                | NotCovering::DelegationExpired { .. }
                        )
                    })
                }) {
                    delegation_ended += 1;
                }
            }
            _ => {}
        }
    }
    if std::env::var_os("CONSENT_PROOF_STATS").is_some() {
        eprintln!(
            "{requests} requests re-derived, {permits} permits ({by_delegate} by a delegate's \
             grant), {delegation_ended} denies naming an ended delegation"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// For every access or break-glass request of a random history (grants by the patient and
    /// by delegates, revokes, delegations and their revokes, key rotations), the decision
    /// re-derived from the history before it is the one the state machine recorded.
    #[test]
    fn rederived_decisions_match_the_state_machine(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
