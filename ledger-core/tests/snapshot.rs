//! State snapshots (issue #13, ADR 0010): `State::from_snapshot(to_snapshot(s))` is `s` for
//! every varied chain (every accessor, the roots, the next block), and a snapshot that differs
//! from what it claims in any way is refused with the reason.

mod common;

use common::*;
use proptest::prelude::*;
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::break_glass::{BreakGlassReview, Finding};
use twinledger_core::event::delegation::{DelegateGrant, DelegateRevoke, Scope};
use twinledger_core::event::governance::GovernanceAction;
use twinledger_core::event::integrity::TwinAnchor;
use twinledger_core::event::sealing::{KeyRelease, TwinErase, TwinSeal};
use twinledger_core::state::{Snapshot, SnapshotError};
use twinledger_core::*;

#[derive(Clone, Debug)]
enum Op {
    Grant { patient: u8, actor: u8 },
    Revoke(u8),
    Access { patient: u8, actor: u8 },
    BreakGlass { patient: u8 },
    Review(u8),
    Delegate { patient: u8 },
    Undelegate(u8),
    Anchor { patient: u8, twin: u8 },
    Seal { patient: u8 },
    Release(u8),
    Erase(u8),
    EnrolAuditor(u8),
    ChangeValidators,
    EndBlock,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u8..3).prop_map(|(patient, actor)| Op::Grant { patient, actor }),
        1 => any::<u8>().prop_map(Op::Revoke),
        4 => (0u8..5, 0u8..3).prop_map(|(patient, actor)| Op::Access { patient, actor }),
        1 => (0u8..4).prop_map(|patient| Op::BreakGlass { patient }),
        1 => any::<u8>().prop_map(Op::Review),
        1 => (0u8..4).prop_map(|patient| Op::Delegate { patient }),
        1 => any::<u8>().prop_map(Op::Undelegate),
        1 => (0u8..4, 0u8..3).prop_map(|(patient, twin)| Op::Anchor { patient, twin }),
        1 => (0u8..4).prop_map(|patient| Op::Seal { patient }),
        1 => any::<u8>().prop_map(Op::Release),
        1 => any::<u8>().prop_map(Op::Erase),
        1 => (0u8..3).prop_map(Op::EnrolAuditor),
        1 => Just(Op::ChangeValidators),
        3 => Just(Op::EndBlock),
    ]
}

/// A governance event by the first dev validator, approved by the first three.
fn governance(chain: &mut DevChain, action: GovernanceAction) -> SignedEvent {
    let seq = chain.state.governance_seq();
    common::governance_event(chain, seq, action)
}

fn scope() -> Scope {
    Scope {
        categories: cats(&[DataCategory::VitalSigns]),
        purposes: purposes(&[Purpose::Treat]),
        actions: actions(&[Action::Read]),
    }
}

/// Builds a chain from `ops`, one event per op and a block at every `EndBlock`; an event the
/// chain refuses is left out (the ops are not a model, they only vary the state).
fn build(ops: &[Op]) -> DevChain {
    let mut chain = DevChain::new(4);
    let patients: Vec<Keypair> = (0..5).map(|i| patient(&format!("p{i}"))).collect();
    let actors = [
        chain.physician.clone(),
        chain.nurse.clone(),
        chain.researcher.clone(),
    ];
    let guardian = dev_key("guardian/snap");
    let po = chain.privacy_officer.clone();
    let mut grants: Vec<(usize, EventId)> = Vec::new();
    let mut delegations: Vec<(usize, EventId)> = Vec::new();
    let mut glass: Vec<EventId> = Vec::new();
    let mut twins = [0u64; 3];
    // A custodian (role service) of the hospital, for sealed versions (2.4), enrolled first.
    let custodian = dev_key("actor/custodian-snap");
    let hosp = chain.hospital.clone();
    let enrol = chain.event(
        &hosp,
        EventPayload::ActorEnrol(twinledger_core::event::membership::ActorEnrol {
            actor: custodian.public(),
            role: Role::Service,
        }),
    );
    chain.commit(vec![enrol]);
    let mut sealed_versions: Vec<(usize, u64)> = Vec::new();
    let mut seals = 0u64;
    let mut releases = 0u8;
    let sealed_twin = TwinId::bound(&hosp.public(), &LocalTwinId([0xee; 32]));
    let mut pending: Vec<SignedEvent> = Vec::new();
    let mut governance_in_block = false;
    let mut ops = ops.to_vec();
    ops.push(Op::EndBlock);
    for op in ops {
        let ev = match op {
            Op::Grant { patient, actor } => {
                let p = &patients[patient as usize];
                let ev = chain.event(
                    p,
                    vitals_grant(&p.public(), &actors[actor as usize].public()),
                );
                grants.push((patient as usize, ev.id()));
                ev
            }
            Op::Revoke(i) if !grants.is_empty() => {
                let (p, id) = grants.remove(i as usize % grants.len());
                let p = &patients[p];
                chain.event(p, revoke_payload(&p.public(), id))
            }
            Op::Access { patient, actor } => chain.event(
                &actors[actor as usize],
                access_payload(
                    &patients[patient as usize].public(),
                    DataCategory::VitalSigns,
                    Purpose::Treat,
                    Action::Read,
                ),
            ),
            Op::BreakGlass { patient } => {
                let ev = chain.event(
                    &actors[0],
                    break_glass_payload(
                        &patients[patient as usize].public(),
                        DataCategory::Imaging,
                    ),
                );
                glass.push(ev.id());
                ev
            }
            Op::Review(i) if !glass.is_empty() => {
                let request = glass.remove(i as usize % glass.len());
                chain.event(
                    &po,
                    EventPayload::BreakGlassReview(BreakGlassReview {
                        request,
                        finding: Finding::Justified,
                        notes: Commitment::new(&[3; 32], b"notes"),
                    }),
                )
            }
            Op::Delegate { patient } => {
                let p = &patients[patient as usize];
                let ev = chain.event(
                    p,
                    EventPayload::DelegateGrant(DelegateGrant {
                        patient: p.public(),
                        delegate: guardian.public(),
                        scope: scope(),
                        valid_until: None,
                    }),
                );
                delegations.push((patient as usize, ev.id()));
                ev
            }
            Op::Undelegate(i) if !delegations.is_empty() => {
                let (p, delegation) = delegations.remove(i as usize % delegations.len());
                let p = &patients[p];
                chain.event(
                    p,
                    EventPayload::DelegateRevoke(DelegateRevoke {
                        patient: p.public(),
                        delegation,
                    }),
                )
            }
            Op::Anchor { patient, twin } => {
                twins[twin as usize] += 1;
                chain.event(
                    &actors[0],
                    EventPayload::TwinAnchor(TwinAnchor {
                        twin: LocalTwinId([twin; 32]),
                        patient: patients[patient as usize].public(),
                        version: twins[twin as usize],
                        state_hash: Hash([twin ^ 0x5a; 32]),
                    }),
                )
            }
            Op::Seal { patient } => {
                // One twin whose versions are sealed in turn (its own local id).
                seals += 1;
                sealed_versions.push((patient as usize, seals));
                chain.event(
                    &actors[0],
                    EventPayload::TwinSeal(TwinSeal {
                        twin: LocalTwinId([0xee; 32]),
                        patient: patients[patient as usize].public(),
                        version: seals,
                        state_hash: Hash([0x11; 32]),
                        category: DataCategory::VitalSigns,
                        ciphertext_hash: Hash([0x22; 32]),
                        ciphertext_size: seals * 1000,
                        custodian: custodian.public(),
                    }),
                )
            }
            Op::Release(i) if !sealed_versions.is_empty() => {
                let (p, version) = sealed_versions[i as usize % sealed_versions.len()];
                releases = releases.wrapping_add(1);
                chain.event(
                    &custodian,
                    EventPayload::KeyRelease(KeyRelease {
                        patient: patients[p].public(),
                        twin: sealed_twin,
                        version,
                        access: EventId([releases; 32]),
                        requester: actors[2].public(),
                        request: Hash([releases; 32]),
                    }),
                )
            }
            Op::Erase(i) if !sealed_versions.is_empty() => {
                let (p, version) = sealed_versions.remove(i as usize % sealed_versions.len());
                chain.event(
                    &actors[0],
                    EventPayload::TwinErase(TwinErase {
                        patient: patients[p].public(),
                        twin: sealed_twin,
                        version,
                    }),
                )
            }
            // Governance approvals sign the sequence before the event: one per block.
            Op::EnrolAuditor(i) if !governance_in_block => {
                governance_in_block = true;
                governance(
                    &mut chain,
                    GovernanceAction::AuditorEnrol {
                        auditor: dev_key(&format!("auditor/snap{i}")).public(),
                    },
                )
            }
            Op::ChangeValidators if !governance_in_block => {
                governance_in_block = true;
                let mut validators = chain.validator_set().validators().to_vec();
                validators[0].power += 1;
                governance(
                    &mut chain,
                    GovernanceAction::ValidatorSetChange {
                        validators: ValidatorSet::new(validators).unwrap(),
                    },
                )
            }
            Op::EndBlock => {
                let _ = chain.commit(std::mem::take(&mut pending));
                governance_in_block = false;
                continue;
            }
            _ => continue,
        };
        pending.push(ev);
    }
    chain
}

/// Everything a caller can ask the state, as one comparable value.
fn answers(st: &State, chain: &DevChain) -> String {
    let mut keys: Vec<PublicKey> = (0..5).map(|i| patient(&format!("p{i}")).public()).collect();
    keys.extend([
        chain.physician.public(),
        chain.nurse.public(),
        chain.researcher.public(),
        chain.hospital.public(),
        chain.institute.public(),
        chain.auditor.public(),
        chain.privacy_officer.public(),
        dev_key("guardian/snap").public(),
        dev_key("auditor/snap1").public(),
    ]);
    keys.extend(chain.validators.iter().map(|k| k.public()));
    let snap = st.to_snapshot();
    let mut out = format!(
        "{} {} {} {} {} {} {} {:?} {:?} {:?}\n",
        st.chain_id(),
        st.height(),
        st.last_block_hash(),
        st.last_time().0,
        st.state_hash(),
        st.state_root(),
        st.log_root(),
        st.log_size(),
        st.map_len(),
        st.governance_seq(),
    );
    for h in st.height() + 1..st.height() + 4 {
        out += &format!("set {h} {:?}\n", st.validators_for(h).hash());
    }
    out += &format!("queue {:?}\n", st.review_queue().collect::<Vec<_>>());
    out += &format!(
        "misbehaviour {:?}\n",
        st.misbehaviours().collect::<Vec<_>>()
    );
    let t = chain.next_time();
    for k in &keys {
        out += &format!(
            "{k}: {} {:?} {:?} {:?} {:?} {:?} {} {:?} {:?}\n",
            st.next_seq(k),
            st.patient(k),
            st.patient_of_key(k),
            st.actor(k),
            st.organisation(k),
            st.patient_events(k),
            st.is_auditor(k),
            st.patient_grants(k).collect::<Vec<_>>(),
            keys.iter()
                .map(|d| st.is_live_delegate(k, d, t))
                .collect::<Vec<_>>(),
        );
        out += &format!("{}\n", hex::encode(st.prove(Table::Nonce, k).to_bytes()));
    }
    for (id, _) in &snap.grants {
        out += &format!("{:?}\n", st.grant(id));
        out += &hex::encode(st.prove(Table::Grant, id).to_bytes());
    }
    for (id, _) in &snap.delegations {
        out += &format!("{:?}\n", st.delegation(id));
    }
    for (id, _) in &snap.break_glass {
        out += &format!("{:?}\n", st.break_glass(id));
    }
    for (id, _) in &snap.twins {
        out += &format!("{:?}\n", st.twin(id));
    }
    for t in 0..3u8 {
        out += &format!("{:?}\n", st.twin(&TwinId([t; 32])));
    }
    out
}

/// The round trip through bytes: what a node writes and reads back.
fn restore(genesis: &Genesis, st: &State) -> Result<State, SnapshotError> {
    let bytes = st.to_snapshot().to_bytes();
    State::from_snapshot(genesis, Snapshot::from_bytes(&bytes)?)
}

fn check_round_trip(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut chain = build(ops);
    let st = chain.state.clone();
    let back = restore(&chain.genesis, &st).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(back.state_root(), st.state_root());
    prop_assert_eq!(back.log_root(), st.log_root());
    prop_assert_eq!(back.to_snapshot(), st.to_snapshot());
    prop_assert_eq!(answers(&back, &chain), answers(&st, &chain));
    if let Err(e) = back.check_map_consistency() {
        prop_assert!(false, "{}", e);
    }
    if let Some(last) = chain.blocks.last() {
        back.check_header(&last.block.header)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    // The next block: built on the original, applied to both, the same results and state.
    let (proposer, time) = (chain.validators[0].public(), chain.next_time());
    let candidates: Vec<SignedEvent> = {
        let p = patient("p0");
        let phys = chain.physician.public();
        vec![
            chain.event(&p, vitals_grant(&p.public(), &phys)),
            chain.event(
                &chain.physician.clone(),
                access_payload(
                    &p.public(),
                    DataCategory::VitalSigns,
                    Purpose::Treat,
                    Action::Read,
                ),
            ),
        ]
    };
    let built = st.build_block(proposer, time, candidates).unwrap();
    let (a, ra) = st.apply_block(&built.block).unwrap();
    let (b, rb) = back
        .apply_block(&built.block)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(ra, rb);
    prop_assert_eq!(a.state_root(), b.state_root());
    prop_assert_eq!(a.to_snapshot(), b.to_snapshot());
    prop_assert_eq!(answers(&a, &chain), answers(&b, &chain));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For a varied chain, the state rebuilt from its snapshot (through its bytes) has the same
    /// state root, log root, record set and answers to every public accessor (proofs
    /// included) as the original, passes the typed-write consistency check, matches the last
    /// block's header, and the next block applied to both gives identical results and states.
    #[test]
    fn a_restored_snapshot_is_the_state_it_was_taken_from(
        ops in proptest::collection::vec(op(), 0..50),
    ) {
        check_round_trip(&ops)?;
    }
}

/// A chain that writes every table, for the refusal tests.
fn varied() -> DevChain {
    use Op::*;
    build(&[
        Grant {
            patient: 0,
            actor: 0,
        },
        Grant {
            patient: 1,
            actor: 1,
        },
        Delegate { patient: 0 },
        BreakGlass { patient: 1 },
        BreakGlass { patient: 2 },
        Anchor {
            patient: 0,
            twin: 1,
        },
        Seal { patient: 0 },
        Seal { patient: 0 },
        EnrolAuditor(1),
        EndBlock,
        Access {
            patient: 0,
            actor: 0,
        },
        Review(0),
        Revoke(0),
        ChangeValidators,
        EndBlock,
        Undelegate(0),
        Release(0),
        Erase(1),
        EndBlock,
    ])
}

fn refused(genesis: &Genesis, snap: Snapshot) -> SnapshotError {
    State::from_snapshot(genesis, snap).expect_err("the snapshot must be refused")
}

/// A snapshot with one record changed (any table), one record added or one removed rebuilds
/// to another state root than it claims and is refused, naming both roots.
#[test]
fn a_snapshot_with_one_record_changed_is_refused_by_the_root_check() {
    let chain = varied();
    let g = &chain.genesis;
    let good = chain.state.to_snapshot();
    // The varied chain writes the 2.4 tables too: a sealed version erased, one released.
    assert_eq!(good.sealed.len(), 2);
    assert_eq!(
        good.sealed
            .iter()
            .filter(|(_, r)| r.erased_at.is_some())
            .count(),
        1
    );
    assert_eq!(good.releases.len(), 1);
    State::from_snapshot(g, good.clone()).unwrap();
    assert!(good.pending_validators.is_some() || !good.scheduled_validators.is_empty());

    let mut s = good.clone();
    s.nonces[0].1 += 1;
    let e = refused(g, s);
    assert!(
        matches!(e, SnapshotError::RootMismatch { claimed, .. } if claimed == good.state_root),
        "{e}"
    );

    let mut s = good.clone();
    s.grants[0].1.revoked_at = Some(99);
    assert!(matches!(refused(g, s), SnapshotError::RootMismatch { .. }));

    let mut s = good.clone();
    s.break_glass.pop();
    assert!(matches!(refused(g, s), SnapshotError::RootMismatch { .. }));

    let mut s = good.clone();
    s.twins.push((TwinId([0xff; 32]), s.twins[0].1));
    assert!(matches!(refused(g, s), SnapshotError::RootMismatch { .. }));

    let mut s = good.clone();
    s.governance_seq += 1;
    assert!(matches!(refused(g, s), SnapshotError::RootMismatch { .. }));

    let mut s = good.clone();
    s.patient_events[0].1.count += 1;
    assert!(matches!(refused(g, s), SnapshotError::RootMismatch { .. }));

    // The claimed root changed instead: still refused (the records are the truth).
    let mut s = good.clone();
    s.state_root = Hash([1; 32]);
    assert!(matches!(refused(g, s), SnapshotError::RootMismatch { .. }));

    // And through the bytes: a record's byte flipped.
    let bytes = good.to_bytes();
    let one = codec::encode(&good.grants[0].1);
    let at = bytes
        .windows(one.len())
        .position(|w| w == one.as_slice())
        .unwrap();
    let mut bad = bytes.clone();
    bad[at + one.len() - 1] ^= 1; // the grant's last field (its revocation height option)
    match Snapshot::from_bytes(&bad) {
        Ok(s) => assert!(matches!(refused(g, s), SnapshotError::RootMismatch { .. })),
        Err(SnapshotError::Decode(_)) => {}
        Err(e) => panic!("{e}"),
    }
}

/// Everything else a snapshot carries is checked too: version, chain, limits, key order, the
/// pending set against its record, and the header fields the node compares.
#[test]
fn a_snapshot_that_differs_from_its_chain_is_refused_naming_what_differs() {
    let chain = varied();
    let g = &chain.genesis;
    let good = chain.state.to_snapshot();

    // Version 1 (before the sealed tables of 2.4) is no longer read.
    let mut s = good.clone();
    s.version = 1;
    assert_eq!(refused(g, s), SnapshotError::Version { got: 1 });

    let other = DevChain::with_limits(
        4,
        Limits {
            max_block_events: 7,
            ..Limits::default()
        },
    );
    assert!(matches!(
        refused(&other.genesis, good.clone()),
        SnapshotError::WrongChain { .. }
    ));

    let mut s = good.clone();
    s.limits.max_block_events = 7;
    assert!(matches!(refused(g, s), SnapshotError::Limits { .. }));

    let mut s = good.clone();
    s.nonces.swap(0, 1);
    assert!(matches!(
        refused(g, s),
        SnapshotError::Unsorted {
            table: "nonce",
            index: 1
        }
    ));

    let mut s = good.clone();
    let dup = s.orgs[0].clone();
    s.orgs.insert(0, dup);
    assert!(matches!(
        refused(g, s),
        SnapshotError::Unsorted {
            table: "organisation",
            ..
        }
    ));

    // The validator sets are not in the map: the pending one is bound to its record, the one
    // in force to the header's validators hash.
    let last = &chain.blocks.last().unwrap().block.header;
    let mut s = good.clone();
    let at = s.height + 1;
    s.pending_validators = Some((at, chain.validator_set().clone()));
    assert_eq!(refused(g, s), SnapshotError::PendingValidators { at });

    let mut s = good.clone();
    let mut vals = s.validators.validators().to_vec();
    vals[1].power += 5;
    s.validators = ValidatorSet::new(vals).unwrap();
    let st = State::from_snapshot(g, s).unwrap();
    let e = st.check_header(last).unwrap_err();
    assert!(
        matches!(
            e,
            SnapshotError::Header {
                field: "validators_hash",
                ..
            }
        ),
        "{e}"
    );

    // Header fields: the position, the time and the log.
    let st = State::from_snapshot(g, good.clone()).unwrap();
    st.check_header(last).unwrap();
    let before = &chain.blocks[chain.blocks.len() - 2].block.header;
    assert!(matches!(
        st.check_header(before).unwrap_err(),
        SnapshotError::Header {
            field: "height",
            ..
        }
    ));
    let mut s = good.clone();
    s.last_time = Timestamp(s.last_time.0 + 1);
    let e = State::from_snapshot(g, s)
        .unwrap()
        .check_header(last)
        .unwrap_err();
    assert!(
        matches!(e, SnapshotError::Header { field: "time", .. }),
        "{e}"
    );
    let mut s = good.clone();
    s.last_block_hash = Hash([9; 32]);
    let e = State::from_snapshot(g, s)
        .unwrap()
        .check_header(last)
        .unwrap_err();
    assert!(
        matches!(
            e,
            SnapshotError::Header {
                field: "block hash",
                ..
            }
        ),
        "{e}"
    );
    let mut s = good.clone();
    s.log = twinledger_core::merkle::Frontier::new();
    let e = State::from_snapshot(g, s)
        .unwrap()
        .check_header(last)
        .unwrap_err();
    assert!(
        matches!(
            e,
            SnapshotError::Header {
                field: "log_root",
                ..
            }
        ),
        "{e}"
    );

    // Truncated bytes do not decode.
    let bytes = good.to_bytes();
    assert!(matches!(
        Snapshot::from_bytes(&bytes[..bytes.len() - 1]),
        Err(SnapshotError::Decode(_))
    ));
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        Snapshot::from_bytes(&long),
        Err(SnapshotError::Decode(_))
    ));
}
