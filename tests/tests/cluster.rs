//! In-process BFT cluster under seeded fault injection (`twinledger_tests::sim`): 4 validators
//! running the real engine and chain on in-memory stores, a simulated network, virtual time.
//! Every run is replayable from its seed; `TWINLEDGER_SIM_SEED=<n>` runs one seed, and a
//! failure message names the seed.

use twinledger_core::consensus::VoteKind;
use twinledger_tests::sim::{Byzantine, Faults, Sim, all_reach, no_halts, seeds};

/// Identical blocks (so block hashes, state hashes, log roots) at every height on every node,
/// and events submitted to any node become final on all.
#[test]
fn four_validators_agree_and_commit_events_from_any_node() {
    for seed in seeds(&[1, 2]) {
        let mut sim = Sim::new(4, seed);
        assert!(
            sim.run_until(60_000, 100, |s| all_reach(s, 15)),
            "seed {seed}: no progress to height 15 (heights {:?})",
            (0..4).map(|i| sim.height(i)).collect::<Vec<_>>()
        );
        // Stop submitting; let every pending event land.
        let n = sim.submitted.len();
        assert!(
            sim.run_until(30_000, 0, |s| (0..4).all(|i| {
                s.chain(i).is_some_and(|c| c.state().log_size() >= n as u64)
            })),
            "seed {seed}: not every submitted event became final: {n} submitted, log sizes {:?}, mempools {:?}, heights {:?}",
            (0..4)
                .map(|i| sim.chain(i).unwrap().state().log_size())
                .collect::<Vec<_>>(),
            (0..4)
                .map(|i| sim.chain(i).unwrap().mempool_len())
                .collect::<Vec<_>>(),
            (0..4).map(|i| sim.height(i)).collect::<Vec<_>>(),
        );
        let h = sim.check_agreement();
        assert!(h >= 15, "seed {seed}");
        for i in 0..4 {
            let c = sim.chain(i).unwrap();
            assert_eq!(
                c.mempool_len(),
                0,
                "seed {seed}: node {i} mempool not drained"
            );
        }
    }
}

/// Seeded random loss, duplication, delay and reorder over many heights: safety always, and
/// progress once the network is good again.
#[test]
fn seeded_drop_delay_reorder_keeps_safety_and_converges() {
    for seed in seeds(&[11, 12, 13]) {
        let mut sim = Sim::new(4, seed);
        sim.faults = Faults {
            drop: 0.2,
            duplicate: 0.1,
            max_delay: 400,
        };
        sim.run_until(120_000, 200, |s| all_reach(s, 30));
        sim.check_agreement();
        no_halts(&sim);
        sim.faults = Faults::NONE;
        let target = (0..4).map(|i| sim.height(i)).max().unwrap() + 3;
        assert!(
            sim.run_until(60_000, 0, |s| all_reach(s, target)),
            "seed {seed}: no convergence after the network healed (heights {:?})",
            (0..4).map(|i| sim.height(i)).collect::<Vec<_>>()
        );
        sim.check_agreement();
        no_halts(&sim);
    }
}

/// A minority side of a partition finalises nothing; the majority continues; healing converges.
#[test]
fn partition_minority_stalls_majority_continues_heal_converges() {
    for seed in seeds(&[21]) {
        let mut sim = Sim::new(4, seed);
        assert!(sim.run_until(30_000, 100, |s| all_reach(s, 5)));
        sim.groups = Some(vec![0, 0, 0, 1]);
        let minority = sim.height(3);
        let majority = sim.height(0);
        assert!(sim.run_until(30_000, 100, |s| s.height(0) >= majority + 10));
        assert!(
            sim.height(3) <= minority + 1,
            "seed {seed}: the cut-off node finalised alone"
        );
        sim.groups = None;
        let target = sim.height(0) + 2;
        assert!(
            sim.run_until(60_000, 100, |s| all_reach(s, target)),
            "seed {seed}: no convergence after healing"
        );
        sim.check_agreement();
        no_halts(&sim);
    }
}

/// 2 of 4 down: no new blocks and no fork; both back: progress resumes. A crashed validator
/// restarts from its store and catches up.
#[test]
fn two_of_four_down_halts_without_fork_and_resumes() {
    for seed in seeds(&[31]) {
        let mut sim = Sim::new(4, seed);
        assert!(sim.run_until(30_000, 100, |s| all_reach(s, 5)));
        sim.crash(2);
        sim.crash(3);
        // Let in-flight messages land, then nothing more may be finalised.
        sim.run_until(3_000, 100, |_| false);
        let stuck = (sim.height(0), sim.height(1));
        sim.run_until(30_000, 100, |_| false);
        assert_eq!(
            (sim.height(0), sim.height(1)),
            stuck,
            "seed {seed}: progress without quorum"
        );
        sim.start(2);
        sim.start(3);
        let target = stuck.0.max(stuck.1) + 3;
        assert!(
            sim.run_until(60_000, 100, |s| all_reach(s, target)),
            "seed {seed}: no progress after restart (heights {:?})",
            (0..4).map(|i| sim.height(i)).collect::<Vec<_>>()
        );
        sim.check_agreement();
        no_halts(&sim);
    }
}

/// Crash and restart validators repeatedly under load, with message loss.
#[test]
fn repeated_crash_restart_under_load() {
    for seed in seeds(&[41, 42]) {
        let mut sim = Sim::new(4, seed);
        sim.faults = Faults {
            drop: 0.05,
            duplicate: 0.05,
            max_delay: 50,
        };
        for round in 0..6usize {
            let victim = round % 4;
            sim.run_until(4_000, 100, |_| false);
            sim.crash(victim);
            sim.run_until(4_000, 100, |_| false);
            sim.start(victim);
        }
        sim.faults = Faults::NONE;
        let target = (0..4).map(|i| sim.height(i)).max().unwrap() + 2;
        assert!(
            sim.run_until(60_000, 0, |s| all_reach(s, target)),
            "seed {seed}: heights {:?}",
            (0..4).map(|i| sim.height(i)).collect::<Vec<_>>()
        );
        assert!(target > 10, "seed {seed}: too little progress ({target})");
        sim.check_agreement();
        no_halts(&sim);
    }
}

/// An equivocating validator: safety holds, and its double sign lands on chain naming it.
#[test]
fn equivocation_is_detected_and_recorded_on_chain() {
    for seed in seeds(&[51]) {
        let mut sim = Sim::new(4, seed);
        sim.set_byzantine(3, Byzantine::Equivocate);
        assert!(
            sim.run_until(60_000, 100, |s| all_reach(s, 10)
                && !s.evidence_on_chain(0).is_empty()),
            "seed {seed}: no progress or no evidence on chain (heights {:?}, evidence seen {})",
            (0..4).map(|i| sim.height(i)).collect::<Vec<_>>(),
            sim.evidence.len()
        );
        sim.check_agreement();
        no_halts(&sim);
        let on_chain = sim.evidence_on_chain(0);
        let byz = twinledger_core::devkit::dev_key("validator/3").public();
        assert!(
            on_chain.iter().all(|(v, _)| *v == byz),
            "only the equivocator is named"
        );
        assert!(
            on_chain
                .iter()
                .any(|(_, k)| matches!(k, VoteKind::Prevote | VoteKind::Precommit))
        );
        // Recorded once per slot, however many validators reported it.
        let st = sim.chain(0).unwrap().state();
        assert_eq!(st.misbehaviours().count(), on_chain.len());
    }
}

/// A validator whose proposals do not re-execute: they are rejected whole (nil prevotes) and
/// the chain moves on under the next proposers.
#[test]
fn invalid_proposals_are_rejected_and_progress_continues() {
    for seed in seeds(&[61]) {
        let mut sim = Sim::new(4, seed);
        sim.set_byzantine(1, Byzantine::InvalidProposals);
        assert!(
            sim.run_until(90_000, 100, |s| all_reach(s, 12)),
            "seed {seed}: heights {:?}",
            (0..4).map(|i| sim.height(i)).collect::<Vec<_>>()
        );
        sim.check_agreement();
        no_halts(&sim);
        let byz = twinledger_core::devkit::dev_key("validator/1").public();
        let st = sim.store(0);
        for h in 1..=st.tip().unwrap() {
            let sb = st.block(h).unwrap().unwrap();
            assert!(
                sb.block.header.proposer != byz
                    || sb.block.header.state_hash != twinledger_core::Hash([0xbb; 32])
            );
        }
    }
}

/// A validator that withholds its votes: the other three (3 of 4 > 2/3) still finalise.
#[test]
fn withheld_votes_do_not_stop_progress() {
    for seed in seeds(&[71]) {
        let mut sim = Sim::new(4, seed);
        sim.set_byzantine(2, Byzantine::Withhold);
        assert!(
            sim.run_until(90_000, 100, |s| all_reach(s, 10)),
            "seed {seed}: heights {:?}",
            (0..4).map(|i| sim.height(i)).collect::<Vec<_>>()
        );
        sim.check_agreement();
        no_halts(&sim);
    }
}

/// Nothing unverified is applied: a decision (what sync and the decision push deliver) whose
/// certificate does not verify, or whose block differs from the certified one, is refused by
/// name and changes nothing; the genuine one is applied.
#[test]
fn decisions_that_do_not_verify_are_refused_and_change_nothing() {
    use twinledger_node::consensus::{Msg, Refused};
    let mut source = Sim::new(4, 81);
    assert!(source.run_until(30_000, 100, |s| all_reach(s, 3)));
    let sb = source.store(0).block(1).unwrap().unwrap();
    // A fresh cluster of the same genesis, every message lost: nobody decides by itself.
    let mut sim = Sim::new(4, 82);
    sim.faults = Faults {
        drop: 1.0,
        duplicate: 0.0,
        max_delay: 1,
    };
    let mut tampered = sb.block.clone();
    tampered.header.time.0 += 1;
    let r = sim.deliver(
        0,
        Msg::Decision {
            block: tampered,
            certificate: sb.certificate.clone(),
        },
    );
    assert!(matches!(r, Err(Refused::Certificate(_))), "{r:?}");
    let mut weak = sb.certificate.clone();
    weak.signatures.truncate(2);
    let r = sim.deliver(
        0,
        Msg::Decision {
            block: sb.block.clone(),
            certificate: weak,
        },
    );
    assert!(matches!(r, Err(Refused::Certificate(m)) if m.contains("two thirds")));
    assert_eq!(sim.height(0), 0, "a refused decision changed the store");
    sim.deliver(
        0,
        Msg::Decision {
            block: sb.block.clone(),
            certificate: sb.certificate.clone(),
        },
    )
    .unwrap();
    assert_eq!(sim.height(0), 1);
    assert_eq!(
        sim.store(0).block(1).unwrap().unwrap().block.header.hash(),
        sb.block.header.hash()
    );
}

/// A validator whose disk fails cannot write a decided block: its engine halts (it never votes
/// on top of an unwritten block), `/health` reports it, its store keeps the last good block, and
/// the other three carry on.
#[test]
fn a_validator_whose_disk_fails_halts_and_the_rest_continue() {
    let mut sim = Sim::new(4, 91);
    assert!(sim.run_until(30_000, 100, |s| all_reach(s, 3)));
    sim.fail_disk(2);
    let frozen = sim.height(2);
    assert!(
        sim.run_until(60_000, 100, |s| !s.halted.is_empty()
            && (0..4)
                .filter(|&i| i != 2)
                .all(|i| s.height(i) >= frozen + 5)),
        "heights {:?}, halted {:?}",
        (0..4).map(|i| sim.height(i)).collect::<Vec<_>>(),
        sim.halted
    );
    assert_eq!(sim.halted.len(), 1);
    assert_eq!(sim.halted[0].0, 2);
    assert!(
        sim.halted[0].1.contains("No space left"),
        "{}",
        sim.halted[0].1
    );
    assert!(sim.chain(2).unwrap().is_halted());
    assert_eq!(sim.height(2), frozen, "a block was half-written");
    sim.check_agreement();
}
