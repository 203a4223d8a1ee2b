//! `twinctl genesis`, run as the real binary: building a genesis step by step, showing and
//! verifying it, and bad input of every kind refused with the right exit code, a message on
//! stderr that names the problem, and the file left byte for byte as it was.

use std::path::{Path, PathBuf};
use std::process::Command;

use twinledger_cli::exit;
use twinledger_core::PublicKey;
use twinledger_core::devkit::dev_key;
use twinledger_genesis::{GenesisFile, peer_id_from_ed25519};

/// One run of `twinctl`.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn twinctl(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_twinctl"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("twinctl runs");
    Run {
        code: out.status.code().expect("twinctl exits, not killed"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// Runs `twinctl` and requires success.
fn ok(dir: &Path, args: &[&str]) -> Run {
    let run = twinctl(dir, args);
    assert_eq!(run.code, 0, "twinctl {args:?} failed: {run:?}");
    assert!(run.stderr.is_empty(), "twinctl {args:?}: {}", run.stderr);
    run
}

fn did(label: &str) -> String {
    key(label).to_did()
}

fn key(label: &str) -> PublicKey {
    dev_key(label).public()
}

/// Builds a 2-organisation, 2-validator, 1-auditor, 1-actor genesis with the commands, in
/// `dir/genesis.json` (the default file).
fn build(dir: &Path) -> PathBuf {
    ok(
        dir,
        &[
            "genesis",
            "init",
            "--chain-name",
            "two-hospitals",
            "--genesis-time-ms",
            "1767225600000",
        ],
    );
    ok(
        dir,
        &[
            "genesis",
            "add-org",
            "--name",
            "St Mary Hospital",
            "--key",
            &did("org/st-mary"),
        ],
    );
    ok(
        dir,
        &[
            "genesis",
            "add-org",
            "--name",
            "Northgate University Hospital",
            "--key",
            &did("org/northgate"),
        ],
    );
    // The first validator names its peer id and power; the second derives its peer id.
    let peer = peer_id_from_ed25519(&key("libp2p/st-mary"));
    ok(
        dir,
        &[
            "genesis",
            "add-validator",
            "--organisation",
            &did("org/st-mary"),
            "--consensus-key",
            &did("validator/st-mary"),
            "--power",
            "2",
            "--peer-id",
            &peer,
            "--listen-addr",
            &format!("/ip4/127.0.0.1/tcp/7001/p2p/{peer}"),
        ],
    );
    ok(
        dir,
        &[
            "genesis",
            "add-validator",
            "--organisation",
            &did("org/northgate"),
            "--consensus-key",
            &did("validator/northgate"),
            "--listen-addr",
            "/ip4/127.0.0.1/tcp/7002",
        ],
    );
    ok(
        dir,
        &[
            "genesis",
            "add-auditor",
            "--name",
            "National Health Data Regulator",
            "--key",
            &did("auditor/regulator"),
        ],
    );
    ok(
        dir,
        &[
            "genesis",
            "add-actor",
            "--key",
            &did("actor/dr-house"),
            "--organisation",
            &did("org/st-mary"),
            "--role",
            "physician",
        ],
    );
    dir.join("genesis.json")
}

#[test]
fn build_show_and_verify_a_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    let file = GenesisFile::load(&path).unwrap();
    let chain_id = file.chain_id().unwrap().to_string();

    assert_eq!(file.chain_name, "two-hospitals");
    assert_eq!(file.genesis_time_ms, 1_767_225_600_000);
    assert_eq!(file.organisations.len(), 2);
    assert_eq!(file.validators.len(), 2);
    assert_eq!(file.auditors.len(), 1);
    assert_eq!(file.actors.len(), 1);
    assert_eq!(file.validators[0].power, 2);
    assert_eq!(
        file.validators[0].peer_id,
        peer_id_from_ed25519(&key("libp2p/st-mary"))
    );
    assert_eq!(file.validators[1].power, 1, "--power defaults to 1");
    assert_eq!(
        file.validators[1].peer_id,
        peer_id_from_ed25519(&key("validator/northgate")),
        "--peer-id defaults to the consensus key's"
    );

    // show --json: the file plus its chain id.
    let run = ok(dir.path(), &["--json", "genesis", "show"]);
    let mut shown: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown["chain_id"], chain_id.as_str());
    shown.as_object_mut().unwrap().remove("chain_id");
    assert_eq!(shown, serde_json::to_value(&file).unwrap());
    // --json also works after the subcommand.
    let run = ok(dir.path(), &["genesis", "show", "--json"]);
    assert!(run.stdout.contains(&chain_id));

    // show: every party with its did.
    let text = ok(dir.path(), &["genesis", "show"]).stdout;
    assert!(text.contains(&chain_id), "{text}");
    assert!(text.contains("two-hospitals"), "{text}");
    assert!(text.contains("2026-01-01T00:00:00Z"), "{text}");
    for label in [
        "org/st-mary",
        "org/northgate",
        "validator/st-mary",
        "validator/northgate",
        "auditor/regulator",
        "actor/dr-house",
    ] {
        assert!(text.contains(&did(label)), "{label} missing from:\n{text}");
    }
    assert!(text.contains("validators:    2 (total power 3)"), "{text}");

    // verify: exit 0 and the chain id, in text and JSON.
    let run = ok(dir.path(), &["genesis", "verify"]);
    assert!(
        run.stdout.contains(&format!("chain id: {chain_id}")),
        "{}",
        run.stdout
    );
    let run = ok(
        dir.path(),
        &["--json", "genesis", "--file", "genesis.json", "verify"],
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["chain_id"], chain_id.as_str());

    // An explicit --file elsewhere works the same.
    let other = dir.path().join("copy.json");
    std::fs::copy(&path, &other).unwrap();
    let run = ok(
        Path::new("/"),
        &["genesis", "verify", "--file", other.to_str().unwrap()],
    );
    assert!(run.stdout.contains(&chain_id));
}

#[test]
fn mutating_commands_report_the_entry_and_the_chain_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    let run = ok(
        dir.path(),
        &[
            "--json",
            "genesis",
            "add-actor",
            "--key",
            &did("actor/nurse-joy"),
            "--organisation",
            &did("org/northgate"),
            "--role",
            "nurse",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["added"], "actor");
    assert_eq!(v["entry"]["role"], "nurse");
    assert_eq!(v["entry"]["key"], did("actor/nurse-joy").as_str());
    let id = GenesisFile::load(&path).unwrap().chain_id().unwrap();
    assert_eq!(v["chain_id"], id.to_string().as_str());
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    let before = std::fs::read(&path).unwrap();
    let st_mary = did("org/st-mary");
    let unknown = did("org/unknown");
    let new_key = did("validator/new");
    let add_validator = |org: &str, power: &str, addr: &str| -> Vec<String> {
        [
            "genesis",
            "add-validator",
            "--organisation",
            org,
            "--consensus-key",
            &new_key,
            "--power",
            power,
            "--listen-addr",
            addr,
        ]
        .map(String::from)
        .to_vec()
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, Vec<String>, u8, Vec<&str>)> = vec![
        (
            "malformed did",
            args(&[
                "genesis",
                "add-org",
                "--name",
                "X",
                "--key",
                "did:key:zNOPE",
            ]),
            exit::INVALID_INPUT,
            vec!["--key", "malformed did:key"],
        ),
        (
            "not a did:key",
            args(&[
                "genesis",
                "add-auditor",
                "--name",
                "X",
                "--key",
                "did:web:x.example",
            ]),
            exit::INVALID_INPUT,
            vec!["does not start with \"did:key:\""],
        ),
        (
            "unknown organisation",
            add_validator(&unknown, "1", "/ip4/127.0.0.1/tcp/7003"),
            exit::INVALID_INPUT,
            vec![
                "cannot add validator",
                "validators[2].organisation",
                &unknown,
                "is not a listed organisation",
            ],
        ),
        (
            "duplicate key",
            args(&[
                "genesis",
                "add-org",
                "--name",
                "Other Hospital",
                "--key",
                &st_mary,
            ]),
            exit::INVALID_INPUT,
            vec![
                "cannot add organisation",
                &st_mary,
                "appears twice: as organisations[0].key and as organisations[2].key",
            ],
        ),
        (
            "duplicate name",
            args(&[
                "genesis",
                "add-auditor",
                "--name",
                "St Mary Hospital",
                "--key",
                &did("auditor/x"),
            ]),
            exit::INVALID_INPUT,
            vec!["name \"St Mary Hospital\" appears twice"],
        ),
        (
            "zero power",
            add_validator(&st_mary, "0", "/ip4/127.0.0.1/tcp/7003"),
            exit::INVALID_INPUT,
            vec!["validators[2].power is 0"],
        ),
        (
            "negative power",
            add_validator(&st_mary, "-1", "/ip4/127.0.0.1/tcp/7003"),
            exit::INVALID_INPUT,
            vec!["invalid value '-1' for '--power <N>'"],
        ),
        (
            "bad listen address",
            add_validator(&st_mary, "1", "127.0.0.1:7003"),
            exit::INVALID_INPUT,
            vec!["validators[2].listen_addr \"127.0.0.1:7003\" is not an accepted multiaddr"],
        ),
        (
            "listen address already used",
            add_validator(&st_mary, "1", "/ip4/127.0.0.1/tcp/7002"),
            exit::INVALID_INPUT,
            vec!["listen address /ip4/127.0.0.1/tcp/7002 appears twice"],
        ),
        (
            "bad peer id",
            {
                let mut a = add_validator(&st_mary, "1", "/ip4/127.0.0.1/tcp/7003");
                a.extend(args(&["--peer-id", "QmNotAPeerId"]));
                a
            },
            exit::INVALID_INPUT,
            vec!["validators[2].peer_id \"QmNotAPeerId\" is not a valid libp2p peer id"],
        ),
        (
            "unknown role",
            args(&[
                "genesis",
                "add-actor",
                "--key",
                &did("actor/x"),
                "--organisation",
                &st_mary,
                "--role",
                "surgeon",
            ]),
            exit::INVALID_INPUT,
            vec!["unknown Role code \"surgeon\"", "physician"],
        ),
        (
            "missing argument",
            args(&["genesis", "add-org", "--name", "X"]),
            exit::INVALID_INPUT,
            vec!["--key <DID>"],
        ),
        (
            "unknown command",
            args(&["genesis", "remove-org"]),
            exit::INVALID_INPUT,
            vec!["unrecognized subcommand 'remove-org'"],
        ),
        (
            "overwriting init without --force",
            args(&["genesis", "init", "--chain-name", "another"]),
            exit::INVALID_INPUT,
            vec!["genesis.json already exists; pass --force to replace it"],
        ),
        (
            "invalid chain name on init --force",
            args(&["genesis", "init", "--force", "--chain-name", ""]),
            exit::INVALID_INPUT,
            vec!["chain_name \"\" is 0 bytes"],
        ),
    ];
    for (what, args, code, wants) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = twinctl(dir.path(), &args);
        assert_eq!(run.code, i32::from(code), "{what}: {run:?}");
        assert!(run.stdout.is_empty(), "{what}: printed {:?}", run.stdout);
        assert!(
            run.stderr.starts_with("error: "),
            "{what}: stderr {:?}",
            run.stderr
        );
        for want in wants {
            assert!(
                run.stderr.contains(want),
                "{what}: stderr does not say {want:?}:\n{}",
                run.stderr
            );
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{what}: the file changed"
        );
    }
    // Nothing but the genesis file in the directory: no temporary file left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["genesis.json"]);

    // init --force does replace it.
    ok(
        dir.path(),
        &["genesis", "init", "--force", "--chain-name", "another"],
    );
    assert_ne!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn missing_and_unwritable_files_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["genesis", "--file", "missing.json", "show"][..],
        &["genesis", "--file", "missing.json", "verify"],
        &[
            "genesis",
            "--file",
            "missing.json",
            "add-org",
            "--name",
            "X",
            "--key",
            &did("org/x"),
        ],
    ] {
        let run = twinctl(dir.path(), args);
        assert_eq!(run.code, i32::from(exit::IO_ERROR), "{args:?}: {run:?}");
        assert!(
            run.stderr.starts_with("error: cannot read missing.json: "),
            "{}",
            run.stderr
        );
    }
    assert!(!dir.path().join("missing.json").exists());

    let run = twinctl(
        dir.path(),
        &[
            "genesis",
            "--file",
            "no-such-dir/genesis.json",
            "init",
            "--chain-name",
            "x",
        ],
    );
    assert_eq!(run.code, i32::from(exit::IO_ERROR), "{run:?}");
    assert!(run.stderr.contains("no-such-dir"), "{}", run.stderr);
}

#[test]
fn invalid_files_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();

    // A hand-edited file with a zero power: verify, show and changes all refuse it.
    let edited = text.replacen("\"power\": 2", "\"power\": 0", 1);
    assert_ne!(edited, text);
    std::fs::write(&path, &edited).unwrap();
    for args in [
        &["genesis", "verify"][..],
        &["genesis", "show"],
        &["genesis", "add-org", "--name", "X", "--key", &did("org/x")],
    ] {
        let run = twinctl(dir.path(), args);
        assert_eq!(
            run.code,
            i32::from(exit::INVALID_INPUT),
            "{args:?}: {run:?}"
        );
        assert!(
            run.stderr
                .contains("genesis.json: validators[0].power is 0"),
            "{}",
            run.stderr
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    }

    // Not JSON.
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let run = twinctl(dir.path(), &["genesis", "verify"]);
    assert_eq!(run.code, i32::from(exit::INVALID_INPUT), "{run:?}");
    assert!(run.stderr.contains("not valid JSON"), "{}", run.stderr);

    // A draft is not a genesis: verify refuses it, show shows it without a chain id.
    ok(
        dir.path(),
        &["genesis", "init", "--force", "--chain-name", "draft"],
    );
    let run = twinctl(dir.path(), &["genesis", "verify"]);
    assert_eq!(run.code, i32::from(exit::INVALID_INPUT), "{run:?}");
    assert!(
        run.stderr.contains("at least one organisation is required"),
        "{}",
        run.stderr
    );
    let run = ok(dir.path(), &["--json", "genesis", "show"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["chain_id"], serde_json::Value::Null);
    assert_eq!(v["chain_name"], "draft");
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["genesis", "add-validator", "--help"]] {
        let run = ok(dir.path(), args);
        for (code, meaning) in exit::ALL {
            assert!(
                exit::one_line(&run.stdout)
                    .contains(&format!("{code} {}", exit::one_line(meaning))),
                "{args:?}:\n{}",
                run.stdout
            );
        }
    }
    let run = ok(dir.path(), &["--version"]);
    assert!(run.stdout.starts_with("twinctl "), "{}", run.stdout);
    // No command at all is a usage error.
    let run = twinctl(dir.path(), &[]);
    assert_eq!(run.code, i32::from(exit::INVALID_INPUT), "{run:?}");
}

/// A genesis built with the commands whose validators are listed by DNS name
/// (`/dns4/localhost/tcp/<port>`, as a compose file lists its services by host name): two real
/// validator replicas resolve each other's names, connect, and commit blocks together (with two
/// validators of equal power, no block is final without both signatures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_listed_by_dns_name_connect_and_commit_together() {
    use std::time::{Duration, Instant};
    use twinledger_node::consensus::replica::Replica;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        d,
        &[
            "genesis",
            "init",
            "--chain-name",
            "dns-names",
            "--genesis-time-ms",
            "1767225600000",
        ],
    );
    let names = ["st-mary", "northgate"];
    let mut addrs = Vec::new();
    for name in names {
        let org = did(&format!("org/{name}"));
        ok(d, &["genesis", "add-org", "--name", name, "--key", &org]);
        let port = twinledger_node::devnet::free_port().unwrap();
        let addr = format!("/dns4/localhost/tcp/{port}");
        ok(
            d,
            &[
                "genesis",
                "add-validator",
                "--organisation",
                &org,
                "--consensus-key",
                &did(&format!("validator/{name}")),
                "--listen-addr",
                &addr,
            ],
        );
        addrs.push((addr, port));
    }
    let genesis = GenesisFile::load(&d.join("genesis.json")).unwrap();
    for (v, (addr, _)) in genesis.validators.iter().zip(&addrs) {
        assert_eq!(&v.listen_addr, addr, "add-validator keeps the DNS name");
    }

    let mut replicas = Vec::new();
    for (name, (_, port)) in names.iter().zip(&addrs) {
        let key = dev_key(&format!("validator/{name}"));
        let data = d.join(name);
        let store = twinledger_node::open_store(&data).unwrap();
        let chain = twinledger_node::open_chain(&genesis, store, key.clone(), false).unwrap();
        let cfg = twinledger_node::replica_config(&genesis, &key, None, &[], &data).unwrap();
        let replica = Replica::start(chain.clone(), key, cfg).await.unwrap();
        // It listens where its name resolves on this host: loopback, the genesis port.
        assert_eq!(
            replica.p2p_addr.to_string(),
            format!("/ip4/127.0.0.1/tcp/{port}"),
            "{name}"
        );
        replicas.push((chain, replica));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while replicas.iter().any(|(chain, _)| chain.height() < 2) {
        let heights: Vec<u64> = replicas.iter().map(|(c, _)| c.height()).collect();
        assert!(
            Instant::now() < deadline,
            "validators named /dns4/localhost did not commit together: heights {heights:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (_, replica) in replicas {
        replica.stop().await.unwrap();
    }
}

/// `genesis add-observer` (issue #16): by key (the peer id derived from it) or by peer id; a
/// peer id already listed (an observer's or a validator's) and a malformed one are refused and
/// change nothing; the chain id does not change (observers are network policy, §10.2).
#[test]
fn observers_are_added_by_key_or_peer_id_and_duplicates_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = build(dir);
    let before = GenesisFile::load(&path).unwrap().chain_id().unwrap();
    let obs = key("observer/regulator");
    ok(
        dir,
        &[
            "genesis",
            "add-observer",
            "--name",
            "Regulator follower",
            "--key",
            &obs.to_did(),
        ],
    );
    let other = peer_id_from_ed25519(&key("observer/replica"));
    ok(
        dir,
        &[
            "genesis",
            "add-observer",
            "--name",
            "Replica",
            "--peer-id",
            &other,
        ],
    );
    let g = GenesisFile::load(&path).unwrap();
    assert_eq!(g.observers.len(), 2);
    assert_eq!(g.observers[0].peer_id, peer_id_from_ed25519(&obs));
    assert_eq!(g.observers[1].peer_id, other);
    assert_eq!(
        g.chain_id().unwrap(),
        before,
        "observers changed the chain id"
    );

    let bytes = std::fs::read(&path).unwrap();
    let validator_peer = g.validators[0].peer_id.clone();
    for (args, says) in [
        (
            vec!["--name", "Again", "--key", &obs.to_did() as &str],
            "peer",
        ),
        (
            vec!["--name", "A validator's", "--peer-id", &validator_peer],
            "peer",
        ),
        (
            vec!["--name", "Garbage", "--peer-id", "not-a-peer-id"],
            "peer",
        ),
    ] {
        let mut full = vec!["genesis", "add-observer"];
        full.extend(args.iter().copied());
        let run = twinctl(dir, &full);
        assert_eq!(
            run.code,
            i32::from(exit::INVALID_INPUT),
            "{full:?}: {run:?}"
        );
        assert!(run.stderr.contains(says), "{full:?}: {}", run.stderr);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{full:?} changed the file"
        );
    }
}
