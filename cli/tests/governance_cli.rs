//! `twinctl governance` through the real binaries against a dev node (issue #16): propose,
//! approve with the validator's key, status, submit, show; and the parties that lie: a proposal
//! file whose readable action was edited (what the approver reads is not what they would sign),
//! an approval by a key that is no validator's, and an applied proposal submitted again.

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use common::err;
use common::node_process::DevNode;
use twinledger_core::devkit::dev_key;
use twinledger_core::event::governance::GovernanceAction;
use twinledger_core::keys::sig_domain;
use twinledger_core::{ChainId, PublicKey, Signature, codec};

fn twinctl(node: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twinctl"))
        .args(args)
        .env("TWINCTL_NODE", node)
        .env_remove("TWINCTL_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn key(data_dir: &Path, name: &str) -> String {
    data_dir
        .join("keys")
        .join(format!("{name}.key"))
        .display()
        .to_string()
}

fn did_of(data_dir: &Path, name: &str) -> String {
    let kf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir.join("keys").join(format!("{name}.key"))).unwrap(),
    )
    .unwrap();
    kf["did"].as_str().unwrap().to_string()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", err(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: &Output, code: i32, says: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", err(o));
    assert!(err(o).contains(says), "expected {says:?} in: {}", err(o));
}

#[test]
fn a_change_is_proposed_approved_and_submitted_and_lying_files_and_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let node = DevNode::start(&data);
    let api = node.api.as_str();
    let hospital = did_of(&data, "hospital");
    let observer = dev_key("governance-cli/observer").public().to_did();
    let proposal = dir.path().join("add-observer.json");
    let p = proposal.display().to_string();

    let shown = ok(twinctl(api, &["governance", "show"]));
    assert!(shown.contains("governance sequence 0"), "{shown}");
    ok(twinctl(
        api,
        &[
            "governance",
            "propose",
            "--out",
            &p,
            "add-observer",
            "--observer",
            &observer,
            "--organisation",
            &hospital,
        ],
    ));

    // The file as PROTOCOL.md §11.7 describes it.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proposal).unwrap()).unwrap();
    assert_eq!(file["format"], "twinledger-governance-proposal/1");
    assert_eq!(file["seq"], 0);
    assert_eq!(file["chain_id"].as_str().unwrap().len(), 64);
    assert_eq!(
        file["action"]["observer_add"]["observer"],
        observer.as_str()
    );
    assert_eq!(file["approvals"], serde_json::json!([]));
    let action = GovernanceAction::ObserverAdd {
        observer: PublicKey::from_did(&observer).unwrap(),
        organisation: PublicKey::from_did(&hospital).unwrap(),
    };
    assert_eq!(
        file["action_hex"].as_str().unwrap(),
        hex::encode(codec::encode(&action))
    );

    // A copy whose readable action names another observer than the encoded one it signs.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proposal).unwrap()).unwrap();
    v["action"]["observer_add"]["observer"] =
        serde_json::json!(dev_key("governance-cli/other").public().to_did());
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let t = tampered.display().to_string();
    let o = twinctl(
        api,
        &[
            "governance",
            "approve",
            &t,
            "--key",
            &key(&data, "validator"),
        ],
    );
    refused(&o, 6, "disagree");
    assert!(
        !std::fs::read_to_string(&tampered)
            .unwrap()
            .contains("signature")
    );

    // A key that is no validator's cannot approve.
    let o = twinctl(
        api,
        &[
            "governance",
            "approve",
            &p,
            "--key",
            &key(&data, "hospital"),
        ],
    );
    refused(&o, 4, "not a validator");

    let out = ok(twinctl(
        api,
        &[
            "governance",
            "approve",
            &p,
            "--key",
            &key(&data, "validator"),
        ],
    ));
    assert!(out.contains("enough, ready to submit"), "{out}");
    // The approval verifies as §11.7 says, from the file alone.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proposal).unwrap()).unwrap();
    let approval = &file["approvals"][0];
    let validator = PublicKey::from_did(approval["validator"].as_str().unwrap()).unwrap();
    let sig: Signature = serde_json::from_value(approval["signature"].clone()).unwrap();
    assert_eq!(approval["signature"].as_str().unwrap().len(), 128);
    let chain = ChainId::from_hex(file["chain_id"].as_str().unwrap()).unwrap();
    validator
        .verify(
            sig_domain::GOVERNANCE,
            &chain,
            &codec::encode(&(0u64, &action)),
            &sig,
        )
        .expect("the approval verifies over encode((seq, action))");
    let o = twinctl(
        api,
        &[
            "governance",
            "approve",
            &p,
            "--key",
            &key(&data, "validator"),
        ],
    );
    refused(&o, 2, "already approved");
    let out = ok(twinctl(api, &["--json", "governance", "status", &p]));
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["quorum"], true, "{status}");
    assert_eq!(status["current"], true, "{status}");

    let out = ok(twinctl(
        api,
        &[
            "governance",
            "submit",
            &p,
            "--key",
            &key(&data, "validator"),
        ],
    ));
    assert!(out.contains("applied in block"), "{out}");
    let shown = ok(twinctl(api, &["governance", "show"]));
    assert!(
        shown.contains(&observer) && shown.contains("live"),
        "{shown}"
    );
    assert!(shown.contains("governance sequence 1"), "{shown}");

    // The applied proposal submitted again: stale (its approvals signed sequence 0).
    let o = twinctl(
        api,
        &[
            "governance",
            "submit",
            &p,
            "--key",
            &key(&data, "validator"),
        ],
    );
    refused(&o, 2, "propose it again");
    let out = ok(twinctl(api, &["governance", "status", &p]));
    assert!(out.contains("STALE"), "{out}");
}
