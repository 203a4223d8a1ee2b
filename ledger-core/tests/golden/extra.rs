//! Vectors added in protocol 1.3 (no format changed; the document became complete): every block
//! of the reference chain with its body, results, certificate and state write log (§6.10), the
//! validator sets, an export stream (§11.2), the genesis file (§10.2), a signed request
//! (§11.1), a checkpoint cosignature (§9.1), commitments (§2.3), BLAKE3 Merkle proofs (§8.1),
//! receipts and an evidence bundle (§9.2, §9.3).
//! Each generator has a checker that reads the pinned JSON and verifies it from the bytes alone.

use serde::Serialize;
use serde_json::{Value, json};
use twinledger_core::audit::{Auditor, CommittedBlock, EXPORT_MAGIC, export_frame};
use twinledger_core::block::MAX_BLOCK_BYTES;
use twinledger_core::devkit::{DEV_GENESIS_TIME, DevChain, dev_key};
use twinledger_core::event::governance::GovernanceAction;
use twinledger_core::hash::hash_in;
use twinledger_core::keys::{sig_domain, signing_message};
use twinledger_core::merkle::{self, Blake3Tree, MemoryTree};
use twinledger_core::request::{RequestAuth, request_body};
use twinledger_core::setproof::ValidatorSets;
use twinledger_core::state::SignatureCheck;
use twinledger_core::*;

use super::state_map;
use super::state_writes::{self, Write};

/// The records of the state map as `(table, key) → value`, all canonically encoded.
type Records = std::collections::BTreeMap<(u8, Vec<u8>), Vec<u8>>;

fn root_of(records: &Records) -> Hash {
    state_map::root(&state_map::leaves(
        records
            .iter()
            .map(|((t, k), v)| (*t, k.as_slice(), v.as_slice())),
    ))
}

/// §6.10, §10.1: the genesis records (organisations, actors, auditors), transcribed.
fn genesis_records(genesis: &Genesis) -> Vec<Write> {
    let mut w = Vec::new();
    for o in &genesis.organisations {
        w.push(Write::new("organisation", &o.key, &(o.name.clone(), true)));
    }
    for a in &genesis.actors {
        w.push(Write::new("actor", &a.key, &(a.organisation, a.role, true)));
    }
    for k in &genesis.auditors {
        w.push(Write::new("auditor", k, &true));
    }
    w
}

fn records_from_json(v: &Value, into: &mut Records) {
    for w in v.as_array().unwrap() {
        let table = u8::try_from(n(&w["table"])).unwrap();
        assert_eq!(s(&w["name"]), state_writes::TABLES[usize::from(table)]);
        let (key, value) = (unhex(&w["key_hex"]), unhex(&w["value_hex"]));
        state_writes::check_write(table, &key, &value);
        into.insert((table, key), value);
    }
}

/// §6.10: the genesis records and root, the empty root, and proofs against block 5's state:
/// a membership proof, and non-membership proofs ending at another record's leaf and at an
/// empty subtree.
pub fn state_map(chain: &DevChain) -> Value {
    let records = genesis_records(&chain.genesis);
    let mut map = Records::new();
    for w in &records {
        map.insert((w.table, w.key.clone()), w.value.clone());
    }
    let genesis_root = root_of(&map);
    assert_eq!(
        genesis_root,
        State::from_genesis(&chain.genesis).unwrap().state_hash()
    );
    let st = &chain.state;
    let root = st.state_root();
    let first = &chain.blocks[0].block.events[0];
    let patient = st
        .patient_concerned(first)
        .expect("block 1 starts with a grant");
    let proof_json = |table: Table, key: Vec<u8>, proof: &StateProof| {
        let bytes = proof.to_bytes();
        json!({
            "table": table.tag(),
            "name": table.name(),
            "key_hex": h(&key),
            "key_hash": h(state_map::key_hash(table.tag(), &key)),
            "value_hex": proof.value.as_ref().map(h),
            "proof_hex": h(&bytes),
            "proof_bytes": bytes.len(),
            "siblings": proof.siblings.len(),
        })
    };
    let member = st.prove(Table::PatientEvents, &patient);
    assert!(member.value.is_some());
    let mut out = vec![proof_json(
        Table::PatientEvents,
        codec::encode(&patient),
        &member,
    )];
    // The first absent grant ids (32 equal bytes) whose proofs end at a leaf, then at nothing.
    for want_leaf in [true, false] {
        let id = (0u8..=255)
            .map(|b| EventId([b; 32]))
            .find(|id| {
                let p = st.prove(Table::Grant, id);
                p.value.is_none() && p.leaf.is_some() == want_leaf
            })
            .expect("such an id");
        out.push(proof_json(
            Table::Grant,
            codec::encode(&id),
            &st.prove(Table::Grant, &id),
        ));
    }
    json!({
        "empty_root": h(state_map::PLACEHOLDER),
        "genesis_records": records.iter().map(Write::to_json).collect::<Vec<_>>(),
        "genesis_root": genesis_root.to_hex(),
        "height": st.height(),
        "root": root.to_hex(),
        "proofs": out,
    })
}

/// §6.10: the pinned genesis root and proofs verify with the document's algorithm alone.
pub fn check_state_map(want: &Value) {
    let sm = &want["state_map"];
    assert_eq!(s(&sm["empty_root"]), h(state_map::PLACEHOLDER));
    assert_eq!(s(&sm["empty_root"]), h(b"SPARSE_MERKLE_PLACEHOLDER_HASH__"));
    let mut map = Records::new();
    records_from_json(&sm["genesis_records"], &mut map);
    assert_eq!(root_of(&map).to_hex(), s(&sm["genesis_root"]));
    let blocks = want["blocks"].as_array().unwrap();
    let height = usize::try_from(n(&sm["height"])).unwrap();
    assert_eq!(s(&sm["root"]), s(&blocks[height - 1]["state_hash"]));
    let root = Hash::from_hex(s(&sm["root"])).unwrap();
    let proofs = sm["proofs"].as_array().unwrap();
    assert_eq!(proofs.len(), 3);
    for (i, p) in proofs.iter().enumerate() {
        let table = u8::try_from(n(&p["table"])).unwrap();
        let key = unhex(&p["key_hex"]);
        assert_eq!(h(state_map::key_hash(table, &key)), s(&p["key_hash"]));
        let bytes = unhex(&p["proof_hex"]);
        let proof = state_map::decode_proof(&bytes).unwrap();
        let proven = state_map::verify(&root, table, &key, &proof).unwrap();
        assert_eq!(
            proven.as_ref().map(h),
            p["value_hex"].as_str().map(String::from)
        );
        assert_eq!(
            i == 0,
            proven.is_some(),
            "one membership, then two absences"
        );
        // The library agrees, and refuses the proof for another key or a tampered one.
        let lib = StateProof::from_bytes(&bytes, 1 << 16).unwrap();
        let t = Table::from_tag(table).unwrap();
        assert_eq!(lib.verify_value(root, t, &key).unwrap(), proven.as_deref());
        let mut other = key.clone();
        other[0] ^= 1;
        assert!(state_map::verify(&root, table, &other, &proof).is_err() || proven.is_none());
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        if let Ok(tp) = state_map::decode_proof(&tampered) {
            assert!(state_map::verify(&root, table, &key, &tp).is_err());
        }
    }
}

fn h(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(bytes)
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("hex")
}

fn s(v: &Value) -> &str {
    v.as_str().expect("a string")
}

fn n(v: &Value) -> u64 {
    v.as_u64().expect("an integer")
}

/// A governance event by the first dev validator, approved by the first three.
fn governance(chain: &mut DevChain, seq: u64, action: GovernanceAction) -> SignedEvent {
    crate::common::governance_event(chain, seq, action)
}

/// Blocks 3 to 5 of the reference chain: block 3 records the misbehaviour report of the
/// consensus vectors, admits an organisation and changes the validator set (the first
/// validator gets power 2 and the new organisation), in force from block 5; block 4 is empty
/// (a state hash without writes); block 5, the first signed by the new set, holds the
/// physician's access request for alice, denied since her grant was revoked in block 2 (its
/// receipt needs the chain of validator-set changes, §9.3).
pub fn extend(chain: &mut DevChain, report: SignedEvent) {
    let clinic = dev_key("org/lakeside-clinic");
    let enrol = governance(
        chain,
        1,
        GovernanceAction::OrgEnrol {
            org: clinic.public(),
            name: "Lakeside Clinic".into(),
        },
    );
    let mut validators = chain.validator_set().validators().to_vec();
    validators[0].power = 2;
    validators[0].organisation = clinic.public();
    let change = governance(
        chain,
        2,
        GovernanceAction::ValidatorSetChange {
            validators: ValidatorSet::new(validators).unwrap(),
        },
    );
    let c = chain.commit(vec![report, enrol, change]);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    assert_eq!(c.block.events.len(), 3);
    chain.commit(vec![]);
    let phys = chain.physician.clone();
    let access = chain.event(
        &phys,
        crate::common::access_payload(
            &crate::common::patient("alice").public(),
            DataCategory::VitalSigns,
            Purpose::Treat,
            Action::Read,
        ),
    );
    let five = chain.commit(vec![access]);
    assert_eq!(
        five.results.outcomes,
        vec![Outcome::Access(Decision::Deny {
            reason: DenyReason::NoCoveringGrant
        })]
    );
    assert_ne!(
        five.block.header.validators_hash, chain.blocks[3].block.header.validators_hash,
        "the new set is in force from block 5"
    );
}

/// Every block of the chain, with the state-map records it sets.
pub fn blocks(chain: &DevChain) -> Value {
    let mut state = State::from_genesis(&chain.genesis).unwrap();
    let mut map = Records::new();
    for w in genesis_records(&chain.genesis) {
        map.insert((w.table, w.key), w.value);
    }
    let mut out = Vec::new();
    for c in &chain.blocks {
        let writes = state_writes::block_writes(&state, &c.block);
        let (next, results) = state.apply_block(&c.block).unwrap();
        assert_eq!(results, c.results);
        let hd = &c.block.header;
        for w in &writes {
            map.insert((w.table, w.key.clone()), w.value.clone());
        }
        assert_eq!(
            root_of(&map),
            hd.state_hash,
            "block {}: the §6.10 writes as transcribed do not give the block's state hash",
            hd.height
        );
        out.push(json!({
            "height": hd.height,
            "block_hex": h(codec::encode(&c.block)),
            "header_hex": h(codec::encode(hd)),
            "block_hash": hd.hash().to_hex(),
            "event_ids": c.block.events.iter().map(|e| e.id().to_hex()).collect::<Vec<_>>(),
            "events_root": hd.events_root.to_hex(),
            "log_size": hd.log_size,
            "log_root": hd.log_root.to_hex(),
            "results_hex": h(codec::encode(&c.results)),
            "results_hash": c.results.hash().to_hex(),
            "certificate_hex": h(codec::encode(&c.certificate)),
            "checkpoint_text": hd.checkpoint().to_text(&c.certificate),
            "state_writes": writes.iter().map(Write::to_json).collect::<Vec<_>>(),
            "state_hash": hd.state_hash.to_hex(),
            "validators_hash": hd.validators_hash.to_hex(),
        }));
        state = next;
    }
    Value::Array(out)
}

/// The validator sets of the chain: the genesis set, and the set in force from block 5.
pub fn validator_sets(chain: &DevChain) -> Value {
    let first = chain.validator_set().clone();
    let later = chain.state.validators_for(chain.state.height() + 1).clone();
    assert_ne!(first, later);
    json!([
        {"from_height": 1, "hex": h(codec::encode(&first)), "hash": first.hash().to_hex()},
        {"from_height": 5, "hex": h(codec::encode(&later)), "hash": later.hash().to_hex()},
    ])
}

/// The export stream of blocks 1 to 5.
pub fn export(chain: &DevChain) -> Value {
    let mut bytes = EXPORT_MAGIC.to_vec();
    for c in &chain.blocks {
        bytes.extend(export_frame(&c.committed));
    }
    json!({"from": 1, "to": chain.blocks.len(), "hex": h(bytes)})
}

/// The libp2p peer id of an ed25519 key (§10.2).
fn peer_id(key: &PublicKey) -> String {
    let mut raw = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    raw.extend_from_slice(key.as_bytes());
    bs58::encode(raw).into_string()
}

#[derive(Serialize)]
struct FileOrg {
    name: String,
    key: PublicKey,
}

#[derive(Serialize)]
struct FileValidator {
    organisation: PublicKey,
    consensus_key: PublicKey,
    power: u64,
    peer_id: String,
    listen_addr: String,
}

#[derive(Serialize)]
struct FileAuditor {
    name: String,
    key: PublicKey,
}

#[derive(Serialize)]
struct FileActor {
    key: PublicKey,
    organisation: PublicKey,
    role: Role,
}

#[derive(Serialize)]
struct FileLimits {
    max_event_bytes: u32,
    max_events_per_block: u32,
    max_grants_per_patient: u32,
    max_event_ttl_ms: u64,
    block_interval_ms: u64,
    mempool_size: u32,
}

#[derive(Serialize)]
struct FileObserver {
    name: String,
    peer_id: String,
}

/// The genesis file format of §10.2, field for field (what `twinctl genesis` writes).
#[derive(Serialize)]
struct GenesisFileJson {
    version: u8,
    chain_name: String,
    genesis_time_ms: u64,
    organisations: Vec<FileOrg>,
    validators: Vec<FileValidator>,
    auditors: Vec<FileAuditor>,
    actors: Vec<FileActor>,
    limits: FileLimits,
    observers: Vec<FileObserver>,
}

/// The genesis file of the reference chain: its ledger content is the pinned genesis, so its
/// chain id is the pinned chain id. Validators are listed in descending key order (the binary
/// genesis sorts them), and the file carries what the chain id does not cover: peer ids,
/// listen addresses, an auditor's name, node policy and an observer.
pub fn genesis_file(chain: &DevChain) -> Value {
    let g = &chain.genesis;
    let mut validators: Vec<FileValidator> = g
        .validators
        .validators()
        .iter()
        .enumerate()
        .map(|(i, v)| FileValidator {
            organisation: v.organisation,
            consensus_key: v.key,
            power: v.power,
            peer_id: peer_id(&v.key),
            listen_addr: format!("/ip4/10.0.0.{}/tcp/7000", i + 1),
        })
        .collect();
    validators.reverse();
    let mut observer = vec![0x12, 0x20];
    observer.extend_from_slice(blake3::hash(b"twinledger-dev observer").as_bytes());
    let file = GenesisFileJson {
        version: 1,
        chain_name: g.chain_name.clone(),
        genesis_time_ms: g.genesis_time.0,
        organisations: g
            .organisations
            .iter()
            .map(|o| FileOrg {
                name: o.name.clone(),
                key: o.key,
            })
            .collect(),
        validators,
        auditors: g
            .auditors
            .iter()
            .map(|k| FileAuditor {
                name: "National Health Data Regulator".into(),
                key: *k,
            })
            .collect(),
        actors: g
            .actors
            .iter()
            .map(|a| FileActor {
                key: a.key,
                organisation: a.organisation,
                role: a.role,
            })
            .collect(),
        limits: FileLimits {
            max_event_bytes: g.limits.max_event_bytes,
            max_events_per_block: g.limits.max_block_events,
            max_grants_per_patient: g.limits.max_grants_per_patient,
            max_event_ttl_ms: g.limits.max_event_ttl_ms,
            block_interval_ms: 1000,
            mempool_size: 100_000,
        },
        observers: vec![FileObserver {
            name: "Regulator read replica".into(),
            peer_id: bs58::encode(observer).into_string(),
        }],
    };
    let text = serde_json::to_string_pretty(&file).unwrap() + "\n";
    let value = json!({"json": text, "chain_id": g.chain_id().to_hex()});
    assert_eq!(genesis_from_file(&value).chain_id(), g.chain_id());
    value
}

/// §10.2 applied by hand: the binary genesis a genesis file maps to.
fn genesis_from_file(vector: &Value) -> Genesis {
    let f: Value = serde_json::from_str(s(&vector["json"])).unwrap();
    let key = |v: &Value| PublicKey::from_did(s(v)).unwrap();
    let mut validators: Vec<Validator> = f["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Validator {
            key: key(&v["consensus_key"]),
            organisation: key(&v["organisation"]),
            power: n(&v["power"]),
        })
        .collect();
    validators.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    let l = &f["limits"];
    let u32_of = |v: &Value| u32::try_from(n(v)).unwrap();
    Genesis {
        version: u8::try_from(n(&f["version"])).unwrap(),
        chain_name: s(&f["chain_name"]).to_owned(),
        genesis_time: Timestamp(n(&f["genesis_time_ms"])),
        organisations: f["organisations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| state::GenesisOrg {
                key: key(&o["key"]),
                name: s(&o["name"]).to_owned(),
            })
            .collect(),
        validators: ValidatorSet::new(validators).unwrap(),
        auditors: f["auditors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| key(&a["key"]))
            .collect(),
        actors: f["actors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| state::GenesisActor {
                key: key(&a["key"]),
                organisation: key(&a["organisation"]),
                role: s(&a["role"]).parse().unwrap(),
            })
            .collect(),
        limits: Limits {
            max_event_bytes: u32_of(&l["max_event_bytes"]),
            max_block_events: u32_of(&l["max_events_per_block"]),
            max_grants_per_patient: u32_of(&l["max_grants_per_patient"]),
            max_event_ttl_ms: n(&l["max_event_ttl_ms"]),
        },
    }
}

/// The time and nonce of the signed-request vector.
const REQUEST_TIME: Timestamp = Timestamp(DEV_GENESIS_TIME.0 + 60_000);
const REQUEST_PATH: &str = "/v1/export?from=1&to=5";

/// A signed `GET /v1/export` by the dev auditor (§11.1).
pub fn signed_request(chain: &DevChain) -> Value {
    let key = &chain.auditor;
    let chain_id = chain.state.chain_id();
    let nonce: [u8; 16] = std::array::from_fn(|i| u8::try_from(i).unwrap());
    let auth = RequestAuth::sign(
        key,
        &chain_id,
        "GET",
        REQUEST_PATH,
        b"",
        REQUEST_TIME,
        nonce,
    );
    let body = request_body("GET", REQUEST_PATH, b"", REQUEST_TIME, &nonce);
    let headers: serde_json::Map<String, Value> = auth
        .headers()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    json!({
        "method": "GET",
        "path_and_query": REQUEST_PATH,
        "body_hex": "",
        "body_hash": h(blake3::hash(b"").as_bytes()),
        "time": REQUEST_TIME.0,
        "nonce_hex": h(nonce),
        "signed_body_hex": h(&body),
        "signing_message_hex": h(signing_message(sig_domain::HTTP_REQUEST, &chain_id, &body)),
        "headers": headers,
    })
}

/// The dev auditor's cosignature of block 2's checkpoint (§9.1).
pub fn cosignature(chain: &DevChain) -> Value {
    let cp = chain.blocks[1].block.header.checkpoint();
    let sig = cp.cosign(&chain.auditor);
    json!({
        "auditor": chain.auditor.public().to_did(),
        "checkpoint_hex": h(codec::encode(&cp)),
        "signing_message_hex": h(signing_message(sig_domain::COSIGN, &cp.chain_id, &codec::encode(&cp))),
        "signature_hex": h(sig.0),
    })
}

/// The commitments carried by the reference events (§2.3): salt, data, commitment, and where.
const COMMITMENTS: &[(&str, &str, u8, &str)] = &[
    (
        "access_request",
        "resource",
        9,
        "twin-store://alice/observations",
    ),
    (
        "break_glass_request",
        "resource",
        9,
        "twin-store://alice/imaging",
    ),
    (
        "break_glass_request",
        "reason",
        8,
        "unconscious on arrival, suspected stroke",
    ),
    (
        "break_glass_review",
        "notes",
        3,
        "reviewed with the attending physician",
    ),
];

pub fn commitments() -> Value {
    COMMITMENTS
        .iter()
        .map(|&(event, field, salt, data)| {
            json!({
                "event": event,
                "field": field,
                "salt_hex": h([salt; 32]),
                "data_hex": h(data.as_bytes()),
                "commitment": Commitment::new(&[salt; 32], data.as_bytes()).0.to_hex(),
            })
        })
        .collect()
}

/// The leaf data of the RFC 6962 test vectors, hashed with BLAKE3 here (§8.1).
const MERKLE_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const INCLUSIONS: &[(u64, u64)] = &[(0, 1), (0, 8), (5, 8), (2, 3), (1, 5), (6, 7), (4, 5)];
const CONSISTENCIES: &[(u64, u64)] = &[(1, 1), (1, 8), (6, 8), (2, 5), (3, 7), (4, 8), (7, 8)];

pub fn merkle() -> Value {
    let mut tree = MemoryTree::<Blake3Tree>::new();
    for leaf in MERKLE_LEAVES {
        tree.push_leaf_data(&hex::decode(leaf).unwrap());
    }
    let size = tree.size();
    let proof = |p: Vec<[u8; 32]>| p.into_iter().map(h).collect::<Vec<_>>();
    json!({
        "leaves_hex": MERKLE_LEAVES,
        "leaf_hashes": (0..size).map(|i| h(tree.leaf_hash(i).unwrap())).collect::<Vec<_>>(),
        "roots": (0..=size).map(|n| h(tree.root_at(n).unwrap())).collect::<Vec<_>>(),
        "inclusion": INCLUSIONS.iter().map(|&(index, size)| json!({
            "index": index,
            "size": size,
            "proof": proof(tree.inclusion_proof(index, size).unwrap()),
        })).collect::<Vec<_>>(),
        "consistency": CONSISTENCIES.iter().map(|&(size1, size2)| json!({
            "size1": size1,
            "size2": size2,
            "proof": proof(tree.consistency_proof(size1, size2).unwrap()),
        })).collect::<Vec<_>>(),
    })
}

/// The receipt (§9.2) of event `index` of block `height`, from the chain's log.
fn receipt(chain: &DevChain, height: usize, index: usize) -> Receipt {
    let c = &chain.blocks[height - 1];
    let hd = &c.block.header;
    let leaf = hd.log_size - u64::from(hd.event_count) + index as u64;
    Receipt {
        event: c.block.events[index].clone(),
        index: u32::try_from(index).unwrap(),
        leaf_index: leaf,
        inclusion_proof: chain
            .log
            .inclusion_proof(leaf, hd.log_size)
            .unwrap()
            .into_iter()
            .map(Hash)
            .collect(),
        header: hd.clone(),
        results: c.results.clone(),
        certificate: c.certificate.clone(),
    }
}

/// Receipts (§9.2) and an evidence bundle (§9.3): the permitted access of block 1 (verified
/// against the genesis set), the validator-set change of block 3, and the denied access of
/// block 5 (verified against the set that change put in force), with its bundle.
pub fn receipts(chain: &DevChain) -> Value {
    let entry = |height: usize, index: usize, changes: &[Receipt]| {
        let r = receipt(chain, height, index);
        let sets = ValidatorSets::verify(&chain.genesis, changes).unwrap();
        let outcome = sets.verify_receipt(&r).unwrap();
        json!({
            "height": height,
            "index": index,
            "receipt_hex": h(codec::encode(&r)),
            "receipt": r,
            "outcome": outcome,
            "validator_set_changes": changes,
        })
    };
    let change = receipt(chain, 3, 2);
    let denied = receipt(chain, 5, 0);
    let sets = ValidatorSets::verify(&chain.genesis, std::slice::from_ref(&change)).unwrap();
    let outcome = sets.verify_receipt(&denied).unwrap();
    assert!(
        denied.verify(chain.validator_set()).is_err(),
        "block 5 is not signed by the genesis set"
    );
    json!({
        "access_permitted": entry(1, 1, &[]),
        "validator_set_change": entry(3, 2, &[]),
        "access_denied": entry(5, 0, std::slice::from_ref(&change)),
        "evidence_bundle": {
            "kind": "twinledger-evidence-bundle",
            "version": 2,
            "id": denied.event_id(),
            "outcome": outcome,
            "receipt": denied,
            "validator_set_changes": [change],
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Checks from the bytes alone.

/// `MTH` of RFC 9162 §2.1.1 with plain BLAKE3, written out.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => *blake3::hash(b"").as_bytes(),
        [one] => *one,
        _ => {
            let k = 1usize << (leaves.len() - 1).ilog2();
            let mut b = vec![0x01];
            b.extend(mth(&leaves[..k]));
            b.extend(mth(&leaves[k..]));
            *blake3::hash(&b).as_bytes()
        }
    }
}

fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut b = vec![0x00];
    b.extend_from_slice(data);
    *blake3::hash(&b).as_bytes()
}

fn genesis_of(want: &Value) -> Genesis {
    codec::decode("genesis", &unhex(&want["genesis_hex"]), 1 << 20).unwrap()
}

/// The set in force at `height` (§6.8), from the pinned sets.
fn set_at(want: &Value, height: u64) -> ValidatorSet {
    let sets = want["validator_sets"].as_array().unwrap();
    let set = sets
        .iter()
        .rfind(|s| n(&s["from_height"]) <= height)
        .unwrap();
    codec::decode("validator set", &unhex(&set["hex"]), 1 << 16).unwrap()
}

pub fn check_validator_sets(want: &Value) {
    for set in want["validator_sets"].as_array().unwrap() {
        let bytes = unhex(&set["hex"]);
        let vs: ValidatorSet = codec::decode("validator set", &bytes, 1 << 16).unwrap();
        vs.validate().unwrap();
        assert_eq!(
            hash_in("twinledger v1 validator-set", &bytes).to_hex(),
            s(&set["hash"])
        );
    }
    let genesis = genesis_of(want);
    assert_eq!(genesis.validators, set_at(want, 1));
}

pub fn check_blocks(want: &Value) {
    let genesis = genesis_of(want);
    let chain_id = genesis.chain_id();
    let mut prev_hash = Hash(chain_id.0);
    let mut map = Records::new();
    records_from_json(&want["state_map"]["genesis_records"], &mut map);
    let mut prev_time = genesis.genesis_time;
    let mut log: Vec<[u8; 32]> = Vec::new();
    let blocks = want["blocks"].as_array().unwrap();
    assert!(blocks.len() >= 5);
    for (i, b) in blocks.iter().enumerate() {
        let height = i as u64 + 1;
        assert_eq!(n(&b["height"]), height);
        let bytes = unhex(&b["block_hex"]);
        let block = Block::from_bytes(&bytes).unwrap();
        let hd = &block.header;
        let header_bytes = unhex(&b["header_hex"]);
        assert_eq!(codec::encode(hd), header_bytes);
        assert!(
            bytes.starts_with(&header_bytes),
            "a block is its header, then its events"
        );
        assert_eq!(
            hash_in("twinledger v1 block-header", &header_bytes).to_hex(),
            s(&b["block_hash"])
        );
        assert_eq!(hd.chain_id, chain_id);
        assert_eq!(hd.height, height);
        assert_eq!(hd.prev_hash, prev_hash);
        assert!(hd.time > prev_time);
        assert_eq!(hd.event_count as usize, block.events.len());
        let leaves: Vec<[u8; 32]> = block
            .events
            .iter()
            .map(|e| leaf_hash(&codec::encode(e)))
            .collect();
        let ids: Vec<String> = block.events.iter().map(|e| e.id().to_hex()).collect();
        let want_ids: Vec<&str> = b["event_ids"].as_array().unwrap().iter().map(s).collect();
        assert_eq!(ids, want_ids);
        for e in &block.events {
            e.verify_signature().unwrap();
        }
        assert_eq!(h(mth(&leaves)), s(&b["events_root"]));
        assert_eq!(hd.events_root.to_hex(), s(&b["events_root"]));
        log.extend(&leaves);
        assert_eq!(hd.log_size, log.len() as u64);
        assert_eq!(n(&b["log_size"]), hd.log_size);
        assert_eq!(h(mth(&log)), s(&b["log_root"]));
        assert_eq!(hd.log_root.to_hex(), s(&b["log_root"]));
        let results_bytes = unhex(&b["results_hex"]);
        let results: BlockResults = codec::decode("results", &results_bytes, 1 << 20).unwrap();
        assert_eq!(results.outcomes.len(), block.events.len());
        let results_hash = hash_in("twinledger v1 block-results", &results_bytes);
        assert_eq!(results_hash.to_hex(), s(&b["results_hash"]));
        assert_eq!(hd.results_hash, results_hash);
        // §6.10: the records the block sets, over the map after the previous block, give a
        // map whose root is the state hash.
        records_from_json(&b["state_writes"], &mut map);
        let state_hash = root_of(&map);
        assert_eq!(state_hash.to_hex(), s(&b["state_hash"]));
        assert_eq!(hd.state_hash, state_hash);
        // §7: the set in force signs, and its hash is in the header.
        let set = set_at(want, height);
        assert_eq!(hd.validators_hash, set.hash());
        assert_eq!(hd.validators_hash.to_hex(), s(&b["validators_hash"]));
        assert!(set.get(&hd.proposer).is_some());
        let cert: CommitCertificate =
            codec::decode("certificate", &unhex(&b["certificate_hex"]), 1 << 16).unwrap();
        cert.verify(&hd.checkpoint(), &set).unwrap();
        let (cp, text_cert) = Checkpoint::from_text(s(&b["checkpoint_text"])).unwrap();
        assert_eq!(cp, hd.checkpoint());
        assert_eq!(text_cert, cert);
        prev_hash = hash_in("twinledger v1 block-header", &header_bytes);
        prev_time = hd.time;
    }
}

pub fn check_export(want: &Value) {
    let bytes = unhex(&want["export"]["hex"]);
    let blocks = want["blocks"].as_array().unwrap();
    assert_eq!(&bytes[..8], b"TWLEXP01");
    let mut rest = &bytes[8..];
    let mut auditor = Auditor::new(&genesis_of(want)).unwrap();
    let mut count = 0;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let frame = &rest[4..4 + len];
        let cb: CommittedBlock = codec::decode("committed block", frame, MAX_BLOCK_BYTES).unwrap();
        let b = &blocks[count];
        assert!(frame.starts_with(&unhex(&b["block_hex"])));
        assert_eq!(codec::encode(&cb.results), unhex(&b["results_hex"]));
        assert_eq!(codec::encode(&cb.certificate), unhex(&b["certificate_hex"]));
        auditor.check(&cb, SignatureCheck::Verify).unwrap();
        rest = &rest[4 + len..];
        count += 1;
    }
    assert_eq!(count as u64, n(&want["export"]["to"]));
    assert_eq!(count, blocks.len());
    let last = &blocks[count - 1];
    let summary = auditor.summary();
    assert_eq!(summary.log_root, s(&last["log_root"]));
    assert_eq!(
        auditor.state().state_hash().to_hex(),
        s(&last["state_hash"])
    );
}

pub fn check_genesis_file(want: &Value) {
    let v = &want["genesis_file"];
    let genesis = genesis_from_file(v);
    assert_eq!(h(codec::encode(&genesis)), s(&want["genesis_hex"]));
    assert_eq!(genesis.chain_id().to_hex(), s(&v["chain_id"]));
    assert_eq!(s(&v["chain_id"]), s(&want["chain_id"]));
}

fn varint(mut x: u64, out: &mut Vec<u8>) {
    while x >= 0x80 {
        out.push(u8::try_from(x & 0x7f).unwrap() | 0x80);
        x >>= 7;
    }
    out.push(u8::try_from(x).unwrap());
}

pub fn check_signed_request(want: &Value) {
    let r = &want["signed_request"];
    let chain_id = hex::decode(s(&want["chain_id"])).unwrap();
    let hd = &r["headers"];
    assert_eq!(hd.as_object().unwrap().len(), 4);
    let key = PublicKey::from_did(s(&hd["x-twinledger-key"])).unwrap();
    let time: u64 = s(&hd["x-twinledger-time"]).parse().unwrap();
    assert_eq!(time, n(&r["time"]));
    let nonce = s(&hd["x-twinledger-nonce"]);
    assert_eq!(nonce.len(), 32);
    assert_eq!(nonce, s(&r["nonce_hex"]));
    let sig = s(&hd["x-twinledger-signature"]);
    assert_eq!(sig.len(), 128);
    let body = unhex(&r["body_hex"]);
    let body_hash = blake3::hash(&body);
    assert_eq!(h(body_hash.as_bytes()), s(&r["body_hash"]));
    let mut signed = Vec::new();
    for part in [s(&r["method"]), s(&r["path_and_query"])] {
        varint(part.len() as u64, &mut signed);
        signed.extend(part.as_bytes());
    }
    signed.extend(body_hash.as_bytes());
    varint(time, &mut signed);
    signed.extend(hex::decode(nonce).unwrap());
    assert_eq!(h(&signed), s(&r["signed_body_hex"]));
    let domain = b"twinledger/v1/http-request";
    let mut msg = vec![u8::try_from(domain.len()).unwrap()];
    msg.extend(domain);
    msg.extend(&chain_id);
    msg.extend(&signed);
    assert_eq!(h(&msg), s(&r["signing_message_hex"]));
    let mut raw = [0u8; 64];
    hex::decode_to_slice(sig, &mut raw).unwrap();
    key.verify_raw(&msg, &Signature(raw)).unwrap();
}

pub fn check_cosignature(want: &Value) {
    let c = &want["cosignature"];
    let auditor = PublicKey::from_did(s(&c["auditor"])).unwrap();
    assert!(genesis_of(want).auditors.contains(&auditor));
    let cp_bytes = unhex(&c["checkpoint_hex"]);
    assert_eq!(cp_bytes, unhex(&want["checkpoint_hex"]));
    let cp: Checkpoint = codec::decode("checkpoint", &cp_bytes, 1024).unwrap();
    let domain = b"twinledger/v1/checkpoint-cosign";
    let mut msg = vec![u8::try_from(domain.len()).unwrap()];
    msg.extend(domain);
    msg.extend(cp.chain_id.as_bytes());
    msg.extend(&cp_bytes);
    assert_eq!(h(&msg), s(&c["signing_message_hex"]));
    let mut raw = [0u8; 64];
    hex::decode_to_slice(s(&c["signature_hex"]), &mut raw).unwrap();
    auditor.verify_raw(&msg, &Signature(raw)).unwrap();
    assert!(cp.verify_cosignature(&auditor, &Signature(raw)));
}

pub fn check_commitments(want: &Value) {
    for c in want["commitments"].as_array().unwrap() {
        let mut input = unhex(&c["salt_hex"]);
        assert_eq!(input.len(), 32);
        input.extend(unhex(&c["data_hex"]));
        let got = blake3::derive_key("twinledger v1 commitment", &input);
        assert_eq!(h(got), s(&c["commitment"]));
        let ev = SignedEvent::from_bytes(
            &unhex(&want["events"][s(&c["event"])]["signed_hex"]),
            event::MAX_EVENT_BYTES,
        )
        .unwrap();
        let field = match (&ev.event.payload, s(&c["field"])) {
            (EventPayload::AccessRequest(p), "resource") => p.resource,
            (EventPayload::BreakGlassRequest(p), "resource") => p.resource,
            (EventPayload::BreakGlassRequest(p), "reason") => p.reason,
            (EventPayload::BreakGlassReview(p), "notes") => p.notes,
            (_, f) => panic!("no commitment field {f}"),
        };
        assert_eq!(h(field.0.as_bytes()), s(&c["commitment"]));
    }
}

pub fn check_merkle(want: &Value) {
    let m = &want["merkle"];
    let leaves: Vec<[u8; 32]> = m["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| leaf_hash(&unhex(l)))
        .collect();
    let hashes: Vec<&str> = m["leaf_hashes"].as_array().unwrap().iter().map(s).collect();
    assert_eq!(leaves.iter().map(h).collect::<Vec<_>>(), hashes);
    let roots: Vec<Vec<u8>> = m["roots"].as_array().unwrap().iter().map(unhex).collect();
    assert_eq!(roots.len(), leaves.len() + 1);
    for (size, root) in roots.iter().enumerate() {
        assert_eq!(
            mth(&leaves[..size]).as_slice(),
            root.as_slice(),
            "size {size}"
        );
    }
    for p in m["inclusion"].as_array().unwrap() {
        let (index, size) = (n(&p["index"]), n(&p["size"]));
        let proof: Vec<Vec<u8>> = p["proof"].as_array().unwrap().iter().map(unhex).collect();
        merkle::verify_inclusion::<Blake3Tree>(
            index,
            size,
            &leaves[usize::try_from(index).unwrap()],
            &proof,
            &roots[usize::try_from(size).unwrap()],
        )
        .unwrap();
    }
    for p in m["consistency"].as_array().unwrap() {
        let (size1, size2) = (n(&p["size1"]), n(&p["size2"]));
        let proof: Vec<Vec<u8>> = p["proof"].as_array().unwrap().iter().map(unhex).collect();
        merkle::verify_consistency::<Blake3Tree>(
            size1,
            size2,
            &proof,
            &roots[usize::try_from(size1).unwrap()],
            &roots[usize::try_from(size2).unwrap()],
        )
        .unwrap();
    }
}

/// A receipt from its bytes (§9.2): the event's chain and signature, the header's validator set,
/// the certificate, the results, the leaf index and the inclusion proof, by hand; then the
/// JSON form and the library's verification agree.
fn check_receipt(want: &Value, v: &Value, sets: &ValidatorSets) -> Outcome {
    let bytes = unhex(&v["receipt_hex"]);
    let r: Receipt = codec::decode("receipt", &bytes, 1 << 20).unwrap();
    let from_json: Receipt = serde_json::from_value(v["receipt"].clone()).unwrap();
    assert_eq!(from_json, r);
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        v["receipt"],
        "canonical JSON"
    );
    let genesis = genesis_of(want);
    assert_eq!(r.event.event.chain_id, genesis.chain_id());
    assert_eq!(r.header.chain_id, genesis.chain_id());
    r.event.verify_signature().unwrap();
    let set = set_at(want, r.header.height);
    assert_eq!(r.header.validators_hash, set.hash());
    r.certificate.verify(&r.header.checkpoint(), &set).unwrap();
    let results = codec::encode(&r.results);
    assert_eq!(
        hash_in("twinledger v1 block-results", &results),
        r.header.results_hash
    );
    let index = r.index as usize;
    assert!(index < r.results.outcomes.len());
    assert_eq!(
        r.leaf_index,
        r.header.log_size - u64::from(r.header.event_count) + u64::from(r.index)
    );
    let proof: Vec<[u8; 32]> = r.inclusion_proof.iter().map(|p| p.0).collect();
    merkle::verify_inclusion::<Blake3Tree>(
        r.leaf_index,
        r.header.log_size,
        &leaf_hash(&codec::encode(&r.event)),
        &proof,
        r.header.log_root.as_bytes(),
    )
    .unwrap();
    let outcome = r.results.outcomes[index];
    assert_eq!(serde_json::to_value(outcome).unwrap(), v["outcome"]);
    assert_eq!(sets.verify_receipt(&r).unwrap(), outcome);
    outcome
}

pub fn check_receipts(want: &Value) {
    let rs = &want["receipts"];
    let genesis = genesis_of(want);
    for name in ["access_permitted", "validator_set_change", "access_denied"] {
        let v = &rs[name];
        let changes: Vec<Receipt> =
            serde_json::from_value(v["validator_set_changes"].clone()).unwrap();
        let sets = ValidatorSets::verify(&genesis, &changes).unwrap();
        let outcome = check_receipt(want, v, &sets);
        let expected = match name {
            "access_permitted" => "permit",
            "access_denied" => "deny",
            _ => "applied",
        };
        let shown = serde_json::to_string(&outcome).unwrap();
        assert!(shown.contains(expected), "{name}: {shown}");
    }
    // §9.3: the chain of changes names the set the denied access's block is signed by.
    let change: Receipt =
        serde_json::from_value(rs["validator_set_change"]["receipt"].clone()).unwrap();
    let EventPayload::Governance(g) = &change.event.event.payload else {
        panic!("the change is a governance event");
    };
    let GovernanceAction::ValidatorSetChange { validators } = &g.action else {
        panic!("the change is a validator-set change");
    };
    assert_eq!(*validators, set_at(want, change.header.height + 2));
    // The bundle: exactly its keys, its receipt and chain of changes as in the entries, id and
    // outcome what the receipt proves.
    let b = &rs["evidence_bundle"];
    let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want_keys = vec![
        "id",
        "kind",
        "outcome",
        "receipt",
        "validator_set_changes",
        "version",
    ];
    want_keys.sort_unstable();
    assert_eq!(keys, want_keys);
    assert_eq!(s(&b["kind"]), "twinledger-evidence-bundle");
    assert_eq!(n(&b["version"]), 2);
    assert_eq!(b["receipt"], rs["access_denied"]["receipt"]);
    assert_eq!(
        b["validator_set_changes"],
        rs["access_denied"]["validator_set_changes"]
    );
    let r: Receipt = serde_json::from_value(b["receipt"].clone()).unwrap();
    assert_eq!(s(&b["id"]), r.event_id().to_hex());
    assert_eq!(b["outcome"], rs["access_denied"]["outcome"]);
}
