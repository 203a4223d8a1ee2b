//! Property tests of `consensus::proposer` (PROTOCOL.md §12.3, protocol 1.2) against a
//! reference written directly from the specification's steps, and of the fairness it promises.
//!
//! Slots are `height + round`; the tests walk consecutive slots with the round varying, so the
//! same slot is reached through different (height, round) pairs. With `T` the total power and
//! `p` a validator's power:
//!
//! - every window of `T` consecutive slots holds exactly `p` of its turns (the issue asked for
//!   `p ± 1`);
//! - in every window of `k` consecutive slots its count differs from `k·p/T` by less than its
//!   bound `R` (§12.3): `R ≤ 1` with at most two distinct powers, so the count is `⌊k·p/T⌋` or
//!   `⌈k·p/T⌉`; `R < 2` with three, so at most `⌈k·p/T⌉ + 1`; `R < 3.36` always, so at most
//!   `⌈k·p/T⌉ + 3`. The exact `R` of each validator, computed from the reference tree, is
//!   checked too.
//!
//! The wish of `⌈k·p/T⌉ + 1` for every set is not claimed beyond three distinct powers:
//! it is the best-possible discrepancy regime (Tijdeman's chairman assignment), reached by
//! sequential schedulers (smooth weighted round robin, CometBFT's priorities, earliest deadline
//! first) that need the whole history or chain state, not by a function of the slot alone in
//! O(n log n). Some sets with four or more distinct powers exceed it by one (see the last test).

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use twinledger_core::consensus::proposer;
use twinledger_core::{PublicKey, ValidatorSet};

// ---------------------------------------------------------------------------------------------
// Reference: PROTOCOL.md §12.3, transcribed (quadratic where the implementation is not).
// ---------------------------------------------------------------------------------------------

enum RefNode {
    /// A class: its members' positions in the set, and its weight.
    Class(Vec<usize>, u128),
    /// An inner node: (left, right, weight).
    Inner(usize, usize, u128),
}

impl RefNode {
    fn weight(&self) -> u128 {
        match self {
            RefNode::Class(_, w) | RefNode::Inner(_, _, w) => *w,
        }
    }
}

/// Steps 1 and 2: the classes (ascending power, members in set order) and the Huffman tree;
/// node `i` has rank `i`. Returns the nodes; the root is the last.
fn ref_tree(powers: &[u64]) -> Vec<RefNode> {
    let mut distinct: Vec<u64> = powers.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let mut nodes: Vec<RefNode> = distinct
        .iter()
        .map(|&q| {
            let members: Vec<usize> = (0..powers.len()).filter(|&i| powers[i] == q).collect();
            let weight = u128::from(q) * members.len() as u128;
            RefNode::Class(members, weight)
        })
        .collect();
    let mut live: Vec<usize> = (0..nodes.len()).collect();
    while live.len() > 1 {
        // The smallest (weight, rank), removed; then the smallest of the rest.
        let mut take = || {
            let at = (0..live.len())
                .min_by_key(|&j| (nodes[live[j]].weight(), live[j]))
                .unwrap();
            live.remove(at)
        };
        let a = take();
        let b = take();
        let w = nodes[a].weight() + nodes[b].weight();
        nodes.push(RefNode::Inner(b, a, w));
        live.push(nodes.len() - 1);
    }
    nodes
}

/// Steps 3 and 4: the proposer's position in the set for slot `slot`.
fn ref_proposer(nodes: &[RefNode], total: u128, slot: u128) -> usize {
    let mut x = slot % total;
    let mut node = nodes.len() - 1;
    loop {
        match &nodes[node] {
            RefNode::Inner(left, right, w) => {
                let wl = nodes[*left].weight();
                let f = |y: u128| (y * wl + w / 2) / w;
                if f(x + 1) > f(x) {
                    x = f(x);
                    node = *left;
                } else {
                    x -= f(x);
                    node = *right;
                }
            }
            RefNode::Class(members, _) => {
                return members[usize::try_from(x % members.len() as u128).unwrap()];
            }
        }
    }
}

/// A non-negative fraction, kept reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Frac(u128, u128);

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Frac {
    fn new(n: u128, d: u128) -> Self {
        let g = gcd(n, d).max(1);
        Frac(n / g, d / g)
    }
    fn add(self, o: Frac) -> Frac {
        Frac::new(self.0 * o.1 + o.0 * self.1, self.1 * o.1)
    }
}

/// §12.3's bound `R` of every validator: `(B + k - 1)/k` for a class of `k` members, with `B`
/// the sum of (class weight / node weight) over the class's leaf and its ancestors below the
/// root.
fn ref_bounds(powers: &[u64], nodes: &[RefNode]) -> Vec<Frac> {
    let mut out = vec![Frac(0, 1); powers.len()];
    let root = nodes.len() - 1;
    let mut stack: Vec<(usize, Vec<u128>)> = vec![(root, Vec::new())];
    while let Some((node, ancestors)) = stack.pop() {
        match &nodes[node] {
            RefNode::Inner(left, right, w) => {
                let mut next = ancestors.clone();
                if node != root {
                    next.push(*w);
                }
                stack.push((*left, next.clone()));
                stack.push((*right, next));
            }
            RefNode::Class(members, c) => {
                let k = members.len() as u128;
                let b = ancestors
                    .iter()
                    .fold(Frac(1, 1), |acc, w| acc.add(Frac::new(*c, *w)));
                let r = Frac::new(b.0 + (k - 1) * b.1, k * b.1);
                for &i in members {
                    out[i] = r;
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Sets and sequences.
// ---------------------------------------------------------------------------------------------

/// A set with these powers, assigned in set (key) order; its keys in that order.
fn weighted(powers: &[u64]) -> (Vec<PublicKey>, ValidatorSet) {
    twinledger_core::devkit::set_with_powers("validator", powers)
}

/// Positions in the set of the proposers of `len` consecutive slots from `start`, each reached
/// with a different round (`round = t mod 3`, height = slot − round).
fn sequence(keys: &[PublicKey], set: &ValidatorSet, start: u64, len: u64) -> Vec<usize> {
    (0..len)
        .map(|t| {
            let slot = start + t;
            let round = u32::try_from(t % 3).unwrap();
            let who = proposer(set, slot - u64::from(round), round);
            keys.iter().position(|k| *k == who).unwrap()
        })
        .collect()
}

fn distinct(powers: &[u64]) -> usize {
    let mut d = powers.to_vec();
    d.sort_unstable();
    d.dedup();
    d.len()
}

/// Powers whose total keeps a full period small enough to check every window.
fn small_powers() -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        // Anything small.
        3 => prop::collection::vec(1..=40u64, 1..=8),
        // Few distinct powers, many validators.
        2 => (
            prop::collection::vec(1..=12u64, 1..=3),
            prop::collection::vec(any::<prop::sample::Index>(), 1..=12),
        )
            .prop_map(|(values, picks)| {
                picks.iter().map(|i| values[i.index(values.len())]).collect()
            }),
        // One heavy validator and light ones.
        1 => (1..=120u64, prop::collection::vec(1..=3u64, 1..=8))
            .prop_map(|(heavy, mut light)| { light.insert(0, heavy); light }),
        // Equal powers.
        1 => (1..=9u64, 1..=16usize).prop_map(|(p, n)| vec![p; n]),
    ]
}

/// `cases` cases; a failing case is saved beside this file (`proposer_props.proptest-regressions`).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn check_fairness(powers: &[u64], start: u64) -> Result<(), String> {
    let (keys, set) = weighted(powers);
    let total = set.total_power();
    let nodes = ref_tree(powers);
    let seq = sequence(&keys, &set, start, 2 * total);

    // The implementation is the reference, slot by slot.
    for (t, &who) in seq.iter().enumerate() {
        let slot = u128::from(start) + t as u128;
        let want = ref_proposer(&nodes, u128::from(total), slot);
        if who != want {
            return Err(format!(
                "slot {slot}: proposer {who}, the reference says {want}"
            ));
        }
    }

    let t_len = usize::try_from(total).unwrap();
    let bounds = ref_bounds(powers, &nodes);
    let d = distinct(powers);
    for (i, &p) in powers.iter().enumerate() {
        // prefix[t] = turns of validator i among the first t slots of the sequence.
        let mut prefix = vec![0u64; seq.len() + 1];
        for (t, &who) in seq.iter().enumerate() {
            prefix[t + 1] = prefix[t] + u64::from(who == i);
        }
        let Frac(rn, rd) = bounds[i];
        for k in 1..=t_len {
            let kp = u128::from(p) * k as u128;
            let (floor, ceil) = (kp / u128::from(total), kp.div_ceil(u128::from(total)));
            for s in 0..t_len {
                let count = u128::from(prefix[s + k] - prefix[s]);
                if k == t_len && count != u128::from(p) {
                    return Err(format!(
                        "validator {i} (power {p}): {count} turns in the {total} slots from {s}"
                    ));
                }
                // |count·T − k·p| < R·T, with R = rn/rd.
                let dev = (count * u128::from(total)).abs_diff(kp);
                if dev * rd >= rn * u128::from(total) {
                    return Err(format!(
                        "validator {i} (power {p}): {count} turns in {k} slots from {s}, \
                         beyond its bound {rn}/{rd}"
                    ));
                }
                let slack = match d {
                    0..=2 => 0,
                    3 => 1,
                    _ => 3,
                };
                if count > ceil + slack || count + slack < floor {
                    return Err(format!(
                        "validator {i} (power {p}): {count} turns in {k} slots from {s}; \
                         {d} distinct powers allow {floor}−{slack}..={ceil}+{slack}"
                    ));
                }
            }
        }
        // R ≤ 1 with at most two distinct powers, R < 2 with three, R < 3.36 always.
        let within = match d {
            0..=2 => rn <= rd,
            3 => rn < 2 * rd,
            _ => rn * 100 < 336 * rd,
        };
        if !within {
            return Err(format!(
                "validator {i}: bound {rn}/{rd} is too large for {d} distinct powers"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn turns_are_exact_per_period_and_never_bunched(
        powers in small_powers(),
        start in prop_oneof![3 => 2..1_000u64, 1 => (u64::MAX / 2)..(u64::MAX / 2 + 1_000)],
    ) {
        check_fairness(&powers, start).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Powers of any size (up to 2^48 each, up to 256 validators): the implementation agrees
    /// with the reference at arbitrary slots, including beyond 2^64.
    #[test]
    fn large_powers_agree_with_the_reference(
        powers in prop::collection::vec(
            prop_oneof![1..=1u64 << 48, 1..=16u64, Just(1u64 << 48)],
            1..=256,
        ),
        slots in prop::collection::vec((any::<u64>(), any::<u32>()), 1..=16),
    ) {
        let (keys, set) = weighted(&powers);
        let nodes = ref_tree(&powers);
        let total = u128::from(set.total_power());
        for (h, r) in slots {
            let who = proposer(&set, h, r);
            let at = keys.iter().position(|k| *k == who).unwrap();
            let want = ref_proposer(&nodes, total, u128::from(h) + u128::from(r));
            prop_assert_eq!(at, want, "height {} round {}", h, r);
        }
    }

    /// Equal powers rotate in set order, whatever the power.
    #[test]
    fn equal_powers_rotate(
        power in 1..=1u64 << 48,
        n in 1..=64usize,
        h in any::<u64>(),
        r in 0..1_000u32,
    ) {
        let (keys, set) = weighted(&vec![power; n]);
        let slot = u128::from(h) + u128::from(r);
        let at = usize::try_from(slot % n as u128).unwrap();
        prop_assert_eq!(proposer(&set, h, r), keys[at]);
    }
}

/// The largest excess over `⌈k·p/T⌉` of any validator's turns in any window.
fn worst_excess(powers: &[u64]) -> i128 {
    let (keys, set) = weighted(powers);
    let total = set.total_power();
    let seq = sequence(&keys, &set, 1, 2 * total);
    let t_len = usize::try_from(total).unwrap();
    let mut worst = i128::MIN;
    for (i, &p) in powers.iter().enumerate() {
        let mut prefix = vec![0i128; seq.len() + 1];
        for (t, &who) in seq.iter().enumerate() {
            prefix[t + 1] = prefix[t] + i128::from(who == i);
        }
        for k in 1..=t_len {
            let ceil =
                i128::try_from((u128::from(p) * k as u128).div_ceil(u128::from(total))).unwrap();
            for s in 0..t_len {
                worst = worst.max(prefix[s + k] - prefix[s] - ceil);
            }
        }
    }
    worst
}

/// Sets with four or more distinct powers where one window holds `⌈k·p/T⌉ + 2` turns: the
/// issue's wish of `+ 1` is not met (about 2% of random sets of 4 to 8 validators with powers up
/// to 50 are like this), while the §12.3 bound, which is what the protocol promises, holds.
#[test]
fn some_sets_exceed_the_wish_by_one_but_keep_the_bound() {
    for powers in [
        vec![19u64, 1, 18, 1, 41, 30],
        vec![5, 29, 49, 48],
        vec![31, 2, 48, 23, 34, 48],
    ] {
        assert_eq!(worst_excess(&powers), 2, "{powers:?}");
        check_fairness(&powers, 1).unwrap();
    }
    for powers in [
        vec![1u64, 2, 4, 8, 16, 32, 64],
        vec![1, 1, 2, 3, 5, 8, 13, 21],
    ] {
        assert!(worst_excess(&powers) <= 1, "{powers:?}");
        check_fairness(&powers, 1).unwrap();
    }
}
