//! Shared helpers for the ledger-core integration tests.
#![allow(dead_code)]

use twinledger_core::codes::{Actions, Categories, Code, Purposes, Role};
use twinledger_core::devkit::{Committed, DevChain, dev_key};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::break_glass::BreakGlassRequest;
use twinledger_core::event::consent::{ConsentGrant, ConsentRevoke, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::event::governance::{Governance, GovernanceAction};
use twinledger_core::*;

pub fn patient(label: &str) -> Keypair {
    dev_key(&format!("patient/{label}"))
}

pub fn cats(c: &[DataCategory]) -> Categories {
    c.iter().copied().collect()
}
pub fn purposes(p: &[Purpose]) -> Purposes {
    p.iter().copied().collect()
}
pub fn actions(a: &[Action]) -> Actions {
    a.iter().copied().collect()
}

pub fn grant_payload(
    patient: &PublicKey,
    grantee: Grantee,
    c: &[DataCategory],
    p: &[Purpose],
    a: &[Action],
) -> EventPayload {
    EventPayload::ConsentGrant(ConsentGrant {
        patient: *patient,
        grantee,
        scope: Scope {
            categories: cats(c),
            purposes: purposes(p),
            actions: actions(a),
        },
        valid_from: Timestamp(0),
        valid_until: None,
    })
}

/// A grant to `actor` of reading `patient`'s vital signs for treatment.
pub fn vitals_grant(patient: &PublicKey, actor: &PublicKey) -> EventPayload {
    grant_payload(
        patient,
        Grantee::Actor(*actor),
        &[DataCategory::VitalSigns],
        &[Purpose::Treat],
        &[Action::Read],
    )
}

pub fn revoke_payload(patient: &PublicKey, grant: EventId) -> EventPayload {
    EventPayload::ConsentRevoke(ConsentRevoke {
        patient: *patient,
        grant,
    })
}

pub fn access_payload(
    patient: &PublicKey,
    category: DataCategory,
    purpose: Purpose,
    action: Action,
) -> EventPayload {
    EventPayload::AccessRequest(AccessRequest {
        patient: *patient,
        category,
        purpose,
        action,
        resource: Commitment::new(&[9; 32], b"twin-store://alice/observations"),
    })
}

pub fn break_glass_payload(patient: &PublicKey, category: DataCategory) -> EventPayload {
    EventPayload::BreakGlassRequest(BreakGlassRequest {
        patient: *patient,
        category,
        action: Action::Read,
        resource: Commitment::new(&[9; 32], b"twin-store://alice/imaging"),
        reason: Commitment::new(&[8; 32], b"unconscious on arrival, suspected stroke"),
    })
}

/// The decision recorded for event `i` of a committed block.
pub fn decision(c: &Committed, i: usize) -> Decision {
    match c.results.outcomes[i] {
        Outcome::Access(d) => d,
        Outcome::Applied => panic!("event {i} is not an access request"),
    }
}

/// Commits one event that must be accepted, returns its id.
pub fn commit_one(chain: &mut DevChain, ev: SignedEvent) -> EventId {
    let id = ev.id();
    let c = chain.commit(vec![ev]);
    assert!(c.rejected.is_empty(), "refused: {:?}", c.rejected);
    id
}

/// Commits one event that must be refused, returns the reason; asserts that it changed nothing
/// (log size, the author's sequence number, the state other than the empty block's time, and
/// no record in the typed state that the state map does not hold).
pub fn refuse_one(chain: &mut DevChain, ev: SignedEvent) -> RejectReason {
    let author = ev.event.author;
    let before_log = chain.state.log_size();
    let before_seq = chain.state.next_seq(&author);
    let before_state = chain.state.state_hash();
    let c = chain.commit(vec![ev]);
    assert_eq!(c.block.events.len(), 0);
    assert_eq!(chain.state.log_size(), before_log);
    assert_eq!(chain.state.next_seq(&author), before_seq);
    // An empty block writes nothing: the state map, so the state hash, is unchanged (§6.10).
    assert_eq!(chain.state.state_hash(), before_state);
    // Nor did the refused event leave a record behind in the typed state (a refusal after a
    // write is rolled back): every record is still exactly the state map's.
    chain
        .state
        .check_map_consistency()
        .expect("a refused event leaves no record behind");
    c.rejected.into_iter().next().expect("one refusal").1
}

/// RFC 9162 section 2.1.1 with SHA-256, the hash of the published RFC 6962 vectors.
#[derive(Debug)]
pub struct Sha256Tree;

impl twinledger_core::merkle::TreeHasher for Sha256Tree {
    fn empty() -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(b"").into()
    }

    fn leaf(data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update([0x00]);
        h.update(data);
        h.finalize().into()
    }

    fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update([0x01]);
        h.update(left);
        h.update(right);
        h.finalize().into()
    }
}

/// The bits of `bits` pick members of `all` (bit i for `all[i]`): the random histories' scopes.
pub fn subset<T: Code>(all: &[T], bits: u8) -> Vec<T> {
    all.iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// The six grantees of the random histories: two actors (`actors[0]`, `actors[2]`), both
/// organisations, any nurse, and the researchers of `orgs[1]`.
pub fn model_grantees(actors: &[Keypair], orgs: &[PublicKey; 2]) -> [Grantee; 6] {
    [
        Grantee::Actor(actors[0].public()),
        Grantee::Actor(actors[2].public()),
        Grantee::Organisation(orgs[0]),
        Grantee::Organisation(orgs[1]),
        Grantee::Role {
            role: Role::Nurse,
            organisation: None,
        },
        Grantee::Role {
            role: Role::Researcher,
            organisation: Some(orgs[1]),
        },
    ]
}

/// A governance event with sequence `seq` by the first dev validator, approved by the first
/// three (more than two thirds of four).
pub fn governance_event(chain: &mut DevChain, seq: u64, action: GovernanceAction) -> SignedEvent {
    let chain_id = chain.state.chain_id();
    let mut approvals: Vec<_> = chain.validators[..3]
        .iter()
        .map(|k| Governance::approve(&chain_id, seq, &action, k))
        .collect();
    approvals.sort_by_key(|a| a.validator);
    let by = chain.validators[0].clone();
    chain.event(
        &by,
        EventPayload::Governance(Governance {
            seq,
            action,
            approvals,
        }),
    )
}
