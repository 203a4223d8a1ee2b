//! Online backup and restore of a validator in a running network (issue #16, ADR 0015), with
//! real processes: a backup of validator 2 is taken while the network commits; validator 2 is
//! killed with -9 and its disk lost; restored from the backup into a new data directory, it
//! starts, catches up, waits (its signing guard) until the chain holds blocks made after the
//! restore, and signs again (with validator 3 killed too, the network commits only if the
//! restored validator votes). It never double-signs: every
//! store re-verifies at the end with no misbehaviour recorded, and blocks agree everywhere.

use std::process::Command;
use std::time::Duration;

use twinledger_tests::node_binary;
use twinledger_tests::procnet::{ProcNet, exclusive};

fn run(args: &[&str]) -> String {
    let out = Command::new(node_binary().expect("node binary"))
        .args(args)
        .output()
        .expect("twinledger-node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "twinledger-node {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_restored_from_an_online_backup_catches_up_and_signs_without_double_signing() {
    let _one = exclusive().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut net = ProcNet::start_all(tmp.path(), 4, 0);
    net.wait_all_at(2).await;
    for k in 0..30 {
        net.submit(k % 2).await;
    }
    let url = net.procs[2].as_ref().expect("validator 2").url("");
    let key = net.devnet.nodes[2].key_path.display().to_string();
    let backup = tmp.path().join("validator-2.backup");
    let b = backup.display().to_string();
    // Online: the network keeps committing while the backup is taken.
    run(&["backup", "--url", &url, "--key", &key, "--out", &b]);
    for k in 0..30 {
        net.submit(k % 2).await;
    }
    let before = net.height(2).await;
    net.wait(
        "the network two blocks past the backup",
        Duration::from_secs(45),
        async |n| n.height(0).await >= before + 2,
    )
    .await;

    // Validator 2's disk is lost.
    net.kill9(2);
    let data = net.devnet.nodes[2].data_dir.clone();
    let lost = data.join("db");
    std::fs::remove_dir_all(&lost).expect("remove the store");
    let _ = std::fs::remove_file(data.join("consensus.wal"));
    let restored = tmp.path().join("validator-2-restored");
    let genesis = net.devnet.genesis_path.display().to_string();
    run(&[
        "restore",
        "--from",
        &b,
        "--data-dir",
        &restored.display().to_string(),
        "--genesis",
        &genesis,
    ]);
    // Its node runs on the restored store, with its key, where its data dir was.
    std::fs::rename(restored.join("db"), &lost).expect("move the restored store in place");
    net.start(2);
    let top = net.height(0).await;
    net.wait(
        "the restored validator catches up",
        Duration::from_secs(60),
        async |n| n.height(2).await >= top,
    )
    .await;
    // The restored validator signs nothing until the chain holds a block made after the restore
    // (its signing guard, ADR 0015: it cannot know what it signed after the backup): the others
    // commit a few more blocks first.
    net.wait(
        "the restored validator past blocks made after the restore",
        Duration::from_secs(60),
        async |n| n.height(2).await >= top + 8,
    )
    .await;
    // With validator 3 down, 0, 1 and the restored 2 are 3 of 4: progress needs its votes.
    net.kill9(3);
    let from = net.height(0).await;
    net.wait(
        "the network commits with the restored validator's votes",
        Duration::from_secs(60),
        async |n| n.height(0).await >= from + 3,
    )
    .await;
    net.start(3);
    let (tips, _) = net.stop_and_verify();
    // 0, 1 and the restored 2 committed together; 3 was down meanwhile (its store verified too).
    assert!(tips[..3].iter().all(|t| *t >= from + 3), "{tips:?}");
}
