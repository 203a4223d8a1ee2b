//! The golden genesis file, the chain id it pins, and what the chain id does and does not cover.
//! After a deliberate change to the golden file's content, regenerate it with
//! `TWINLEDGER_BLESS=1 cargo test -p twinledger-genesis --test genesis_file` and update
//! [`GOLDEN_CHAIN_ID`] (a changed chain id is a new chain).

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{Value, json};
use twinledger_core::devkit::dev_key;
use twinledger_core::{ChainId, State};
use twinledger_genesis::{
    GENESIS_FILE_VERSION, GenesisFile, GenesisFileError, MAX_GENESIS_FILE_BYTES, NodeLimits,
    peer_id_from_ed25519,
};

/// A change to the golden file's JSON.
type Change = Box<dyn FnOnce(&mut Value)>;

/// The chain id of `tests/data/four-hospitals.json`.
const GOLDEN_CHAIN_ID: &str = "41d969d44fac16d3e92ec8c538121d487fd1d469207d47a375dee72242e940fa";

fn chain_id_of(json: &str) -> ChainId {
    GenesisFile::from_json(json)
        .unwrap_or_else(|e| panic!("{e}"))
        .chain_id()
        .unwrap()
}

#[test]
fn golden_file_is_what_the_api_builds() {
    let built = build_golden();
    if std::env::var_os("TWINLEDGER_BLESS").is_some() {
        built.save(&golden_path()).unwrap();
    }
    let loaded = GenesisFile::load(&golden_path()).unwrap();
    assert_eq!(loaded, built);
    // Byte for byte: the golden file is in the form `save` writes.
    assert_eq!(golden_json(), built.to_json_pretty());
    assert_eq!(loaded.version, GENESIS_FILE_VERSION);
    assert_eq!(loaded.organisations.len(), 4);
    assert_eq!(loaded.validators.len(), 4);
    assert_eq!(loaded.auditors.len(), 1);
    assert_eq!(loaded.actors.len(), 2);
    for v in &loaded.validators {
        assert_eq!(v.peer_id, peer_id_from_ed25519(&v.consensus_key));
        assert!(v.listen_addr.starts_with("/ip4/127.0.0.1/tcp/"));
    }
}

#[test]
fn golden_chain_id_is_pinned() {
    let file = GenesisFile::load(&golden_path()).unwrap();
    let id = file.chain_id().unwrap();
    assert_eq!(id.to_string(), GOLDEN_CHAIN_ID);
    // It is the core genesis's chain id, and the core starts a state from it.
    let genesis = file.ledger_genesis().unwrap();
    assert_eq!(genesis.chain_id(), id);
    let state = State::from_genesis(&genesis).unwrap();
    assert_eq!(state.chain_id(), id);
    assert_eq!(
        file.node_limits(),
        NodeLimits {
            block_interval_ms: 1000,
            mempool_size: 100_000
        }
    );
}

#[test]
fn round_trip() {
    let loaded = GenesisFile::load(&golden_path()).unwrap();
    let json = loaded.to_json_pretty();
    assert_eq!(GenesisFile::from_json(&json).unwrap(), loaded);
    // Compact JSON is the same file and the same chain.
    let compact = serde_json::to_string(&loaded).unwrap();
    assert_eq!(GenesisFile::from_json(&compact).unwrap(), loaded);
    assert_eq!(chain_id_of(&compact).to_string(), GOLDEN_CHAIN_ID);
}

#[test]
fn chain_id_ignores_network_addresses_and_node_policy() {
    let other_peer = peer_id_from_ed25519(&dev_key("libp2p/st-mary").public());
    let changes: Vec<(&str, Change)> = vec![
        (
            "listen address",
            Box::new(|v| {
                v["validators"][0]["listen_addr"] = json!("/dns4/node1.st-mary.example/tcp/443")
            }),
        ),
        (
            "peer id",
            Box::new(move |v| v["validators"][0]["peer_id"] = json!(other_peer)),
        ),
        (
            "block interval",
            Box::new(|v| v["limits"]["block_interval_ms"] = json!(250)),
        ),
        (
            "mempool size",
            Box::new(|v| v["limits"]["mempool_size"] = json!(5000)),
        ),
        (
            "auditor name (the core keeps auditor keys only)",
            Box::new(|v| v["auditors"][0]["name"] = json!("Data Protection Authority")),
        ),
        (
            "validator order (the validator set is sorted by key)",
            Box::new(|v| {
                v["validators"].as_array_mut().unwrap().reverse();
            }),
        ),
    ];
    for (what, change) in changes {
        let json = mutated(change);
        assert_ne!(json, golden_json(), "{what}: nothing changed");
        assert_eq!(chain_id_of(&json).to_string(), GOLDEN_CHAIN_ID, "{what}");
    }
}

#[test]
fn chain_id_covers_every_ledger_field() {
    let org = |label: &str| json!(dev_key(&format!("org/{label}")).public());
    let changes: Vec<(&str, Change)> = vec![
        (
            "chain name",
            Box::new(|v| v["chain_name"] = json!("four-hospitals-2")),
        ),
        (
            "genesis time",
            Box::new(|v| v["genesis_time_ms"] = json!(1_767_225_600_001u64)),
        ),
        (
            "organisation name",
            Box::new(|v| v["organisations"][0]["name"] = json!("St Mary's Hospital")),
        ),
        (
            "organisation order",
            Box::new(|v| v["organisations"].as_array_mut().unwrap().swap(0, 1)),
        ),
        (
            "an organisation more",
            Box::new(|v| {
                v["organisations"].as_array_mut().unwrap().push(json!({
                    "name": "Hilltop Clinic",
                    "key": dev_key("org/hilltop").public(),
                }));
            }),
        ),
        (
            "validator power",
            Box::new(|v| v["validators"][0]["power"] = json!(2)),
        ),
        (
            "validator organisation",
            Box::new(move |v| v["validators"][0]["organisation"] = org("lakeside")),
        ),
        (
            "consensus key",
            Box::new(|v| {
                v["validators"][0]["consensus_key"] = json!(dev_key("validator/new").public());
            }),
        ),
        (
            "auditor key",
            Box::new(|v| v["auditors"][0]["key"] = json!(dev_key("auditor/other").public())),
        ),
        ("no auditor", Box::new(|v| v["auditors"] = json!([]))),
        (
            "actor key",
            Box::new(|v| v["actors"][0]["key"] = json!(dev_key("actor/dr-who").public())),
        ),
        (
            "actor organisation",
            Box::new(move |v| v["actors"][0]["organisation"] = org("riverside")),
        ),
        (
            "actor role",
            Box::new(|v| v["actors"][0]["role"] = json!("nurse")),
        ),
        (
            "max_event_bytes",
            Box::new(|v| v["limits"]["max_event_bytes"] = json!(8192)),
        ),
        (
            "max_events_per_block",
            Box::new(|v| v["limits"]["max_events_per_block"] = json!(500)),
        ),
        (
            "max_grants_per_patient",
            Box::new(|v| v["limits"]["max_grants_per_patient"] = json!(100)),
        ),
        (
            "max_event_ttl_ms",
            Box::new(|v| v["limits"]["max_event_ttl_ms"] = json!(3_600_000)),
        ),
    ];
    let mut seen = BTreeMap::new();
    seen.insert(GOLDEN_CHAIN_ID.to_owned(), "the golden file");
    for (what, change) in changes {
        let id = chain_id_of(&mutated(change)).to_string();
        if let Some(before) = seen.insert(id, what) {
            panic!("changing the {what} gives the chain id of {before}");
        }
    }
}

#[test]
fn peer_id_is_the_libp2p_ed25519_form() {
    let key = dev_key("validator/st-mary").public();
    let id = peer_id_from_ed25519(&key);
    assert!(id.starts_with("12D3KooW"), "{id}");
    assert_eq!(id.len(), 52);
    assert_eq!(id, "12D3KooWBFCvtfcTfhutknTjFZmH7h8B2JBcbA4K4gHu928nv9bf");
    // The decoded bytes are the identity multihash of the protobuf-encoded key.
    let raw = bs58::decode(&id).into_vec().unwrap();
    assert_eq!(raw[..6], [0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
    assert_eq!(raw[6..], key.as_bytes()[..]);
}

#[test]
fn save_validates_and_replaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    let good = build_golden();
    good.save(&path).unwrap();
    assert_eq!(GenesisFile::load(&path).unwrap(), good);
    let before = std::fs::read(&path).unwrap();

    let mut bad = good.clone();
    bad.validators[0].power = 0;
    let err = bad.save(&path).unwrap_err();
    assert!(
        err.to_string().contains("validators[0].power is 0"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refused save wrote"
    );
    // No temporary file left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["genesis.json"]);

    // A save into a directory that does not exist is an I/O error naming the directory.
    let err = good
        .save(&dir.path().join("missing/genesis.json"))
        .unwrap_err();
    assert!(err.is_io(), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn drafts_are_saved_and_loaded_but_not_accepted_as_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    let mut draft = GenesisFile::new("draft-chain", 1);
    draft.save_draft(&path).unwrap();
    draft
        .add_org("St Mary Hospital", dev_key("org/st-mary").public())
        .unwrap();
    draft.save_draft(&path).unwrap();
    assert_eq!(GenesisFile::load_draft(&path).unwrap(), draft);

    let err = GenesisFile::load(&path).unwrap_err();
    assert!(!err.is_io());
    let msg = err.to_string();
    assert!(msg.contains("genesis.json"), "{msg}");
    assert!(msg.contains("at least one validator"), "{msg}");
    assert!(draft.chain_id().is_err());
    assert!(draft.save(&path).is_err());
}

#[test]
fn adding_a_bad_entry_changes_nothing() {
    let mut g = build_golden();
    let before = g.clone();
    let err = g
        .add_org("Another", dev_key("org/st-mary").public())
        .unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
    let err = g
        .add_auditor("St Mary Hospital", dev_key("auditor/x").public())
        .unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
    let mut v = g.validators[0].clone();
    v.consensus_key = dev_key("validator/x").public();
    v.peer_id = peer_id_from_ed25519(&v.consensus_key);
    v.listen_addr = "/ip4/127.0.0.1/tcp/7101".into();
    v.organisation = dev_key("org/unknown").public();
    let err = g.add_validator(v).unwrap_err();
    assert!(
        err.to_string().contains("validators[4].organisation"),
        "{err}"
    );
    let mut a = g.actors[0].clone();
    a.key = dev_key("validator/st-mary").public();
    let err = g.add_actor(a).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
    assert_eq!(g, before);
}

#[test]
fn load_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let err = GenesisFile::load(&missing).unwrap_err();
    assert!(err.is_io());
    assert!(matches!(err, GenesisFileError::Io { .. }));
    assert!(err.to_string().contains("cannot read"), "{err}");
    assert!(err.to_string().contains("nope.json"), "{err}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, mutated(|v| v["validators"][1]["power"] = json!(0))).unwrap();
    let err = GenesisFile::load(&bad).unwrap_err();
    assert!(!err.is_io());
    let msg = err.to_string();
    assert!(msg.contains("bad.json: validators[1].power is 0"), "{msg}");

    std::fs::write(&bad, b"{\"version\": 1,\xff}").unwrap();
    let err = GenesisFile::load(&bad).unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let limit = usize::try_from(MAX_GENESIS_FILE_BYTES).unwrap();
    // Valid JSON (the golden file followed by whitespace), one byte over the limit.
    let mut json = golden_json();
    json.push_str(&" ".repeat(limit + 1 - json.len()));
    let err = GenesisFile::from_json(&json).unwrap_err();
    assert!(matches!(err, GenesisFileError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains("over the limit of 4194304 bytes"),
        "{err}"
    );
    json.pop();
    GenesisFile::from_json(&json).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    json.push(' ');
    std::fs::write(&path, &json).unwrap();
    let err = GenesisFile::load(&path).unwrap_err();
    assert!(err.to_string().contains("4194305 bytes"), "{err}");
    assert!(err.to_string().contains("big.json"), "{err}");
}

#[test]
fn accepted_network_forms() {
    let v0_id = peer_id_from_ed25519(&dev_key("validator/st-mary").public());
    // A sha2-256 peer id: 0x12 0x20 || 32 bytes.
    let qm = {
        let mut raw = vec![0x12, 0x20];
        raw.extend_from_slice(&[9; 32]);
        bs58::encode(&raw).into_string()
    };
    assert!(qm.starts_with("Qm"));
    let json = mutated(move |v| {
        v["validators"][0]["listen_addr"] = json!(format!("/ip4/127.0.0.1/tcp/7001/p2p/{v0_id}"));
        v["validators"][1]["listen_addr"] = json!("/ip6/::1/udp/7002/quic-v1");
        v["validators"][2]["listen_addr"] = json!("/dns4/node3.riverside.example/tcp/7003");
        v["validators"][3]["peer_id"] = json!(qm);
        v["validators"][3]["listen_addr"] = json!("/dns/node4.lakeside.example/tcp/7004");
    });
    assert_eq!(chain_id_of(&json).to_string(), GOLDEN_CHAIN_ID);
}
