//! One invalid genesis file per validation rule, each made by changing one thing in the golden
//! file, and what the error must name.

mod common;

use common::*;
use serde_json::{Value, json};
use twinledger_core::devkit::dev_key;
use twinledger_genesis::{GenesisFile, GenesisFileError, peer_id_from_ed25519};

type Change = Box<dyn FnOnce(&mut Value)>;

/// Sets (or adds) the value at a JSON pointer.
fn set(pointer: &'static str, value: Value) -> Change {
    Box::new(move |v| {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match v.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.insert(key.to_owned(), value);
            }
            Some(Value::Array(a)) => a[key.parse::<usize>().unwrap()] = value,
            _ => panic!("{pointer}"),
        }
    })
}

fn copy(from: &'static str, to: &'static str) -> Change {
    Box::new(move |v| {
        let x = v.pointer(from).unwrap().clone();
        *v.pointer_mut(to).unwrap() = x;
    })
}

fn remove(pointer: &'static str, field: &'static str) -> Change {
    Box::new(move |v| {
        v.pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(field)
            .unwrap();
    })
}

fn did(label: &str) -> Value {
    json!(dev_key(label).public())
}

/// Every rule, broken once: (rule, change, what the message must contain).
fn cases() -> Vec<(&'static str, Change, Vec<String>)> {
    let v0 = peer_id_from_ed25519(&dev_key("validator/st-mary").public());
    let other = peer_id_from_ed25519(&dev_key("someone-else").public());
    let s = |x: &str| x.to_owned();
    vec![
        // Version.
        (
            "unsupported version",
            set("/version", json!(2)),
            vec![s("version 2 is not supported"), s("version 1")],
        ),
        (
            "version out of u8",
            set("/version", json!(256)),
            vec![s("version: invalid value: integer `256`")],
        ),
        // Names.
        (
            "empty chain name",
            set("/chain_name", json!("")),
            vec![s("chain_name \"\" is 0 bytes"), s("1..=64 bytes")],
        ),
        (
            "long chain name",
            set("/chain_name", json!("c".repeat(65))),
            vec![s("chain_name"), s("is 65 bytes"), s("1..=64 bytes")],
        ),
        (
            "control character in chain name",
            set("/chain_name", json!("four\nhospitals")),
            vec![s(
                "chain_name \"four\\nhospitals\" contains a control character",
            )],
        ),
        (
            "long organisation name",
            set("/organisations/2/name", json!("n".repeat(129))),
            vec![
                s("organisations[2].name"),
                s("is 129 bytes"),
                s("1..=128 bytes"),
            ],
        ),
        (
            "control character in organisation name",
            set("/organisations/1/name", json!("North\u{1b}gate")),
            vec![s("organisations[1].name"), s("control character")],
        ),
        (
            "empty auditor name",
            set("/auditors/0/name", json!("")),
            vec![s("auditors[0].name \"\" is 0 bytes")],
        ),
        // Completeness.
        (
            "no organisation",
            set("/organisations", json!([])),
            vec![s(
                "genesis lists no organisation; at least one organisation is required",
            )],
        ),
        (
            "no validator",
            set("/validators", json!([])),
            vec![s(
                "genesis lists no validator; at least one validator is required",
            )],
        ),
        (
            "too many validators",
            Box::new(|v| {
                let org = v["organisations"][0]["key"].clone();
                v["validators"] = (0..257)
                    .map(|i| {
                        let key = dev_key(&format!("validator/{i}")).public();
                        json!({
                            "organisation": org,
                            "consensus_key": key,
                            "power": 1,
                            "peer_id": peer_id_from_ed25519(&key),
                            "listen_addr": format!("/ip4/10.0.0.1/tcp/{}", 1000 + i),
                        })
                    })
                    .collect();
            }),
            vec![s("genesis lists 257 validators, over the limit of 256")],
        ),
        // Duplicate keys, anywhere.
        (
            "duplicate organisation key",
            copy("/organisations/0/key", "/organisations/1/key"),
            vec![
                s("appears twice"),
                s("as organisations[0].key and as organisations[1].key"),
            ],
        ),
        (
            "auditor key of an organisation",
            copy("/organisations/3/key", "/auditors/0/key"),
            vec![s("as organisations[3].key and as auditors[0].key")],
        ),
        (
            "actor key of an auditor",
            copy("/auditors/0/key", "/actors/1/key"),
            vec![s("as auditors[0].key and as actors[1].key")],
        ),
        (
            "duplicate actor key",
            copy("/actors/0/key", "/actors/1/key"),
            vec![s("as actors[0].key and as actors[1].key")],
        ),
        (
            "duplicate consensus key",
            copy("/validators/0/consensus_key", "/validators/3/consensus_key"),
            vec![s(
                "as validators[0].consensus_key and as validators[3].consensus_key",
            )],
        ),
        (
            "consensus key of an actor",
            copy("/actors/0/key", "/validators/1/consensus_key"),
            vec![s("as actors[0].key and as validators[1].consensus_key")],
        ),
        (
            "consensus key of an organisation",
            copy("/organisations/2/key", "/validators/2/consensus_key"),
            vec![s(
                "as organisations[2].key and as validators[2].consensus_key",
            )],
        ),
        // Duplicate names, peer ids, addresses.
        (
            "duplicate organisation name",
            copy("/organisations/0/name", "/organisations/2/name"),
            vec![s(
                "name \"St Mary Hospital\" appears twice: as organisations[0].name and as organisations[2].name",
            )],
        ),
        (
            "auditor named as an organisation",
            copy("/organisations/1/name", "/auditors/0/name"),
            vec![s("as organisations[1].name and as auditors[0].name")],
        ),
        (
            "duplicate peer id",
            copy("/validators/0/peer_id", "/validators/2/peer_id"),
            vec![
                format!("peer id {v0} appears twice"),
                s("as validators[0].peer_id and as validators[2].peer_id"),
            ],
        ),
        (
            "duplicate listen address",
            copy("/validators/1/listen_addr", "/validators/3/listen_addr"),
            vec![s(
                "listen address /ip4/127.0.0.1/tcp/7002 appears twice: as validators[1].listen_addr and as validators[3].listen_addr",
            )],
        ),
        (
            "duplicate listen address, one with its peer id",
            set(
                "/validators/1/listen_addr",
                json!(format!(
                    "/ip4/127.0.0.1/tcp/7001/p2p/{}",
                    peer_id_from_ed25519(&dev_key("validator/northgate").public())
                )),
            ),
            vec![s("listen address /ip4/127.0.0.1/tcp/7001 appears twice")],
        ),
        // Power.
        (
            "zero power",
            set("/validators/1/power", json!(0)),
            vec![s(
                "validators[1].power is 0; voting power must be 1..=281474976710656",
            )],
        ),
        (
            "power over the cap",
            set("/validators/1/power", json!(281_474_976_710_657u64)),
            vec![s("validators[1].power is 281474976710657")],
        ),
        (
            "negative power",
            set("/validators/1/power", json!(-1)),
            vec![s("validators[1].power: invalid value: integer `-1`")],
        ),
        // Unknown organisations.
        (
            "validator of an unknown organisation",
            set("/validators/2/organisation", did("org/unknown")),
            vec![
                s("validators[2].organisation"),
                dev_key("org/unknown").public().to_did(),
                s("is not a listed organisation"),
            ],
        ),
        (
            "actor of an unknown organisation",
            set("/actors/1/organisation", did("org/unknown")),
            vec![
                s("actors[1].organisation"),
                s("is not a listed organisation"),
            ],
        ),
        (
            "validator of an auditor (not an organisation)",
            copy("/auditors/0/key", "/validators/0/organisation"),
            vec![
                s("validators[0].organisation"),
                s("is not a listed organisation"),
            ],
        ),
        // Malformed keys and fields.
        (
            "bad base58 in a consensus key",
            set("/validators/2/consensus_key", json!("did:key:zNOTAKEY")),
            vec![s(
                "validators[2].consensus_key: malformed did:key: base58btc does not decode",
            )],
        ),
        (
            "not a did:key",
            set("/organisations/0/key", json!("did:web:st-mary.example")),
            vec![s(
                "organisations[0].key: malformed did:key: does not start with \"did:key:\"",
            )],
        ),
        (
            "not an ed25519 did:key",
            // A secp256k1 did:key (multicodec 0xe7).
            set(
                "/actors/1/organisation",
                json!("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"),
            ),
            vec![s(
                "actors[1].organisation: unsupported did:key: multicodec prefix e701",
            )],
        ),
        (
            "key that is not a string",
            set("/auditors/0/key", json!(42)),
            vec![s(
                "auditors[0].key: invalid type: integer `42`, expected a string",
            )],
        ),
        (
            "unknown role",
            set("/actors/0/role", json!("surgeon")),
            vec![
                s("actors[0].role: unknown variant `surgeon`"),
                s("physician"),
            ],
        ),
        (
            "unknown field in an entry",
            set("/validators/1/weight", json!(3)),
            vec![s("validators[1]: unknown field `weight`")],
        ),
        (
            "missing field in an entry",
            remove("/actors/0", "role"),
            vec![s("actors[0]: missing field `role`")],
        ),
        (
            "unknown top-level field",
            set("/network", json!({})),
            vec![s("genesis: unknown field `network`")],
        ),
        (
            "missing top-level field",
            remove("", "limits"),
            vec![s("genesis: missing field `limits`")],
        ),
        (
            "list that is not a list",
            set("/organisations", json!({"name": "x"})),
            vec![s("organisations: invalid type: map, expected a sequence")],
        ),
        // Peer ids.
        (
            "peer id that is not base58btc",
            set("/validators/0/peer_id", json!("12D3KooW0OIl")),
            vec![
                s("validators[0].peer_id \"12D3KooW0OIl\" is not a valid libp2p peer id"),
                s("not base58btc"),
            ],
        ),
        (
            "peer id that is not an accepted multihash",
            set("/validators/0/peer_id", json!("3yZe7d")),
            vec![
                s("validators[0].peer_id"),
                s("neither the identity multihash"),
            ],
        ),
        (
            "peer id with a short key",
            Box::new(|v| {
                let mut raw = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
                raw.extend_from_slice(&[5; 30]);
                v["validators"][3]["peer_id"] = json!(bs58::encode(raw).into_string());
            }),
            vec![s("validators[3].peer_id"), s("30 key bytes, expected 32")],
        ),
        // Listen addresses.
        (
            "host:port instead of a multiaddr",
            set("/validators/3/listen_addr", json!("127.0.0.1:7004")),
            vec![
                s("validators[3].listen_addr \"127.0.0.1:7004\" is not an accepted multiaddr"),
                s("starts with '/'"),
            ],
        ),
        (
            "unknown address protocol",
            set("/validators/3/listen_addr", json!("/unix/tmp/sock")),
            vec![s("validators[3].listen_addr"), s("protocol \"unix\"")],
        ),
        (
            "bad IPv4 address",
            set(
                "/validators/3/listen_addr",
                json!("/ip4/127.0.0.256/tcp/7004"),
            ),
            vec![s("\"127.0.0.256\" is not an IPv4 address")],
        ),
        (
            "bad DNS name",
            set(
                "/validators/3/listen_addr",
                json!("/dns4/node_4.example/tcp/7004"),
            ),
            vec![s("is not a DNS name")],
        ),
        (
            "port out of range",
            set(
                "/validators/3/listen_addr",
                json!("/ip4/127.0.0.1/tcp/70000"),
            ),
            vec![s("port \"70000\" is not a number in 1..=65535")],
        ),
        (
            "udp without quic-v1",
            set(
                "/validators/3/listen_addr",
                json!("/ip4/127.0.0.1/udp/7004"),
            ),
            vec![s("must end with /quic-v1")],
        ),
        (
            "websocket suffix",
            set(
                "/validators/3/listen_addr",
                json!("/ip4/127.0.0.1/tcp/7004/ws"),
            ),
            vec![s("unexpected \"ws\"")],
        ),
        (
            "someone else's peer id in the address",
            set(
                "/validators/0/listen_addr",
                json!(format!("/ip4/127.0.0.1/tcp/7001/p2p/{other}")),
            ),
            vec![
                s("validators[0].listen_addr"),
                format!("ends with /p2p/{other}, which is not this validator's peer id {v0}"),
            ],
        ),
        // Limits.
        (
            "max_event_bytes too small",
            set("/limits/max_event_bytes", json!(255)),
            vec![s(
                "limits.max_event_bytes = 255 is out of range 256..=65536",
            )],
        ),
        (
            "max_event_bytes too large",
            set("/limits/max_event_bytes", json!(65537)),
            vec![s(
                "limits.max_event_bytes = 65537 is out of range 256..=65536",
            )],
        ),
        (
            "no events per block",
            set("/limits/max_events_per_block", json!(0)),
            vec![s(
                "limits.max_events_per_block = 0 is out of range 1..=10000",
            )],
        ),
        (
            "too many events per block",
            set("/limits/max_events_per_block", json!(10001)),
            vec![s(
                "limits.max_events_per_block = 10001 is out of range 1..=10000",
            )],
        ),
        (
            "no grants per patient",
            set("/limits/max_grants_per_patient", json!(0)),
            vec![s(
                "limits.max_grants_per_patient = 0 is out of range 1..=65536",
            )],
        ),
        (
            "event ttl too short",
            set("/limits/max_event_ttl_ms", json!(999)),
            vec![s(
                "limits.max_event_ttl_ms = 999 is out of range 1000..=604800000",
            )],
        ),
        (
            "event ttl too long",
            set("/limits/max_event_ttl_ms", json!(604_800_001)),
            vec![s("limits.max_event_ttl_ms = 604800001 is out of range")],
        ),
        (
            "block interval too short",
            set("/limits/block_interval_ms", json!(49)),
            vec![s(
                "limits.block_interval_ms = 49 is out of range 50..=60000",
            )],
        ),
        (
            "block interval too long",
            set("/limits/block_interval_ms", json!(60_001)),
            vec![s(
                "limits.block_interval_ms = 60001 is out of range 50..=60000",
            )],
        ),
        (
            "empty mempool",
            set("/limits/mempool_size", json!(0)),
            vec![s("limits.mempool_size = 0 is out of range 1..=1000000")],
        ),
        (
            "mempool too large",
            set("/limits/mempool_size", json!(1_000_001)),
            vec![s(
                "limits.mempool_size = 1000001 is out of range 1..=1000000",
            )],
        ),
        (
            "limit that does not fit its type",
            set("/limits/max_event_bytes", json!(4_294_967_296u64)),
            vec![s(
                "limits.max_event_bytes: invalid value: integer `4294967296`",
            )],
        ),
    ]
}

#[test]
fn every_rule_names_the_problem() {
    let golden = golden_json();
    for (rule, change, wants) in cases() {
        let json = mutated(change);
        assert_ne!(json, golden, "{rule}: the change changed nothing");
        let err = match GenesisFile::from_json(&json) {
            Ok(_) => panic!("{rule}: accepted"),
            Err(e) => e.to_string(),
        };
        for want in &wants {
            assert!(
                err.contains(want.as_str()),
                "{rule}: the error does not say {want:?}:\n  {err}"
            );
        }
    }
}

#[test]
fn every_rule_but_completeness_applies_to_drafts() {
    for (rule, change, _) in cases() {
        let json = mutated(change);
        let draft = GenesisFile::from_json_draft(&json);
        if rule == "no validator" {
            draft.unwrap_or_else(|e| panic!("{rule}: a draft may lack it: {e}"));
        } else if rule == "no organisation" {
            // A draft may lack organisations, but then nothing may refer to one.
            let err = draft.unwrap_err().to_string();
            assert!(
                err.contains("is not a listed organisation"),
                "{rule}: {err}"
            );
        } else {
            assert!(draft.is_err(), "{rule}: accepted as a draft");
        }
    }
}

#[test]
fn syntax_errors_give_the_line() {
    let mut json = golden_json();
    json.truncate(json.len() / 2);
    let err = GenesisFile::from_json(&json).unwrap_err();
    assert!(matches!(err, GenesisFileError::Syntax(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("genesis file is not valid JSON: "), "{msg}");
    assert!(msg.contains(" line "), "{msg}");

    let err = GenesisFile::from_json("[]").unwrap_err().to_string();
    assert_eq!(
        err,
        "genesis: expected an object with named fields, found a list"
    );

    // Duplicate fields: the typed parser refuses them (a map would keep the last one).
    let json = golden_json().replacen("\"power\": 1,", "\"power\": 1, \"power\": 2,", 1);
    let err = GenesisFile::from_json(&json).unwrap_err().to_string();
    assert!(err.contains("duplicate field `power`"), "{err}");
    assert!(err.contains(" line "), "{err}");
}

#[test]
fn structs_written_as_lists_are_refused() {
    // serde would read a struct from a list of its field values; a genesis file must name them.
    let v: Value = serde_json::from_str(&golden_json()).unwrap();
    let as_list = |x: &Value| Value::Array(x.as_object().unwrap().values().cloned().collect());
    let mut top = v.clone();
    top["limits"] = as_list(&v["limits"]);
    let err = GenesisFile::from_json(&top.to_string())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "limits: expected an object with named fields, found a list"
    );
    let mut entry = v.clone();
    entry["validators"][1] = as_list(&v["validators"][1]);
    let err = GenesisFile::from_json(&entry.to_string())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "validators[1]: expected an object with named fields, found a list"
    );
    let whole = as_list(&v);
    let err = GenesisFile::from_json(&whole.to_string())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "genesis: expected an object with named fields, found a list"
    );
}

#[test]
fn the_core_agrees_with_every_accepted_file() {
    // The file's rules are at least as strict as the core's: what the file accepts, the core
    // accepts (`ledger_genesis` runs both), and the golden file passes both.
    let g = GenesisFile::from_json(&golden_json()).unwrap();
    g.ledger_genesis().unwrap().validate().unwrap();
}
