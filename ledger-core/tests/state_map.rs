//! The state map of PROTOCOL.md §6.10 (protocol 2.0): table tests of its rules on the dev
//! chain, and a property test of `StateMap` and `StateProof` against a reference model (a
//! `BTreeMap` of the same records, hashed with the document's algorithm in
//! `golden/state_map.rs`).

mod common;
#[path = "golden/state_map.rs"]
mod reference;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use twinledger_core::codec;
use twinledger_core::devkit::DevChain;
use twinledger_core::event::break_glass::{BreakGlassReview, Finding};
use twinledger_core::event::consent::Grantee;
use twinledger_core::hash::{domain, hash_in};
use twinledger_core::state::records::*;
use twinledger_core::statemap::{EMPTY_ROOT, StateMap, StateProofError};
use twinledger_core::*;

/// §6.10 Root: the empty map's root is `E`, the 32 ASCII bytes of the placeholder, and every
/// key proves absent against it with no leaf and no sibling.
#[test]
fn empty_map_root_is_the_placeholder() {
    let map = StateMap::new();
    assert_eq!(map.root(), EMPTY_ROOT);
    assert_eq!(&map.root().0, b"SPARSE_MERKLE_PLACEHOLDER_HASH__");
    let p = map.prove(Table::Nonce, &[1, 2, 3]);
    assert_eq!(
        (p.value.as_ref(), p.leaf, p.siblings.len()),
        (None, None, 0)
    );
    p.verify_bytes(EMPTY_ROOT, Table::Nonce, &[1, 2, 3], None)
        .unwrap();
    assert!(
        p.verify_bytes(EMPTY_ROOT, Table::Nonce, &[1, 2, 3], Some(&[0]))
            .is_err()
    );
}

/// §6.10 Root and Hashes: a map of one record has that record's leaf hash as its root:
/// `H_m("JMT::LeafNode" || H_"twinledger v2 state-key"(table || key) || H_m(value))`.
#[test]
fn one_record_root_is_its_leaf_hash() {
    let mut map = StateMap::new();
    map.set_records([(Table::Auditor, vec![0; 33], vec![1])]);
    let kh = hash_in(domain::STATE_KEY, &[&[5u8][..], &[0; 33]].concat());
    let vh = hash_in(domain::STATE_MAP, &[1]);
    let leaf = hash_in(
        domain::STATE_MAP,
        &[&b"JMT::LeafNode"[..], kh.as_bytes(), vh.as_bytes()].concat(),
    );
    assert_eq!(map.root(), leaf);
    assert_eq!(map.root().0, reference::leaf(&kh.0, &vh.0));
}

/// §6.10 Genesis records, §10.1: before block 1 the map holds the genesis organisations,
/// actors and auditors (and nothing else), and the state hash is its root.
#[test]
fn genesis_records_are_in_the_map() {
    let chain = DevChain::new(4);
    let st = &chain.state;
    let g = &chain.genesis;
    assert_eq!(
        st.map_len(),
        g.organisations.len() + g.actors.len() + g.auditors.len()
    );
    assert_eq!(st.state_hash(), st.state_root());
    let root = st.state_root();
    for o in &g.organisations {
        let p = st.prove(Table::Org, &o.key);
        p.verify(
            root,
            Table::Org,
            &o.key,
            Some(&OrgRecord {
                name: o.name.clone(),
                live: true,
            }),
        )
        .unwrap();
    }
    for a in &g.actors {
        let rec = st.actor(&a.key).unwrap();
        st.prove(Table::Actor, &a.key)
            .verify(root, Table::Actor, &a.key, Some(rec))
            .unwrap();
    }
    for k in &g.auditors {
        st.prove(Table::Auditor, k)
            .verify(root, Table::Auditor, k, Some(&true))
            .unwrap();
    }
    // A validator key is not a record: it proves absent from every table.
    let v = g.validators.validators()[0].key;
    for t in Table::ALL {
        st.prove(t, &v).verify::<_, ()>(root, t, &v, None).unwrap();
    }
}

/// §6.10 State hash: a block without events writes nothing and keeps the state hash; a block
/// with events changes it to the root of the map after its writes.
#[test]
fn empty_block_keeps_the_state_hash() {
    let mut chain = DevChain::new(4);
    let before = chain.state.state_hash();
    let c = chain.commit(vec![]);
    assert_eq!(c.block.header.state_hash, before);
    let alice = patient("alice");
    let ev = chain.event(
        &alice,
        grant_payload(
            &alice.public(),
            Grantee::Organisation(chain.hospital.public()),
            &[DataCategory::VitalSigns],
            &[Purpose::Treat],
            &[Action::Read],
        ),
    );
    let c = chain.commit(vec![ev]);
    assert_ne!(c.block.header.state_hash, before);
    assert_eq!(c.block.header.state_hash, chain.state.state_root());
}

/// §6.10 Proofs: after a chain of grants, a revocation, accesses and a break-glass review,
/// every record proves present with its value and an absent one proves absent; the proof of
/// one record does not prove another, a wrong value or a tampered proof, and a proof against
/// an earlier root fails.
#[test]
fn records_prove_present_and_absent() {
    let mut chain = DevChain::new(4);
    let alice = patient("alice");
    let a = alice.public();
    let hosp = chain.hospital.public();
    let g1 = chain.event(
        &alice,
        grant_payload(
            &a,
            Grantee::Organisation(hosp),
            &[DataCategory::VitalSigns],
            &[Purpose::Treat],
            &[Action::Read],
        ),
    );
    let g1_id = commit_one(&mut chain, g1);
    let old_root = chain.state.state_root();
    let rv = chain.event(&alice, revoke_payload(&a, g1_id));
    commit_one(&mut chain, rv);
    let st = &chain.state;
    let root = st.state_root();
    let grant = st.grant(&g1_id).unwrap().clone();
    assert!(grant.revoked_at.is_some());
    let p = st.prove(Table::Grant, &g1_id);
    p.verify(root, Table::Grant, &g1_id, Some(&grant)).unwrap();
    assert_eq!(p.value.as_deref(), st.map_value(Table::Grant, &g1_id));
    // The revocation is visible: the unrevoked record does not verify, nor absence.
    let mut unrevoked = grant.clone();
    unrevoked.revoked_at = None;
    assert!(matches!(
        p.verify(root, Table::Grant, &g1_id, Some(&unrevoked)),
        Err(StateProofError::ValueMismatch(_))
    ));
    assert!(
        p.verify::<_, GrantRecord>(root, Table::Grant, &g1_id, None)
            .is_err()
    );
    // Against the root before the revocation, this proof fails.
    assert!(
        p.verify(old_root, Table::Grant, &g1_id, Some(&grant))
            .is_err()
    );
    // Not a proof of the same key in another table.
    assert!(
        p.verify(root, Table::Delegation, &g1_id, Some(&grant))
            .is_err()
    );
    // An absent grant id proves absent, and not present.
    let missing = EventId([7; 32]);
    let q = st.prove(Table::Grant, &missing);
    assert!(q.value.is_none());
    q.verify::<_, GrantRecord>(root, Table::Grant, &missing, None)
        .unwrap();
    // Every byte of the proof's encoding matters: flipping any of them refuses it.
    let bytes = p.to_bytes();
    assert_eq!(StateProof::from_bytes(&bytes, 1 << 16).unwrap(), p);
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        if let Ok(tp) = StateProof::from_bytes(&t, 1 << 16) {
            assert!(
                tp.verify_value(root, Table::Grant, &codec::encode(&g1_id))
                    .is_err(),
                "tampered byte {i} accepted"
            );
        }
    }
}

/// §6.10 Patient-events: every accepted event that concerns a patient (grants, revocations,
/// accesses permitted or denied, break-glass requests and their review) advances their count
/// and chain head `H_"twinledger v2 patient-events"(head || event id)` from 32 zero bytes;
/// events that concern nobody (enrolments) do not; refused events do not.
#[test]
fn patient_events_count_and_chain_every_concerning_event() {
    let mut chain = DevChain::new(4);
    let alice = patient("alice");
    let a = alice.public();
    let bob = patient("bob").public();
    let phys = chain.physician.clone();
    let po = chain.privacy_officer.clone();
    let mut ids = Vec::new();
    let g = chain.event(
        &alice,
        grant_payload(
            &a,
            Grantee::Actor(phys.public()),
            &[DataCategory::VitalSigns],
            &[Purpose::Treat],
            &[Action::Read],
        ),
    );
    ids.push(commit_one(&mut chain, g));
    let permitted = chain.event(
        &phys,
        access_payload(&a, DataCategory::VitalSigns, Purpose::Treat, Action::Read),
    );
    let denied = chain.event(
        &phys,
        access_payload(&a, DataCategory::Genetic, Purpose::Treat, Action::Read),
    );
    let bg = chain.event(&phys, break_glass_payload(&a, DataCategory::Imaging));
    let c = chain.commit(vec![permitted.clone(), denied.clone(), bg.clone()]);
    assert!(c.rejected.is_empty());
    assert!(matches!(decision(&c, 1), Decision::Deny { .. }));
    ids.extend([permitted.id(), denied.id(), bg.id()]);
    let review = chain.event(
        &po,
        EventPayload::BreakGlassReview(BreakGlassReview {
            request: bg.id(),
            finding: Finding::Justified,
            notes: Commitment::new(&[3; 32], b"notes"),
        }),
    );
    ids.push(commit_one(&mut chain, review));
    // A refused event (a replayed grant) changes nothing.
    let before = *chain.state.patient_events(&a).unwrap();
    let replay = chain.blocks[0].block.events[0].clone();
    let c = chain.commit(vec![replay]);
    assert_eq!(c.rejected.len(), 1);
    let st = &chain.state;
    let rec = *st.patient_events(&a).unwrap();
    assert_eq!(rec, before);
    let mut head = Hash::ZERO;
    for id in &ids {
        head = hash_in(
            "twinledger v2 patient-events",
            &[head.as_bytes().as_slice(), id.as_bytes()].concat(),
        );
    }
    assert_eq!(
        rec,
        PatientEvents {
            count: ids.len() as u64,
            head
        }
    );
    st.prove(Table::PatientEvents, &a)
        .verify(st.state_root(), Table::PatientEvents, &a, Some(&rec))
        .unwrap();
    // No event concerned bob: no record, proven absent.
    assert!(st.patient_events(&bob).is_none());
    st.prove(Table::PatientEvents, &bob)
        .verify::<_, PatientEvents>(st.state_root(), Table::PatientEvents, &bob, None)
        .unwrap();
}

/// A record of the model: (table tag, key, value).
type Record = (u8, Vec<u8>, Vec<u8>);

fn record() -> impl Strategy<Value = Record> {
    (
        0u8..14,
        proptest::collection::vec(any::<u8>(), 0..4),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
}

fn check_against_model(
    batches: Vec<Vec<Record>>,
    probes: Vec<(u8, Vec<u8>)>,
) -> Result<(), TestCaseError> {
    let mut map = StateMap::new();
    let mut model: BTreeMap<(u8, Vec<u8>), Vec<u8>> = BTreeMap::new();
    for batch in batches {
        for (t, k, v) in &batch {
            model.insert((*t, k.clone()), v.clone());
        }
        map.set_records(
            batch
                .into_iter()
                .map(|(t, k, v)| (Table::from_tag(t).unwrap(), k, v)),
        );
        // The root is the document's root of the model's records.
        let want = reference::root(&reference::leaves(
            model
                .iter()
                .map(|((t, k), v)| (*t, k.as_slice(), v.as_slice())),
        ));
        prop_assert_eq!(map.root(), want);
        prop_assert_eq!(map.len(), model.len());
    }
    let root = map.root();
    // Every key proves present with its value, and nothing else.
    for ((t, k), v) in &model {
        let table = Table::from_tag(*t).unwrap();
        let p = map.prove(table, k);
        prop_assert_eq!(p.value.as_ref(), Some(v));
        prop_assert!(p.verify_bytes(root, table, k, Some(v)).is_ok());
        let doc = reference::decode_proof(&p.to_bytes()).unwrap();
        prop_assert_eq!(reference::verify(&root, *t, k, &doc), Ok(Some(v.clone())));
        let mut wrong = v.clone();
        wrong.push(0);
        prop_assert!(p.verify_bytes(root, table, k, Some(&wrong)).is_err());
        prop_assert!(p.verify_bytes(root, table, k, None).is_err());
        // A tampered value inside the proof is refused by the Merkle check.
        let mut forged = p.clone();
        forged.value = Some(wrong.clone());
        prop_assert!(forged.verify_bytes(root, table, k, Some(&wrong)).is_err());
        // Claiming absence with the membership path is refused.
        forged.value = None;
        prop_assert!(forged.verify_bytes(root, table, k, None).is_err());
        // A tampered sibling is refused.
        if let Some(s) = p.siblings.first() {
            let mut t2 = p.clone();
            t2.siblings[0] = match s {
                statemap::ProofNode::Null => statemap::ProofNode::Internal {
                    left: EMPTY_ROOT,
                    right: EMPTY_ROOT,
                },
                _ => statemap::ProofNode::Null,
            };
            prop_assert!(t2.verify_bytes(root, table, k, Some(v)).is_err());
        }
    }
    // Every other key proves absent, and not present.
    for (t, k) in probes {
        if model.contains_key(&(t, k.clone())) {
            continue;
        }
        let table = Table::from_tag(t).unwrap();
        let p = map.prove(table, &k);
        prop_assert!(p.value.is_none());
        prop_assert!(p.verify_bytes(root, table, &k, None).is_ok());
        let doc = reference::decode_proof(&p.to_bytes()).unwrap();
        prop_assert_eq!(reference::verify(&root, t, &k, &doc), Ok(None));
        prop_assert!(p.verify_bytes(root, table, &k, Some(&[0])).is_err());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// §6.10: `StateMap` agrees with a `BTreeMap` model hashed by the document's algorithm,
    /// over several updates (later writes of a key win).
    #[test]
    fn state_map_matches_the_reference_model(
        batches in proptest::collection::vec(proptest::collection::vec(record(), 0..40), 1..4),
        probes in proptest::collection::vec((0u8..14, proptest::collection::vec(any::<u8>(), 0..4)), 0..30),
    ) {
        check_against_model(batches, probes)?;
    }
}

/// A governance event by the first dev validator, approved by the first three.
fn governance(
    chain: &mut DevChain,
    seq: u64,
    action: twinledger_core::event::governance::GovernanceAction,
) -> SignedEvent {
    common::governance_event(chain, seq, action)
}

/// §6.10 and issue #13 (typed state writes): a record is written only through its `Tx` method,
/// which sets the typed map, its derived indexes and the state-map write together. After every
/// block of a chain that writes every table of §6.10 (registrations, grants by the patient and
/// by a delegate, revocations, delegations, a key rotation, break-glass accesses reviewed and
/// not, a twin anchor, enrolments and revocations of actors, organisations and auditors, a
/// double-sign report, a validator-set change brought into force), and at genesis, every
/// record of every typed map is in the state map with the same encoding, the map holds nothing
/// else (its root is the root of the typed records), and the derived indexes match the records.
#[test]
fn every_record_is_in_the_state_map_and_nothing_else() {
    use twinledger_core::consensus::{DoubleSign, Vote, VoteKind};
    use twinledger_core::devkit::dev_key;
    use twinledger_core::event::delegation::{DelegateGrant, DelegateRevoke, Scope};
    use twinledger_core::event::governance::GovernanceAction;
    use twinledger_core::event::integrity::TwinAnchor;
    use twinledger_core::event::membership::{ActorEnrol, ActorRevoke};
    use twinledger_core::event::rotation::KeyRotation;
    use twinledger_core::keys::sig_domain;

    let mut chain = DevChain::new(4);
    chain.state.check_map_consistency().unwrap();
    let check = |chain: &DevChain, c: &twinledger_core::devkit::Committed| {
        assert!(c.rejected.is_empty(), "{:?}", c.rejected);
        chain.state.check_map_consistency().unwrap();
    };
    let alice = patient("alice");
    let carol = patient("carol");
    let (a, cl) = (alice.public(), carol.public());
    let guardian = dev_key("guardian/bob");
    let phys = chain.physician.clone();
    let nurse = chain.nurse.clone();
    let hosp = chain.hospital.clone();
    let po = chain.privacy_officer.clone();
    let v0 = chain.validators[0].clone();
    let scope = Scope {
        categories: cats(&[DataCategory::VitalSigns, DataCategory::Imaging]),
        purposes: purposes(&[Purpose::Treat]),
        actions: actions(&[Action::Read]),
    };

    // Block 1: registrations and first records of most tables.
    let grant = chain.event(&alice, vitals_grant(&a, &phys.public()));
    let carol_grant = chain.event(
        &carol,
        grant_payload(
            &cl,
            Grantee::Organisation(hosp.public()),
            &[DataCategory::Imaging],
            &[Purpose::Treat],
            &[Action::Read],
        ),
    );
    let delegate = chain.event(
        &alice,
        EventPayload::DelegateGrant(DelegateGrant {
            patient: a,
            delegate: guardian.public(),
            scope,
            valid_until: None,
        }),
    );
    let access = chain.event(
        &phys,
        access_payload(&a, DataCategory::VitalSigns, Purpose::Treat, Action::Read),
    );
    let bg_reviewed = chain.event(&phys, break_glass_payload(&a, DataCategory::Imaging));
    let bg_pending = chain.event(&phys, break_glass_payload(&cl, DataCategory::Genetic));
    let newbie = dev_key("actor/new-nurse");
    let enrol = chain.event(
        &hosp,
        EventPayload::ActorEnrol(ActorEnrol {
            actor: newbie.public(),
            role: Role::Nurse,
        }),
    );
    let anchor = chain.event(
        &phys,
        EventPayload::TwinAnchor(TwinAnchor {
            twin: LocalTwinId([0x42; 32]),
            patient: a,
            version: 1,
            state_hash: Hash([7; 32]),
        }),
    );
    let grant_id = grant.id();
    let delegation_id = delegate.id();
    let bg_id = bg_reviewed.id();
    let c = chain.commit(vec![
        grant,
        carol_grant,
        delegate,
        access,
        bg_reviewed,
        bg_pending,
        enrol,
        anchor,
    ]);
    check(&chain, &c);
    // The in-memory lookup by delegate (not a table: the map and its root are the records
    // above only, checked by `check`) finds alice's delegate, and no one else.
    assert!(
        chain
            .state
            .is_live_delegate_of_anyone(&guardian.public(), chain.next_time())
    );
    assert!(
        !chain
            .state
            .is_live_delegate_of_anyone(&a, chain.next_time())
    );

    // Block 2: a delegate's grant, revocations, a review, a rotation, a double-sign report,
    // governance (organisation and auditor enrolled), a second twin version.
    let by_delegate = chain.event(
        &guardian,
        grant_payload(
            &a,
            Grantee::Actor(nurse.public()),
            &[DataCategory::VitalSigns],
            &[Purpose::Treat],
            &[Action::Read],
        ),
    );
    let revoke = chain.event(&alice, revoke_payload(&a, grant_id));
    let review = chain.event(
        &po,
        EventPayload::BreakGlassReview(BreakGlassReview {
            request: bg_id,
            finding: Finding::Unjustified,
            notes: Commitment::new(&[3; 32], b"notes"),
        }),
    );
    let unenrol = chain.event(
        &hosp,
        EventPayload::ActorRevoke(ActorRevoke {
            actor: newbie.public(),
        }),
    );
    let new_key = dev_key("patient/carol-rotated");
    let chain_id = chain.state.chain_id();
    let rotate = chain.event(
        &carol,
        EventPayload::KeyRotation(KeyRotation {
            patient: cl,
            new_key: new_key.public(),
            new_key_proof: new_key.sign(
                sig_domain::KEY_ROTATION,
                &chain_id,
                &KeyRotation::proof_body(&cl, &new_key.public()),
            ),
        }),
    );
    let cp = chain.blocks[0].block.header.checkpoint();
    let v1 = chain.validators[1].clone();
    let vote = |value| Vote {
        chain_id,
        height: 1,
        round: 0,
        kind: VoteKind::Prevote,
        value,
    };
    let evidence = DoubleSign {
        first: vote(Some(cp)).sign(&v1),
        second: vote(None).sign(&v1),
    }
    .canonical();
    let report = chain.event(&v0, EventPayload::Misbehaviour(evidence));
    let clinic = dev_key("org/lakeside-clinic");
    let org_enrol = governance(
        &mut chain,
        0,
        GovernanceAction::OrgEnrol {
            org: clinic.public(),
            name: "Lakeside Clinic".into(),
        },
    );
    let auditor2 = dev_key("auditor/second");
    let auditor_enrol = governance(
        &mut chain,
        1,
        GovernanceAction::AuditorEnrol {
            auditor: auditor2.public(),
        },
    );
    let anchor2 = chain.event(
        &phys,
        EventPayload::TwinAnchor(TwinAnchor {
            twin: LocalTwinId([0x42; 32]),
            patient: a,
            version: 2,
            state_hash: Hash([8; 32]),
        }),
    );
    let c = chain.commit(vec![
        by_delegate,
        revoke,
        review,
        unenrol,
        rotate,
        report,
        org_enrol,
        auditor_enrol,
        anchor2,
    ]);
    check(&chain, &c);

    // Block 3: the delegation ends, the organisation and auditor leave, the validator set
    // changes (in force from block 5).
    let undelegate = chain.event(
        &alice,
        EventPayload::DelegateRevoke(DelegateRevoke {
            patient: a,
            delegation: delegation_id,
        }),
    );
    let org_revoke = governance(
        &mut chain,
        2,
        GovernanceAction::OrgRevoke {
            org: clinic.public(),
        },
    );
    let auditor_revoke = governance(
        &mut chain,
        3,
        GovernanceAction::AuditorRevoke {
            auditor: auditor2.public(),
        },
    );
    let mut validators = chain.validator_set().validators().to_vec();
    validators[0].power = 2;
    let change = governance(
        &mut chain,
        4,
        GovernanceAction::ValidatorSetChange {
            validators: ValidatorSet::new(validators).unwrap(),
        },
    );
    let c = chain.commit(vec![undelegate, org_revoke, auditor_revoke, change]);
    check(&chain, &c);

    // Blocks 4 and 5: the new set comes into force; its pending-validators record stays.
    let c = chain.commit(vec![]);
    check(&chain, &c);
    let access = chain.event(
        &nurse,
        access_payload(&a, DataCategory::VitalSigns, Purpose::Treat, Action::Read),
    );
    let c = chain.commit(vec![access]);
    check(&chain, &c);
    assert_ne!(
        chain.blocks[4].block.header.validators_hash,
        chain.blocks[3].block.header.validators_hash
    );

    // Every table of §6.10 was written.
    let st = &chain.state;
    fn has<K: serde::Serialize>(st: &State, table: Table, key: &K) {
        let present = st.map_value(table, key).is_some();
        assert!(present, "no {} record", table.name());
    }
    has(st, Table::Nonce, &a);
    has(st, Table::Patient, &cl);
    has(st, Table::PatientKey, &new_key.public());
    has(st, Table::Org, &clinic.public());
    has(st, Table::Actor, &newbie.public());
    has(st, Table::Auditor, &auditor2.public());
    has(st, Table::Grant, &grant_id);
    has(st, Table::Delegation, &delegation_id);
    has(st, Table::BreakGlass, &bg_id);
    has(
        st,
        Table::Twin,
        &TwinId::bound(&chain.hospital.public(), &LocalTwinId([0x42; 32])),
    );
    has(st, Table::PendingValidators, &5u64);
    has(st, Table::GovernanceSeq, &());
    has(
        st,
        Table::Misbehaviour,
        st.misbehaviours().next().unwrap().0,
    );
    has(st, Table::PatientEvents, &a);
    // The indexes hold what they should: one access awaits review, alice's only unrevoked
    // grant is her delegate's (which no longer counts, the delegation being revoked).
    assert_eq!(st.review_queue().count(), 1);
    assert_eq!(st.patient_grants(&a).count(), 1);
    assert!(!st.is_live_delegate(&a, &guardian.public(), chain.next_time()));
    assert!(!st.is_live_delegate_of_anyone(&guardian.public(), chain.next_time()));
    assert_eq!(
        decision(&c, 0),
        Decision::Deny {
            reason: DenyReason::NoCoveringGrant
        }
    );
}
