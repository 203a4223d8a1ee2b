//! The WAN-like test bed in CI size (`twinledger_tests::wan`): four validators, each in its own
//! network namespace, 10–40 ms one-way delay, ±2 ms jitter, 1% loss per direction. Skips with a
//! message where namespaces cannot be created (not root, no `ip` or `iptables`). The full runs
//! (1,000 events/s, a 60 s partition, the kill -9 soak) are `wanbed` (operator guide, "Testing
//! on a WAN-like bed").
#![allow(clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use twinledger_tests::procnet::exclusive;
use twinledger_tests::wan::{self, WanBed, WanConfig};

fn facilities() -> bool {
    match wan::check_facilities() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("skipping: {why}");
            false
        }
    }
}

async fn ci_bed(dir: &std::path::Path) -> Arc<WanBed> {
    let mut cfg = WanConfig::new(twinledger_tests::node_binary().expect("node binary"));
    cfg.delay_ms = (10, 40);
    cfg.jitter_ms = 2;
    let bed = Arc::new(WanBed::start(dir, cfg).await.expect("the bed starts"));
    eprintln!("bed: {}", bed.describe());
    let all: Vec<usize> = (0..bed.len()).collect();
    bed.wait_at(&all, 2, Duration::from_secs(120))
        .await
        .expect("the network forms across the bed");
    bed
}

/// Attacker: the network cuts one hospital off (every packet to and from its peers dropped).
/// The other three keep committing, the isolated one commits nothing alone, and once healed it
/// catches up and holds the same blocks (no fork).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_hospital_does_not_stop_the_others_and_rejoins_without_forking() {
    if !facilities() {
        return;
    }
    let _one = exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let bed = ci_bed(dir.path()).await;
    let all: Vec<usize> = (0..bed.len()).collect();
    let l = wan::latency(&bed, "ci-load", 0, 50, 3, &all)
        .await
        .expect("load");
    eprintln!("load: {l}");
    assert!(l.seen > 0 && l.seen + l.refused == l.offered, "{l}");
    let r = wan::partition(&bed, 3, Duration::from_secs(5), 20, "ci-partition")
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nnode 3 said:\n{}", bed.log_tail(3)));
    eprintln!("partition: {r}");
    assert!(r.majority_blocks >= 1 && r.majority_events > 0, "{r}");
    assert_eq!(
        r.isolated_blocks, 0,
        "the isolated node committed alone: {r}"
    );
    let tips = bed
        .stop_and_verify()
        .expect("every store verifies, no fork");
    eprintln!("tips {tips:?}");
}

/// Attacker: one hospital sits behind a link that drops 35% of its packets each way. It cannot
/// stall the others: they keep committing the load, and the lossy node ends with the same
/// blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hospital_behind_a_lossy_link_does_not_stall_the_others() {
    if !facilities() {
        return;
    }
    let _one = exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let bed = ci_bed(dir.path()).await;
    let all: Vec<usize> = (0..bed.len()).collect();
    bed.set_uplink_loss(3, 0.35).expect("lossy uplink");
    let h0 = bed.height(0).await;
    let l = wan::latency(&bed, "ci-lossy", 0, 20, 5, &[0, 1, 2])
        .await
        .expect("load");
    eprintln!("with node 3 behind a 35% lossy link: {l}");
    assert_eq!(
        l.seen + l.refused,
        l.offered,
        "events accepted by the others were not all committed: {l}"
    );
    assert!(l.seen > 0, "{l}");
    let h1 = bed.height(0).await;
    assert!(h1 >= h0 + 3, "the others stalled: height {h0} → {h1}");
    bed.heal(3).expect("heal");
    let top = bed.height(0).await;
    bed.wait_at(&all, top, Duration::from_secs(120))
        .await
        .expect("the lossy node catches up");
    bed.agree_at(&all, top).await.expect("no fork");
    bed.stop_and_verify()
        .expect("every store verifies, no fork");
}
