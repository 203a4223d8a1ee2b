//! The golden genesis file: four hospitals, built from dev keys.

#![allow(dead_code)]

use std::path::PathBuf;

use twinledger_core::Role;
use twinledger_core::devkit::{DEV_GENESIS_TIME, dev_key};
use twinledger_genesis::{ActorEntry, GenesisFile, ValidatorEntry, peer_id_from_ed25519};

/// `genesis/tests/data/four-hospitals.json`.
pub fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/four-hospitals.json")
}

/// The golden file's text.
pub fn golden_json() -> String {
    std::fs::read_to_string(golden_path()).expect("the golden genesis file is readable")
}

/// The hospitals: key label and name.
pub const HOSPITALS: [(&str, &str); 4] = [
    ("st-mary", "St Mary Hospital"),
    ("northgate", "Northgate University Hospital"),
    ("riverside", "Riverside Children's Hospital"),
    ("lakeside", "Lakeside General Hospital"),
];

/// Builds the golden genesis with the public API: what the golden file must hold.
pub fn build_golden() -> GenesisFile {
    let mut g = GenesisFile::new("four-hospitals", DEV_GENESIS_TIME.0);
    for (label, name) in HOSPITALS {
        g.add_org(name, dev_key(&format!("org/{label}")).public())
            .unwrap();
    }
    for (i, (label, _)) in HOSPITALS.iter().enumerate() {
        let consensus_key = dev_key(&format!("validator/{label}")).public();
        g.add_validator(ValidatorEntry {
            organisation: dev_key(&format!("org/{label}")).public(),
            consensus_key,
            power: 1,
            peer_id: peer_id_from_ed25519(&consensus_key),
            listen_addr: format!("/ip4/127.0.0.1/tcp/{}", 7001 + i),
        })
        .unwrap();
    }
    g.add_auditor(
        "National Health Data Regulator",
        dev_key("auditor/regulator").public(),
    )
    .unwrap();
    g.add_actor(ActorEntry {
        key: dev_key("actor/dr-house").public(),
        organisation: dev_key("org/st-mary").public(),
        role: Role::Physician,
    })
    .unwrap();
    g.add_actor(ActorEntry {
        key: dev_key("actor/researcher-curie").public(),
        organisation: dev_key("org/northgate").public(),
        role: Role::Researcher,
    })
    .unwrap();
    g
}

/// The golden file's JSON, changed by `f`.
pub fn mutated(f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&golden_json()).unwrap();
    f(&mut v);
    serde_json::to_string_pretty(&v).unwrap()
}
