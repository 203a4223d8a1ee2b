//! The keys of `twinledger-devnet` in twinctl, through the real binaries: the summary of `up`
//! names each key's did and file, a devnet key signs against the devnet with no extra step, and
//! the node logs `up` writes to files carry no colour codes.

use std::process::{Command, Output, Stdio};

mod common;

use common::err;
use common::node_process::Devnet;

/// `twinctl args` against `node` with no passphrase in the environment and none to type.
fn twinctl(node: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twinctl"))
        .args(args)
        .env("TWINCTL_NODE", node)
        .env_remove("TWINCTL_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn devnet_keys_sign_against_the_devnet_and_node_log_files_hold_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let net_dir = dir.path().join("net");
    let net = Devnet::up(&net_dir, 1);
    let api = net.api("validator-0");
    let keys = net_dir.join("keys");

    // The summary names each key a user needs, with its did and file.
    for name in ["hospital-0", "auditor", "physician", "patient"] {
        let file = keys.join(format!("{name}.key")).display().to_string();
        let o = twinctl(&api, &["key", "export-public", &file]);
        assert!(o.status.success(), "{}", err(&o));
        let did = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(
            net.up
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)
                    && l.contains(&did)
                    && l.contains(&file)),
            "no line for {name} with {did} and {file} in:\n{}",
            net.up
        );
    }
    assert!(net.up.contains("twinctl key show <file>"), "{}", net.up);

    // The demo patient grants to the physician.
    let physician = twinctl(
        &api,
        &[
            "key",
            "export-public",
            keys.join("physician.key").to_str().unwrap(),
        ],
    );
    let physician = String::from_utf8_lossy(&physician.stdout)
        .trim()
        .to_string();
    let o = twinctl(
        &api,
        &[
            "consent",
            "grant",
            "--key",
            keys.join("patient.key").to_str().unwrap(),
            "--to",
            &physician,
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unencrypted development key"),
        "{}",
        err(&o)
    );

    // The node's log file: written, and free of ESC bytes.
    let log = std::fs::read(net_dir.join("validator-0").join("node.log")).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("INFO"), "{text}");
    assert!(!log.contains(&0x1b), "ESC in the node log:\n{text}");
}
