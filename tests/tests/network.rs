//! Multi-process BFT network: 4 validator processes and an observer on loopback (ports picked
//! by the OS), real libp2p, real sled stores, kill -9.
//!
//! One scenario, in order (each step waits on a condition with a deadline):
//! 1. events submitted to every validator become final on all nodes;
//! 2. kill -9 one validator under load: the other three keep finalising;
//! 3. restart it: it catches up (sync) and rejoins;
//! 4. kill -9 two of four: nothing more is finalised; restart both: progress resumes and the
//!    events submitted meanwhile become final;
//! 5. a node whose peer id is not in genesis cannot connect, follows nothing, and what is
//!    submitted to it never reaches the chain; the observer listed in genesis follows;
//! 6. every store re-verifies in full (`Chain::open` with every signature and certificate),
//!    the blocks are identical at every height on every node, and no validator was recorded
//!    double-signing across the kills (the signing record survives kill -9).

use std::time::Duration;

use twinledger_node::keyfile;
use twinledger_tests::NodeProcess;
use twinledger_tests::procnet::{ProcNet, exclusive};

async fn all_final(net: &ProcNet, range: std::ops::Range<usize>, n: u64) -> bool {
    for i in range {
        if net.log_size(i).await < n {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validator_processes_replicate_survive_kill9_and_refuse_strangers() {
    let _one = exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let mut net = ProcNet::start_all(dir.path(), 4, 1);

    // 1. Events submitted to any validator become final everywhere.
    for k in 0..20 {
        net.submit(k % 4).await;
    }
    net.wait(
        "20 events final on all 5 nodes",
        Duration::from_secs(60),
        async |net| all_final(net, 0..5, 20).await,
    )
    .await;

    // 2. kill -9 validator 3 under load: the others keep finalising.
    net.submit(0).await;
    net.kill9(3);
    for k in 0..15 {
        net.submit(k % 3).await;
    }
    let expected = net.submitted;
    net.wait(
        "3 validators finalise without the 4th",
        Duration::from_secs(60),
        async |net| all_final(net, 0..3, expected).await,
    )
    .await;

    // 3. Restart it: it catches up and rejoins.
    net.start(3);
    net.wait(
        "the restarted validator catches up",
        Duration::from_secs(60),
        async |net| net.log_size(3).await >= expected,
    )
    .await;
    for k in 0..8 {
        net.submit(k % 4).await;
    }
    let expected = net.submitted;
    net.wait(
        "all four finalise again",
        Duration::from_secs(60),
        async |net| all_final(net, 0..4, expected).await,
    )
    .await;

    // 4. Two of four down: no progress, no fork; both back: progress resumes.
    net.kill9(2);
    net.kill9(3);
    let stuck = net.height(0).await;
    let pending = net.submit(0).await;
    // Observation window for the absence of progress (not synchronisation): several rounds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(net.height(0).await, stuck, "finalised without a quorum");
    assert_eq!(net.height(1).await, stuck, "finalised without a quorum");
    net.start(2);
    net.start(3);
    let expected = net.submitted;
    net.wait(
        "progress resumes with both back",
        Duration::from_secs(90),
        async |net| all_final(net, 0..4, expected).await,
    )
    .await;
    let _ = pending;

    // 5. A stranger (peer id not in genesis) follows nothing; its submissions go nowhere. The
    //    listed observer (node 4) follows.
    let stranger_dir = dir.path().join("stranger");
    std::fs::create_dir_all(&stranger_dir).unwrap();
    let key = keyfile::generate().unwrap();
    keyfile::write(&stranger_dir.join("node.key"), &key, "test").unwrap();
    let args: Vec<String> = [
        "--genesis",
        &net.devnet.genesis_path.display().to_string(),
        "--validator-key",
        &stranger_dir.join("node.key").display().to_string(),
        "--data-dir",
        &stranger_dir.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--observer",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stranger = net.start_extra(NodeProcess::start(&args).unwrap());
    let lost = net.submit(stranger).await;
    for k in 0..4 {
        net.submit(k).await;
    }
    let expected = net.submitted - 1; // all but the stranger's
    net.wait(
        "validators and observer move on",
        Duration::from_secs(60),
        async |net| all_final(net, 0..5, expected).await,
    )
    .await;
    assert_eq!(
        net.height(stranger).await,
        0,
        "the stranger received blocks"
    );
    // Everything else became final; the stranger's event is not on the chain (exactly the
    // others are), and the stranger's own node holds it pending, unfinalised.
    assert_eq!(
        net.log_size(0).await,
        expected,
        "the stranger's event reached the chain"
    );
    let st = net.health(stranger).await.unwrap();
    assert_eq!(st["mempool"].as_u64(), Some(1), "{st}");
    let _ = lost;

    // 6. Stop everything; every store verifies in full and they agree block by block.
    let (tips, _) = net.stop_and_verify();
    assert!(tips.iter().take(5).all(|t| *t >= 5), "{tips:?}");
}
