//! A lying validator or peer (issue #10 §2 and §3), in the seeded in-process cluster: a
//! proposer that forges what it proposes, sends bodies that do not match their headers or
//! floods proposals; a peer that feeds a bad decision to a lagging node, floods future
//! messages, lies about its height or replays old messages. Honest nodes refuse, stay
//! bounded, and keep going. `TWINLEDGER_SIM_SEED=<n>` replays one seed.

use twinledger_core::consensus::{Vote, VoteKind};
use twinledger_node::consensus::Msg;
use twinledger_node::consensus::engine::MAX_FUTURE_PER_VALIDATOR;
use twinledger_tests::sim::{Byzantine, Sim, all_reach, heights, no_halts, seeds};

fn honest_reach(sim: &Sim, byz: usize, h: u64) -> bool {
    (0..sim.len())
        .filter(|&i| i != byz)
        .all(|i| sim.height(i) >= h)
}

/// Runs with validator 0 lying as `how` until the honest three pass height 16, then checks
/// that it forged something, nothing forged was committed (every store re-verifies every
/// signature and re-executes every block), the nodes agree, and no engine halted.
fn forging_proposer_is_refused(how: Byzantine, seed: u64, pairs: bool) -> Sim {
    let mut sim = Sim::new(4, seed);
    sim.set_byzantine(0, how);
    let mut ok = false;
    for _ in 0..600 {
        if honest_reach(&sim, 0, 16) {
            ok = true;
            break;
        }
        if pairs {
            sim.submit_pair(1 + usize::try_from(sim.now / 100 % 3).unwrap());
        }
        sim.run_until(100, if pairs { 0 } else { 50 }, |_| false);
    }
    assert!(
        ok,
        "seed {seed}: {how:?}: no progress to height 16: {:?}",
        heights(&sim)
    );
    assert!(
        sim.forged > 0,
        "seed {seed}: {how:?}: the Byzantine proposer never had anything to forge"
    );
    no_halts(&sim);
    sim.check_agreement();
    sim.verify_stores();
    sim
}

/// §2: an event id hashes the unsigned event, so a node that skipped verification for ids in
/// its mempool voted for a block whose event signature a proposer had replaced; the chain
/// then held an event that fails every audit. Skipping is keyed by id and signature now.
#[test]
fn proposer_swapping_an_event_signature_is_refused() {
    for seed in seeds(&[1, 2]) {
        forging_proposer_is_refused(Byzantine::SwapSignature, seed, false);
    }
}

/// §2: a changed byte anywhere in a proposed event (here its deadline) breaks its signature.
#[test]
fn proposer_changing_an_event_byte_is_refused() {
    for seed in seeds(&[3]) {
        forging_proposer_is_refused(Byzantine::ChangeEventByte, seed, false);
    }
}

/// §2: two events of one author swapped against their sequence numbers.
#[test]
fn proposer_reordering_events_against_their_sequence_is_refused() {
    for seed in seeds(&[4]) {
        forging_proposer_is_refused(Byzantine::ReorderEvents, seed, true);
    }
}

/// §3: a body that does not hash to its header used to be cached for the block (first seen
/// wins) and judged invalid, so the real body sent after it was never used: the proposer's
/// rounds always failed. A body that does not match its header is now refused on arrival.
#[test]
fn body_not_matching_its_header_is_discarded() {
    for seed in seeds(&[5, 6]) {
        let sim = forging_proposer_is_refused(Byzantine::BadBodyFirst, seed, false);
        assert!(
            (1..4).all(|i| sim.committed_a_block_of(i, 0)),
            "seed {seed}: no block proposed by validator 0 was committed: its real bodies were ignored"
        );
    }
}

/// §3: a validator that signs many blocks for its round used to fill the candidate-block
/// table, after which every honest proposal at that height was refused. One proposal per
/// round is accepted now (a second is equivocation, refused).
#[test]
fn proposal_flood_from_one_validator_does_not_halt() {
    for seed in seeds(&[7, 8]) {
        forging_proposer_is_refused(Byzantine::ProposalFlood, seed, false);
    }
}

/// §3: a lagging node fed `{bad body, real certificate}` used to cache the bad body for the
/// block and refuse the real decision ever after. Bodies are checked against their headers
/// and certified decisions re-executed on their own, so it refuses the bad one and catches up.
#[test]
fn lagging_node_fed_a_bad_decision_recovers() {
    for seed in seeds(&[9, 10]) {
        let mut sim = Sim::new(4, seed);
        assert!(sim.run_until(30_000, 50, |s| all_reach(s, 2)));
        sim.crash(3);
        let behind = sim.height(3);
        assert!(sim.run_until(60_000, 50, |s| (0..3).all(|i| s.height(i) >= behind + 6)));
        sim.start(3);
        // The block node 3 needs next, with an event's signature changed under the real
        // header and certificate.
        let next = (behind + 1..=sim.height(0))
            .find(|h| {
                !sim.store(0)
                    .block(*h)
                    .unwrap()
                    .unwrap()
                    .block
                    .events
                    .is_empty()
            })
            .expect("a block with events");
        // Bring node 3 to the height just before it (real blocks).
        for h in behind + 1..next {
            let sb = sim.store(0).block(h).unwrap().unwrap();
            sim.deliver(
                3,
                Msg::Decision {
                    block: sb.block,
                    certificate: sb.certificate,
                },
            )
            .expect("a real decision is accepted");
        }
        let sb = sim.store(0).block(next).unwrap().unwrap();
        let mut bad = sb.block.clone();
        bad.events[0].signature.0[5] ^= 1;
        let r = sim.deliver(
            3,
            Msg::Decision {
                block: bad,
                certificate: sb.certificate.clone(),
            },
        );
        assert!(r.is_err(), "seed {seed}: the bad decision was accepted");
        assert_eq!(sim.height(3), next - 1, "seed {seed}: nothing was written");
        let target = sim.height(0) + 2;
        assert!(
            sim.run_until(60_000, 50, |s| all_reach(s, target)),
            "seed {seed}: the lagging node did not recover: {:?}",
            heights(&sim)
        );
        no_halts(&sim);
        sim.check_agreement();
        sim.verify_stores();
    }
}

/// §3: messages for later heights used to be held unverified, up to 4,096 of any size from
/// anyone. Now only next-height messages that verify against that height's set are held,
/// at most [`MAX_FUTURE_PER_VALIDATOR`] per validator.
#[test]
fn future_message_flood_is_bounded_per_peer() {
    let mut sim = Sim::new(4, 11);
    assert!(sim.run_until(30_000, 50, |s| all_reach(s, 3)));
    let h = sim.engine(0).unwrap().height();
    let chain_id = sim.genesis().chain_id();
    let liar = sim.key(3).clone();
    let vote = |height: u64, round: u32| Vote {
        chain_id,
        height,
        round,
        kind: VoteKind::Prevote,
        value: None,
    };
    let mut accepted = 0;
    for round in 0..1000 {
        if sim
            .deliver(0, Msg::Vote(vote(h + 1, round).sign(&liar)))
            .is_ok()
        {
            accepted += 1;
        }
    }
    assert!(
        accepted <= MAX_FUTURE_PER_VALIDATOR,
        "{accepted} next-height votes of one validator held"
    );
    // Forged signatures and far-future heights are refused outright.
    for round in 0..100 {
        let mut v = vote(h + 1, round).sign(&sim.key(2).clone());
        v.signature.0[0] ^= 1;
        assert!(
            sim.deliver(0, Msg::Vote(v)).is_err(),
            "a forged vote was held"
        );
        assert!(
            sim.deliver(0, Msg::Vote(vote(h + 3, round).sign(&sim.key(2).clone())))
                .is_err(),
            "a vote three heights ahead was held"
        );
    }
    assert!(
        sim.engine(0).unwrap().buffered() <= MAX_FUTURE_PER_VALIDATOR,
        "{} messages held",
        sim.engine(0).unwrap().buffered()
    );
    assert!(sim.run_until(60_000, 50, |s| all_reach(s, h + 4)));
    no_halts(&sim);
    sim.check_agreement();
}

/// §3: a `Status { height: u64::MAX }` (unsigned) used to become the sync target for good.
/// Sync targets now come only from decisions whose certificate verifies.
#[test]
fn lying_status_does_not_capture_sync() {
    let mut sim = Sim::new(4, 12);
    assert!(sim.run_until(30_000, 50, |s| all_reach(s, 4)));
    let _ = sim.deliver(0, Msg::Status { height: u64::MAX });
    let chain_id = sim.genesis().chain_id();
    let v = Vote {
        chain_id,
        height: u64::MAX,
        round: 0,
        kind: VoteKind::Prevote,
        value: None,
    }
    .sign(&sim.key(1).clone());
    let _ = sim.deliver(0, Msg::Vote(v));
    // A real block and certificate, claimed for a far height: the certificate does not verify.
    let sb = sim.store(1).block(2).unwrap().unwrap();
    let mut far = sb.block.clone();
    far.header.height = 1_000_000;
    let r = sim.deliver(
        0,
        Msg::Decision {
            block: far,
            certificate: sb.certificate,
        },
    );
    assert!(r.is_err(), "an uncertified far decision was accepted");
    assert!(
        sim.sync_targets.iter().all(|(i, _)| *i != 0),
        "a claim without a certificate became a sync target: {:?}",
        sim.sync_targets
    );
    // A validator that really is behind gets a certified target and catches up.
    sim.crash(3);
    let tip = sim.height(0);
    assert!(sim.run_until(60_000, 50, |s| (0..3).all(|i| s.height(i) >= tip + 5)));
    sim.start(3);
    let target = sim.height(0) + 2;
    assert!(
        sim.run_until(60_000, 50, |s| all_reach(s, target)),
        "{:?}",
        heights(&sim)
    );
    let top = (0..4).map(|i| sim.height(i)).max().unwrap();
    assert!(
        sim.sync_targets
            .iter()
            .any(|(i, h)| *i == 3 && *h > tip && *h <= top),
        "the lagging node got no certified sync target: {:?}",
        sim.sync_targets
    );
    sim.check_agreement();
}

/// §3: every old-height message used to make a node broadcast that height's whole block (rate
/// limited per height only): a peer replaying one message per old height made it send every
/// block it has. Now one push of the latest decision per interval, whatever asks for it.
#[test]
fn old_height_replays_do_not_amplify() {
    let mut sim = Sim::new(4, 13);
    assert!(sim.run_until(60_000, 50, |s| all_reach(s, 15)));
    let old: Vec<_> = sim
        .sent_votes
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.vote.height < 14)
        .collect();
    let before = sim.decisions_sent[0];
    for v in old {
        let _ = sim.deliver(0, Msg::Vote(v));
    }
    for height in 1..14 {
        let _ = sim.deliver(0, Msg::Status { height });
    }
    let pushed = sim.decisions_sent[0] - before;
    assert!(
        pushed <= 1,
        "{pushed} decisions broadcast in answer to one burst of old messages"
    );
}
