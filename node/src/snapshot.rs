//! State snapshots (issue #13, ADR 0010): start-up independent of chain length.
//!
//! Every so often ([`due`]: [`SNAPSHOT_EVENTS`] events or [`SNAPSHOT_EVERY`] heights since the
//! last one) the node writes a snapshot of its committed state ([`maybe_snapshot`], called
//! after each commit): the state is cloned in O(1) under the chain lock, encoded and written on
//! a background thread. On start-up [`restore`] rebuilds the state from the newest snapshot at
//! or below the tip that verifies and `Chain::open` replays only the blocks after it.
//!
//! > **Invariant:** a snapshot is used only after its rebuilt state root equals the certified
//! > header's `state_hash` at its height (and its log root and size, block hash, time and
//! > validators hash equal that header's, and that header's certificate verifies against the
//! > snapshot's validator set). A snapshot that fails any check is logged and ignored: the node
//! > falls back to the older one, then to a full replay; it never serves an unverified state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use twinledger_core::audit::Auditor;
use twinledger_core::event::EventPayload;
use twinledger_core::event::governance::GovernanceAction;
use twinledger_core::merkle::{Blake3Tree, Frontier};
use twinledger_core::state::{Snapshot, VALIDATOR_SET_DELAY};
use twinledger_core::{EventId, Genesis, Outcome, State};

use crate::chain::Chain;
use crate::store::{CommittedBlock, Store, StoreError};

/// A snapshot is due once this many events were committed since the last one. Replaying a
/// block costs about 55 µs per event on start-up on a state of 100,000 records (6.1 s per
/// 110,000; more on larger states, ADR 0010), so the tail replayed after the newest snapshot
/// stays around a second there; writing one costs O(state) on a background thread (≈ 1 s and
/// 67 MB at 1,000,000 records), so at the single validator's ≈ 8,000 events/s one is written
/// every few seconds at most, and far less often on a real chain.
pub const SNAPSHOT_EVENTS: u64 = 20_000;

/// A snapshot is also due this many heights after the last one if any event was committed
/// since: a chain of small blocks replays mostly block overhead (certificates, headers).
pub const SNAPSHOT_EVERY: u64 = 1_000;

/// At most one snapshot is being written in this process at a time (the encoding is O(state)
/// and the machine may be small); a due snapshot that finds one being written waits for a
/// later commit.
static WRITING: AtomicBool = AtomicBool::new(false);

/// Whether a snapshot of `state` is due, given the newest stored one (height, log size).
pub fn due(last: Option<(u64, u64)>, height: u64, log_size: u64) -> bool {
    let (h, n) = last.unwrap_or((0, 0));
    if height <= h || log_size <= n {
        return false;
    }
    log_size - n >= SNAPSHOT_EVENTS || height - h >= SNAPSHOT_EVERY
}

/// Call after each commit: if a snapshot is due ([`due`]) and none is being written, clones
/// the committed state (O(1)) and encodes and stores it on a background thread, whose handle
/// is returned (the caller need not join it; tests do). Never blocks on the write.
pub fn maybe_snapshot(chain: &Chain) -> Option<std::thread::JoinHandle<()>> {
    let store = chain.store().clone();
    let last = match store.snapshots() {
        Ok(all) => all.first().map(|m| (m.height, m.log_size)),
        Err(e) => {
            tracing::warn!(error = %e, "reading the snapshot records failed; not snapshotting");
            return None;
        }
    };
    let state = chain.state();
    if !due(last, state.height(), state.log_size()) || WRITING.swap(true, Ordering::AcqRel) {
        return None;
    }
    Some(std::thread::spawn(move || {
        struct Done;
        impl Drop for Done {
            fn drop(&mut self) {
                WRITING.store(false, Ordering::Release);
            }
        }
        let _done = Done;
        if let Err(e) = write_snapshot(&store, &state) {
            tracing::warn!(height = state.height(), error = %e, "writing a state snapshot failed");
        }
    }))
}

/// Encodes and stores a snapshot of `state` now, on this thread; returns its size in bytes.
pub fn write_snapshot(store: &Store, state: &State) -> Result<usize, StoreError> {
    let started = Instant::now();
    let bytes = state.to_snapshot().to_bytes();
    let encoded_ms = started.elapsed().as_millis();
    store.put_snapshot(state.height(), state.log_size(), &bytes)?;
    tracing::info!(
        height = state.height(),
        events = state.log_size(),
        bytes = bytes.len(),
        encode_ms = u64::try_from(encoded_ms).unwrap_or(u64::MAX),
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "state snapshot written"
    );
    Ok(bytes.len())
}

/// A state rebuilt from a verified snapshot: what `Chain::open` continues from.
#[derive(Debug)]
pub struct Restored {
    /// An auditor holding the snapshot's state, to replay the blocks after it.
    pub auditor: Auditor,
    /// The snapshot's height: replay starts at the next one.
    pub height: u64,
    /// The validator-set changes (height, governance event) up to and including `height`,
    /// as `Chain::open` would have collected them replaying from genesis.
    pub set_changes: Vec<(u64, EventId)>,
}

/// The validator-set changes a committed block made (PROTOCOL §9.3): its applied governance
/// events changing the set.
pub fn set_changes_in(sb: &CommittedBlock) -> impl Iterator<Item = (u64, EventId)> + '_ {
    sb.block
        .events
        .iter()
        .zip(&sb.results.outcomes)
        .filter(|(ev, outcome)| {
            **outcome == Outcome::Applied
                && matches!(&ev.event.payload, EventPayload::Governance(g)
                    if matches!(g.action, GovernanceAction::ValidatorSetChange { .. }))
        })
        .map(|(ev, _)| (sb.block.header.height, ev.id()))
}

/// The newest stored snapshot at or below `tip` that verifies, rebuilt, or `None` (then the
/// node replays from genesis). Each snapshot that does not verify is logged at warn with the
/// reason and skipped.
pub fn restore(genesis: &Genesis, store: &Store, tip: u64) -> Option<Restored> {
    let metas = match store.snapshots() {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the snapshot records; replaying from genesis");
            return None;
        }
    };
    for meta in metas.iter().filter(|m| m.height <= tip && m.height > 0) {
        let started = Instant::now();
        match restore_one(genesis, store, meta.height, || store.snapshot_bytes(meta)) {
            Ok(r) => {
                tracing::info!(
                    height = r.height,
                    events = r.auditor.state().log_size(),
                    tip,
                    ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "state restored from a verified snapshot; replaying the blocks after it"
                );
                return Some(r);
            }
            Err(why) => tracing::warn!(
                height = meta.height,
                why = %why,
                "ignoring a state snapshot that does not verify"
            ),
        }
    }
    None
}

/// Why one snapshot was not used.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading it or a block failed, or a record is corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// It is refused by the core's checks or does not match the certified header.
    #[error(transparent)]
    Snapshot(#[from] twinledger_core::state::SnapshotError),
    /// Its height is not the one it is stored under.
    #[error("the snapshot is of height {got}, stored as {stored}")]
    Height {
        /// Where it is stored.
        stored: u64,
        /// What it says.
        got: u64,
    },
    /// The block at its height is not in the store.
    #[error("block {0} is missing")]
    Missing(u64),
    /// The certificate of the block at its height does not verify against its set.
    #[error("the certificate of block {height}: {error}")]
    Certificate {
        /// The height.
        height: u64,
        /// Why.
        error: twinledger_core::checkpoint::CertificateError,
    },
    /// A pending-validators record whose block holds no applied set change.
    #[error("block {0} holds no validator-set change, but the state records one scheduled in it")]
    SetChange(u64),
    /// The stored event-log nodes do not give the snapshot's log root.
    #[error("the stored event-log nodes do not give the log root at {0} events")]
    LogNodes(u64),
}

/// Rebuilds and verifies the snapshot stored at `height` (its bytes from `bytes`).
pub fn restore_one(
    genesis: &Genesis,
    store: &Store,
    height: u64,
    bytes: impl FnOnce() -> Result<Vec<u8>, StoreError>,
) -> Result<Restored, RestoreError> {
    let snap = Snapshot::from_bytes(&bytes()?)?;
    if snap.height != height {
        return Err(RestoreError::Height {
            stored: height,
            got: snap.height,
        });
    }
    // Every set change scheduled up to the snapshot left its pending-validators record,
    // which is in the verified state map: height + delay → set hash.
    let scheduled: Vec<u64> = snap
        .scheduled_validators
        .iter()
        .map(|(at, _)| at.saturating_sub(VALIDATOR_SET_DELAY))
        .collect();
    let state = State::from_snapshot(genesis, snap)?;
    let sb = store.block(height)?.ok_or(RestoreError::Missing(height))?;
    let header = &sb.block.header;
    state.check_header(header)?;
    sb.certificate
        .verify(&header.checkpoint(), state.validators_for(height))
        .map_err(|error| RestoreError::Certificate { height, error })?;
    let size = state.log_size();
    let root = Frontier::from_source(store, size).map_err(|_| RestoreError::LogNodes(size))?;
    if root.root::<Blake3Tree>() != state.log_root().0 {
        return Err(RestoreError::LogNodes(size));
    }
    let mut set_changes = Vec::new();
    for h in scheduled {
        let sb = store.block(h)?.ok_or(RestoreError::Missing(h))?;
        let before = set_changes.len();
        set_changes.extend(set_changes_in(&sb));
        if set_changes.len() == before {
            return Err(RestoreError::SetChange(h));
        }
    }
    Ok(Restored {
        auditor: Auditor::from_state(state),
        height,
        set_changes,
    })
}
