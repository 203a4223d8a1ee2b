//! PROTOCOL.md §10.2: the genesis-file vector of `docs/protocol-vectors.json` loads, validates,
//! is in the form `twinctl genesis` writes, and has the pinned chain id (that of the binary
//! genesis vector, which `ledger-core/tests/golden.rs` checks).

use twinledger_genesis::GenesisFile;

#[test]
fn genesis_file_vector_loads_with_its_chain_id() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol-vectors.json");
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = &vectors["genesis_file"];
    let text = v["json"].as_str().unwrap();
    let file = GenesisFile::from_json(text).unwrap();
    assert_eq!(
        file.to_json_pretty(),
        text,
        "the vector is in the written form"
    );
    assert_eq!(
        file.chain_id().unwrap().to_hex(),
        v["chain_id"].as_str().unwrap()
    );
    assert_eq!(v["chain_id"], vectors["chain_id"]);
    let genesis = file.ledger_genesis().unwrap();
    let bytes: String = twinledger_core::codec::encode(&genesis)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(bytes, vectors["genesis_hex"].as_str().unwrap());
    // What the chain id does not cover (§10.2): changing it keeps the chain.
    let mut other = file.clone();
    other.validators[0].listen_addr = "/dns4/validator.example/tcp/7000".into();
    other.auditors[0].name = "Another name".into();
    other.observers.clear();
    other.limits.block_interval_ms = 250;
    other.limits.mempool_size = 5;
    other.validators.reverse();
    assert_eq!(other.chain_id().unwrap(), file.chain_id().unwrap());
    // What it covers: reordering organisations or actors makes another chain.
    let mut other = file.clone();
    other.actors.reverse();
    assert_ne!(other.chain_id().unwrap(), file.chain_id().unwrap());
}
