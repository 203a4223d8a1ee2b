//! The checkpoint witness catches a forged fork: two chains from one genesis, signed by
//! validator keys the test controls, each with a valid certificate at the same height. The
//! report names exactly the validators that signed both sides; exit code 6.

use std::process::Command;

use twinledger_core::devkit::dev_key;
use twinledger_core::{Checkpoint, CommitCertificate, CommitVote, Keypair, State, Timestamp};
use twinledger_genesis::{GenesisFile, ValidatorEntry, peer_id_from_ed25519};

fn twinctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_twinctl"))
        .args(args)
        .output()
        .unwrap()
}

/// A certified checkpoint of an empty block at height 1 with time `t`, signed by `signers`.
fn checkpoint(state: &State, vals: &[Keypair], signers: &[usize], t: u64) -> String {
    let built = state
        .build_block(vals[0].public(), Timestamp(t), vec![])
        .unwrap();
    let cp: Checkpoint = built.block.header.checkpoint();
    let vote = CommitVote {
        checkpoint: cp,
        round: 0,
    };
    let cert = CommitCertificate::new(0, signers.iter().map(|&i| vote.sign(&vals[i])).collect());
    cp.to_text(&cert)
}

#[test]
fn a_forged_fork_is_caught_and_the_double_signers_named() {
    let dir = tempfile::tempdir().unwrap();
    let org = dev_key("fork/hospital");
    let vals: Vec<Keypair> = (0..4)
        .map(|i| dev_key(&format!("fork/validator/{i}")))
        .collect();
    let mut g = GenesisFile::new("fork-test", 1_767_225_600_000);
    g.add_org("Hospital", org.public()).unwrap();
    for (i, v) in vals.iter().enumerate() {
        g.add_validator(ValidatorEntry {
            organisation: org.public(),
            consensus_key: v.public(),
            power: 1,
            peer_id: peer_id_from_ed25519(&v.public()),
            listen_addr: format!("/ip4/127.0.0.1/tcp/{}", 7001 + i),
        })
        .unwrap();
    }
    let gpath = dir.path().join("genesis.json");
    g.save(&gpath).unwrap();
    let state = State::from_genesis(&g.ledger_genesis().unwrap()).unwrap();

    // Side A signed by validators 0, 1, 2; side B by 1, 2, 3: both hold > 2/3 of the power.
    let a = checkpoint(&state, &vals, &[0, 1, 2], 1_767_225_601_000);
    let b = checkpoint(&state, &vals, &[1, 2, 3], 1_767_225_602_000);
    let (pa, pb) = (dir.path().join("a.cp"), dir.path().join("b.cp"));
    std::fs::write(&pa, &a).unwrap();
    std::fs::write(&pb, &b).unwrap();
    let state_dir = dir.path().join("witness");
    let (s, g) = (state_dir.to_str().unwrap(), gpath.to_str().unwrap());

    let o = twinctl(&[
        "audit",
        "witness",
        "--state",
        s,
        "--genesis",
        g,
        "--checkpoint",
        pa.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = twinctl(&[
        "audit",
        "witness",
        "--state",
        s,
        "--genesis",
        g,
        "--checkpoint",
        pa.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "the same checkpoint again is fine");
    let o = twinctl(&[
        "audit",
        "witness",
        "--state",
        s,
        "--genesis",
        g,
        "--checkpoint",
        pb.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(6));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("FORK"), "{err}");
    assert!(err.contains("2 validator(s) signed both sides"), "{err}");
    // The summary line names exactly the validators that signed both sides.
    let line = err.lines().next().unwrap();
    for i in [1, 2] {
        assert!(
            line.contains(&vals[i].public().to_did()),
            "validator {i} named: {line}"
        );
    }
    for i in [0, 3] {
        assert!(
            !line.contains(&vals[i].public().to_did()),
            "validator {i} not named: {line}"
        );
    }

    // A checkpoint without a quorum is refused, not stored.
    let weak = checkpoint(&state, &vals, &[0, 1], 1_767_225_603_000);
    let pw = dir.path().join("weak.cp");
    std::fs::write(&pw, &weak).unwrap();
    let o = twinctl(&[
        "audit",
        "witness",
        "--state",
        s,
        "--genesis",
        g,
        "--checkpoint",
        pw.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&o.stderr).contains("more than two thirds"));
}
