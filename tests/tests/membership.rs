//! Membership on a live network (issue #16; PROTOCOL.md §6.8, §7.1), with real `twinledger-node`
//! processes and the real `twinctl governance` commands (propose, approve by each validator,
//! submit), under a stream of submitted events, with no restart of any node that stays:
//!
//! 1. a node whose key is in no set is refused at the handshake and follows nothing;
//! 2. governance grows the network from 4 to 5 validators: the new node, started with
//!    `--observer`, follows from the block that schedules it and signs from the height its set is
//!    in force: with one original validator killed, only its vote makes the quorum (4 of 5);
//! 3. governance shrinks it back to 4: the removed validator is disconnected (its height stops
//!    while the others go on), and 3 of the 4 are a quorum again;
//! 4. governance rotates one validator's key: the node holding the new key takes over, and with
//!    the old node and one other killed, only its vote makes the quorum (3 of 4);
//! 5. governance adds an observer (refused before, following after) and removes it (disconnected);
//!
//! and at the end every store, the extra nodes' too, re-verifies in full (every signature,
//! certificate and block re-executed), the stores agree block for block (no fork), no double
//! sign was recorded, and every accepted event is committed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use twinledger_core::{Keypair, PublicKey};
use twinledger_node::keyfile;
use twinledger_tests::NodeProcess;
use twinledger_tests::procnet::{ProcNet, exclusive};

/// Runs `twinctl --node <node> --json <args>` (the library the binary runs) off the async runtime.
async fn twinctl(node: &str, args: &[&str]) -> Result<Value, String> {
    let mut argv: Vec<String> = vec![
        "twinctl".into(),
        "--node".into(),
        node.into(),
        "--json".into(),
    ];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    tokio::task::spawn_blocking(move || {
        let cli = twinledger_cli::parse_args(argv).map_err(|e| e.to_string())?;
        twinledger_cli::run(&cli)
            .map(|o| o.json)
            .map_err(|e| e.to_string())
    })
    .await
    .expect("twinctl thread")
}

/// Proposes `change`, has each of `approvers` approve it, submits it with the first; returns the
/// height of the block that applied it.
async fn govern(node: &str, file: &Path, change: &[&str], approvers: &[PathBuf]) -> u64 {
    let f = file.display().to_string();
    let mut propose = vec!["governance", "propose", "--out", f.as_str()];
    propose.extend_from_slice(change);
    twinctl(node, &propose).await.expect("propose");
    for k in approvers {
        let k = k.display().to_string();
        twinctl(node, &["governance", "approve", &f, "--key", &k])
            .await
            .expect("approve");
    }
    let status = twinctl(node, &["governance", "status", &f])
        .await
        .expect("status");
    assert_eq!(status["quorum"], true, "{status}");
    let k = approvers[0].display().to_string();
    let out = twinctl(node, &["governance", "submit", &f, "--key", &k])
        .await
        .expect("submit");
    out["height"].as_u64().expect("applied height")
}

/// A new node key, as a development key of the devnet's chain, in `dir/node.key`.
fn new_key(dir: &Path, net: &ProcNet) -> (Keypair, PathBuf) {
    let key = keyfile::generate().expect("key");
    let path = dir.join("node.key");
    std::fs::create_dir_all(dir).expect("dir");
    keyfile::write_dev(&path, &key, net.chain, "membership test").expect("write key");
    (key, path)
}

/// Starts a node outside the genesis file with `--observer` (whether it signs is the chain's
/// decision) in `dir`.
fn start_outsider(net: &mut ProcNet, name: &str, dir: &Path, key: &Path) -> usize {
    let args: Vec<String> = [
        "--genesis",
        &net.devnet.genesis_path.display().to_string(),
        "--validator-key",
        &key.display().to_string(),
        "--data-dir",
        &dir.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--p2p-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--observer",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let p = NodeProcess::start(&args).expect("outsider starts");
    net.start_extra_in(name, p, dir)
}

/// Waits until node `i` has advanced `blocks` blocks past where it is (deadline 45 s: a few
/// rounds, not a stall).
async fn advances(net: &ProcNet, i: usize, blocks: u64, what: &str) -> u64 {
    let from = net.height(i).await;
    let to = from + blocks;
    net.wait(what, Duration::from_secs(45), async |n| {
        n.height(i).await >= to
    })
    .await;
    net.height(i).await
}

/// Submits `n` events round-robin to the nodes `to` (0 and 1, which stay up: a node killed
/// with -9 loses the events it admitted but had not yet gossiped, which is not what this test
/// is about; `tests/crash.rs` is).
async fn load(net: &mut ProcNet, to: &[usize], n: usize, accepted: &mut Vec<usize>) {
    for k in 0..n {
        let i = to[k % to.len()];
        let idx = net.created();
        if net.submit(i).await {
            accepted.push(idx);
        }
    }
}

fn did(k: &PublicKey) -> String {
    k.to_did()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_grows_shrinks_rotates_and_admits_observers_by_governance_without_restarts() {
    let _one = exclusive().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut net = ProcNet::start_all(tmp.path(), 4, 0);
    net.wait_all_at(2).await;
    let node0 = net.procs[0].as_ref().expect("node 0").url("");
    let vkey = |i: usize| net.devnet.nodes[i].key_path.clone();
    let (v0, v1, v2, v3) = (vkey(0), vkey(1), vkey(2), vkey(3));
    let hospital0 = net.genesis.organisations[0].key;
    let mut accepted = Vec::new();
    load(&mut net, &[0, 1], 20, &mut accepted).await;

    // 1. An outsider (key in no set) is refused at the handshake and follows nothing.
    let (k4, k4_path) = new_key(&tmp.path().join("validator-new"), &net);
    let n4 = start_outsider(
        &mut net,
        "validator-new",
        &tmp.path().join("validator-new"),
        &k4_path,
    );
    advances(&net, 0, 3, "the network goes on beside an outsider").await;
    assert_eq!(
        net.height(n4).await,
        0,
        "a node whose key no set names followed the chain"
    );

    // 2. Grow from 4 to 5: the new validator signs from the height its set is in force.
    let grown = govern(
        &node0,
        &tmp.path().join("grow.json"),
        &[
            "add-validator",
            "--validator",
            &did(&k4.public()),
            "--organisation",
            &did(&hospital0),
        ],
        &[v0.clone(), v1.clone(), v2.clone()],
    )
    .await;
    net.wait(
        "the new validator follows from the block that schedules it",
        Duration::from_secs(45),
        async |n| n.height(n4).await >= grown + 2,
    )
    .await;
    load(&mut net, &[0, 1], 20, &mut accepted).await;
    // With validator 3 down, 4 of the 5 are up: a quorum only if the new one signs.
    net.kill9(3);
    advances(
        &net,
        0,
        3,
        "4 of 5 validators, the new one among them, commit",
    )
    .await;
    net.start(3);
    load(&mut net, &[0, 1], 10, &mut accepted).await;

    // 3. Shrink back to 4: the removed validator is disconnected.
    let shrunk = govern(
        &node0,
        &tmp.path().join("shrink.json"),
        &["remove-validator", "--validator", &did(&k4.public())],
        &[v0.clone(), v1.clone(), v2.clone(), v3.clone()],
    )
    .await;
    net.wait(
        "the set without the new validator in force",
        Duration::from_secs(45),
        async |n| n.height(0).await >= shrunk + 4,
    )
    .await;
    let stopped_at = net.height(n4).await;
    advances(&net, 0, 4, "the network goes on after the removal").await;
    assert_eq!(
        net.height(n4).await,
        stopped_at,
        "the removed validator still receives blocks: it was not disconnected"
    );
    assert!(
        stopped_at <= shrunk + 4,
        "removed at {shrunk}, followed to {stopped_at}"
    );
    // 3 of the 4 are a quorum again: the removed one and validator 3 down.
    net.kill9(n4);
    net.kill9(3);
    advances(&net, 0, 3, "3 of 4 validators commit after the removal").await;
    net.start(3);

    // 4. Rotate validator 2's key: the node with the new key takes over.
    let (k2b, k2b_path) = new_key(&tmp.path().join("validator-2-rotated"), &net);
    let n2b = start_outsider(
        &mut net,
        "validator-2-rotated",
        &tmp.path().join("validator-2-rotated"),
        &k2b_path,
    );
    let v2_key = keyfile::read_file(&v2)
        .expect("validator 2 key")
        .key
        .public();
    let rotated = govern(
        &node0,
        &tmp.path().join("rotate.json"),
        &[
            "rotate-validator",
            "--from",
            &did(&v2_key),
            "--to",
            &did(&k2b.public()),
        ],
        &[v0.clone(), v1.clone(), v3.clone()],
    )
    .await;
    net.wait(
        "the rotated key's node follows",
        Duration::from_secs(45),
        async |n| n.height(n2b).await >= rotated + 2,
    )
    .await;
    load(&mut net, &[0, 1], 10, &mut accepted).await;
    // The old key's node and validator 3 down: 0, 1 and the new key are 3 of 4.
    net.kill9(2);
    net.kill9(3);
    advances(&net, 0, 3, "the rotated-in key makes the quorum").await;
    net.start(3);

    // 5. An observer: refused before governance adds it, following after, cut off when removed.
    let (obs, obs_path) = new_key(&tmp.path().join("observer-new"), &net);
    let no = start_outsider(
        &mut net,
        "observer-new",
        &tmp.path().join("observer-new"),
        &obs_path,
    );
    advances(
        &net,
        0,
        3,
        "the network goes on beside an unlisted observer",
    )
    .await;
    assert_eq!(net.height(no).await, 0, "an unlisted observer followed");
    let approvers = [v0.clone(), v1.clone(), v3.clone()];
    govern(
        &node0,
        &tmp.path().join("add-observer.json"),
        &[
            "add-observer",
            "--observer",
            &did(&obs.public()),
            "--organisation",
            &did(&hospital0),
        ],
        &approvers,
    )
    .await;
    let tip = net.height(0).await;
    net.wait(
        "the observer follows once governance adds it",
        Duration::from_secs(45),
        async |n| n.height(no).await >= tip,
    )
    .await;
    let removed = govern(
        &node0,
        &tmp.path().join("remove-observer.json"),
        &["remove-observer", "--observer", &did(&obs.public())],
        &approvers,
    )
    .await;
    net.wait(
        "two blocks past the observer's removal",
        Duration::from_secs(45),
        async |n| n.height(0).await >= removed + 2,
    )
    .await;
    let cut_at = net.height(no).await;
    advances(
        &net,
        0,
        4,
        "the network goes on after the observer's removal",
    )
    .await;
    assert_eq!(
        net.height(no).await,
        cut_at,
        "the removed observer still receives blocks"
    );
    load(&mut net, &[0, 1], 10, &mut accepted).await;
    let last = net.height(0).await + 2;
    net.wait(
        "the last events committed",
        Duration::from_secs(45),
        async |n| n.height(0).await >= last,
    )
    .await;

    // Every store re-verifies, no fork, no double sign, every accepted event committed.
    let (tips, ids) = net.stop_and_verify();
    let (i0, _) = tips
        .iter()
        .enumerate()
        .max_by_key(|(_, t)| **t)
        .expect("tips");
    for k in accepted {
        assert!(
            ids[i0].contains(&net.event_id(k)),
            "accepted event {k} is not committed"
        );
    }
}
