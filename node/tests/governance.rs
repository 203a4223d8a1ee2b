//! Governance on a running node (issue #16; PROTOCOL.md §6.8, §7.1): `GET /v1/governance`
//! follows the chain (a change scheduled, then in force; observers added and removed), and the
//! node admits the next change as soon as the previous one is in force (its scratch state of
//! admitted events is rebuilt when membership moves, so it does not refuse a valid change as
//! "already pending"). Attackers: a replayed approval set and a change authored by a
//! non-validator are refused and change nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use twinledger_core::devkit::dev_key;
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::event::governance::{Governance, GovernanceAction};
use twinledger_core::{
    Action, DataCategory, EventPayload, Purpose, Timestamp, Validator, ValidatorSet,
};

fn set_with_power(k: &Keys, power: u64) -> ValidatorSet {
    ValidatorSet::new(vec![Validator {
        key: k.validator.public(),
        organisation: k.hospital.public(),
        power,
    }])
    .unwrap()
}

/// Waits (deadline 10 s) until `n` governance events are applied.
async fn wait_seq(node: &TestNode, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.chain.state().governance_seq() < n {
        assert!(
            Instant::now() < deadline,
            "governance sequence {n} not reached"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Drives the solo chain (which makes no empty blocks) to height `h` with one fresh patient's
/// grant per block.
async fn wait_height(node: &TestNode, h: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while node.chain.state().height() < h {
        assert!(Instant::now() < deadline, "height {h} not reached");
        let p = patient(&format!("governance-test/filler-{h}-{n}"));
        n += 1;
        let ev = node.event(
            &p,
            0,
            EventPayload::ConsentGrant(ConsentGrant {
                patient: p.public(),
                grantee: Grantee::Organisation(dev_key("node-test/hospital").public()),
                scope: Scope {
                    categories: [DataCategory::VitalSigns].into_iter().collect(),
                    purposes: [Purpose::Treat].into_iter().collect(),
                    actions: [Action::Read].into_iter().collect(),
                },
                valid_from: Timestamp(0),
                valid_until: None,
            }),
        );
        let log = node.chain.state().log_size();
        assert_eq!(node.submit(&ev).await.0, 202);
        node.wait_log(log + 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_membership_view_follows_changes_and_the_next_change_is_admitted_once_one_is_in_force()
{
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let node = TestNode::start(dir.path()).await.unwrap();
    let chain = node.chain_id();
    let (s, v) = node.get("/v1/governance").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["governance_seq"], 0);
    assert_eq!(v["scheduled"], json!(null));
    assert_eq!(v["validators"]["total_power"], 1);

    let mut seq = 0; // the validator's event sequence
    let mut govern = async |gseq: u64, action: GovernanceAction| {
        let approval = Governance::approve(&chain, gseq, &action, &k.validator);
        let ev = node.event(
            &k.validator,
            seq,
            EventPayload::Governance(Governance {
                seq: gseq,
                action,
                approvals: vec![approval],
            }),
        );
        let (s, v) = node.submit(&ev).await;
        seq += 1;
        (s, v, ev)
    };

    // A first change: scheduled, then in force.
    let (s, v, _) = govern(
        0,
        GovernanceAction::ValidatorSetChange {
            validators: set_with_power(&k, 3),
        },
    )
    .await;
    assert_eq!(s, 202, "{v}");
    wait_seq(&node, 1).await;
    let at = node.chain.state().height();
    let (_, v) = node.get("/v1/governance").await;
    // A solo chain makes no block without events: the change is still scheduled.
    assert_eq!(node.chain.state().height(), at);
    assert_eq!(v["scheduled"]["in_force_from"], at + 2, "{v}");
    assert_eq!(v["scheduled"]["total_power"], 3, "{v}");
    wait_height(&node, at + 2).await;
    let (_, v) = node.get("/v1/governance").await;
    assert_eq!(v["validators"]["total_power"], 3, "{v}");
    assert_eq!(v["scheduled"], json!(null), "{v}");
    assert_eq!(v["validator_set_changes"][0]["height"], at, "{v}");

    // The next change, submitted to the same node right after: admitted (the bug was a scratch
    // state still holding the first change as pending), applied.
    let (s, v, _) = govern(
        1,
        GovernanceAction::ValidatorSetChange {
            validators: set_with_power(&k, 5),
        },
    )
    .await;
    assert_eq!(s, 202, "the second change was refused: {v}");
    wait_seq(&node, 2).await;

    // Observers: added, shown live, removed, shown removed.
    let obs = dev_key("governance-test/observer");
    let (s, v, _) = govern(
        2,
        GovernanceAction::ObserverAdd {
            observer: obs.public(),
            organisation: k.hospital.public(),
        },
    )
    .await;
    assert_eq!(s, 202, "{v}");
    wait_seq(&node, 3).await;
    let (_, v) = node.get("/v1/governance").await;
    assert_eq!(v["observers"][0]["key"], json!(obs.public()), "{v}");
    assert_eq!(v["observers"][0]["live"], true, "{v}");
    assert_eq!(
        v["observers"][0]["peer_id"],
        json!(twinledger_genesis::peer_id_from_ed25519(&obs.public()))
    );
    let (s, v, removal) = govern(
        3,
        GovernanceAction::ObserverRemove {
            observer: obs.public(),
        },
    )
    .await;
    assert_eq!(s, 202, "{v}");
    wait_seq(&node, 4).await;
    let (_, v) = node.get("/v1/governance").await;
    assert_eq!(v["observers"][0]["live"], false, "{v}");
    assert_eq!(v["governance_seq"], 4, "{v}");

    // Attacker 1: the removal's approvals replayed in a new event (seq 3 again) are refused.
    let EventPayload::Governance(old) = removal.event.payload.clone() else {
        unreachable!()
    };
    let replay = node.event(&k.validator, seq, EventPayload::Governance(old));
    let (s, v) = node.submit(&replay).await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("governance sequence 3"),
        "{v}"
    );

    // Attacker 2: an organisation (not a validator) authors a change with a forged approval
    // list: refused as an unknown author.
    let action = GovernanceAction::ObserverAdd {
        observer: dev_key("governance-test/rogue").public(),
        organisation: k.hospital.public(),
    };
    let approval = Governance::approve(&chain, 4, &action, &k.hospital);
    let rogue = node.event(
        &k.hospital,
        0,
        EventPayload::Governance(Governance {
            seq: 4,
            action,
            approvals: vec![approval],
        }),
    );
    let (s, v) = node.submit(&rogue).await;
    assert_eq!(s, 422, "{v}");
    let (_, v) = node.get("/v1/governance").await;
    assert_eq!(v["governance_seq"], 4, "{v}");
    assert_eq!(v["observers"].as_array().unwrap().len(), 1, "{v}");
    node.stop().await;
}

/// A solo chain whose set governance grows: the solo producer stops with a message naming why
/// (its key alone is no quorum of the set in force), and the node's role at its next start is a
/// replicated validator, not solo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_chain_whose_set_grows_stops_producing_alone_and_restarts_replicated() {
    use twinledger_node::consensus::solo::{Solo, SoloError};
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let node = TestNode::start(dir.path()).await.unwrap();
    let chain = node.chain_id();
    let second = dev_key("governance-test/second-validator");
    let mut vals = vec![
        Validator {
            key: k.validator.public(),
            organisation: k.hospital.public(),
            power: 1,
        },
        Validator {
            key: second.public(),
            organisation: k.hospital.public(),
            power: 1,
        },
    ];
    vals.sort_by_key(|v| v.key);
    let action = GovernanceAction::ValidatorSetChange {
        validators: ValidatorSet::new(vals).unwrap(),
    };
    let approval = Governance::approve(&chain, 0, &action, &k.validator);
    let ev = node.event(
        &k.validator,
        0,
        EventPayload::Governance(Governance {
            seq: 0,
            action,
            approvals: vec![approval],
        }),
    );
    assert_eq!(node.submit(&ev).await.0, 202);
    wait_seq(&node, 1).await;
    let at = node.chain.state().height();
    wait_height(&node, at + 1).await;
    let step =
        Solo::new(node.chain.clone(), k.validator.clone()).step(twinledger_node::chain::now());
    assert!(
        matches!(step, Err(SoloError::NotAlone { height }) if height == at + 2),
        "{step:?}"
    );
    let genesis = genesis(&k);
    let role =
        twinledger_node::role_of(&genesis, Some(&node.chain.state()), &k.validator, false).unwrap();
    assert_eq!(role, twinledger_node::Role::Validator);
    node.stop().await;
}
