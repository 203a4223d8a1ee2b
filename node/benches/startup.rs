//! Start-up time against chain length, with and without state snapshots (issue #13, ADR 0010).
//!
//! Builds a sled store of `STARTUP_EVENTS` events (default 1,000,000) in blocks of
//! `STARTUP_BLOCK` (10,000) by direct store writes (the core builds each block, one dev
//! validator certifies it): per block, a fifth of the events are new patients' consent grants
//! (five records each), the rest access requests by one physician. Then it times `Chain::open`
//! in a fresh process each (so that the reported peak RSS, VmHWM, is the start-up's own):
//! a full replay (no snapshot), `--verify-all`, and with a snapshot written
//! `SNAPSHOT_EVENTS` events behind the tip (the worst case of the node's snapshot policy)
//! and at the tip.
//!
//! `cargo bench -p twinledger-node --bench startup` (`STARTUP_EVENTS=100000` for a quick run).
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::path::Path;
use std::time::Instant;

use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::state::SignatureCheck;
use twinledger_core::{
    CommitCertificate, CommitVote, Commitment, Event, EventPayload, Genesis, Limits, SignedEvent,
    State, Timestamp,
};
use twinledger_node::chain::{Chain, NodePolicy};
use twinledger_node::metrics::Metrics;
use twinledger_node::snapshot;
use twinledger_node::store::{BlockWrite, CommittedBlock, Store};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn genesis() -> (DevChain, Genesis) {
    let limits = Limits {
        max_block_events: 10_000,
        ..Limits::default()
    };
    let dev = DevChain::with_limits(1, limits);
    let g = dev.genesis.clone();
    (dev, g)
}

fn open(g: &Genesis, dir: &Path, verify_all: bool) -> (f64, u64) {
    let store = Store::open_sled(dir).expect("sled");
    let policy = NodePolicy {
        block_interval: std::time::Duration::from_secs(1),
        mempool_size: 1000,
    };
    let t = Instant::now();
    let chain = Chain::open(g.clone(), store, policy, verify_all, Metrics::new()).expect("opens");
    (t.elapsed().as_secs_f64(), chain.state().log_size())
}

/// Child process: open the store once and print the time, events and peak RSS.
fn child(dir: &str, verify_all: bool) {
    let (_, g) = genesis();
    let (secs, events) = open(&g, Path::new(dir), verify_all);
    println!("{secs:.3} {events} {:.0}", vm_hwm_mb());
}

fn measure(dir: &Path, verify_all: bool, what: &str) {
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--open",
            dir.to_str().expect("utf-8 path"),
            if verify_all { "all" } else { "default" },
        ])
        .output()
        .expect("child runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().count() == 3)
        .unwrap_or("? ? ?")
        .to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    println!(
        "start-up {what}: {} s for {} events, peak RSS {} MB",
        f[0], f[1], f[2]
    );
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--open") {
        child(&args[i + 1], args[i + 2] == "all");
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let total = env("STARTUP_EVENTS", 1_000_000);
    let per_block = env("STARTUP_BLOCK", 10_000);
    let (dev, g) = genesis();
    let dir = tempfile::TempDir::new().expect("tempdir");
    // `STARTUP_KEEP=<dir>`: build the store there and keep it (to profile `--open <dir>`).
    let kept = std::env::var("STARTUP_KEEP")
        .ok()
        .map(std::path::PathBuf::from);
    let dir_path = kept.clone().unwrap_or_else(|| dir.path().to_path_buf());
    let store = Store::open_sled(dir_path.as_path()).expect("sled");
    store.init(g.chain_id()).expect("init");
    let validator = dev.validators[0].clone();
    let physician = dev.physician.clone();
    let hospital = dev.hospital.public();
    let mut state = State::from_genesis(&g).expect("genesis");
    let chain_id = g.chain_id();
    let mut phys_seq = 0u64;
    let mut patients = 0u64;
    let mut patient_keys = Vec::new();
    let mut snapshot_state = None;
    let snapshot_at = total.saturating_sub(snapshot::SNAPSHOT_EVENTS);
    let t = Instant::now();
    while state.log_size() < total {
        let time = state.last_time().plus_ms(1000);
        let n = per_block.min(total - state.log_size());
        // Who signs what, in order; signed on every core.
        let mut plan: Vec<(twinledger_core::Keypair, u64, EventPayload)> = Vec::new();
        for i in 0..n {
            if i % 5 == 0 || patients == 0 {
                let p = dev_key(&format!("startup/patient/{patients}"));
                let pk = p.public();
                patient_keys.push(pk);
                plan.push((
                    p,
                    0,
                    EventPayload::ConsentGrant(ConsentGrant {
                        patient: pk,
                        grantee: Grantee::Organisation(hospital),
                        scope: Scope {
                            categories: [DataCategory::VitalSigns].into_iter().collect(),
                            purposes: [Purpose::Treat].into_iter().collect(),
                            actions: [Action::Read].into_iter().collect(),
                        },
                        valid_from: Timestamp(0),
                        valid_until: None,
                    }),
                ));
                patients += 1;
            } else {
                let who = patient_keys[usize::try_from((i * 7919) % patients).expect("fits")];
                plan.push((
                    physician.clone(),
                    phys_seq,
                    EventPayload::AccessRequest(AccessRequest {
                        patient: who,
                        category: DataCategory::VitalSigns,
                        purpose: Purpose::Treat,
                        action: Action::Read,
                        resource: Commitment::new(&[7; 32], b"twin-store://startup"),
                    }),
                ));
                phys_seq += 1;
            }
        }
        let events: Vec<SignedEvent> = std::thread::scope(|s| {
            let chunks: Vec<_> = plan
                .chunks(plan.len().div_ceil(2).max(1))
                .map(|c| {
                    s.spawn(move || {
                        c.iter()
                            .map(|(k, seq, p)| {
                                Event::new(
                                    chain_id,
                                    k.public(),
                                    *seq,
                                    time.plus_ms(3_600_000),
                                    p.clone(),
                                )
                                .sign(k)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            chunks
                .into_iter()
                .flat_map(|h| h.join().expect("signer"))
                .collect()
        });
        let built = state
            .build_block_with(
                validator.public(),
                time,
                events,
                SignatureCheck::AlreadyVerified,
            )
            .expect("builds");
        assert!(built.rejected.is_empty(), "{:?}", built.rejected.first());
        let vote = CommitVote {
            checkpoint: built.block.header.checkpoint(),
            round: 0,
        };
        let certificate = CommitCertificate::new(0, vec![vote.sign(&validator)]);
        let executed = built.executed;
        store
            .commit_block(
                &CommittedBlock {
                    block: built.block,
                    results: executed.results,
                    certificate,
                },
                BlockWrite {
                    nodes: executed.log_nodes,
                    ..BlockWrite::default()
                },
            )
            .expect("writes");
        state = executed.state;
        if snapshot_state.is_none() && state.log_size() >= snapshot_at {
            snapshot_state = Some(state.clone());
        }
        if state.height().is_multiple_of(10) {
            eprintln!(
                "built {} events ({} blocks) in {:.0} s",
                state.log_size(),
                state.height(),
                t.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "built a store of {} events in {} blocks ({} state records, {patients} patients) in {:.1} s",
        state.log_size(),
        state.height(),
        state.map_len(),
        t.elapsed().as_secs_f64()
    );
    drop(store);

    measure(
        dir_path.as_path(),
        false,
        "without a snapshot (full replay)",
    );
    measure(dir_path.as_path(), true, "--verify-all (from genesis)");

    let behind = snapshot_state.expect("snapshot state");
    for (st, what) in [
        (&behind, "behind the tip by the policy's worst case"),
        (&state, "at the tip"),
    ] {
        let store = Store::open_sled(dir_path.as_path()).expect("sled");
        let t = Instant::now();
        let bytes = snapshot::write_snapshot(&store, st).expect("snapshot written");
        println!(
            "snapshot at height {} ({} events behind the tip): {bytes} bytes, encoded and written in {:.2} s",
            st.height(),
            state.log_size() - st.log_size(),
            t.elapsed().as_secs_f64()
        );
        drop(store);
        measure(
            dir_path.as_path(),
            false,
            &format!("with a snapshot {what}"),
        );
    }
    let t = Instant::now();
    let snap = state.to_snapshot();
    let enc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rebuilt = State::from_snapshot(&g, snap).expect("restores");
    println!(
        "in memory: to_snapshot {enc:.2} s, from_snapshot {:.2} s ({} records)",
        t.elapsed().as_secs_f64(),
        rebuilt.map_len()
    );
}
