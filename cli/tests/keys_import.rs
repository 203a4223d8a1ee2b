//! Plain keys that twinctl signs with only through `twinctl key import`, through the real
//! binaries: a node key is refused naming the import command; `key import` of a node key, a
//! dev key or 64 hex digits makes an encrypted file that opens with its passphrase and signs.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use twinledger_core::Keypair;

mod common;

use common::node_process::{DevNode, node_cmd};
use common::{PASS, err};

/// `twinctl args` against `node`; the passphrase, if any, from the environment.
fn twinctl(node: &str, args: &[&str], pass: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinctl"));
    cmd.args(args)
        .env("TWINCTL_NODE", node)
        .env_remove("TWINCTL_PASSPHRASE")
        .stdin(Stdio::null());
    if let Some(p) = pass {
        cmd.env("TWINCTL_PASSPHRASE", p);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `twinledger-node key new --out <dir>/<name>.key`; the file and its did.
fn node_key(dir: &Path, name: &str) -> (String, String) {
    let file = dir.join(format!("{name}.key")).display().to_string();
    let o = node_cmd(&["key", "new", "--out", &file]);
    assert!(o.status.success(), "{}", err(&o));
    let did = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("did"))
        .unwrap()
        .trim()
        .to_string();
    (file, did)
}

fn grant_args<'a>(key: &'a str, to: &'a str) -> Vec<&'a str> {
    vec![
        "consent",
        "grant",
        "--key",
        key,
        "--to",
        to,
        "--category",
        "vital-signs",
        "--purpose",
        "TREAT",
    ]
}

fn mode(path: &str) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        0o600
    }
}

#[test]
fn a_node_key_is_refused_by_twinctl_with_the_import_command_named() {
    let dir = tempfile::tempdir().unwrap();
    let (file, did) = node_key(dir.path(), "node");
    // Its did can be read, with what to do to sign with it.
    let o = twinctl("http://127.0.0.1:9", &["key", "show", &file], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        stdout(&o).contains(&did) && stdout(&o).contains("twinctl key import"),
        "{}",
        stdout(&o)
    );
    let someone = Keypair::from_secret(&[9; 32]).public().to_did();
    // Refused before any node is contacted (none listens on this port).
    let o = twinctl("http://127.0.0.1:9", &grant_args(&file, &someone), None);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(
        msg.contains("unencrypted node key") && msg.contains(&format!("twinctl key import {file}")),
        "{msg}"
    );
}

#[test]
fn an_imported_node_key_is_encrypted_opens_with_its_passphrase_and_signs_on_the_dev_chain() {
    let dir = tempfile::tempdir().unwrap();
    let node = DevNode::start(&dir.path().join("dev"));
    let (raw, did) = node_key(dir.path(), "node");
    let out = dir.path().join("imported.key").display().to_string();

    let o = twinctl(
        &node.api,
        &["--json", "key", "import", &raw, "--out", &out],
        Some(PASS),
    );
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["did"], did.as_str());
    assert_eq!(mode(&out), 0o600);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("ciphertext") && !text.contains("secret_hex"),
        "{text}"
    );

    // It opens only with its passphrase.
    let o = twinctl(&node.api, &["key", "show", &out], Some(PASS));
    assert!(o.status.success(), "{}", err(&o));
    assert!(stdout(&o).contains(&did));
    let o = twinctl(
        &node.api,
        &["key", "show", &out],
        Some("not the passphrase"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));

    // It signs a real command (as a patient granting consent).
    let physician = twinctl(
        &node.api,
        &[
            "key",
            "export-public",
            dir.path().join("dev/keys/physician.key").to_str().unwrap(),
        ],
        None,
    );
    let physician = stdout(&physician).trim().to_string();
    let o = twinctl(&node.api, &grant_args(&out, &physician), Some(PASS));
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn key_import_takes_64_hex_digits_or_a_dev_key_and_refuses_overwrite_and_encrypted_files() {
    let dir = tempfile::tempdir().unwrap();
    let node = "http://127.0.0.1:9"; // key import contacts no node
    let write_private = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        p.display().to_string()
    };

    // 64 hex digits of an ed25519 secret (with a trailing newline, as `echo` writes it).
    let seed = [0x5au8; 32];
    let raw = write_private("seed.hex", &format!("{}\n", hex::encode(seed)));
    let out = dir.path().join("from-hex.key").display().to_string();
    let o = twinctl(node, &["key", "import", &raw, "--out", &out], Some(PASS));
    assert!(o.status.success(), "{}", err(&o));
    let expected = Keypair::from_secret(&seed).public().to_did();
    assert!(stdout(&o).contains(&expected), "{}", stdout(&o));
    let o = twinctl(node, &["key", "export-public", &out], None);
    assert_eq!(stdout(&o).trim(), expected);

    // Never overwritten: the file is unchanged.
    let before = std::fs::read(&out).unwrap();
    let o = twinctl(node, &["key", "import", &raw, "--out", &out], Some(PASS));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{}",
        err(&o)
    );
    assert_eq!(std::fs::read(&out).unwrap(), before);

    // An encrypted file has nothing to import.
    let o = twinctl(
        node,
        &["key", "import", &out, "--out", &format!("{out}.2")],
        Some(PASS),
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to import"),
        "{}",
        err(&o)
    );

    // Neither a key file nor 64 hex digits.
    let junk = write_private("junk.txt", "not a key\n");
    let o = twinctl(
        node,
        &["key", "import", &junk, "--out", &format!("{out}.3")],
        Some(PASS),
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("64 hex digits"),
        "{}",
        err(&o)
    );

    // A dev chain's key: the encrypted copy has the same did.
    let dev = dir.path().join("dev");
    twinledger_node::dev::setup(&dev).unwrap();
    let patient = dev.join("keys/patient.key").display().to_string();
    let copy = dir.path().join("patient-copy.key").display().to_string();
    let o = twinctl(
        node,
        &["key", "import", &patient, "--out", &copy],
        Some(PASS),
    );
    assert!(o.status.success(), "{}", err(&o));
    let a = twinctl(node, &["key", "export-public", &patient], None);
    let b = twinctl(node, &["key", "export-public", &copy], None);
    assert_eq!(stdout(&a), stdout(&b));
    assert!(stdout(&a).starts_with("did:key:z6Mk"));
}
