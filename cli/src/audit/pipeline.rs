//! `audit verify`'s pipeline: worker threads decode and batch-verify signatures ahead of the
//! in-order replay.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, mpsc};

use twinledger_core::audit::{
    AuditFailure, Auditor, CommittedBlock, EXPORT_MAGIC, ExportError, read_export, signature_items,
};
use twinledger_core::block::MAX_BLOCK_BYTES;
use twinledger_core::codec;
use twinledger_core::keys::verify_batch;
use twinledger_core::state::SignatureCheck;

/// Frames of consecutive blocks one worker takes at a time: small blocks are grouped until
/// their frames reach this size, so that one `verify_batch` call checks many signatures (about
/// 1,000 events of a typical size) across block boundaries; a larger block is a job alone.
const JOB_BYTES: usize = 256 * 1024;

/// Jobs decoded and verified ahead of the in-order replay, per worker: the memory bound of the
/// pipeline (at most this many jobs, each `JOB_BYTES` or one block, wait decoded in memory).
const JOBS_AHEAD_PER_WORKER: usize = 4;

/// Verifies an export as a pipeline: worker threads (one per core) decode the frames of
/// consecutive blocks and batch-verify all their event signatures together, while this thread
/// re-executes the verified blocks in order (`SignatureCheck::AlreadyVerified`), at most
/// `JOBS_AHEAD_PER_WORKER` jobs per worker ahead of it. Returns the summary or the first
/// failure in chain order, whichever worker found it first.
pub fn verify(
    genesis: &twinledger_core::Genesis,
    bytes: &[u8],
    strict: bool,
    bar: &indicatif::ProgressBar,
    mut on_block: impl FnMut(&CommittedBlock, &twinledger_core::State),
) -> Result<twinledger_core::audit::AuditSummary, AuditFailure> {
    // Key releases of sealed versions are checked against the requests they name (§6.12).
    let mut auditor = Auditor::new(genesis)?.checking_releases();
    if strict {
        for cb in read_export(bytes)? {
            let cb = cb?;
            auditor.check(&cb, SignatureCheck::Verify)?;
            on_block(&cb, auditor.state());
            bar.inc(1);
        }
        return Ok(auditor.summary());
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    pipelined(auditor, bytes, bar, on_block, JOB_BYTES, workers)
}

/// [`verify`]'s pipeline, with `workers` threads taking jobs of `job_bytes` of frames.
pub(super) fn pipelined(
    mut auditor: Auditor,
    bytes: &[u8],
    bar: &indicatif::ProgressBar,
    mut on_block: impl FnMut(&CommittedBlock, &twinledger_core::State),
    job_bytes: usize,
    workers: usize,
) -> Result<twinledger_core::audit::AuditSummary, AuditFailure> {
    let (frames, unreadable) = split_frames(bytes)?;
    let jobs = group_frames(&frames, job_bytes);
    let ahead = workers * JOBS_AHEAD_PER_WORKER;
    let window = Window::new();
    std::thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<(usize, Checked)>();
        for _ in 0..workers {
            let (tx, window, frames, jobs) = (done_tx.clone(), &window, &frames, &jobs);
            s.spawn(move || {
                while let Some(j) = window.take(jobs.len(), ahead) {
                    let checked = check_frames(&frames[jobs[j].clone()]);
                    if tx.send((j, checked)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        // Stops the workers however this returns (a failure, or a panic in `on_block`).
        let _stop = StopOnDrop(&window);
        // Replay in order as jobs come back, whatever order they finish in.
        let mut pending: BTreeMap<usize, Checked> = BTreeMap::new();
        for next in 0..jobs.len() {
            let checked = loop {
                if let Some(c) = pending.remove(&next) {
                    break c;
                }
                let (j, c) = done_rx.recv().expect("audit worker thread");
                pending.insert(j, c);
            };
            for cb in &checked.blocks {
                auditor.check(cb, SignatureCheck::AlreadyVerified)?;
                on_block(cb, auditor.state());
                bar.inc(1);
            }
            if let Some(f) = checked.failure {
                return Err(f);
            }
            window.applied(next + 1);
        }
        match unreadable {
            Some(e) => Err(e.into()),
            None => Ok(auditor.summary()),
        }
    })
}

/// One frame of an export: its position, its byte offset in the file and its bytes.
pub(super) struct Frame<'a> {
    index: u64,
    offset: usize,
    bytes: &'a [u8],
}

/// Splits an export into its frames without decoding them (as [`read_export`] reads them):
/// every complete frame, then the truncation that ends the file, if any.
pub(super) fn split_frames(
    bytes: &[u8],
) -> Result<(Vec<Frame<'_>>, Option<ExportError>), ExportError> {
    let mut rest = bytes
        .strip_prefix(EXPORT_MAGIC.as_slice())
        .ok_or(ExportError::Magic)?;
    let mut offset = EXPORT_MAGIC.len();
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let index = frames.len() as u64;
        let frame = rest.get(..4).and_then(|len| {
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            rest.get(4..4 + len)
        });
        let Some(frame) = frame else {
            let truncated = ExportError::Truncated {
                blocks: index,
                offset,
            };
            return Ok((frames, Some(truncated)));
        };
        frames.push(Frame {
            index,
            offset,
            bytes: frame,
        });
        rest = &rest[4 + frame.len()..];
        offset += 4 + frame.len();
    }
    Ok((frames, None))
}

/// Groups consecutive frames into jobs of at least `job_bytes` (or one frame, or the rest).
fn group_frames(frames: &[Frame<'_>], job_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut jobs = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, f) in frames.iter().enumerate() {
        size += f.bytes.len();
        if size >= job_bytes {
            jobs.push(start..i + 1);
            (start, size) = (i + 1, 0);
        }
    }
    if start < frames.len() {
        jobs.push(start..frames.len());
    }
    jobs
}

/// A job's outcome: its leading blocks that decoded and whose every event signature verifies,
/// then the failure of the next one (a frame that does not decode or the first bad signature);
/// blocks after a failure are left out (the replay stops there).
struct Checked {
    blocks: Vec<CommittedBlock>,
    failure: Option<AuditFailure>,
}

/// Decodes frames and checks all their event signatures in one `verify_batch` call.
fn check_frames(frames: &[Frame<'_>]) -> Checked {
    let mut blocks = Vec::with_capacity(frames.len());
    let mut failure = None;
    for f in frames {
        match codec::decode::<CommittedBlock>("committed block", f.bytes, MAX_BLOCK_BYTES) {
            Ok(cb) => blocks.push(cb),
            Err(error) => {
                failure = Some(AuditFailure::Export(ExportError::Frame {
                    index: f.index,
                    offset: f.offset,
                    error,
                }));
                break;
            }
        }
    }
    let items: Vec<_> = blocks
        .iter()
        .flat_map(|cb| signature_items(&cb.block))
        .collect();
    if let Err(mut index) = verify_batch(&items) {
        // The first bad signature, in chain order: name its block and event.
        let at = blocks
            .iter()
            .position(|cb| {
                let n = cb.block.events.len();
                if index < n {
                    return true;
                }
                index -= n;
                false
            })
            .expect("a bad signature lies in one of the job's blocks");
        let cb = &blocks[at];
        failure = Some(AuditFailure::EventSignature {
            height: cb.block.header.height,
            index,
            id: cb.block.events[index].id(),
        });
        blocks.truncate(at);
    }
    Checked { blocks, failure }
}

/// How far the replay has come, and so how far workers may run ahead of it.
struct Window {
    state: Mutex<WindowState>,
    moved: Condvar,
}

struct WindowState {
    /// The next job to hand out.
    next: usize,
    /// Jobs replayed.
    applied: usize,
    /// The replay stopped (a failure): take no more jobs.
    stopped: bool,
}

impl Window {
    fn new() -> Self {
        Self {
            state: Mutex::new(WindowState {
                next: 0,
                applied: 0,
                stopped: false,
            }),
            moved: Condvar::new(),
        }
    }

    /// The next job for a worker, once it is at most `ahead` jobs past the replay; `None` when
    /// every job is taken or the replay stopped.
    fn take(&self, jobs: usize, ahead: usize) -> Option<usize> {
        let mut st = self.state.lock().expect("audit window");
        loop {
            if st.stopped || st.next >= jobs {
                return None;
            }
            if st.next < st.applied + ahead {
                st.next += 1;
                return Some(st.next - 1);
            }
            st = self.moved.wait(st).expect("audit window");
        }
    }

    fn applied(&self, jobs: usize) {
        self.state.lock().expect("audit window").applied = jobs;
        self.moved.notify_all();
    }

    fn stop(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.stopped = true;
        }
        self.moved.notify_all();
    }
}

struct StopOnDrop<'a>(&'a Window);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use twinledger_core::audit::{
        AuditFailure, CommittedBlock, EXPORT_MAGIC, ExportError, export_frame,
    };
    use twinledger_core::devkit::{DevChain, dev_key};
    use twinledger_core::event::consent::{ConsentGrant, Grantee};
    use twinledger_core::event::delegation::Scope;
    use twinledger_core::state::BlockError;
    use twinledger_core::{Action, DataCategory, EventPayload, Hash, Purpose, Timestamp};

    /// A chain of `blocks` blocks of one consent grant each (a new patient per block).
    fn chain(blocks: usize) -> (DevChain, Vec<CommittedBlock>) {
        let mut chain = DevChain::new(4);
        let phys = chain.physician.public();
        for i in 0..blocks {
            let p = dev_key(&format!("audit-test/p/{i}"));
            let grant = EventPayload::ConsentGrant(ConsentGrant {
                patient: p.public(),
                grantee: Grantee::Actor(phys),
                scope: Scope {
                    categories: [DataCategory::VitalSigns].into_iter().collect(),
                    purposes: [Purpose::Treat].into_iter().collect(),
                    actions: [Action::Read].into_iter().collect(),
                },
                valid_from: Timestamp(0),
                valid_until: None,
            });
            let ev = chain.event(&p, grant);
            chain.commit(vec![ev]);
        }
        let blocks = chain.blocks.iter().map(|c| c.committed.clone()).collect();
        (chain, blocks)
    }

    fn export(blocks: &[CommittedBlock]) -> Vec<u8> {
        let mut out = EXPORT_MAGIC.to_vec();
        for b in blocks {
            out.extend(export_frame(b));
        }
        out
    }

    /// `audit verify`, checked to report the same with one block per job on 4 workers (so that
    /// later blocks are often verified before earlier ones).
    fn verify(chain: &DevChain, blocks: &[CommittedBlock]) -> Result<u64, AuditFailure> {
        let bytes = export(blocks);
        let bar = indicatif::ProgressBar::hidden();
        let got = super::verify(&chain.genesis, &bytes, false, &bar, |_, _| {});
        for _ in 0..5 {
            let auditor = super::Auditor::new(&chain.genesis).unwrap();
            let racing = super::pipelined(auditor, &bytes, &bar, |_, _| {}, 1, 4);
            assert_eq!(racing, got);
        }
        got.map(|s| s.blocks)
    }

    /// Index in `blocks` of the block at `height`.
    fn at(blocks: &[CommittedBlock], height: u64) -> usize {
        blocks
            .iter()
            .position(|b| b.block.header.height == height)
            .expect("height in chain")
    }

    /// The worker that checks the late block finds its bad signature long before the replay
    /// reaches the early broken link: the report is still the early block's, as in order.
    #[test]
    fn an_earlier_broken_link_is_reported_before_a_later_bad_signature() {
        let (chain, mut blocks) = chain(40);
        assert_eq!(verify(&chain, &blocks), Ok(blocks.len() as u64));
        let tip = blocks.last().expect("blocks").block.header.height;
        let early = at(&blocks, 3);
        blocks[early].block.header.prev_hash = Hash([7; 32]);
        let late = at(&blocks, tip);
        blocks[late].block.events[0].signature.0[5] ^= 1;
        let err = verify(&chain, &blocks).unwrap_err();
        assert!(
            matches!(
                err,
                AuditFailure::Block(BlockError::BrokenLink { height: 3, .. })
            ),
            "{err}"
        );
        // Alone, each is named at its own block and event.
        let err = verify(&chain, &{
            let mut b = blocks.clone();
            b[early].block.header.prev_hash = chain.blocks[early].block.header.prev_hash;
            b
        })
        .unwrap_err();
        assert!(
            matches!(err, AuditFailure::EventSignature { height, index: 0, id }
                if height == tip && id == blocks[late].block.events[0].id()),
            "{err}"
        );
    }

    /// Frames that do not decode and a truncated file are named as the sequential reader
    /// (`read_export`, as `--strict` reads) names them: the same index, offset and reason.
    #[test]
    fn unreadable_frames_are_named_as_the_sequential_reader_names_them() {
        let (chain, blocks) = chain(30);
        let check = |bytes: &[u8]| {
            let bar = indicatif::ProgressBar::hidden();
            let pipelined = super::verify(&chain.genesis, bytes, false, &bar, |_, _| {});
            let sequential = super::verify(&chain.genesis, bytes, true, &bar, |_, _| {});
            assert_eq!(pipelined, sequential);
            if let Ok(auditor) = super::Auditor::new(&chain.genesis) {
                let racing = super::pipelined(auditor, bytes, &bar, |_, _| {}, 1, 4);
                assert_eq!(racing, sequential);
            }
            pipelined.unwrap_err()
        };
        let bytes = export(&blocks);
        let err = check(&bytes[..bytes.len() - 10]);
        assert!(
            matches!(
                err,
                AuditFailure::Export(ExportError::Truncated { blocks: 29, .. })
            ),
            "{err}"
        );
        // A frame length that runs past what its block encodes: frame 20 does not decode.
        let mut bad = EXPORT_MAGIC.to_vec();
        for (i, b) in blocks.iter().enumerate() {
            let mut f = export_frame(b);
            if i == 20 {
                f.push(0);
                let len = u32::try_from(f.len() - 4).unwrap().to_be_bytes();
                f[..4].copy_from_slice(&len);
            }
            bad.extend(f);
        }
        let err = check(&bad);
        assert!(
            matches!(
                err,
                AuditFailure::Export(ExportError::Frame { index: 20, .. })
            ),
            "{err}"
        );
        assert!(matches!(
            check(b"not an export"),
            AuditFailure::Export(ExportError::Magic)
        ));
    }

    /// Small blocks share one signature batch; a bad signature in the middle of a batch names
    /// its own block, and the blocks before it are replayed.
    #[test]
    fn a_bad_signature_in_a_shared_batch_names_its_block() {
        let (chain, mut blocks) = chain(12);
        let bad = at(&blocks, 7);
        blocks[bad].block.events[0].signature.0[40] ^= 1;
        let err = verify(&chain, &blocks).unwrap_err();
        assert!(
            matches!(
                err,
                AuditFailure::EventSignature {
                    height: 7,
                    index: 0,
                    ..
                }
            ),
            "{err}"
        );
    }
}
