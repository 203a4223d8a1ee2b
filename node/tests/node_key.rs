//! Node keys through the real `twinledger-node` binary: `key new` and `key show` print the
//! did:key and libp2p peer id, `key new` never overwrites and writes mode 0600, a node starts
//! with `--validator-key` on what `key new` made, a development key of another chain is
//! refused, and logs written to a file carry no colour codes.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use twinledger_core::PublicKey;
use twinledger_genesis::peer_id_from_ed25519;
use twinledger_node::keyfile;

const NODE: &str = env!("CARGO_BIN_EXE_twinledger-node");

fn node(args: &[&str]) -> Output {
    Command::new(NODE)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The value of the line `label  value` that `key new` / `key show` print.
fn field(o: &Output, label: &str) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} line in:\n{}", text(o)))
        .trim()
        .to_string()
}

/// A node process whose stdout and stderr go to `log`; killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `twinledger-node args` logging to the file `log` and waits (deadline 60 s) until it
/// printed its API address there.
fn start_logging_to(args: &[&str], log: &Path) -> Running {
    let file = std::fs::File::create(log).unwrap();
    let child = Command::new(NODE)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let out = std::fs::read_to_string(log).unwrap_or_default();
        if out.lines().any(|l| l.trim().starts_with("API")) {
            return running;
        }
        if let Some(status) = running.0.try_wait().unwrap() {
            panic!("the node exited ({status}) before serving:\n{out}");
        }
        assert!(Instant::now() < end, "the node did not start:\n{out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn key_new_and_key_show_print_the_did_and_peer_id_of_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("validator.key");
    let f = file.to_str().unwrap();
    let made = node(&["key", "new", "--out", f]);
    assert!(made.status.success(), "{}", text(&made));
    let did = field(&made, "did");
    let peer = field(&made, "peer id");
    let public = PublicKey::from_did(&did).unwrap();
    assert_eq!(peer, peer_id_from_ed25519(&public));
    assert_eq!(keyfile::read(&file).unwrap().public(), public);
    assert_eq!(
        keyfile::read_file(&file).unwrap().kind,
        keyfile::KeyKind::Node
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let shown = node(&["key", "show", f]);
    assert!(shown.status.success(), "{}", text(&shown));
    assert_eq!(field(&shown, "did"), did);
    assert_eq!(field(&shown, "peer id"), peer);
}

#[test]
fn key_new_refuses_to_overwrite_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("validator.key");
    let f = file.to_str().unwrap();
    assert!(node(&["key", "new", "--out", f]).status.success());
    let before = std::fs::read(&file).unwrap();
    let again = node(&["key", "new", "--out", f]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn a_node_starts_with_a_validator_key_made_by_key_new() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("validator.key");
    let made = node(&["key", "new", "--out", key_file.to_str().unwrap()]);
    assert!(made.status.success(), "{}", text(&made));
    // The operator puts the printed did in the genesis as the validator's consensus key.
    let validator = PublicKey::from_did(&field(&made, "did")).unwrap();
    let org = keyfile::generate().unwrap();
    let mut g = twinledger_genesis::GenesisFile::new("node-key-test", 1_767_225_600_000);
    g.add_org("Hospital", org.public()).unwrap();
    g.add_validator(twinledger_genesis::ValidatorEntry {
        organisation: org.public(),
        consensus_key: validator,
        power: 1,
        peer_id: peer_id_from_ed25519(&validator),
        listen_addr: "/ip4/127.0.0.1/tcp/7700".into(),
    })
    .unwrap();
    let genesis = dir.path().join("genesis.json");
    g.save(&genesis).unwrap();
    let log = dir.path().join("node.log");
    let _node = start_logging_to(
        &[
            "--genesis",
            genesis.to_str().unwrap(),
            "--validator-key",
            key_file.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &log,
    );
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(out.contains("solo validator"), "{out}");
}

#[test]
fn a_development_key_of_another_chain_is_refused_as_validator_key() {
    let dir = tempfile::tempdir().unwrap();
    let dev = twinledger_node::dev::setup(&dir.path().join("dev")).unwrap();
    // A genesis naming the dev validator's key, but another chain.
    let org = keyfile::generate().unwrap();
    let g = twinledger_node::dev::solo_genesis(
        "not-the-dev-chain",
        1_767_225_600_000,
        "Hospital",
        &org,
        &dev.validator,
    )
    .unwrap();
    let genesis = dir.path().join("genesis.json");
    g.save(&genesis).unwrap();
    let key = dev.keys_dir.join("validator.key");
    let o = node(&[
        "--genesis",
        genesis.to_str().unwrap(),
        "--validator-key",
        key.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("development key")
            && msg.contains(&dev.genesis.chain_id().unwrap().to_hex())
            && msg.contains(&g.chain_id().unwrap().to_hex()),
        "{msg}"
    );
}

#[test]
fn logs_written_to_a_file_hold_no_escape_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dev.log");
    let _node = start_logging_to(
        &[
            "--dev",
            "--data-dir",
            dir.path().join("dev").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &log,
    );
    let bytes = std::fs::read(&log).unwrap();
    let out = String::from_utf8_lossy(&bytes);
    // Log lines were written (the store check comes before the banner) ...
    assert!(out.contains("INFO"), "{out}");
    // ... without colour codes.
    assert!(!bytes.contains(&0x1b), "ESC in the log file:\n{out}");
}
