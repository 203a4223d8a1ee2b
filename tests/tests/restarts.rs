//! Restarted validators and the consensus write-ahead log (issue #10 §0 and §1): a validator
//! restarted mid-height comes back locked exactly as it was, re-sends what it signed, and the
//! height completes. Scripted scenarios drive four real engines message by message
//! (`Sim::hold`); the randomised one crashes any validator at any step, over many seeds.
//! `TWINLEDGER_SIM_SEED=<n>` replays one seed; failures name theirs.

use std::collections::HashMap;

use malachitebft_core_types::{Round, Timeout};
use twinledger_core::consensus::{SignedVote, VoteKind, proposer};
use twinledger_core::{Checkpoint, PublicKey};
use twinledger_node::consensus::Msg;
use twinledger_tests::sim::{Sim, all_reach, heights, seeds};

/// The roles of the lock-amnesia scenario at height 1: `a` proposes round 0, `d` proposes
/// round 1, `b` and `c` are the other two.
struct Roles {
    a: usize,
    b: usize,
    c: usize,
    d: usize,
}

fn roles(sim: &Sim) -> Roles {
    let set = &sim.genesis().validators;
    let index = |k: PublicKey| (0..sim.len()).find(|&i| sim.key(i).public() == k).unwrap();
    let a = index(proposer(set, 1, 0));
    let d = index(proposer(set, 1, 1));
    assert_ne!(a, d, "round 0 and round 1 have different proposers");
    let rest: Vec<usize> = (0..4).filter(|i| *i != a && *i != d).collect();
    Roles {
        a,
        b: rest[0],
        c: rest[1],
        d,
    }
}

fn is_vote(m: &Msg, round: u32, kind: VoteKind) -> bool {
    matches!(m, Msg::Vote(v) if v.vote.round == round && v.vote.kind == kind)
}

/// Messages of the outbox sent by `from` that match `pred`.
fn sent(out: &[(usize, Msg)], from: usize, pred: impl Fn(&Msg) -> bool) -> Vec<Msg> {
    out.iter()
        .filter(|(f, m)| *f == from && pred(m))
        .map(|(_, m)| m.clone())
        .collect()
}

fn one(out: &[(usize, Msg)], from: usize, pred: impl Fn(&Msg) -> bool) -> Msg {
    let v = sent(out, from, pred);
    assert!(
        !v.is_empty(),
        "node {from} did not send the expected message"
    );
    v[0].clone()
}

fn deliver_all(sim: &mut Sim, to: usize, msgs: &[Msg]) {
    for m in msgs {
        let _ = sim.deliver(to, m.clone());
    }
}

/// Ends scripted mode: every node converges on height 3 within a minute, with no fork.
fn heal_and_converge(sim: &mut Sim) {
    sim.hold = false;
    assert!(
        sim.run_until(60_000, 200, |s| all_reach(s, 3)),
        "seed {}: no progress after healing: {:?}",
        sim.seed,
        heights(sim)
    );
    sim.check_agreement();
}

/// Scripted mode: a proposes its block for round 0 of height 1; returns the proposal (and
/// leaves its own prevote in the outbox).
fn propose(sim: &mut Sim, r: &Roles) -> Msg {
    sim.hold = true;
    sim.submit(r.a);
    sim.tick(r.a);
    let out = sim.take_outbox();
    let proposal = one(&out, r.a, |m| matches!(m, Msg::Proposal { .. }));
    for (from, m) in out {
        sim.requeue(from, m);
    }
    proposal
}

/// Runs round 0 of height 1 up to the point of the scenario: a, b, c prevote and precommit
/// the block X proposed by a (they lock on it); d never saw the proposal, prevoted nil and
/// precommitted nil; a received the three precommits for X and committed X. Nothing else was
/// delivered. Returns the outbox of everything sent.
fn round_zero(sim: &mut Sim, r: &Roles) -> Vec<(usize, Msg)> {
    let proposal = propose(sim, r);
    let mut out = sim.take_outbox();
    for i in [r.b, r.c] {
        let _ = sim.deliver(i, proposal.clone());
    }
    out.extend(sim.take_outbox());
    let prevotes_x: Vec<(usize, Msg)> = [r.a, r.b, r.c]
        .iter()
        .map(|&i| (i, one(&out, i, |m| is_vote(m, 0, VoteKind::Prevote))))
        .collect();
    for &to in &[r.a, r.b, r.c] {
        for (from, m) in &prevotes_x {
            if *from != to {
                let _ = sim.deliver(to, m.clone());
            }
        }
    }
    out.extend(sim.take_outbox());
    // d: no proposal; its propose timeout, two prevotes for X, its prevote timeout.
    sim.fire(r.d, 1, Timeout::propose(Round::new(0)));
    deliver_all(
        sim,
        r.d,
        &[prevotes_x[0].1.clone(), prevotes_x[1].1.clone()],
    );
    sim.fire(r.d, 1, Timeout::prevote(Round::new(0)));
    out.extend(sim.take_outbox());
    let nil_precommit = one(&out, r.d, |m| is_vote(m, 0, VoteKind::Precommit));
    assert!(
        matches!(&nil_precommit, Msg::Vote(v) if v.vote.value.is_none()),
        "d precommits nil"
    );
    // a decides X.
    for from in [r.b, r.c] {
        let m = one(&out, from, |m| is_vote(m, 0, VoteKind::Precommit));
        let _ = sim.deliver(r.a, m);
    }
    assert_eq!(sim.height(r.a), 1, "a committed X");
    out.extend(sim.take_outbox());
    out
}

fn x_of(sim: &Sim, a: usize) -> Checkpoint {
    sim.store(a)
        .block(1)
        .unwrap()
        .unwrap()
        .block
        .header
        .checkpoint()
}

/// Delivers every captured message among `nodes` (not to their senders) until none is left.
fn flood(sim: &mut Sim, nodes: &[usize]) {
    for _ in 0..20 {
        let out = sim.take_outbox();
        if out.is_empty() {
            return;
        }
        for (from, m) in out {
            for &to in nodes {
                if to != from && sim.is_up(to) {
                    let _ = sim.deliver(to, m.clone());
                }
            }
        }
    }
}

/// The scenario of issue #10 §1. Round 0: a, b, c precommit X, d precommits nil; a decides
/// X and is cut off. b and c restart. A late copy of a's precommit and the other round-0 votes
/// reach them; d moves to round 1 and proposes Y. Without the WAL, b and c come back unlocked,
/// time out of round 0, and b, c, d certify Y: two blocks at height 1 with no Byzantine
/// validator. With it, they replay their height, are locked on X, and decide X.
#[test]
fn lock_amnesia_two_restarts_cannot_fork() {
    for seed in seeds(&[1, 2]) {
        let mut sim = Sim::new(4, seed);
        let r = roles(&sim);
        let out = round_zero(&mut sim, &r);
        let x = x_of(&sim, r.a);
        sim.crash(r.b);
        sim.crash(r.c);
        sim.start(r.b);
        sim.start(r.c);
        // d: b's and c's precommits for X, then its precommit timeout: round 1, where it
        // proposes a block of its own.
        for from in [r.b, r.c] {
            let m = one(&out, from, |m| is_vote(m, 0, VoteKind::Precommit));
            let _ = sim.deliver(r.d, m);
        }
        sim.fire(r.d, 1, Timeout::precommit(Round::new(0)));
        // b and c: the round-0 votes of the others, as a network may deliver them late
        // (never the proposal); then whatever timeouts a node in their place would reach.
        for (me, other) in [(r.b, r.c), (r.c, r.b)] {
            let mut late = vec![
                one(&out, r.a, |m| is_vote(m, 0, VoteKind::Prevote)),
                one(&out, other, |m| is_vote(m, 0, VoteKind::Prevote)),
                one(&out, r.d, |m| is_vote(m, 0, VoteKind::Prevote)),
                one(&out, r.d, |m| is_vote(m, 0, VoteKind::Precommit)),
                one(&out, other, |m| is_vote(m, 0, VoteKind::Precommit)),
            ];
            late.push(one(&out, r.a, |m| is_vote(m, 0, VoteKind::Precommit)));
            deliver_all(&mut sim, me, &late);
            for t in [
                Timeout::propose(Round::new(0)),
                Timeout::prevote(Round::new(0)),
                Timeout::precommit(Round::new(0)),
            ] {
                sim.fire(me, 1, t);
            }
        }
        // Round 1 among b, c, d (a is cut off).
        flood(&mut sim, &[r.b, r.c, r.d]);
        for i in [r.b, r.c, r.d] {
            if let Some(b) = sim.store(i).block(1).unwrap() {
                assert_eq!(
                    b.block.header.checkpoint(),
                    x,
                    "seed {seed}: FORK at height 1: node {i} committed another block than a"
                );
            }
        }
        sim.check_agreement();
        // Healed: everyone converges on X and goes on.
        heal_and_converge(&mut sim);
        assert_eq!(x_of(&sim, r.b), x);
        assert!(
            sim.evidence.is_empty(),
            "seed {seed}: honest validators accused"
        );
    }
}

/// After the same round 0, b and c restart and reach round 1 (their precommit timeouts):
/// replayed, they are still locked on X, so they prevote nil for d's new block Y, never Y.
#[test]
fn restarted_validators_stay_locked_in_the_next_round() {
    for seed in seeds(&[3]) {
        let mut sim = Sim::new(4, seed);
        let r = roles(&sim);
        let out = round_zero(&mut sim, &r);
        sim.crash(r.b);
        sim.crash(r.c);
        sim.start(r.b);
        sim.start(r.c);
        for from in [r.b, r.c] {
            let m = one(&out, from, |m| is_vote(m, 0, VoteKind::Precommit));
            let _ = sim.deliver(r.d, m);
        }
        sim.fire(r.d, 1, Timeout::precommit(Round::new(0)));
        let y_proposal = one(
            &sim.take_outbox(),
            r.d,
            |m| matches!(m, Msg::Proposal { proposal, .. } if proposal.proposal.round == 1),
        );
        let Msg::Proposal { proposal, .. } = &y_proposal else {
            unreachable!()
        };
        let y = proposal.proposal.value;
        for (me, other) in [(r.b, r.c), (r.c, r.b)] {
            deliver_all(
                &mut sim,
                me,
                &[
                    one(&out, other, |m| is_vote(m, 0, VoteKind::Precommit)),
                    one(&out, r.d, |m| is_vote(m, 0, VoteKind::Precommit)),
                ],
            );
            sim.fire(me, 1, Timeout::precommit(Round::new(0)));
            let _ = sim.deliver(me, y_proposal.clone());
        }
        let round1: Vec<SignedVote> = sim
            .sent_votes
            .iter()
            .filter(|(i, v)| (*i == r.b || *i == r.c) && v.vote.round == 1)
            .map(|(_, v)| *v)
            .collect();
        for i in [r.b, r.c] {
            let key = sim.key(i).public();
            let prevote = round1
                .iter()
                .find(|v| v.validator == key && v.vote.kind == VoteKind::Prevote)
                .unwrap_or_else(|| panic!("seed {seed}: node {i} did not prevote in round 1"));
            assert_ne!(
                prevote.vote.value,
                Some(y),
                "seed {seed}: node {i} forgot its lock on X and prevoted d's block"
            );
        }
        heal_and_converge(&mut sim);
    }
}

/// A validator that signed its prevote and was killed before the prevote left the process
/// sends exactly that prevote (same bytes) again when it restarts.
#[test]
fn restart_between_sign_and_send_replays_the_same_vote() {
    let mut sim = Sim::new(4, 5);
    let r = roles(&sim);
    let proposal = propose(&mut sim, &r);
    let _ = sim.take_outbox();
    let _ = sim.deliver(r.b, proposal);
    // The prevote was signed and handed to the network layer, which died with the process.
    let lost = one(&sim.take_outbox(), r.b, |m| {
        is_vote(m, 0, VoteKind::Prevote)
    });
    sim.crash(r.b);
    sim.start(r.b);
    let again = sim.take_outbox();
    let resent = sent(&again, r.b, |m| is_vote(m, 0, VoteKind::Prevote));
    let (Msg::Vote(lost), [Msg::Vote(resent)]) = (&lost, resent.as_slice()) else {
        panic!("the restarted validator did not re-send its prevote: {again:?}");
    };
    assert_eq!(lost, resent, "the re-sent prevote is the one signed before");
    // And the height completes.
    heal_and_converge(&mut sim);
}

/// §0: two of four validators killed and restarted in the middle of a height, after signing
/// their prevotes and before those left: the chain must go on (it used to stop for good, the
/// restarted validators refusing to sign again in their slots and re-sending nothing).
#[test]
fn two_validators_restarted_mid_height_resume() {
    for seed in seeds(&[21, 22, 23]) {
        let mut sim = Sim::new(4, seed);
        assert!(
            sim.run_until(30_000, 100, |s| all_reach(s, 3)),
            "seed {seed}"
        );
        let h = (0..4).map(|i| sim.height(i)).max().unwrap() + 1;
        let signed = |s: &Sim, i: usize| {
            let k = s.key(i).public();
            s.sent_votes
                .iter()
                .any(|(_, v)| v.validator == k && v.vote.height == h)
        };
        assert!(
            sim.run_until(30_000, 100, |s| signed(s, 1) && signed(s, 2)),
            "seed {seed}: validators 1 and 2 never voted at height {h}"
        );
        sim.kill(1);
        sim.kill(2);
        sim.start(1);
        sim.start(2);
        assert!(
            sim.run_until(60_000, 100, |s| all_reach(s, h + 3)),
            "seed {seed}: the chain stopped after two restarts at height {h}: {:?}",
            heights(&sim)
        );
        assert!(sim.halted.is_empty(), "seed {seed}: {:?}", sim.halted);
        sim.check_agreement();
    }
}

/// Checks, over every vote sent, that nobody signed two values in one slot and that every
/// validator's prevotes respect its lock: after precommitting X in round r, it prevotes
/// another block Y in a later round r' only if some round in [r, r') had a polka for Y.
fn check_votes(sim: &Sim) {
    let mut slots: HashMap<(PublicKey, u64, u32, VoteKind), Option<Checkpoint>> = HashMap::new();
    for (_, v) in &sim.sent_votes {
        let k = (v.validator, v.vote.height, v.vote.round, v.vote.kind);
        if let Some(prev) = slots.insert(k, v.vote.value) {
            assert_eq!(
                prev, v.vote.value,
                "seed {}: {} signed two values in slot {:?}",
                sim.seed, v.validator, k
            );
        }
    }
    let mut prevotes: HashMap<(u64, u32, Checkpoint), usize> = HashMap::new();
    for ((_, h, r, kind), value) in &slots {
        if *kind == VoteKind::Prevote
            && let Some(cp) = value
        {
            *prevotes.entry((*h, *r, *cp)).or_default() += 1;
        }
    }
    let polka =
        |h: u64, r: u32, cp: Checkpoint| prevotes.get(&(h, r, cp)).copied().unwrap_or(0) >= 3;
    for ((val, h, r, kind), value) in &slots {
        let (VoteKind::Precommit, Some(x)) = (kind, value) else {
            continue;
        };
        for ((val2, h2, r2, kind2), value2) in &slots {
            let (VoteKind::Prevote, Some(y)) = (kind2, value2) else {
                continue;
            };
            if val2 != val || h2 != h || r2 <= r || y == x {
                continue;
            }
            assert!(
                (*r..*r2).any(|rr| polka(*h, rr, *y)),
                "seed {}: {val} precommitted {x:?} in round {r} at height {h}, then prevoted another block in round {r2} with no polka for it in between (lock forgotten)",
                sim.seed
            );
        }
    }
}

/// Any validator may crash at any step (before handling a message, or after handling it and
/// before what it produced left, losing WAL entries not yet flushed) and restart a moment
/// later, under load and a lossy network: no fork, no double sign, every restarted validator
/// votes consistently with its lock, and the chain keeps going.
#[test]
fn random_crash_restart_keeps_agreement_and_locks() {
    let default: Vec<u64> = (100..112).collect();
    for seed in seeds(&default) {
        let mut sim = Sim::new(4, seed);
        sim.faults = twinledger_tests::sim::Faults {
            drop: 0.05,
            duplicate: 0.05,
            max_delay: 50,
        };
        sim.crash_on_delivery = 0.01;
        sim.restart_after = 300 + seed % 7 * 200;
        // Mostly one down (the network must keep going); some seeds two (it must stay safe).
        sim.max_down = if seed % 4 == 0 { 2 } else { 1 };
        sim.run_until(40_000, 150, |_| false);
        let crashes = sim.crashes;
        sim.crash_on_delivery = 0.0;
        let target = (0..4).map(|i| sim.height(i)).max().unwrap() + 3;
        assert!(
            sim.run_until(60_000, 150, |s| (0..4).all(|i| s.is_up(i))
                && all_reach(s, target)),
            "seed {seed}: no progress after {crashes} crashes: {:?}",
            heights(&sim)
        );
        assert!(crashes >= 3, "seed {seed}: only {crashes} crashes happened");
        assert!(sim.halted.is_empty(), "seed {seed}: {:?}", sim.halted);
        sim.check_agreement();
        check_votes(&sim);
        assert!(
            sim.evidence.is_empty(),
            "seed {seed}: an honest restarted validator was caught double-signing"
        );
    }
}

/// §0: one of four validators stopped (SIGSTOP) for 6.6 s under load, then continued. The
/// other three keep finalising while it is stopped; when it continues, the late precommits it
/// then handles complete a decision in a later round than theirs (the driver reports the
/// round it is in), and it still finds the certificate and catches up. It used to log
/// "decided without a verifiable certificate; waiting" and never move on.
#[test]
fn one_paused_validator_of_four_does_not_stop_the_rest() {
    for seed in seeds(&[31, 32, 33, 34]) {
        let mut sim = Sim::new(4, seed);
        assert!(
            sim.run_until(30_000, 50, |s| all_reach(s, 3)),
            "seed {seed}"
        );
        for cycle in 0..4u64 {
            let who = usize::try_from((seed + cycle) % 4).unwrap();
            let before: Vec<u64> = heights(&sim);
            sim.pause(who);
            sim.run_until(6_600, 50, |_| false);
            let others_moved = (0..4)
                .filter(|&i| i != who)
                .all(|i| sim.height(i) >= before[i] + 2);
            assert!(
                others_moved,
                "seed {seed}: the other three stalled while {who} was paused: {before:?} -> {:?}",
                heights(&sim)
            );
            sim.resume(who);
            let target = (0..4).map(|i| sim.height(i)).max().unwrap() + 2;
            assert!(
                sim.run_until(30_000, 50, |s| all_reach(s, target)),
                "seed {seed}: no recovery after {who} continued: {:?}",
                heights(&sim)
            );
        }
        assert!(sim.halted.is_empty(), "seed {seed}: {:?}", sim.halted);
        sim.check_agreement();
    }
}

/// The root of the paused-validator halt of §0: a validator that moved on to round 1 and then
/// receives the last precommit of a round-0 quorum decides (the driver names the round it is
/// in, 1), and must build the certificate from the round-0 precommits it holds. It used to
/// look only in round 1, log "decided without a verifiable certificate; waiting" and stay
/// there. Scripted, with nothing else delivered (no decision push can rescue it).
#[test]
fn late_precommits_decide_in_a_later_round_with_their_certificate() {
    let mut sim = Sim::new(4, 41);
    let r = roles(&sim);
    let proposal = propose(&mut sim, &r);
    let Msg::Proposal { proposal: p, .. } = &proposal else {
        unreachable!()
    };
    let x = p.proposal.value;
    let chain_id = sim.genesis().chain_id();
    let vote = |sim: &Sim, i: usize, kind: VoteKind, value: Option<Checkpoint>| {
        Msg::Vote(
            twinledger_core::consensus::Vote {
                chain_id,
                height: 1,
                round: 0,
                kind,
                value,
            }
            .sign(&sim.key(i).clone()),
        )
    };
    // b: the proposal, then a's prevote for X and d's nil prevote: three prevotes, no polka;
    // its prevote timeout: it precommits nil.
    let _ = sim.deliver(r.b, proposal.clone());
    let _ = sim.deliver(r.b, vote(&sim, r.a, VoteKind::Prevote, Some(x)));
    let _ = sim.deliver(r.b, vote(&sim, r.d, VoteKind::Prevote, None));
    sim.fire(r.b, 1, Timeout::prevote(Round::new(0)));
    // a and c precommit X (they saw the polka of a, b, c): with b's nil, three precommits,
    // no quorum for X: b's precommit timeout takes it to round 1.
    let _ = sim.deliver(r.b, vote(&sim, r.a, VoteKind::Precommit, Some(x)));
    let _ = sim.deliver(r.b, vote(&sim, r.c, VoteKind::Precommit, Some(x)));
    sim.fire(r.b, 1, Timeout::precommit(Round::new(0)));
    assert_eq!(sim.engine(r.b).unwrap().round(), 1, "b is in round 1");
    // d's late precommit for X completes the round-0 quorum.
    let _ = sim.deliver(r.b, vote(&sim, r.d, VoteKind::Precommit, Some(x)));
    assert_eq!(
        sim.height(r.b),
        1,
        "b holds the proposal and a round-0 quorum of precommits but did not commit"
    );
    let stored = sim.store(r.b).block(1).unwrap().unwrap();
    assert_eq!(stored.block.header.checkpoint(), x);
    assert_eq!(stored.certificate.round, 0, "the certificate is round 0's");
}
