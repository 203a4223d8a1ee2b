//! Golden vectors (PROTOCOL.md appendix A): the exact bytes of a genesis, one event of every
//! payload type, a block header and a checkpoint, the consensus messages (§12) and proposer
//! selection (§12.3), pinned in `docs/protocol-vectors.json`; since 1.3 also every block of the
//! reference chain with its body, results, certificate and state write log (§6.10), the
//! validator sets, an export stream, the genesis file, a signed request, a cosignature,
//! commitments, BLAKE3 Merkle proofs, receipts and an evidence bundle (`golden/extra.rs`);
//! since 2.1 signatures on the edges of the ZIP-215 rule (`golden/zip215.rs`); since 2.2 a chain
//! in which a revoked actor's requests are recorded as denied (`golden/revoked_actor.rs`); since
//! 2.3 twin ids: a label keyed with a twin salt and the local id bound to an organisation
//! (`twin_ids`, §5.6).
//! A change to any hashed or signed format fails here; such a change needs a version bump.
//! After a deliberate format change (with a version bump), regenerate with
//! `TWINLEDGER_BLESS=1 cargo test -p twinledger-core --test golden`.

mod common;
#[path = "golden/extra.rs"]
mod extra;
#[path = "golden/observers.rs"]
mod observers;
#[path = "golden/revoked_actor.rs"]
mod revoked_actor;
#[path = "golden/sealed.rs"]
mod sealed;
#[path = "golden/state_map.rs"]
mod state_map;
#[path = "golden/state_writes.rs"]
mod state_writes;
#[path = "zip215/cases.rs"]
mod zip215_cases;
#[path = "golden/zip215.rs"]
mod zip215_vectors;

use std::collections::BTreeMap;

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
use twinledger_core::*;

fn vectors_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol-vectors.json")
}

/// Builds the reference chain: every payload type once, committed in order.
fn build() -> (DevChain, BTreeMap<&'static str, SignedEvent>) {
    let mut chain = DevChain::new(4);
    let alice = patient("alice");
    let phys = chain.physician.clone();
    let hosp = chain.hospital.clone();
    let po = chain.privacy_officer.clone();
    let v0 = chain.validators[0].clone();
    let mut out = BTreeMap::new();

    let grant = chain.event(
        &alice,
        grant_payload(
            &alice.public(),
            Grantee::Actor(phys.public()),
            &[DataCategory::VitalSigns, DataCategory::Activity],
            &[Purpose::Treat],
            &[Action::Read],
        ),
    );
    let grant_id = grant.id();
    let access = chain.event(
        &phys,
        access_payload(
            &alice.public(),
            DataCategory::VitalSigns,
            Purpose::Treat,
            Action::Read,
        ),
    );
    let guardian = dev_key("guardian/bob");
    let delegate = chain.event(
        &alice,
        EventPayload::DelegateGrant(DelegateGrant {
            patient: alice.public(),
            delegate: guardian.public(),
            scope: Scope {
                categories: cats(&[DataCategory::VitalSigns]),
                purposes: purposes(&[Purpose::Treat]),
                actions: actions(&[Action::Read]),
            },
            valid_until: Some(Timestamp(1_798_761_600_000)),
        }),
    );
    let bg = chain.event(
        &phys,
        break_glass_payload(&alice.public(), DataCategory::Imaging),
    );
    let bg_id = bg.id();
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
            patient: alice.public(),
            version: 1,
            state_hash: Hash(*blake3::hash(b"twin state v1").as_bytes()),
        }),
    );
    chain.commit(vec![
        grant.clone(),
        access.clone(),
        delegate.clone(),
        bg.clone(),
        enrol.clone(),
        anchor.clone(),
    ]);
    let delegation_id = delegate.id();

    let revoke = chain.event(&alice, revoke_payload(&alice.public(), grant_id));
    let undelegate = chain.event(
        &alice,
        EventPayload::DelegateRevoke(DelegateRevoke {
            patient: alice.public(),
            delegation: delegation_id,
        }),
    );
    let review = chain.event(
        &po,
        EventPayload::BreakGlassReview(BreakGlassReview {
            request: bg_id,
            finding: Finding::Justified,
            notes: Commitment::new(&[3; 32], b"reviewed with the attending physician"),
        }),
    );
    let unenrol = chain.event(
        &hosp,
        EventPayload::ActorRevoke(ActorRevoke {
            actor: newbie.public(),
        }),
    );
    let new_key = dev_key("patient/alice-rotated");
    let chain_id = chain.state.chain_id();
    let proof = new_key.sign(
        sig_domain::KEY_ROTATION,
        &chain_id,
        &KeyRotation::proof_body(&alice.public(), &new_key.public()),
    );
    let rotate = chain.event(
        &alice,
        EventPayload::KeyRotation(KeyRotation {
            patient: alice.public(),
            new_key: new_key.public(),
            new_key_proof: proof,
        }),
    );
    let action = GovernanceAction::AuditorEnrol {
        auditor: dev_key("auditor/second").public(),
    };
    let mut approvals: Vec<_> = chain.validators[..3]
        .iter()
        .map(|k| Governance::approve(&chain_id, 0, &action, k))
        .collect();
    approvals.sort_by_key(|a| a.validator);
    let gov = chain.event(
        &v0,
        EventPayload::Governance(Governance {
            seq: 0,
            action,
            approvals,
        }),
    );
    let c = chain.commit(vec![
        revoke.clone(),
        undelegate.clone(),
        review.clone(),
        unenrol.clone(),
        rotate.clone(),
        gov.clone(),
    ]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);

    for (name, ev) in [
        ("consent_grant", grant),
        ("consent_revoke", revoke),
        ("delegate_grant", delegate),
        ("delegate_revoke", undelegate),
        ("key_rotation", rotate),
        ("access_request", access),
        ("break_glass_request", bg),
        ("break_glass_review", review),
        ("twin_anchor", anchor),
        ("actor_enrol", enrol),
        ("actor_revoke", unenrol),
        ("governance", gov),
    ] {
        assert_eq!(ev.event.payload.kind(), name);
        out.insert(name, ev);
    }
    (chain, out)
}

/// Consensus messages (PROTOCOL.md §12) and a misbehaviour event (§5.9), at height 1 of the
/// reference chain, by its validators, and the misbehaviour event (committed in block 3 by
/// [`extra::extend`]).
fn consensus_vectors(chain: &mut DevChain) -> (serde_json::Value, SignedEvent) {
    use twinledger_core::consensus::{DoubleSign, ProposalBody, Vote, VoteKind};
    let first = &chain.blocks[0];
    let cp = first.block.header.checkpoint();
    let chain_id = chain.state.chain_id();
    let (v0, v1) = (chain.validators[0].clone(), chain.validators[1].clone());
    let vote = |kind, value| Vote {
        chain_id,
        height: 1,
        round: 0,
        kind,
        value,
    };
    let prevote = vote(VoteKind::Prevote, Some(cp)).sign(&v1);
    let prevote_nil = vote(VoteKind::Prevote, None).sign(&v1);
    let precommit = vote(VoteKind::Precommit, Some(cp)).sign(&v1);
    let precommit_nil = vote(VoteKind::Precommit, None).sign(&v1);
    let proposal = ProposalBody {
        version: consensus::CONSENSUS_VERSION,
        height: 1,
        round: 0,
        pol_round: None,
        value: cp,
    };
    let evidence = DoubleSign {
        first: prevote,
        second: prevote_nil,
    }
    .canonical();
    let report = chain.event(&v0, EventPayload::Misbehaviour(evidence));
    let json = serde_json::json!({
        "prevote_signing_message_hex": hex::encode(prevote.vote.signing_message()),
        "prevote_nil_signing_message_hex": hex::encode(prevote_nil.vote.signing_message()),
        "precommit_signing_message_hex": hex::encode(precommit.vote.signing_message()),
        "precommit_nil_signing_message_hex": hex::encode(precommit_nil.vote.signing_message()),
        "signed_prevote_hex": hex::encode(codec::encode(&prevote)),
        "proposal_signing_message_hex": hex::encode(proposal.signing_message()),
        "misbehaviour_event": {
            "signed_hex": hex::encode(report.to_bytes()),
            "event_id": report.id().to_hex(),
        },
    });
    (json, report)
}

/// Proposer selection (PROTOCOL.md §12.3, 1.2): for sets of powers (listed in set order), the
/// proposer's 0-based position in the set at each `(height, round)`. Only powers and order
/// matter, so the vectors carry no keys. Numbers stay below 2^53.
const PROPOSER_POWERS: &[&[u64]] = &[
    &[1, 1, 1, 1],
    &[3, 1],
    &[2, 1, 1],
    &[1, 2, 5],
    &[19, 1, 18, 1, 41, 30],
    &[1, 2, 4, 8, 16, 32, 64],
    &[1 << 48, 1, (1 << 47) + 3, 5, 1 << 48],
];
const PROPOSER_SLOTS: &[(u64, u32)] = &[
    (0, 0),
    (1, 0),
    (2, 0),
    (3, 0),
    (4, 0),
    (5, 0),
    (6, 0),
    (7, 0),
    (8, 0),
    (9, 0),
    (10, 0),
    (11, 0),
    (5, 1),
    (5, 2),
    (5, 7),
    (100, 0),
    (1000, 3),
    (123_456_789, 42),
    (9_007_199_254_740_991, u32::MAX),
];

/// A validator set with these powers in set order (dev keys, sorted), and its keys in order.
fn set_with_powers(powers: &[u64]) -> (Vec<PublicKey>, ValidatorSet) {
    twinledger_core::devkit::set_with_powers("proposer-vectors", powers)
}

fn proposer_vectors() -> serde_json::Value {
    let sets: Vec<serde_json::Value> = PROPOSER_POWERS
        .iter()
        .map(|powers| {
            let (keys, set) = set_with_powers(powers);
            let proposers: Vec<usize> = PROPOSER_SLOTS
                .iter()
                .map(|&(height, round)| {
                    let who = consensus::proposer(&set, height, round);
                    keys.iter().position(|k| *k == who).unwrap()
                })
                .collect();
            serde_json::json!({ "powers": powers, "proposers": proposers })
        })
        .collect();
    serde_json::json!({
        "note": concat!(
            "For each set (powers in set order), the 0-based position in the set of the ",
            "proposer at each (height, round) of `slots`, in that order (PROTOCOL.md §12.3)."
        ),
        "slots": PROPOSER_SLOTS.iter().map(|&(h, r)| [h, u64::from(r)]).collect::<Vec<_>>(),
        "sets": sets,
    })
}

fn render() -> serde_json::Value {
    let (mut chain, events) = build();
    let (consensus, report) = consensus_vectors(&mut chain);
    // The header, results and checkpoint quoted since 1.0 are block 2's.
    let last = chain.blocks[1].clone();
    extra::extend(&mut chain, report);
    let header = &last.block.header;
    let cp = header.checkpoint();
    let mut evs = serde_json::Map::new();
    for (name, ev) in &events {
        evs.insert(
            name.to_string(),
            serde_json::json!({
                "unsigned_hex": hex::encode(ev.event.to_bytes()),
                "signed_hex": hex::encode(ev.to_bytes()),
                "event_id": ev.id().to_hex(),
                "leaf_hash": hex::encode(ev.leaf_hash()),
                "signing_message_hex": hex::encode(ev.signing_message()),
            }),
        );
    }
    let vote = CommitVote {
        checkpoint: cp,
        round: last.certificate.round,
    };
    serde_json::json!({
        "note": "Generated by ledger-core/tests/golden.rs; see PROTOCOL.md appendix A.",
        "genesis_hex": hex::encode(codec::encode(&chain.genesis)),
        "chain_id": chain.state.chain_id().to_hex(),
        "events": evs,
        "block_header_hex": hex::encode(codec::encode(header)),
        "block_hash": header.hash().to_hex(),
        "block_results_hex": hex::encode(codec::encode(&last.results)),
        "checkpoint_hex": hex::encode(codec::encode(&cp)),
        "commit_vote_signing_message_hex": hex::encode(vote.signing_message()),
        "checkpoint_text": cp.to_text(&last.certificate),
        "consensus": consensus,
        "proposer_selection": proposer_vectors(),
        "blocks": extra::blocks(&chain),
        "validator_sets": extra::validator_sets(&chain),
        "export": extra::export(&chain),
        "genesis_file": extra::genesis_file(&chain),
        "signed_request": extra::signed_request(&chain),
        "cosignature": extra::cosignature(&chain),
        "commitments": extra::commitments(),
        "merkle": extra::merkle(),
        "receipts": extra::receipts(&chain),
        "state_map": extra::state_map(&chain),
        "zip215": zip215_vectors::vectors(),
        "revoked_actor": revoked_actor::vector(),
        "twin_ids": twin_id_vectors(),
        "sealed": sealed::vector(),
        "observers": observers::vector(),
    })
}

/// §5.6 (protocol 2.3): labels keyed with a custodian's twin salt, and the local ids bound to
/// an organisation, among them the reference chain's anchor (local id 0x42…, the hospital).
fn twin_id_vectors() -> serde_json::Value {
    let hospital = dev_key("org/st-mary-hospital").public();
    let institute = dev_key("org/genome-institute").public();
    let salt = [0x5a_u8; 32];
    let mut out = Vec::new();
    for (label, org) in [
        ("MRN-0001", hospital),
        ("MRN-0001", institute),
        ("", hospital),
    ] {
        let local = LocalTwinId::from_label(&salt, label);
        out.push(serde_json::json!({
            "salt_hex": hex::encode(salt), "label": label, "local": local.to_hex(),
            "organisation_hex": hex::encode(org.as_bytes()),
            "twin_id": TwinId::bound(&org, &local).to_hex(),
        }));
    }
    let local = LocalTwinId([0x42; 32]);
    out.push(serde_json::json!({
        "local": local.to_hex(),
        "organisation_hex": hex::encode(hospital.as_bytes()),
        "twin_id": TwinId::bound(&hospital, &local).to_hex(),
    }));
    serde_json::Value::Array(out)
}

/// §5.6: the pinned twin-id vectors recomputed with plain blake3 from their bytes alone
/// (`keyed_hash(salt, label)`, then `derive_key("twinledger v2 twin-id", organisation || local)`).
#[test]
fn twin_id_vectors_derive_from_bytes_alone() {
    let want = pinned();
    let items = want["twin_ids"].as_array().expect("twin_ids vectors");
    assert_eq!(items.len(), 4);
    for v in items {
        let hx = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
        if let Some(salt) = v.get("salt_hex") {
            let salt: [u8; 32] = hex::decode(salt.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let local = blake3::keyed_hash(&salt, v["label"].as_str().unwrap().as_bytes());
            assert_eq!(local.as_bytes().to_vec(), hx("local"));
        }
        let mut input = hx("organisation_hex");
        input.extend(hx("local"));
        assert_eq!(
            blake3::derive_key("twinledger v2 twin-id", &input).to_vec(),
            hx("twin_id")
        );
    }
    // Same label, two organisations: two twins.
    assert_ne!(items[0]["twin_id"], items[1]["twin_id"]);
    assert_eq!(items[0]["local"], items[1]["local"]);
}

#[test]
fn formats_match_the_pinned_vectors() {
    let got = render();
    let path = vectors_path();
    if std::env::var_os("TWINLEDGER_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("docs/protocol-vectors.json is readable"),
    )
    .unwrap();
    assert_eq!(
        got, want,
        "a hashed or signed format changed: bump its version (see test docs)"
    );
}

/// The vectors decode back, verify and hash to what they say, independently of how they were
/// built: what an independent implementation would check.
#[test]
fn vectors_verify_from_bytes_alone() {
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    let genesis: Genesis = codec::decode(
        "genesis",
        &hex::decode(want["genesis_hex"].as_str().unwrap()).unwrap(),
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        genesis.chain_id().to_hex(),
        want["chain_id"].as_str().unwrap()
    );
    for (name, v) in want["events"].as_object().unwrap() {
        let bytes = hex::decode(v["signed_hex"].as_str().unwrap()).unwrap();
        let ev = SignedEvent::from_bytes(&bytes, event::MAX_EVENT_BYTES).unwrap();
        assert_eq!(ev.event.payload.kind(), name);
        ev.verify_signature().unwrap();
        assert_eq!(ev.id().to_hex(), v["event_id"].as_str().unwrap());
        assert_eq!(
            hex::encode(ev.leaf_hash()),
            v["leaf_hash"].as_str().unwrap()
        );
    }
    // §12: the misbehaviour event decodes, verifies, and its evidence verifies against genesis.
    let m = &want["consensus"]["misbehaviour_event"];
    let ev = SignedEvent::from_bytes(
        &hex::decode(m["signed_hex"].as_str().unwrap()).unwrap(),
        event::MAX_EVENT_BYTES,
    )
    .unwrap();
    ev.verify_signature().unwrap();
    assert_eq!(ev.id().to_hex(), m["event_id"].as_str().unwrap());
    let EventPayload::Misbehaviour(ds) = &ev.event.payload else {
        panic!("not a misbehaviour event");
    };
    ds.verify(&genesis.chain_id(), &genesis.validators).unwrap();
    let text = want["checkpoint_text"].as_str().unwrap();
    let (cp, cert) = Checkpoint::from_text(text).unwrap();
    assert_eq!(cp.block_hash.to_hex(), want["block_hash"].as_str().unwrap());
    cert.verify(&cp, &genesis.validators).unwrap();
    let header: BlockHeader = codec::decode(
        "header",
        &hex::decode(want["block_header_hex"].as_str().unwrap()).unwrap(),
        4096,
    )
    .unwrap();
    assert_eq!(header.hash(), cp.block_hash);
    assert_eq!(header.checkpoint(), cp);
}

/// §12.3 (1.2): the proposer vectors, read from the file, hold for `consensus::proposer`.
#[test]
fn proposer_vectors_hold() {
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    let vectors = &want["proposer_selection"];
    let slots: Vec<(u64, u32)> = vectors["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let round = u32::try_from(s[1].as_u64().unwrap()).unwrap();
            (s[0].as_u64().unwrap(), round)
        })
        .collect();
    let sets = vectors["sets"].as_array().unwrap();
    assert!(!sets.is_empty() && !slots.is_empty());
    for case in sets {
        let powers: Vec<u64> = case["powers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect();
        let proposers = case["proposers"].as_array().unwrap();
        assert_eq!(proposers.len(), slots.len());
        let (keys, set) = set_with_powers(&powers);
        for (&(height, round), at) in slots.iter().zip(proposers) {
            let at = usize::try_from(at.as_u64().unwrap()).unwrap();
            assert_eq!(
                consensus::proposer(&set, height, round),
                keys[at],
                "powers {powers:?}, height {height}, round {round}"
            );
        }
    }
}

/// PROTOCOL.md quotes the header, the checkpoint text and the chain id: they must be the
/// pinned ones.
#[test]
fn protocol_md_quotes_the_vectors() {
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md"),
    )
    .unwrap();
    for key in [
        "chain_id",
        "block_header_hex",
        "block_hash",
        "checkpoint_text",
    ] {
        let v = want[key].as_str().unwrap();
        for line in v.lines() {
            assert!(
                doc.contains(line),
                "PROTOCOL.md does not quote {key}: {line}"
            );
        }
    }
    let grant = want["events"]["consent_grant"]["signed_hex"]
        .as_str()
        .unwrap();
    assert!(
        doc.contains(grant),
        "PROTOCOL.md does not quote the consent_grant vector"
    );
}

fn pinned() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap()
}

/// §8, §6.10, §9: every block of the reference chain, from its bytes: header and hash chain,
/// events root and log root recomputed, results hash, the state write log decoded write by
/// write and hashed to the state hash, validators hash and certificate against the set in
/// force, checkpoint text.
#[test]
fn block_vectors_verify_from_bytes_alone() {
    let want = pinned();
    extra::check_validator_sets(&want);
    extra::check_blocks(&want);
}

/// §6.10: the genesis records and root, the empty root, and a membership and two
/// non-membership proofs against block 5's state hash, verified with the document's algorithm.
#[test]
fn state_map_vectors_verify() {
    extra::check_state_map(&pinned());
}

/// §11.2: the export stream splits into frames that decode and replay from the genesis.
#[test]
fn export_vector_replays() {
    extra::check_export(&pinned());
}

/// §10.2: the genesis file maps to the pinned binary genesis and chain id.
#[test]
fn genesis_file_vector_maps_to_the_chain_id() {
    extra::check_genesis_file(&pinned());
}

/// §11.1: the signed request's body, signing message, headers and signature.
#[test]
fn signed_request_vector_verifies() {
    extra::check_signed_request(&pinned());
}

/// §9.1: the auditor's cosignature of the checkpoint.
#[test]
fn cosignature_vector_verifies() {
    extra::check_cosignature(&pinned());
}

/// §2.3: the commitments open with their salt and data, and are the events' fields.
#[test]
fn commitment_vectors_open() {
    extra::check_commitments(&pinned());
}

/// §8.1: BLAKE3 leaf hashes, roots of every size, inclusion and consistency proofs.
#[test]
fn merkle_vectors_verify() {
    extra::check_merkle(&pinned());
}

/// §9.2, §9.3: receipts before and after a validator-set change, and an evidence bundle.
#[test]
fn receipt_vectors_verify() {
    extra::check_receipts(&pinned());
}

/// §3 (2.1): the ZIP-215 edge signatures, singly and in batches, and the 196 small-order cases
/// from the pinned encodings.
/// 2.2 (§6.1, §6.5, §8.2): the revoked actor's requests replay to `actor_revoked` denials.
#[test]
fn revoked_actor_vector_replays() {
    revoked_actor::check(&pinned());
}

/// 2.4 (§5.10, §6.12): the sealed-replica chain replays; its events decode and verify.
#[test]
fn sealed_vector_replays() {
    sealed::check(&pinned());
}

/// 2.5 (§5.8, §6.8, §6.10 table 16): the observer chain replays; its records are as pinned.
#[test]
fn observers_vector_replays() {
    observers::check(&pinned());
}

#[test]
fn zip215_vectors_verify() {
    zip215_vectors::check(&pinned());
}
