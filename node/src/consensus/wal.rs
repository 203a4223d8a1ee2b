//! The consensus write-ahead log: every input the engine gave Malachite's driver at the height
//! being decided (received votes and proposals with their blocks and the validity this node gave
//! them, its own signed proposals (with the block it built) and votes, elapsed timeouts), in order, so
//! that a validator restarted mid-height replays them through the normal input path and comes
//! back exactly as it was: locked on the same value, holding the same votes, re-sending what it
//! signed (ADR 0007; the approach of Malachite ADR-007 and CometBFT's consensus WAL).
//!
//! Durability rules (enforced by the engine, tested in `tests/tests/cluster.rs`):
//! - inputs are appended before the driver sees them (buffered: they need not be durable until
//!   something that depends on them leaves the node);
//! - an own message is appended and the log flushed before the signing record is written and
//!   before the message is sent;
//! - the log is cut (emptied, then `Height(h + 1)` written and flushed) only after block `h` is
//!   durably committed.
//!
//! The file format: a sequence of frames `len: u32 BE | crc32(data): u32 BE | data`, `data`
//! the canonical encoding (postcard) of a [`WalEntry`]. On open, the first frame that is short,
//! oversized or fails its checksum ends the log: it and everything after it are truncated (a torn
//! tail from a crash mid-write). The log is local to one node and never leaves it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use twinledger_core::Block;
use twinledger_core::block::MAX_BLOCK_BYTES;
use twinledger_core::consensus::{SignedProposal, SignedVote};

/// Largest frame accepted: a proposal with the largest block, plus slack.
pub const MAX_FRAME_BYTES: usize = MAX_BLOCK_BYTES + 64 * 1024;

/// A step timeout, as logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeoutStep {
    /// Propose step.
    Propose,
    /// Prevote step.
    Prevote,
    /// Precommit step.
    Precommit,
}

/// One logged input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalEntry {
    /// The first entry of a height's log: what follows belongs to this height.
    Height(u64),
    /// A proposal and its block (received, or this node's own), with the validity this node
    /// gave the block when it first saw it.
    Proposal {
        /// The signed proposal.
        proposal: SignedProposal,
        /// Its block.
        block: Block,
        /// Whether the block re-executed (and passed the clock rule) here.
        valid: bool,
    },
    /// A vote, received or this node's own.
    Vote(SignedVote),
    /// A step timeout elapsed.
    Timeout {
        /// The round it was for.
        round: u32,
        /// The step.
        step: TimeoutStep,
    },
}

/// The log could not be read or written. The engine halts on it: a validator that cannot log
/// what it is about to sign must not sign.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// I/O on the log file.
    #[error("consensus WAL {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An entry too large to log.
    #[error("consensus WAL: entry of {0} bytes is over the {MAX_FRAME_BYTES}-byte frame limit")]
    TooLarge(usize),
    /// The in-memory log was told to fail (fault tests).
    #[error("consensus WAL: No space left on device (simulated disk failure)")]
    Failed,
}

/// Where the engine logs its inputs.
pub trait Wal: Send {
    /// Appends an entry. Buffered: durable only after [`Wal::flush`].
    fn append(&mut self, entry: &WalEntry) -> Result<(), WalError>;
    /// Makes every appended entry durable.
    fn flush(&mut self) -> Result<(), WalError>;
    /// Cuts the log for a new height: drops every entry, then durably writes `Height(height)`.
    fn start_height(&mut self, height: u64) -> Result<(), WalError>;
    /// The durable entries, in order (a torn tail already truncated).
    fn entries(&mut self) -> Result<Vec<WalEntry>, WalError>;
}

/// The log in a file (a validator's `consensus.wal` beside its store).
#[derive(Debug)]
pub struct FileWal {
    path: PathBuf,
    file: File,
    /// Encoded frames appended since the last flush.
    buf: Vec<u8>,
    /// Entries read on open.
    read: Vec<WalEntry>,
}

impl FileWal {
    /// Opens (or creates) the log at `path`, reads its entries and truncates a torn tail.
    pub fn open(path: &Path) -> Result<Self, WalError> {
        let io = |source| WalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (read, good) = decode_frames(&bytes);
        if good < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = good,
                dropped = bytes.len() - good,
                "consensus WAL: truncating a torn or corrupt tail"
            );
            file.set_len(good as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            buf: Vec::new(),
            read,
        })
    }

    fn io(&self, source: std::io::Error) -> WalError {
        WalError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// Encodes one entry as a frame.
pub fn encode_frame(entry: &WalEntry) -> Result<Vec<u8>, WalError> {
    let data = twinledger_core::codec::encode(entry);
    if data.len() > MAX_FRAME_BYTES {
        return Err(WalError::TooLarge(data.len()));
    }
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&data).to_be_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

/// Decodes frames from the start of `bytes`; returns the entries and how many bytes were good
/// (the first short, oversized, corrupt or undecodable frame ends the log).
pub fn decode_frames(bytes: &[u8]) -> (Vec<WalEntry>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 8 {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > MAX_FRAME_BYTES || bytes.len() - at - 8 < len {
            break;
        }
        let data = &bytes[at + 8..at + 8 + len];
        if crc32fast::hash(data) != crc {
            break;
        }
        let Ok(entry) =
            twinledger_core::codec::decode::<WalEntry>("wal entry", data, MAX_FRAME_BYTES)
        else {
            break;
        };
        out.push(entry);
        at += 8 + len;
    }
    (out, at)
}

impl Wal for FileWal {
    fn append(&mut self, entry: &WalEntry) -> Result<(), WalError> {
        let frame = encode_frame(entry)?;
        self.buf.extend_from_slice(&frame);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.file.write_all(&buf).map_err(|e| self.io(e))?;
        self.file.sync_data().map_err(|e| self.io(e))
    }

    fn start_height(&mut self, height: u64) -> Result<(), WalError> {
        self.buf.clear();
        self.read.clear();
        let frame = encode_frame(&WalEntry::Height(height))?;
        self.file.set_len(0).map_err(|e| self.io(e))?;
        self.file.seek(SeekFrom::Start(0)).map_err(|e| self.io(e))?;
        self.file.write_all(&frame).map_err(|e| self.io(e))?;
        self.file.sync_data().map_err(|e| self.io(e))
    }

    fn entries(&mut self) -> Result<Vec<WalEntry>, WalError> {
        Ok(self.read.clone())
    }
}

/// An in-memory log for the simulation: what was flushed survives a simulated crash
/// ([`MemWal::crash`]), what was only appended does not.
#[derive(Clone, Debug, Default)]
pub struct MemWal {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Debug, Default)]
struct MemInner {
    entries: Vec<WalEntry>,
    durable: usize,
    fail: bool,
}

impl MemWal {
    /// A crash: entries appended but not flushed are lost.
    pub fn crash(&self) {
        let mut m = self.inner.lock().expect("wal lock");
        let d = m.durable;
        m.entries.truncate(d);
    }

    /// From now on every append and flush fails (a disk that refuses writes).
    pub fn fail(&self) {
        self.inner.lock().expect("wal lock").fail = true;
    }
}

impl Wal for MemWal {
    fn append(&mut self, entry: &WalEntry) -> Result<(), WalError> {
        let mut m = self.inner.lock().expect("wal lock");
        if m.fail {
            return Err(WalError::Failed);
        }
        m.entries.push(entry.clone());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WalError> {
        let mut m = self.inner.lock().expect("wal lock");
        if m.fail {
            return Err(WalError::Failed);
        }
        m.durable = m.entries.len();
        Ok(())
    }

    fn start_height(&mut self, height: u64) -> Result<(), WalError> {
        let mut m = self.inner.lock().expect("wal lock");
        if m.fail {
            return Err(WalError::Failed);
        }
        m.entries = vec![WalEntry::Height(height)];
        m.durable = 1;
        Ok(())
    }

    fn entries(&mut self) -> Result<Vec<WalEntry>, WalError> {
        let m = self.inner.lock().expect("wal lock");
        Ok(m.entries[..m.durable].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<WalEntry> {
        vec![
            WalEntry::Height(7),
            WalEntry::Timeout {
                round: 0,
                step: TimeoutStep::Propose,
            },
            WalEntry::Timeout {
                round: 1,
                step: TimeoutStep::Precommit,
            },
        ]
    }

    #[test]
    fn file_wal_keeps_flushed_entries_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consensus.wal");
        let mut w = FileWal::open(&path).unwrap();
        w.start_height(7).unwrap();
        for e in &entries()[1..] {
            w.append(e).unwrap();
        }
        w.flush().unwrap();
        // Appended but never flushed: lost, as in a crash.
        w.append(&WalEntry::Height(99)).unwrap();
        drop(w);
        let mut w = FileWal::open(&path).unwrap();
        assert_eq!(w.entries().unwrap(), entries());
    }

    #[test]
    fn torn_tail_is_truncated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consensus.wal");
        let mut w = FileWal::open(&path).unwrap();
        w.start_height(7).unwrap();
        for e in &entries()[1..] {
            w.append(e).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let full = std::fs::read(&path).unwrap();
        // Every cut inside the last frame leaves the first two entries.
        let last = encode_frame(&entries()[2]).unwrap().len();
        for cut in 1..last {
            std::fs::write(&path, &full[..full.len() - cut]).unwrap();
            let mut w = FileWal::open(&path).unwrap();
            assert_eq!(w.entries().unwrap(), entries()[..2], "cut {cut}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                (full.len() - last) as u64,
                "the torn tail is removed from the file"
            );
        }
        // A flipped bit in the middle frame ends the log there.
        let mut bad = full.clone();
        let first = encode_frame(&entries()[0]).unwrap().len();
        bad[first + 9] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let mut w = FileWal::open(&path).unwrap();
        assert_eq!(w.entries().unwrap(), entries()[..1]);
    }

    #[test]
    fn start_height_cuts_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consensus.wal");
        let mut w = FileWal::open(&path).unwrap();
        w.start_height(7).unwrap();
        w.append(&entries()[1]).unwrap();
        w.flush().unwrap();
        w.start_height(8).unwrap();
        drop(w);
        let mut w = FileWal::open(&path).unwrap();
        assert_eq!(w.entries().unwrap(), vec![WalEntry::Height(8)]);
    }

    #[test]
    fn mem_wal_crash_loses_only_unflushed_entries() {
        let mut w = MemWal::default();
        w.start_height(3).unwrap();
        w.append(&entries()[1]).unwrap();
        w.flush().unwrap();
        w.append(&entries()[2]).unwrap();
        w.crash();
        assert_eq!(
            w.entries().unwrap(),
            vec![WalEntry::Height(3), entries()[1].clone()]
        );
    }
}
