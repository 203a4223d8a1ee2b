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
