//! `cargo bench -p twinledger-cli --bench audit`: `audit verify` on a chain of 1,000,000 events
//! (override with AUDIT_EVENTS), and, in the same run, the rate at which this machine checks
//! every event signature with the protocol's rule (`keys::verify_batch`, ZIP-215 batches of 256 for
//! each thread) on all cores, so the ratio is measured, not assumed; then the same with the
//! previous `audit verify` (before issue #13) and each stage alone on one thread.
#![allow(clippy::print_stdout, missing_docs)]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Instant;

use twinledger_core::audit::{
    AuditFailure, Auditor, CommittedBlock, EXPORT_MAGIC, export_frame, first_bad_signature,
    read_export, signature_items,
};
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::keys::verify_batch;
use twinledger_core::state::SignatureCheck;
use twinledger_core::{
    Action, CommitCertificate, CommitVote, Commitment, DataCategory, Event, EventPayload, Keypair,
    Limits, Purpose, SignedEvent, Timestamp,
};

fn main() {
    let n: u64 = std::env::var("AUDIT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let per_block: usize = 10_000;
    let t = Instant::now();
    let mut chain = DevChain::with_limits(
        4,
        Limits {
            max_block_events: 10_000,
            ..Limits::default()
        },
    );
    let chain_id = chain.state.chain_id();
    let phys = chain.physician.clone();
    let patients: Vec<Keypair> = (0..1000)
        .map(|i| dev_key(&format!("bench/p/{i}")))
        .collect();
    let deadline = chain.next_time().plus_ms(3_600_000);
    // Block 1: every patient grants the physician; then access requests fill the chain.
    let mut events: Vec<SignedEvent> = patients
        .iter()
        .map(|p| {
            Event::new(
                chain_id,
                p.public(),
                0,
                deadline,
                EventPayload::ConsentGrant(ConsentGrant {
                    patient: p.public(),
                    grantee: Grantee::Actor(phys.public()),
                    scope: Scope {
                        categories: [DataCategory::VitalSigns].into_iter().collect(),
                        purposes: [Purpose::Treat].into_iter().collect(),
                        actions: [Action::Read].into_iter().collect(),
                    },
                    valid_from: Timestamp(0),
                    valid_until: None,
                }),
            )
            .sign(p)
        })
        .collect();
    let mut seq = 0u64;
    while (events.len() as u64) < n {
        let p = &patients[usize::try_from(seq % 1000).expect("small")];
        let cat = if seq.is_multiple_of(10) {
            DataCategory::Genetic
        } else {
            DataCategory::VitalSigns
        };
        events.push(
            Event::new(
                chain_id,
                phys.public(),
                seq,
                deadline,
                EventPayload::AccessRequest(AccessRequest {
                    patient: p.public(),
                    category: cat,
                    purpose: Purpose::Treat,
                    action: Action::Read,
                    resource: Commitment::new(&[1; 32], &seq.to_le_bytes()),
                }),
            )
            .sign(&phys),
        );
        seq += 1;
    }
    // Build and certify blocks (signatures were just made: no need to re-check them here).
    let mut export = EXPORT_MAGIC.to_vec();
    let mut state = chain.state.clone();
    let mut blocks = Vec::new();
    for chunk in events.chunks(per_block) {
        let height = state.height() + 1;
        let proposer = state.validators_for(height).validators()[0].key;
        let time = state.last_time().plus_ms(1000);
        let built = state
            .build_block_with(
                proposer,
                time,
                chunk.to_vec(),
                SignatureCheck::AlreadyVerified,
            )
            .unwrap();
        assert!(built.rejected.is_empty(), "{:?}", &built.rejected[..1]);
        let vote = CommitVote {
            checkpoint: built.block.header.checkpoint(),
            round: 0,
        };
        let certificate =
            CommitCertificate::new(0, chain.validators.iter().map(|k| vote.sign(k)).collect());
        let cb = CommittedBlock {
            block: built.block,
            results: built.executed.results,
            certificate,
        };
        export.extend(export_frame(&cb));
        blocks.push(cb);
        state = built.executed.state;
    }
    chain.state = state;
    println!(
        "built {} events in {} blocks ({} MB) in {:.1} s",
        events.len(),
        blocks.len(),
        export.len() / 1_000_000,
        t.elapsed().as_secs_f64()
    );

    // The bound: every event signature checked (`verify_batch`, batches of 256), on all cores.
    let items: Vec<_> = blocks
        .iter()
        .flat_map(|b| signature_items(&b.block))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    std::thread::scope(|s| {
        for part in items.chunks(items.len().div_ceil(threads)) {
            s.spawn(move || {
                for batch in part.chunks(256) {
                    verify_batch(batch).expect("valid signatures");
                }
            });
        }
    });
    let bound = items.len() as f64 / t.elapsed().as_secs_f64();
    println!("signature verification bound: {bound:.0} signatures/s on {threads} cores");

    // audit verify, as `twinctl audit verify` runs it, and as it ran before issue #13; with
    // AUDIT_PREVIOUS_FIRST=1 the previous one runs first (the first run grows the heap).
    let current = || {
        let t = Instant::now();
        let summary = twinledger_cli::audit::verify(
            &chain.genesis,
            &export,
            false,
            &indicatif::ProgressBar::hidden(),
            |_, _| {},
        )
        .expect("chain verifies");
        let secs = t.elapsed().as_secs_f64();
        let rate = summary.events as f64 / secs;
        println!(
            "audit verify: {} events, {} blocks in {secs:.2} s = {rate:.0} events/s, {:.0}% of the batch bound",
            summary.events,
            summary.blocks,
            100.0 * rate / bound
        );
        summary
    };
    let previous = || {
        let t = Instant::now();
        let previous = previous_verify(&chain.genesis, &export, |_, _| {}).expect("chain verifies");
        let secs = t.elapsed().as_secs_f64();
        let rate = previous.events as f64 / secs;
        println!(
            "previous audit verify (before #13): {} events in {secs:.2} s = {rate:.0} events/s, {:.0}% of the batch bound",
            previous.events,
            100.0 * rate / bound
        );
    };
    let summary = if std::env::var("AUDIT_PREVIOUS_FIRST").is_ok_and(|v| v == "1") {
        previous();
        current()
    } else {
        let s = current();
        previous();
        s
    };

    // Where the time goes: each stage alone, on one thread (AUDIT_STAGES=0 skips this).
    if std::env::var("AUDIT_STAGES").is_ok_and(|v| v == "0") {
        return;
    }
    let per_event = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / summary.events as f64;
    let t = Instant::now();
    let decoded: Vec<CommittedBlock> = read_export(&export)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let decode = per_event(t);
    let t = Instant::now();
    let items: usize = decoded
        .iter()
        .map(|b| signature_items(&b.block).len())
        .sum();
    let messages = per_event(t);
    let t = Instant::now();
    let mut auditor = Auditor::new(&chain.genesis).unwrap();
    for cb in &decoded {
        auditor.check(cb, SignatureCheck::AlreadyVerified).unwrap();
    }
    let replay = per_event(t);
    let sample = &decoded[decoded.len() / 2].block;
    let sample_items = signature_items(sample);
    let t = Instant::now();
    verify_batch(&sample_items).unwrap();
    let whole = t.elapsed().as_secs_f64() * 1e6 / sample_items.len() as f64;
    let t = Instant::now();
    for batch in sample_items.chunks(256) {
        verify_batch(batch).unwrap();
    }
    let by256 = t.elapsed().as_secs_f64() * 1e6 / sample_items.len() as f64;
    println!(
        "stages on one thread, µs per event: decode frames {decode:.2}, signing messages {messages:.2} \
         ({items} items), in-order replay (AlreadyVerified, certificates included) {replay:.2}; \
         verify_batch of one block ({} signatures) {whole:.2}, in chunks of 256 {by256:.2}",
        sample_items.len()
    );
}

/// `audit verify` before issue #13 (commit 7714866), kept here to be measured in the same run:
/// one feeder thread decodes every frame, workers batch-verify one block each, this thread
/// re-executes in order.
fn previous_verify(
    genesis: &twinledger_core::Genesis,
    bytes: &[u8],
    mut on_block: impl FnMut(&CommittedBlock, &twinledger_core::State),
) -> Result<twinledger_core::audit::AuditSummary, AuditFailure> {
    let mut auditor = Auditor::new(genesis)?;
    let blocks = read_export(bytes)?;

    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    std::thread::scope(|s| {
        // Bounded queues: at most a few blocks per worker wait in memory.
        let (work_tx, work_rx) = mpsc::sync_channel::<(u64, CommittedBlock)>(workers * 4);
        let work_rx = std::sync::Arc::new(std::sync::Mutex::new(work_rx));
        let (done_tx, done_rx) =
            mpsc::sync_channel::<(u64, CommittedBlock, Option<AuditFailure>)>(workers * 4);
        for _ in 0..workers {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            s.spawn(move || {
                loop {
                    let next = rx.lock().expect("work queue").recv();
                    let Ok((i, cb)) = next else { break };
                    let bad = first_bad_signature(&cb);
                    if tx.send((i, cb, bad)).is_err() {
                        break;
                    }
                }
            });
        }
        // Only the workers hold the queue now: if they stop, the feeder's sends fail instead of
        // blocking.
        drop(work_rx);
        drop(done_tx);
        let feeder = s.spawn(move || -> Result<(), AuditFailure> {
            for (i, cb) in blocks.enumerate() {
                if work_tx.send((i as u64, cb?)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        // Re-execute in order as verified blocks come back.
        let mut pending: BTreeMap<u64, (CommittedBlock, Option<AuditFailure>)> = BTreeMap::new();
        let mut next = 0u64;
        let mut result = Ok(());
        for (i, cb, bad) in done_rx.iter() {
            pending.insert(i, (cb, bad));
            while let Some((cb, bad)) = pending.remove(&next) {
                if result.is_ok() {
                    result = match bad {
                        Some(f) => Err(f),
                        None => auditor.check(&cb, SignatureCheck::AlreadyVerified),
                    };
                    if result.is_ok() {
                        on_block(&cb, auditor.state());
                    }
                }
                next += 1;
            }
            if result.is_err() {
                break;
            }
        }
        drop(done_rx);
        let fed = feeder.join().expect("feeder thread");
        result?;
        fed?;
        Ok(auditor.summary())
    })
}
