//! Benchmarks of the ledger core (`cargo bench -p twinledger-core`). Figures and the machine
//! they ran on are recorded in docs/PERFORMANCE.md.
#![allow(missing_docs)]

use std::sync::OnceLock;

use divan::{Bencher, black_box};
use twinledger_core::codes::Role;
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::MAX_EVENT_BYTES;
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::keys::verify_batch;
use twinledger_core::merkle::{self, Blake3Tree, Frontier, MemoryTree, TreeHasher};
use twinledger_core::*;

fn main() {
    divan::main();
}

fn sample_events(n: usize) -> Vec<SignedEvent> {
    let mut chain = DevChain::new(1);
    let phys = chain.physician.clone();
    (0..n)
        .map(|i| {
            let patient = dev_key(&format!("bench/patient/{i}")).public();
            chain.event(
                &phys,
                EventPayload::AccessRequest(AccessRequest {
                    patient,
                    category: DataCategory::VitalSigns,
                    purpose: Purpose::Treat,
                    action: Action::Read,
                    resource: Commitment::new(&[1; 32], &i.to_le_bytes()),
                }),
            )
        })
        .collect()
}

/// Decode one signed event from bytes and verify its signature.
#[divan::bench]
fn event_decode_and_verify(b: Bencher<'_, '_>) {
    let bytes = sample_events(1)[0].to_bytes();
    b.bench(|| {
        let ev = SignedEvent::from_bytes(black_box(&bytes), MAX_EVENT_BYTES).unwrap();
        ev.verify_signature().unwrap();
    });
}

fn signature_items(n: usize) -> Vec<(PublicKey, Vec<u8>, Signature)> {
    sample_events(n)
        .iter()
        .map(|e| (e.event.author, e.signing_message(), e.signature))
        .collect()
}

/// Batch signature verification, ZIP-215 (per call of `n` signatures; divide for the
/// per-signature cost, or read the items/s figure).
#[divan::bench(args = [64, 256])]
fn batch_verify(b: Bencher<'_, '_>, n: usize) {
    let items = signature_items(n);
    b.counter(divan::counter::ItemsCount::new(n))
        .bench(|| verify_batch(black_box(&items)).unwrap());
}

/// Batch verification of `n` signatures by `n` different keys (`batch_verify`'s events all
/// have one author, whose terms ed25519-zebra's batch check coalesces: its best case).
#[divan::bench(args = [64, 256])]
fn batch_verify_distinct_keys(b: Bencher<'_, '_>, n: usize) {
    let chain = hash::ChainId([9; 32]);
    let items: Vec<_> = (0..n)
        .map(|i| {
            let key = dev_key(&format!("bench/signer/{i}"));
            let body = i.to_le_bytes();
            let sig = key.sign(keys::sig_domain::EVENT, &chain, &body);
            let msg = keys::signing_message(keys::sig_domain::EVENT, &chain, &body);
            (key.public(), msg, sig)
        })
        .collect();
    b.counter(divan::counter::ItemsCount::new(n))
        .bench(|| verify_batch(black_box(&items)).unwrap());
}

/// The same `n` signatures verified one by one (`PublicKey::verify_raw`, ZIP-215): what
/// `batch_verify` is compared with.
#[divan::bench(args = [1, 64, 256])]
fn single_verify(b: Bencher<'_, '_>, n: usize) {
    let items = signature_items(n);
    b.counter(divan::counter::ItemsCount::new(n)).bench(|| {
        for (key, msg, sig) in black_box(&items) {
            key.verify_raw(msg, sig).unwrap();
        }
    });
}

struct Big {
    state: State,
    block: Block,
}

/// A state with 100,000 grants (10,000 patients x 10 grants of every grantee kind), and a
/// block of 1,000 access requests against it, built once.
fn big() -> &'static Big {
    static BIG: OnceLock<Big> = OnceLock::new();
    BIG.get_or_init(|| {
        let started = std::time::Instant::now();
        let mut chain = DevChain::with_limits(
            1,
            Limits {
                max_block_events: 10_000,
                ..Limits::default()
            },
        );
        let hosp = chain.hospital.public();
        let inst = chain.institute.public();
        let phys = chain.physician.public();
        let patients: Vec<Keypair> = (0..10_000)
            .map(|i| dev_key(&format!("bench/patient/{i}")))
            .collect();
        let grantees = [
            Grantee::Organisation(inst),
            Grantee::Role {
                role: Role::Researcher,
                organisation: None,
            },
            Grantee::Role {
                role: Role::Nurse,
                organisation: Some(hosp),
            },
            Grantee::Actor(chain.researcher.public()),
            Grantee::Organisation(hosp),
        ];
        let cats = [
            DataCategory::Genetic,
            DataCategory::Imaging,
            DataCategory::Laboratory,
            DataCategory::VitalSigns,
        ];
        for chunk in patients.chunks(1000) {
            let mut evs = Vec::with_capacity(10_000);
            for (pi, p) in chunk.iter().enumerate() {
                for g in 0..10 {
                    // The physician's own grant is the last one scanned for half the patients.
                    let grantee = if g == 9 && pi % 2 == 0 {
                        Grantee::Actor(phys)
                    } else {
                        grantees[g % grantees.len()]
                    };
                    evs.push(
                        chain.event(
                            p,
                            EventPayload::ConsentGrant(ConsentGrant {
                                patient: p.public(),
                                grantee,
                                scope: Scope {
                                    categories: [cats[g % cats.len()], DataCategory::VitalSigns]
                                        .into_iter()
                                        .collect(),
                                    purposes: [Purpose::Treat, Purpose::Research]
                                        .into_iter()
                                        .collect(),
                                    actions: [Action::Read].into_iter().collect(),
                                },
                                valid_from: Timestamp(0),
                                valid_until: None,
                            }),
                        ),
                    );
                }
            }
            let c = chain.commit(evs);
            assert!(c.rejected.is_empty());
        }
        let physician = chain.physician.clone();
        let reqs: Vec<_> = (0..1000)
            .map(|i| {
                chain.event(
                    &physician,
                    EventPayload::AccessRequest(AccessRequest {
                        patient: patients[(i * 7919) % patients.len()].public(),
                        category: DataCategory::VitalSigns,
                        purpose: Purpose::Treat,
                        action: Action::Read,
                        resource: Commitment::new(&[2; 32], &(i as u64).to_le_bytes()),
                    }),
                )
            })
            .collect();
        let proposer = chain.validators[0].public();
        let built = chain
            .state
            .build_block(proposer, chain.next_time(), reqs)
            .unwrap();
        assert!(built.rejected.is_empty());
        eprintln!(
            "built the 100,000-grant state (10 blocks of 10,000 grants) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Big {
            state: chain.state,
            block: built.block,
        }
    })
}

/// Apply (re-execute and check) a block of 1,000 access requests against 100,000 grants,
/// including every signature check.
#[divan::bench(sample_count = 20)]
fn apply_block_1000_requests_100k_grants(b: Bencher<'_, '_>) {
    let big = big();
    b.counter(divan::counter::ItemsCount::new(1000usize))
        .bench(|| big.state.apply_block(black_box(&big.block)).unwrap());
}

/// The state map of the 100,000-grant state (about 130,000 records): proof of a grant record
/// (membership) and of an absent grant id (non-membership), and their verification.
fn proofs() -> &'static (StateProof, StateProof, EventId, EventId) {
    static P: OnceLock<(StateProof, StateProof, EventId, EventId)> = OnceLock::new();
    P.get_or_init(|| {
        let st = &big().state;
        let (present, _) = st
            .patient_grants(&dev_key("bench/patient/4242").public())
            .next()
            .unwrap();
        let absent = EventId([0x5a; 32]);
        let m = st.prove(Table::Grant, present);
        let n = st.prove(Table::Grant, &absent);
        eprintln!(
            "state map: {} records; membership proof {} bytes ({} siblings, value {} bytes), \
             non-membership proof {} bytes ({} siblings, leaf: {})",
            st.map_len(),
            m.to_bytes().len(),
            m.siblings.len(),
            m.value.as_ref().map_or(0, Vec::len),
            n.to_bytes().len(),
            n.siblings.len(),
            n.leaf.is_some()
        );
        (m, n, *present, absent)
    })
}

/// Prove a grant record present in the 100,000-grant state.
#[divan::bench]
fn state_prove_member_100k_grants(b: Bencher<'_, '_>) {
    let st = &big().state;
    let (_, _, id, _) = proofs();
    b.bench(|| black_box(st.prove(Table::Grant, black_box(id))));
}

/// Verify that proof against the state root.
#[divan::bench]
fn state_verify_member_100k_grants(b: Bencher<'_, '_>) {
    let st = &big().state;
    let (m, _, id, _) = proofs();
    let root = st.state_root();
    let want = st.grant(id).unwrap().clone();
    b.bench(|| {
        m.verify(root, Table::Grant, black_box(id), Some(&want))
            .unwrap()
    });
}

/// Verify the non-membership proof of an absent grant id.
#[divan::bench]
fn state_verify_absent_100k_grants(b: Bencher<'_, '_>) {
    let st = &big().state;
    let (_, n, _, absent) = proofs();
    let root = st.state_root();
    b.bench(|| {
        n.verify::<_, ()>(root, Table::Grant, black_box(absent), None)
            .unwrap()
    });
}

/// Append one leaf to the event log's frontier (at 1M leaves) and compute the new root.
#[divan::bench]
fn log_append_and_root(b: Bencher<'_, '_>) {
    let mut f = Frontier::new();
    for i in 0u64..1_000_000 {
        f.push::<Blake3Tree>(Blake3Tree::leaf(&i.to_le_bytes()));
    }
    let mut i = 0u64;
    b.bench_local(|| {
        i += 1;
        f.push::<Blake3Tree>(Blake3Tree::leaf(&i.to_le_bytes()));
        black_box(f.root::<Blake3Tree>())
    });
}

const M: u64 = 1 << 20;

fn million() -> &'static MemoryTree<Blake3Tree> {
    static T: OnceLock<MemoryTree<Blake3Tree>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = MemoryTree::new();
        for i in 0..M {
            t.push_leaf_data(&i.to_le_bytes());
        }
        t
    })
}

/// Inclusion proof generation in a log of 1,048,576 leaves.
#[divan::bench]
fn inclusion_proof_1m(b: Bencher<'_, '_>) {
    let t = million();
    let mut i = 0u64;
    b.bench_local(|| {
        i = (i + 7919) % M;
        black_box(t.inclusion_proof(i, M).unwrap())
    });
}

/// Inclusion proof verification in a log of 1,048,576 leaves.
#[divan::bench]
fn inclusion_verify_1m(b: Bencher<'_, '_>) {
    let t = million();
    let root = t.root();
    let idx = 777_777u64;
    let proof = t.inclusion_proof(idx, M).unwrap();
    let leaf = Blake3Tree::leaf(&idx.to_le_bytes());
    b.bench(|| {
        merkle::verify_inclusion::<Blake3Tree>(idx, M, &leaf, black_box(&proof), &root).unwrap()
    });
}

/// Consistency proof generation between 1,000,000 and 1,048,576 leaves.
#[divan::bench]
fn consistency_proof_1m(b: Bencher<'_, '_>) {
    let t = million();
    b.bench(|| black_box(t.consistency_proof(1_000_000, M).unwrap()));
}

/// Consistency proof verification between 1,000,000 and 1,048,576 leaves.
#[divan::bench]
fn consistency_verify_1m(b: Bencher<'_, '_>) {
    let t = million();
    let old = t.root_at(1_000_000).unwrap();
    let new = t.root();
    let proof = t.consistency_proof(1_000_000, M).unwrap();
    b.bench(|| {
        merkle::verify_consistency::<Blake3Tree>(1_000_000, M, black_box(&proof), &old, &new)
            .unwrap()
    });
}
