//! State snapshots on a real sled store (issue #13, ADR 0010): a restart after a snapshot
//! replays only the blocks after it, a corrupt snapshot is ignored, and a snapshot whose
//! records were altered behind a valid checksum is refused by the root check.

use std::time::Duration;

use tempfile::TempDir;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::event::governance::{Governance, GovernanceAction};
use twinledger_core::state::{Snapshot, SnapshotError};
use twinledger_core::{
    Commitment, EventPayload, Hash, Keypair, PublicKey, SignedEvent, State, Timestamp, ValidatorSet,
};
use twinledger_node::chain::{Chain, NodePolicy, OpenError};
use twinledger_node::metrics::Metrics;
use twinledger_node::snapshot::{self, RestoreError};
use twinledger_node::store::Store;

const POLICY: NodePolicy = NodePolicy {
    block_interval: Duration::from_millis(100),
    mempool_size: 1000,
};

/// Opens the sled store in `dir` once the previous opener's handles are gone: sled releases
/// its file lock from a background thread after the last handle drops, later under load. Waits
/// on that condition with a deadline (30 s); any other error fails at once.
fn open_sled(dir: &TempDir) -> Store {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match Store::open_sled(dir.path()) {
            Ok(s) => return s,
            Err(e)
                if format!("{e:?}").contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("opening the store in {}: {e:?}", dir.path().display()),
        }
    }
}

fn open(dev: &DevChain, dir: &TempDir, verify_all: bool) -> Result<Chain, OpenError> {
    let store = open_sled(dir);
    Chain::open(
        dev.genesis.clone(),
        store,
        POLICY,
        verify_all,
        Metrics::new(),
    )
}

fn patient(i: usize) -> Keypair {
    dev_key(&format!("patient/snap-node-{i}"))
}

fn grant(p: &PublicKey, actor: &PublicKey) -> EventPayload {
    EventPayload::ConsentGrant(ConsentGrant {
        patient: *p,
        grantee: Grantee::Actor(*actor),
        scope: Scope {
            categories: [DataCategory::VitalSigns].into_iter().collect(),
            purposes: [Purpose::Treat].into_iter().collect(),
            actions: [Action::Read].into_iter().collect(),
        },
        valid_from: Timestamp(0),
        valid_until: None,
    })
}

fn access(p: &PublicKey) -> EventPayload {
    EventPayload::AccessRequest(AccessRequest {
        patient: *p,
        category: DataCategory::VitalSigns,
        purpose: Purpose::Treat,
        action: Action::Read,
        resource: Commitment::new(&[9; 32], b"twin-store://snap"),
    })
}

/// The events of block `h` (1-based) of the test chain: grants and accesses for a few
/// patients, and in block 3 a validator-set change (in force from block 5).
fn events(dev: &mut DevChain, h: usize) -> Vec<SignedEvent> {
    let phys = dev.physician.clone();
    let mut out = Vec::new();
    for i in 0..3 {
        let p = patient(h * 3 + i);
        out.push(dev.event(&p, grant(&p.public(), &phys.public())));
        out.push(dev.event(&phys, access(&p.public())));
    }
    if h == 3 {
        let mut validators = dev.validator_set().validators().to_vec();
        validators[0].power = 3;
        let action = GovernanceAction::ValidatorSetChange {
            validators: ValidatorSet::new(validators).unwrap(),
        };
        let chain_id = dev.state.chain_id();
        let seq = dev.state.governance_seq();
        let mut approvals: Vec<_> = dev.validators[..3]
            .iter()
            .map(|k| Governance::approve(&chain_id, seq, &action, k))
            .collect();
        approvals.sort_by_key(|a| a.validator);
        let by = dev.validators[0].clone();
        out.push(dev.event(
            &by,
            EventPayload::Governance(Governance {
                seq,
                action,
                approvals,
            }),
        ));
    }
    out
}

/// A node whose store holds `blocks` blocks of the dev chain, each committed through
/// `Chain::commit`; `snapshot_at` lists heights after which a snapshot is written.
fn node_with(blocks: usize, snapshot_at: &[u64]) -> (DevChain, TempDir, State) {
    let mut dev = DevChain::new(4);
    let dir = TempDir::new().unwrap();
    let chain = open(&dev, &dir, false).unwrap();
    for h in 1..=blocks {
        let evs = events(&mut dev, h);
        let c = dev.commit(evs);
        assert!(c.rejected.is_empty(), "{:?}", c.rejected);
        chain
            .commit(c.committed.block, c.committed.certificate)
            .unwrap();
        if snapshot_at.contains(&(h as u64)) {
            snapshot::write_snapshot(chain.store(), &chain.state()).unwrap();
        }
    }
    assert_eq!(chain.validator_set_changes().len(), 1);
    let state = chain.state();
    (dev, dir, state)
}

fn assert_same(a: &State, b: &State) {
    assert_eq!(a.height(), b.height());
    assert_eq!(a.state_root(), b.state_root());
    assert_eq!(a.log_root(), b.log_root());
    assert_eq!(a.to_snapshot(), b.to_snapshot());
}

/// Overwrites the raw bytes of a stored record.
fn damage(dir: &TempDir, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) {
    let store = open_sled(dir);
    let mut v = store.kv().get(key).unwrap().expect("record present");
    f(&mut v);
    store.kv().commit(vec![(key.to_vec(), v)]).unwrap();
}

/// The snapshot slot holding `height`.
fn slot_of(dir: &TempDir, height: u64) -> u8 {
    let store = open_sled(dir);
    (0..2u8)
        .find(|s| {
            store
                .kv()
                .get(&[b"z/m".as_slice(), &[*s]].concat())
                .unwrap()
                .is_some_and(|m| m[..8] == height.to_be_bytes())
        })
        .expect("snapshot stored")
}

fn block_key(h: u64) -> Vec<u8> {
    [b"b/".as_slice(), &h.to_be_bytes()].concat()
}

/// After a snapshot at height 8 of 12, start-up rebuilds the state from it and replays only
/// blocks 9..=12: with blocks 1..=8 made unreadable the node still opens, with the same state
/// and validator-set changes as before the restart, while `--verify-all` (which replays from
/// genesis) refuses the store at the first damaged block.
#[test]
fn restart_after_a_snapshot_replays_only_the_blocks_after_it() {
    let (dev, dir, before) = node_with(12, &[8]);
    let changes = {
        let chain = open(&dev, &dir, true).unwrap();
        assert_same(&chain.state(), &before);
        chain.validator_set_changes()
    };
    let store = open_sled(&dir);
    let r = snapshot::restore(&dev.genesis, &store, 12).expect("the snapshot verifies");
    assert_eq!(r.height, 8);
    assert_eq!(r.set_changes, changes);
    drop((r, store));

    let chain = open(&dev, &dir, false).unwrap();
    assert_same(&chain.state(), &before);
    assert_eq!(chain.validator_set_changes(), changes);
    drop(chain);

    // Blocks 1..=7 unreadable (block 3 holds the set change, block 8 is the snapshot's and is
    // read for its header): the default start-up never reads them.
    for h in [1, 2, 4, 5, 6, 7] {
        damage(&dir, &block_key(h), |v| v[40] ^= 1);
    }
    let chain = open(&dev, &dir, false).unwrap();
    assert_same(&chain.state(), &before);
    assert_eq!(chain.validator_set_changes(), changes);
    drop(chain);
    let e = open(&dev, &dir, true).unwrap_err();
    assert!(e.to_string().contains("block 1 is corrupt"), "{e}");
}

/// A snapshot whose bytes are damaged on disk fails its checksum, is ignored (logged), and the
/// node falls back to the older snapshot; with both damaged it replays from genesis. Either
/// way it opens with the right state.
#[test]
fn a_corrupt_snapshot_is_ignored_and_the_node_opens_with_the_right_state() {
    let (dev, dir, before) = node_with(10, &[4, 8]);
    let newest = [b"z/d".as_slice(), &[slot_of(&dir, 8)]].concat();
    damage(&dir, &newest, |v| {
        let n = v.len();
        v[n / 2] ^= 0x40;
    });
    {
        let store = open_sled(&dir);
        let metas = store.snapshots().unwrap();
        assert_eq!(metas.iter().map(|m| m.height).collect::<Vec<_>>(), [8, 4]);
        let e = store.snapshot_bytes(&metas[0]).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        let r = snapshot::restore(&dev.genesis, &store, 10).expect("the older one verifies");
        assert_eq!(r.height, 4);
    }
    let chain = open(&dev, &dir, false).unwrap();
    assert_same(&chain.state(), &before);
    drop(chain);

    let older = [b"z/d".as_slice(), &[slot_of(&dir, 4)]].concat();
    damage(&dir, &older, |v| v.truncate(40));
    {
        let store = open_sled(&dir);
        assert!(snapshot::restore(&dev.genesis, &store, 10).is_none());
    }
    let chain = open(&dev, &dir, false).unwrap();
    assert_same(&chain.state(), &before);
    assert_eq!(chain.validator_set_changes().len(), 1);
}

/// A snapshot whose records were altered and re-stored with a valid checksum is refused by the
/// root check (the records rebuild to another root than the one claimed); one whose claimed
/// root was forged to match the altered records is refused against the certified header's
/// `state_hash`. The node opens from a full replay with the right state.
#[test]
fn a_snapshot_with_altered_records_behind_a_good_checksum_is_refused_by_the_root_check() {
    let (dev, dir, before) = node_with(6, &[]);
    let store = open_sled(&dir);
    let mut snap = before.to_snapshot();
    snap.nonces[0].1 += 1;
    store
        .put_snapshot(6, before.log_size(), &snap.to_bytes())
        .unwrap();
    let e = snapshot::restore_one(&dev.genesis, &store, 6, || {
        store.snapshot_bytes(&store.snapshots().unwrap()[0])
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            RestoreError::Snapshot(SnapshotError::RootMismatch { .. })
        ),
        "{e}"
    );

    // The attacker also rewrites the claimed root: the rebuilt state then disagrees with the
    // stored, certified header.
    let forged = State::from_snapshot(
        &dev.genesis,
        Snapshot {
            state_root: Hash([0; 32]),
            ..snap.clone()
        },
    )
    .unwrap_err();
    let SnapshotError::RootMismatch { rebuilt, .. } = forged else {
        panic!("{forged}")
    };
    snap.state_root = rebuilt;
    store
        .put_snapshot(6, before.log_size(), &snap.to_bytes())
        .unwrap();
    let e = snapshot::restore_one(&dev.genesis, &store, 6, || {
        store.snapshot_bytes(&store.snapshots().unwrap()[0])
    })
    .unwrap_err();
    assert!(
        matches!(
            e,
            RestoreError::Snapshot(SnapshotError::Header {
                field: "state_hash",
                ..
            })
        ),
        "{e}"
    );
    assert!(snapshot::restore(&dev.genesis, &store, 6).is_none());
    drop(store);
    let chain = open(&dev, &dir, false).unwrap();
    assert_same(&chain.state(), &before);
}

/// A snapshot is due after `SNAPSHOT_EVENTS` events or `SNAPSHOT_EVERY` heights with at least
/// one event since the last, never for a height or log that did not move; `maybe_snapshot`
/// does nothing when none is due.
#[test]
fn snapshots_are_taken_when_enough_events_or_heights_have_passed() {
    use snapshot::{SNAPSHOT_EVENTS, SNAPSHOT_EVERY, due};
    assert!(!due(None, 0, 0));
    assert!(!due(None, 5, SNAPSHOT_EVENTS - 1));
    assert!(due(None, 5, SNAPSHOT_EVENTS));
    assert!(due(None, SNAPSHOT_EVERY, 1));
    assert!(!due(None, SNAPSHOT_EVERY, 0));
    assert!(!due(Some((10, 100)), 10 + SNAPSHOT_EVERY, 100));
    assert!(due(Some((10, 100)), 10 + SNAPSHOT_EVERY, 101));
    assert!(due(Some((10, 100)), 11, 100 + SNAPSHOT_EVENTS));
    assert!(!due(Some((10, 100)), 10, 100 + SNAPSHOT_EVENTS));

    let (dev, dir, _) = node_with(3, &[]);
    let chain = open(&dev, &dir, false).unwrap();
    assert!(
        snapshot::maybe_snapshot(&chain).is_none(),
        "not due after 3 blocks"
    );
}
