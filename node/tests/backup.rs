//! Online backup and restore (issue #16, ADR 0015): a backup of a running node under writes
//! restores into a new data dir and the node starts on it at the backup's tip and checkpoint;
//! the attackers: a tampered byte, a forged block behind a recomputed content hash, a cut
//! file, another chain's genesis, a non-empty data dir; and the restored validator's signing
//! guard.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tempfile::TempDir;
use twinledger_core::audit::{CommittedBlock, EXPORT_MAGIC, export_frame};
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::consensus::VoteKind;
use twinledger_core::event::access::AccessRequest;
use twinledger_core::{Commitment, EventPayload, Keypair};
use twinledger_node::backup::{
    self, BackupError, BackupFile, BackupHeader, BackupOptions, END_MAGIC, HASH_CONTEXT, MAGIC,
};
use twinledger_node::consensus::app::ChainApp;
use twinledger_node::consensus::engine::{App as _, Slot};

fn access(patient: &Keypair) -> EventPayload {
    EventPayload::AccessRequest(AccessRequest {
        patient: patient.public(),
        category: DataCategory::VitalSigns,
        purpose: Purpose::Treat,
        action: Action::Read,
        resource: Commitment::new(&[7; 32], b"twin-store://backup"),
    })
}

/// A node with `n` access requests committed; returns it and the next sequence number.
async fn node_with_blocks(dir: &Path, n: u64) -> TestNode {
    let node = TestNode::start(dir).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    for seq in 0..n {
        let (s, v) = node
            .submit(&node.event(&k.physician, seq, access(&alice)))
            .await;
        assert_eq!(s, 202, "{v}");
        // A few blocks rather than one.
        if seq % 3 == 2 {
            node.wait_log(seq + 1).await;
        }
    }
    node.wait_log(n).await;
    node
}

async fn take_backup(node: &TestNode, out: &Path) -> backup::Summary {
    backup::backup(&BackupOptions {
        url: format!("http://{}", node.addr),
        key: keys().validator,
        ca_cert: None,
        client_cert: None,
        out: out.to_path_buf(),
    })
    .await
    .unwrap()
}

/// Writes a backup file from a header and blocks, with a correct content hash: what a forger
/// who knows the format can do.
fn forge(path: &Path, header: &BackupHeader, blocks: &[CommittedBlock]) {
    let mut bytes = MAGIC.to_vec();
    let hb = serde_json::to_vec(header).unwrap();
    bytes.extend_from_slice(&u32::try_from(hb.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(&hb);
    let start = bytes.len();
    bytes.extend_from_slice(EXPORT_MAGIC);
    for b in blocks {
        bytes.extend_from_slice(&export_frame(b));
    }
    let body_len = (bytes.len() - start) as u64;
    bytes.extend_from_slice(END_MAGIC);
    bytes.extend_from_slice(&body_len.to_be_bytes());
    let hash = blake3::Hasher::new_derive_key(HASH_CONTEXT)
        .update(&bytes)
        .finalize();
    bytes.extend_from_slice(hash.as_bytes());
    std::fs::File::create(path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
}

#[tokio::test]
async fn a_backup_under_writes_restores_and_the_node_starts_at_the_backups_tip() {
    let tmp = TempDir::new().unwrap();
    let live = tmp.path().join("live");
    let node = node_with_blocks(&live, 6).await;
    // Writes keep coming while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let (url, chain) = (node.url("/v1/events"), node.chain.clone());
        tokio::spawn(async move {
            let k = keys();
            let alice = patient("alice");
            let http = reqwest::Client::new();
            let mut seq = 6;
            while !stop.load(Ordering::Relaxed) {
                let ev = twinledger_core::Event::new(
                    chain.chain_id(),
                    k.physician.public(),
                    seq,
                    twinledger_node::chain::now().plus_ms(3_600_000),
                    access(&alice),
                )
                .sign(&k.physician);
                let r = http
                    .post(&url)
                    .json(&serde_json::json!({"event": hex::encode(ev.to_bytes())}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                seq += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seq
        })
    };
    let out = tmp.path().join("chain.twlbak");
    let summary = take_backup(&node, &out).await;
    // The chain moves on after the backup.
    let after = summary.header.tip_height + 2;
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.chain.height() < after {
        assert!(Instant::now() < deadline, "the chain did not move on");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    assert!(written > 6);
    assert!(summary.header.tip_height >= 2);
    assert_eq!(summary.header.chain_id, node.chain_id().to_string());
    assert!(!tmp.path().join("chain.twlbak.partial").exists());
    // The file checks itself.
    let f = BackupFile::open(&out).unwrap();
    f.check_content().unwrap();
    assert_eq!(f.header, summary.header);
    // Never overwritten.
    let again = backup::backup(&BackupOptions {
        url: format!("http://{}", node.addr),
        key: keys().validator,
        ca_cert: None,
        client_cert: None,
        out: out.clone(),
    })
    .await
    .unwrap_err();
    assert!(again.to_string().contains("never overwritten"), "{again}");
    node.stop().await;

    let restored = tmp.path().join("restored");
    let s = backup::restore(&out, &restored, &genesis(&keys())).unwrap();
    assert_eq!(s.header, summary.header);
    let node = TestNode::start(&restored).await.unwrap();
    assert_eq!(node.chain.height(), summary.header.tip_height);
    let (status, v) = node.get("/v1/checkpoint").await;
    assert_eq!(status, 200, "{v}");
    let cp: twinledger_core::Checkpoint = serde_json::from_value(v["checkpoint"].clone()).unwrap();
    assert_eq!(cp, summary.header.checkpoint);
    assert_eq!(node.chain.state().log_size(), cp.log_size);
    // The restored store carries the signing guard.
    assert!(backup::signing_guard(node.chain.store()).is_some());
    node.stop().await;
}

#[tokio::test]
async fn a_tampered_cut_or_foreign_backup_is_refused_and_leaves_nothing_behind() {
    let tmp = TempDir::new().unwrap();
    let node = node_with_blocks(&tmp.path().join("live"), 6).await;
    let out = tmp.path().join("good.twlbak");
    let summary = take_backup(&node, &out).await;
    node.stop().await;
    let good = std::fs::read(&out).unwrap();
    let g = genesis(&keys());
    let target = tmp.path().join("target");
    let refuse = |file: &Path, g: &twinledger_genesis::GenesisFile| {
        let e = backup::restore(file, &target, g).unwrap_err();
        assert!(
            !target.exists(),
            "a refused restore left {}",
            target.display()
        );
        e
    };

    // One byte changed in the middle (inside a block).
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    let tampered = tmp.path().join("tampered.twlbak");
    std::fs::write(&tampered, &bad).unwrap();
    let e = refuse(&tampered, &g);
    assert!(matches!(e, BackupError::Tampered { .. }), "{e}");
    assert!(
        e.to_string().contains("tampered.twlbak")
            && e.to_string().contains("content hash does not match"),
        "{e}"
    );

    // Cut short.
    let cut = tmp.path().join("cut.twlbak");
    std::fs::write(&cut, &good[..good.len() - 100]).unwrap();
    let e = refuse(&cut, &g);
    assert!(matches!(e, BackupError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("cut.twlbak is truncated"), "{e}");

    // Not a backup at all.
    let other = tmp.path().join("other.bin");
    std::fs::write(&other, b"TWLEXP01 an export, not a backup").unwrap();
    let e = refuse(&other, &g);
    assert!(matches!(e, BackupError::NotBackup { .. }), "{e}");

    // Another chain's genesis.
    let k = keys();
    let foreign = twinledger_node::dev::solo_genesis(
        "another-chain",
        1_767_225_600_000,
        "Other Hospital",
        &k.hospital,
        &k.validator,
    )
    .unwrap();
    let e = refuse(&out, &foreign);
    assert!(matches!(e, BackupError::WrongChain { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("backup of chain {}", summary.header.chain_id)),
        "{e}"
    );

    // A non-empty data dir: refused, and what it held is untouched.
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("keep.txt"), b"mine").unwrap();
    let e = backup::restore(&out, &target, &g).unwrap_err();
    assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
}

#[tokio::test]
async fn a_forged_block_behind_a_recomputed_hash_is_refused_by_re_execution() {
    let tmp = TempDir::new().unwrap();
    let node = node_with_blocks(&tmp.path().join("live"), 12).await;
    let out = tmp.path().join("good.twlbak");
    take_backup(&node, &out).await;
    node.stop().await;
    let f = BackupFile::open(&out).unwrap();
    let blocks: Vec<CommittedBlock> = f.blocks().unwrap().map(Result::unwrap).collect();
    assert!(blocks.len() >= 3, "{} blocks", blocks.len());
    let g = genesis(&keys());

    // The results of a block rewritten (an access decision the rules did not make), the file
    // re-hashed: the hash passes, re-execution does not.
    let i = blocks
        .iter()
        .position(|b| !b.results.outcomes.is_empty())
        .expect("a block with events");
    let mut lied = blocks.clone();
    lied[i].results.outcomes.swap_remove(0);
    let forged = tmp.path().join("forged-results.twlbak");
    forge(&forged, &f.header, &lied);
    let target = tmp.path().join("t1");
    let e = backup::restore(&forged, &target, &g).unwrap_err();
    let h = lied[i].block.header.height;
    assert!(
        matches!(e, BackupError::Block { height, .. } if height == h),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains(&format!("block {h} does not verify")),
        "{e}"
    );
    assert!(!target.exists());

    // A block dropped from the middle (and the header kept): refused as a gap.
    let mut gap = blocks.clone();
    gap.remove(1);
    let forged = tmp.path().join("forged-gap.twlbak");
    forge(&forged, &f.header, &gap);
    let target = tmp.path().join("t2");
    let e = backup::restore(&forged, &target, &g).unwrap_err();
    assert!(
        e.to_string().contains("block 2 expected, found block 3"),
        "{e}"
    );
    assert!(!target.exists());

    // A header that claims a later tip than the blocks reach.
    let mut header = f.header.clone();
    header.tip_height += 1;
    let forged = tmp.path().join("forged-tip.twlbak");
    forge(&forged, &header, &blocks);
    let target = tmp.path().join("t3");
    let e = backup::restore(&forged, &target, &g).unwrap_err();
    assert!(e.to_string().contains("the header says the tip is"), "{e}");
    assert!(!target.exists());
}

#[tokio::test]
async fn a_restored_validator_signs_nothing_until_a_block_made_after_the_restore() {
    let tmp = TempDir::new().unwrap();
    let node = node_with_blocks(&tmp.path().join("live"), 3).await;
    let out = tmp.path().join("b.twlbak");
    take_backup(&node, &out).await;
    node.stop().await;
    let restored = tmp.path().join("restored");
    backup::restore(&out, &restored, &genesis(&keys())).unwrap();
    let node = TestNode::start(&restored).await.unwrap();
    let guard = backup::signing_guard(node.chain.store()).expect("a guard");
    let k = keys();
    let mut app = ChainApp::new(
        node.chain.clone(),
        Some(k.validator.public()),
        Duration::from_secs(1),
    );
    let next = node.chain.height() + 1;
    app.record_signature(Slot::Vote(next, 0, VoteKind::Prevote), None)
        .expect_err("a restored validator does not sign before the guard is passed");
    // Blocks keep coming (this test's chain commits through its only validator); once one
    // whose time is past the guard is committed, the validator signs again.
    let alice = patient("alice");
    let mut seq = 3;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !backup::guard_allows(&node.chain, guard) {
        assert!(Instant::now() < deadline, "no block passed the guard");
        let (s, v) = node
            .submit(&node.event(&k.physician, seq, access(&alice)))
            .await;
        assert_eq!(s, 202, "{v}");
        seq += 1;
        node.wait_log(seq).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let next = node.chain.height() + 1;
    app.record_signature(Slot::Vote(next, 0, VoteKind::Prevote), None)
        .expect("signs once a block made after the restore is committed");
    drop(app);
    node.stop().await;
}

fn node_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_twinledger-node"))
}

/// Runs a command off the async runtime (the node under test runs on it).
async fn output(mut c: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The real binary: `backup` of a running node, `restore` into a new dir (a second restore into
/// it is refused), and the node started on the restored dir serves the backup's tip.
#[tokio::test]
async fn the_binary_backs_up_a_running_node_restores_it_and_starts_on_it() {
    let tmp = TempDir::new().unwrap();
    let node = node_with_blocks(&tmp.path().join("live"), 6).await;
    let key = tmp.path().join("validator.key");
    twinledger_node::keyfile::write(&key, &keys().validator, "test validator").unwrap();
    let gpath = tmp.path().join("genesis.json");
    genesis(&keys()).save(&gpath).unwrap();
    let out = tmp.path().join("b.twlbak");
    let mut c = node_bin();
    c.args(["backup", "--url", &format!("http://{}", node.addr), "--key"])
        .arg(&key)
        .arg("--out")
        .arg(&out);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let header = BackupFile::open(&out).unwrap().header;
    assert!(
        text(&o).contains(&format!("tip      {}", header.tip_height)),
        "{}",
        text(&o)
    );
    node.stop().await;

    let data = tmp.path().join("restored");
    let restore = || {
        let mut c = node_bin();
        c.arg("restore")
            .arg("--from")
            .arg(&out)
            .arg("--data-dir")
            .arg(&data)
            .arg("--genesis")
            .arg(&gpath);
        c
    };
    let o = output(restore()).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("verified"), "{}", text(&o));
    let o = output(restore()).await;
    assert!(!o.status.success(), "a second restore into the same dir");
    assert!(text(&o).contains("is not empty"), "{}", text(&o));

    // The node starts on the restored dir (verifying it) and serves the backup's tip.
    let mut child = node_bin()
        .args(["--listen", "127.0.0.1:0", "--genesis"])
        .arg(&gpath)
        .arg("--validator-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.trim().strip_prefix("API") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the banner names the API address");
    let v: serde_json::Value = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(v["height"], header.tip_height, "{v}");
    assert_eq!(v["chain_id"], header.chain_id, "{v}");
}

/// Backup and restore times for a chain of `TWINLEDGER_BACKUP_EVENTS` (default 20,000) access
/// requests, printed (a measurement, not a check):
/// `cargo test -p twinledger-node --test backup -- --ignored --nocapture backup_and_restore_figures`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn backup_and_restore_figures() {
    let n: u64 = std::env::var("TWINLEDGER_BACKUP_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let tmp = TempDir::new().unwrap();
    let node = TestNode::start(&tmp.path().join("live")).await.unwrap();
    let k = keys();
    let alice = patient("alice");
    let mut seq = 0;
    while seq < n {
        let batch: Vec<String> = (seq..(seq + 1000).min(n))
            .map(|s| hex::encode(node.event(&k.physician, s, access(&alice)).to_bytes()))
            .collect();
        seq += batch.len() as u64;
        let (status, v) = node
            .post("/v1/events/batch", serde_json::json!({ "events": batch }))
            .await;
        assert!(status < 300, "{status} {v}");
        node.wait_log(seq).await;
    }
    let out = tmp.path().join("figures.twlbak");
    let t = Instant::now();
    let s = take_backup(&node, &out).await;
    let backup_s = t.elapsed().as_secs_f64();
    node.stop().await;
    let t = Instant::now();
    backup::restore(&out, &tmp.path().join("restored"), &genesis(&keys())).unwrap();
    let restore_s = t.elapsed().as_secs_f64();
    eprintln!(
        "backup/restore figures: {n} events in {} blocks, file {} bytes; backup {backup_s:.2} s \
         ({:.0} events/s); restore (commit every block + --verify-all re-open) {restore_s:.2} s \
         ({:.0} events/s)",
        s.header.tip_height,
        s.bytes,
        n as f64 / backup_s,
        n as f64 / restore_s,
    );
}
