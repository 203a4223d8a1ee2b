//! Property tests of the state machine against a simple reference model (PROTOCOL.md §6):
//! the ledger permits exactly what the model's live grants cover (first covering grant in id
//! order), never anything else except flagged break-glass, and a revoked grant never permits
//! anything from its revoke on.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use twinledger_core::codes::Role;
use twinledger_core::devkit::DevChain;
use twinledger_core::event::consent::Grantee;
use twinledger_core::*;

const CATS: [DataCategory; 3] = [
    DataCategory::VitalSigns,
    DataCategory::Genetic,
    DataCategory::Imaging,
];
const PURPOSES: [Purpose; 3] = [Purpose::Treat, Purpose::Research, Purpose::Payment];
const ACTIONS: [Action; 2] = [Action::Read, Action::Update];

#[derive(Clone, Debug)]
enum Op {
    Grant {
        grantee: u8,
        cats: u8,
        purposes: u8,
        actions: u8,
        from: u8,
        until: Option<u8>,
    },
    Revoke(u8),
    Access {
        actor: u8,
        cat: u8,
        purpose: u8,
        action: u8,
    },
    BreakGlass {
        cat: u8,
    },
    EndBlock,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6, 1u8..8, 1u8..8, 1u8..4, 0u8..12, proptest::option::of(0u8..16)).prop_map(
            |(grantee, cats, purposes, actions, from, until)| Op::Grant { grantee, cats, purposes, actions, from, until }
        ),
        1 => any::<u8>().prop_map(Op::Revoke),
        5 => (0u8..3, 0u8..3, 0u8..3, 0u8..2).prop_map(|(actor, cat, purpose, action)| Op::Access { actor, cat, purpose, action }),
        1 => (0u8..3).prop_map(|cat| Op::BreakGlass { cat }),
        2 => Just(Op::EndBlock),
    ]
}

/// The model's grant.
#[derive(Clone, Debug)]
struct MGrant {
    id: EventId,
    grantee: Grantee,
    cats: Vec<DataCategory>,
    purposes: Vec<Purpose>,
    actions: Vec<Action>,
    from: Timestamp,
    until: Option<Timestamp>,
    revoked: bool,
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut chain = DevChain::new(1);
    let alice = patient("alice");
    let actors = [
        chain.physician.clone(),
        chain.nurse.clone(),
        chain.researcher.clone(),
    ];
    let orgs = [chain.hospital.public(), chain.institute.public()];
    let roles = |k: &PublicKey| chain_actor(k, &actors, &orgs);
    let grantees = model_grantees(&actors, &orgs);
    let base = chain.state.last_time();
    let at = |k: u8| base.plus_ms(u64::from(k) * 1000);

    let mut grants: Vec<MGrant> = Vec::new();
    let mut pending: Vec<SignedEvent> = Vec::new();
    // Expected decision for each pending access (None for non-access events).
    let mut expect: Vec<Option<Decision>> = Vec::new();
    let mut revoked_ids: BTreeSet<EventId> = BTreeSet::new();
    let mut ops = ops;
    ops.push(Op::EndBlock);
    for op in ops {
        let t = chain.next_time();
        match op {
            Op::Grant {
                grantee,
                cats,
                purposes,
                actions,
                from,
                until,
            } => {
                let (from, until) = (at(from), until.map(at));
                if until.is_some_and(|u| u <= from || u <= t) {
                    continue; // the model knows this is refused (§6.2); tested in the table tests
                }
                let g = grantees[grantee as usize];
                let (c, p, a) = (
                    subset(&CATS, cats),
                    subset(&PURPOSES, purposes),
                    subset(&ACTIONS, actions),
                );
                let mut payload = grant_payload(&alice.public(), g, &c, &p, &a);
                if let EventPayload::ConsentGrant(cg) = &mut payload {
                    cg.valid_from = from;
                    cg.valid_until = until;
                }
                let ev = chain.event(&alice, payload);
                grants.push(MGrant {
                    id: ev.id(),
                    grantee: g,
                    cats: c,
                    purposes: p,
                    actions: a,
                    from,
                    until,
                    revoked: false,
                });
                pending.push(ev);
                expect.push(None);
            }
            Op::Revoke(i) => {
                let live: Vec<usize> = (0..grants.len()).filter(|&j| !grants[j].revoked).collect();
                if live.is_empty() {
                    continue;
                }
                let j = live[i as usize % live.len()];
                grants[j].revoked = true;
                revoked_ids.insert(grants[j].id);
                let ev = chain.event(&alice, revoke_payload(&alice.public(), grants[j].id));
                pending.push(ev);
                expect.push(None);
            }
            Op::Access {
                actor,
                cat,
                purpose,
                action,
            } => {
                let key = &actors[actor as usize];
                let (cat, purpose, action) = (
                    CATS[cat as usize],
                    PURPOSES[purpose as usize],
                    ACTIONS[action as usize],
                );
                let (org, role) = roles(&key.public());
                let mut covering: Vec<&MGrant> = grants
                    .iter()
                    .filter(|g| {
                        !g.revoked
                            && g.from <= t
                            && g.until.is_none_or(|u| t < u)
                            && match g.grantee {
                                Grantee::Actor(k) => k == key.public(),
                                Grantee::Organisation(o) => o == org,
                                Grantee::Role {
                                    role: r,
                                    organisation,
                                } => r == role && organisation.is_none_or(|o| o == org),
                            }
                            && g.cats.contains(&cat)
                            && g.purposes.contains(&purpose)
                            && g.actions.contains(&action)
                    })
                    .collect();
                covering.sort_by_key(|g| g.id);
                let want = match covering.first() {
                    Some(g) => Decision::Permit { grant: g.id },
                    None => Decision::Deny {
                        reason: DenyReason::NoCoveringGrant,
                    },
                };
                pending
                    .push(chain.event(key, access_payload(&alice.public(), cat, purpose, action)));
                expect.push(Some(want));
            }
            Op::BreakGlass { cat } => {
                pending.push(chain.event(
                    &actors[0],
                    break_glass_payload(&alice.public(), CATS[cat as usize]),
                ));
                expect.push(Some(Decision::BreakGlass));
            }
            Op::EndBlock => {
                let c = chain.commit(std::mem::take(&mut pending));
                prop_assert!(c.rejected.is_empty(), "refused: {:?}", c.rejected);
                // The typed state and the state map agree (issue #13).
                if let Err(e) = chain.state.check_map_consistency() {
                    prop_assert!(false, "block {}: {}", c.block.header.height, e);
                }
                for (i, want) in std::mem::take(&mut expect).into_iter().enumerate() {
                    let Some(want) = want else { continue };
                    let got = decision(&c, i);
                    prop_assert_eq!(got, want, "event {} of block {}", i, c.block.header.height);
                }
                // Every permit in this block names a grant not revoked before it.
                let mut revoked_before: BTreeSet<EventId> = BTreeSet::new();
                for (ev, out) in c.block.events.iter().zip(&c.results.outcomes) {
                    if let EventPayload::ConsentRevoke(r) = &ev.event.payload {
                        revoked_before.insert(r.grant);
                    }
                    if let Outcome::Access(Decision::Permit { grant }) = out {
                        prop_assert!(
                            !revoked_before.contains(grant),
                            "revoked grant permitted later in its block"
                        );
                        let older_revoke = revoked_ids.contains(grant)
                            && chain
                                .state
                                .grant(grant)
                                .and_then(|g| g.revoked_at)
                                .is_some_and(|h| h < c.block.header.height);
                        prop_assert!(!older_revoke, "grant revoked in an earlier block permitted");
                    }
                }
            }
        }
    }
    Ok(())
}

fn chain_actor(k: &PublicKey, actors: &[Keypair; 3], orgs: &[PublicKey; 2]) -> (PublicKey, Role) {
    if *k == actors[0].public() {
        (orgs[0], Role::Physician)
    } else if *k == actors[1].public() {
        (orgs[0], Role::Nurse)
    } else {
        (orgs[1], Role::Researcher)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decisions_match_the_reference_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
