//! The keys of `twinledger-node --dev` in twinctl, through the real binaries: every role signs
//! a real command against the dev node with no extra step (one warning naming the key as an
//! unencrypted development key); the banner names each key's did and file; a dev key is
//! refused against a node of another chain; key files of earlier dev chains work again once
//! the dev node restarts.

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;

use common::err;
use common::node_process::{DevNode, node_cmd};

/// Runs `twinctl args` against `node` as a user of the dev chain would: no passphrase in the
/// environment and none to type (stdin closed).
fn twinctl(node: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twinctl"))
        .args(args)
        .env("TWINCTL_NODE", node)
        .env_remove("TWINCTL_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn key(data_dir: &Path, name: &str) -> String {
    data_dir
        .join("keys")
        .join(format!("{name}.key"))
        .display()
        .to_string()
}

/// The did of the dev chain's physician (an enrolled actor, so a patient may grant to it).
fn physician_of(data_dir: &Path) -> String {
    let kf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data_dir.join("keys").join("physician.key")).unwrap(),
    )
    .unwrap();
    kf["did"].as_str().unwrap().to_string()
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", err(&o));
    o
}

/// The warning lines twinctl printed about development keys.
fn dev_warnings(o: &Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.contains("unencrypted development key"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_dev_role_signs_a_real_command_against_the_dev_node_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let node = DevNode::start(&data);
    let api = node.api.as_str();
    let physician = stdout(&ok(twinctl(
        api,
        &["key", "export-public", &key(&data, "physician")],
    )))
    .trim()
    .to_string();
    let patient = stdout(&ok(twinctl(
        api,
        &["key", "export-public", &key(&data, "patient")],
    )))
    .trim()
    .to_string();

    // The patient grants.
    let o = ok(twinctl(
        api,
        &[
            "consent",
            "grant",
            "--key",
            &key(&data, "patient"),
            "--to",
            &physician,
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
        ],
    ));
    let warnings = dev_warnings(&o);
    assert_eq!(warnings.len(), 1, "{}", stderr(&o));
    assert!(warnings[0].contains("patient.key"), "{}", warnings[0]);

    // The physician asks and is permitted under that grant.
    let receipt = dir.path().join("receipt.json");
    ok(twinctl(
        api,
        &[
            "access",
            "request",
            "--key",
            &key(&data, "physician"),
            "--patient",
            &patient,
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
            "--resource",
            "twin://demo/vitals",
            "--receipt-out",
            receipt.to_str().unwrap(),
        ],
    ));
    assert!(receipt.exists());

    // The organisation enrols a new actor.
    let nurse = twinledger_cli::keystore::generate()
        .unwrap()
        .public()
        .to_did();
    ok(twinctl(
        api,
        &[
            "org",
            "enrol-actor",
            "--key",
            &key(&data, "hospital"),
            "--actor",
            &nurse,
            "--role",
            "nurse",
        ],
    ));

    // The auditor exports the chain.
    let export = dir.path().join("chain.twl");
    ok(twinctl(
        api,
        &[
            "audit",
            "export",
            "--key",
            &key(&data, "auditor"),
            "--out",
            export.to_str().unwrap(),
        ],
    ));
    assert!(std::fs::metadata(&export).unwrap().len() > 0);
}

#[test]
fn the_dev_banner_names_each_role_with_its_did_and_key_file_and_how_to_show_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let node = DevNode::start(&data);
    for name in ["hospital", "physician", "auditor", "patient", "validator"] {
        let file = key(&data, name);
        let line = node
            .banner
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in the banner:\n{}", node.banner));
        // The did twinctl reads from the file is the one the banner printed beside it.
        let shown = ok(twinctl(&node.api, &["key", "show", &file]));
        let did = stdout(&shown).lines().next().unwrap().to_string();
        assert!(did.starts_with("did:key:z6Mk"), "{did}");
        assert!(line.contains(&did) && line.contains(&file), "{line}");
        // And twinledger-node shows the same.
        let o = node_cmd(&["key", "show", &file]);
        assert!(o.status.success(), "{}", err(&o));
        assert!(stdout(&o).contains(&did), "{}", stdout(&o));
    }
    assert!(
        node.banner.contains("twinctl key show <file>")
            && node.banner.contains("twinledger-node key show <file>"),
        "{}",
        node.banner
    );
}

#[test]
fn a_dev_key_is_refused_against_a_node_of_another_chain() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let node_a = DevNode::start(&a);
    let node_b = DevNode::start(&b);
    let chain = |data: &Path| {
        let g = twinledger_genesis::GenesisFile::load(&data.join("genesis.json")).unwrap();
        g.chain_id().unwrap().to_hex()
    };
    let args = |data: &Path| {
        vec![
            "consent".to_string(),
            "grant".into(),
            "--key".into(),
            key(data, "patient"),
            "--to".into(),
            physician_of(data),
            "--category".into(),
            "vital-signs".into(),
            "--purpose".into(),
            "TREAT".into(),
        ]
    };
    let refused = twinctl(
        &node_b.api,
        &args(&a).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", err(&refused));
    let msg = stderr(&refused);
    assert!(
        msg.contains("development key") && msg.contains(&chain(&a)) && msg.contains(&chain(&b)),
        "{msg}"
    );
    // The same key against its own chain is accepted.
    ok(twinctl(
        &node_a.api,
        &args(&a).iter().map(String::as_str).collect::<Vec<_>>(),
    ));
}

#[test]
fn keys_of_an_earlier_dev_chain_open_in_twinctl_once_the_dev_node_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let patient_file = key(&data, "patient");
    drop(DevNode::start(&data));
    // Rewrite the patient key in the format earlier dev chains wrote: no format marker.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&patient_file).unwrap()).unwrap();
    let legacy = serde_json::json!({
        "did": v["did"],
        "secret_hex": v["secret_hex"],
        "note": "DEV ONLY: unencrypted key of a local dev chain",
    });
    std::fs::remove_file(&patient_file).unwrap();
    std::fs::write(&patient_file, legacy.to_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&patient_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let physician = physician_of(&data);
    let grant = |api: &str| {
        twinctl(
            api,
            &[
                "consent",
                "grant",
                "--key",
                &patient_file,
                "--to",
                &physician,
                "--category",
                "vital-signs",
                "--purpose",
                "TREAT",
            ],
        )
    };
    // twinctl alone says what to do.
    let o = grant("http://127.0.0.1:9");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        stderr(&o).contains("twinledger-node --dev") && stderr(&o).contains("twinctl key import"),
        "{}",
        stderr(&o)
    );
    // The restarted dev node marks it; twinctl then signs with it.
    let node = DevNode::start(&data);
    ok(grant(&node.api));
    let marked: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&patient_file).unwrap()).unwrap();
    assert_eq!(marked["kind"], "dev");
    assert_eq!(marked["did"], v["did"]);
}

#[test]
fn rotating_away_from_a_dev_key_writes_an_encrypted_key_under_a_new_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let node = DevNode::start(&data);
    let new_key = dir.path().join("alice-2027.key");
    let with_pass = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_twinctl"))
            .args(args)
            .env("TWINCTL_NODE", &node.api)
            .env("TWINCTL_PASSPHRASE", common::PASS)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = with_pass(&[
        "--json",
        "key",
        "rotate",
        "--key",
        &key(&data, "patient"),
        "--out",
        new_key.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(dev_warnings(&o).len(), 1, "{}", err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let new_did = v["new_did"].as_str().unwrap();
    let text = std::fs::read_to_string(&new_key).unwrap();
    assert!(
        text.contains("ciphertext") && !text.contains("secret_hex"),
        "{text}"
    );
    // It opens with the passphrase given, and with no other.
    let o = with_pass(&["key", "show", new_key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(stdout(&o).contains(new_did), "{}", stdout(&o));
    let o = twinctl(&node.api, &["key", "show", new_key.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", err(&o));
}
