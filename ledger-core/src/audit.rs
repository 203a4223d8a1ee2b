//! Offline verification of a whole chain, for auditors (PROTOCOL.md §11.2, §8, §9).
//!
//! An auditor trusts the genesis and the mathematics only. [`Auditor`] replays committed blocks
//! from the genesis: every certificate against the validator set in force at its height
//! (following validator-set changes), every hash link, every event, every Merkle root, every
//! re-derived decision against the recorded results. The first failure is reported with its
//! height, the event (if one is to blame) and the reason.
//!
//! Signature checks are the expensive part; [`signature_items`] lists a block's event
//! signatures so a caller can check many blocks ahead in parallel (with
//! [`crate::keys::verify_batch`], the ZIP-215 rule of PROTOCOL.md §3, one signature at a time;
//! the node's batch equation decides the same) and then
//! apply each block with [`SignatureCheck::AlreadyVerified`].

use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockResults, Decision, Outcome};
use crate::checkpoint::{CertificateError, CommitCertificate};
use crate::codec::{self, CodecError};
use crate::hash::EventId;
use crate::keys::{PublicKey, Signature};
use crate::state::{BlockError, Genesis, GenesisError, SignatureCheck, State};

/// Magic bytes at the start of an export stream.
pub const EXPORT_MAGIC: &[u8; 8] = b"TWLEXP01";

/// A block as committed: with its results and its commit certificate. The unit of storage,
/// export and audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedBlock {
    /// The block.
    pub block: Block,
    /// Its results (decisions).
    pub results: BlockResults,
    /// The certificate that made it final.
    pub certificate: CommitCertificate,
}

/// One export frame: a u32 big-endian length, then the canonical encoding.
pub fn export_frame(cb: &CommittedBlock) -> Vec<u8> {
    let bytes = codec::encode(cb);
    let mut f = Vec::with_capacity(4 + bytes.len());
    f.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    f.extend_from_slice(&bytes);
    f
}

/// Why an export stream cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Not an export stream.
    #[error("not a Twinledger export (missing TWLEXP01 header)")]
    Magic,
    /// The stream ends inside a frame.
    #[error("export truncated after {blocks} blocks (at byte {offset})")]
    Truncated {
        /// Complete blocks read.
        blocks: u64,
        /// Where.
        offset: usize,
    },
    /// A frame does not decode.
    #[error("export frame {index} (at byte {offset}): {error}")]
    Frame {
        /// Its position.
        index: u64,
        /// Where.
        offset: usize,
        /// Why.
        error: CodecError,
    },
}

/// Reads the blocks of an export stream held in memory, one at a time.
pub fn read_export(
    bytes: &[u8],
) -> Result<impl Iterator<Item = Result<CommittedBlock, ExportError>> + '_, ExportError> {
    let rest = bytes
        .strip_prefix(EXPORT_MAGIC.as_slice())
        .ok_or(ExportError::Magic)?;
    let mut offset = EXPORT_MAGIC.len();
    let mut index = 0u64;
    let mut rest = rest;
    let mut failed = false;
    Ok(std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        let item = (|| {
            let truncated = ExportError::Truncated {
                blocks: index,
                offset,
            };
            let len_bytes: [u8; 4] = rest
                .get(..4)
                .ok_or(truncated.clone())?
                .try_into()
                .expect("4 bytes");
            let len = u32::from_be_bytes(len_bytes) as usize;
            let frame = rest.get(4..4 + len).ok_or(truncated)?;
            let cb: CommittedBlock =
                codec::decode("committed block", frame, crate::block::MAX_BLOCK_BYTES).map_err(
                    |error| ExportError::Frame {
                        index,
                        offset,
                        error,
                    },
                )?;
            rest = &rest[4 + len..];
            offset += 4 + len;
            index += 1;
            Ok(cb)
        })();
        failed = item.is_err();
        Some(item)
    }))
}

/// The `(key, message, signature)` of every event in a block, for [`crate::keys::verify_batch`].
pub fn signature_items(block: &Block) -> Vec<(PublicKey, Vec<u8>, Signature)> {
    block
        .events
        .iter()
        .map(|e| (e.event.author, e.signing_message(), e.signature))
        .collect()
}

/// What failed, where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditFailure {
    /// The genesis itself.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// The export cannot be read.
    #[error("{0}")]
    Export(#[from] ExportError),
    /// A block's certificate does not make it final.
    #[error("block {height}: certificate does not verify: {error}")]
    Certificate {
        /// Height.
        height: u64,
        /// Why.
        error: CertificateError,
    },
    /// An event's signature does not verify.
    #[error("block {height}, event #{index} ({id}): signature does not verify")]
    EventSignature {
        /// Height.
        height: u64,
        /// Position in the block.
        index: usize,
        /// The event.
        id: EventId,
    },
    /// The block does not re-execute (links, events, roots, state).
    #[error("{0}")]
    Block(BlockError),
    /// The recorded results list another number of outcomes than the block has events.
    #[error("block {height}: {recorded} recorded outcomes, re-execution derives {derived}")]
    ResultsCount {
        /// Height.
        height: u64,
        /// In the export.
        recorded: usize,
        /// Derived by replay.
        derived: usize,
    },
    /// A recorded decision differs from the re-derived one.
    #[error(
        "block {height}, event #{index} ({id}): recorded outcome {recorded:?}, re-derived {derived:?}"
    )]
    Decision {
        /// Height.
        height: u64,
        /// Position.
        index: usize,
        /// The event.
        id: EventId,
        /// In the block's results.
        recorded: Option<Outcome>,
        /// Derived by replay.
        derived: Outcome,
    },
}

impl AuditFailure {
    /// The height the failure is at, if any.
    pub fn height(&self) -> Option<u64> {
        match self {
            Self::Certificate { height, .. }
            | Self::EventSignature { height, .. }
            | Self::Decision { height, .. }
            | Self::ResultsCount { height, .. } => Some(*height),
            Self::Block(e) => match e {
                BlockError::WrongHeight { got, .. } => Some(*got),
                BlockError::BrokenLink { height, .. }
                | BlockError::TimeNotIncreasing { height, .. }
                | BlockError::UnknownProposer { height, .. }
                | BlockError::TooManyEvents { height, .. }
                | BlockError::InvalidEvent { height, .. }
                | BlockError::HeaderMismatch { height, .. } => Some(*height),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Counts over a verified chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    /// Blocks verified.
    pub blocks: u64,
    /// Events verified.
    pub events: u64,
    /// Access decisions: permitted by consent.
    pub permitted: u64,
    /// Access decisions: denied.
    pub denied: u64,
    /// Break-glass accesses.
    pub break_glass: u64,
    /// Break-glass accesses not reviewed at the end of the chain.
    pub unreviewed_break_glass: u64,
    /// Height of the last block.
    pub height: u64,
    /// Event log size at the end.
    pub log_size: u64,
    /// Event log root at the end (hex).
    pub log_root: String,
    /// Key releases of sealed twin versions (2.4) checked against the request they name.
    pub key_releases: u64,
    /// Key releases whose named request is not a permitted request of the receiving requester
    /// for the sealed version's patient and category (PROTOCOL §6.12): what the ledger's rule
    /// does not check and an auditor must. Only filled by [`Auditor::checking_releases`].
    pub unmatched_releases: Vec<UnmatchedRelease>,
}

/// A key release that does not answer a permitted request for what it released (§6.12).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnmatchedRelease {
    /// Height of the release's block.
    pub height: u64,
    /// The release event.
    pub release: EventId,
    /// The request it names.
    pub access: EventId,
    /// Why it does not match.
    pub why: &'static str,
}

/// A permitted (or flagged break-glass) request, as a key release must match it.
#[derive(Clone, Copy, Debug)]
struct PermittedRequest {
    author: PublicKey,
    patient: PublicKey,
    category: crate::codes::DataCategory,
    action: crate::codes::Action,
}

/// Whether [`Auditor::check_with`] verifies a block's commit certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateCheck {
    /// Verify it against the validator set in force (an auditor always does).
    Verify,
    /// The caller verified it before it stored the block (a node re-opening its own store).
    AlreadyVerified,
}

/// Replays a chain from its genesis, block by block. The node re-opens its own store through
/// the same code (`twinledger_node::chain::Chain::open`).
#[derive(Debug)]
pub struct Auditor {
    state: State,
    summary: AuditSummary,
    /// Permitted requests by id, kept only when checking key releases.
    permitted: Option<std::collections::HashMap<EventId, PermittedRequest>>,
}

impl Auditor {
    /// Starts from a genesis.
    pub fn new(genesis: &Genesis) -> Result<Self, AuditFailure> {
        let state = State::from_genesis(genesis)?;
        Ok(Self {
            summary: AuditSummary {
                log_root: state.log_root().to_hex(),
                ..AuditSummary::default()
            },
            state,
            permitted: None,
        })
    }

    /// Continues from a state the caller verified by other means (a node's state snapshot,
    /// checked against a certified header: `State::from_snapshot`, `State::check_header`): the
    /// blocks after it are checked as [`Auditor::new`]'s are; the summary counts only them.
    pub fn from_state(state: State) -> Self {
        Self {
            summary: AuditSummary {
                log_root: state.log_root().to_hex(),
                ..AuditSummary::default()
            },
            state,
            permitted: None,
        }
    }

    /// Also checks every key release (2.4) against the request it names: an earlier permitted
    /// access request, or flagged break-glass request, by the release's requester, for the
    /// sealed version's patient and category, action read (PROTOCOL §6.12). Mismatches are
    /// listed in the summary (`unmatched_releases`), not failures of the chain: the ledger
    /// accepted them, and the auditor reports the custodian. Costs memory per permitted request.
    pub fn checking_releases(mut self) -> Self {
        self.permitted = Some(std::collections::HashMap::new());
        self
    }

    /// The state after the blocks checked so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Checks the next committed block. With `sigs` = `AlreadyVerified` the caller vouches that
    /// it verified every event signature of this block (e.g. with [`signature_items`]).
    pub fn check(&mut self, cb: &CommittedBlock, sigs: SignatureCheck) -> Result<(), AuditFailure> {
        self.check_with(cb, sigs, CertificateCheck::Verify)
    }

    /// [`Auditor::check`], with a choice of certificate checking: a node re-opening its own
    /// store, whose blocks it verified before writing them, checks only the tip's certificate
    /// unless asked to check everything. Everything else is checked the same way.
    pub fn check_with(
        &mut self,
        cb: &CommittedBlock,
        sigs: SignatureCheck,
        certificate: CertificateCheck,
    ) -> Result<(), AuditFailure> {
        let height = cb.block.header.height;
        let set = self.state.validators_for(height).clone();
        let (next, results) = self
            .state
            .apply_block_with(&cb.block, sigs)
            .map_err(AuditFailure::Block)?;
        // The certificate after re-execution: it signs the header that re-execution vouched for,
        // and a block that does not re-execute is named by its first bad field or event.
        if certificate == CertificateCheck::Verify {
            cb.certificate
                .verify(&cb.block.header.checkpoint(), &set)
                .map_err(|error| AuditFailure::Certificate { height, error })?;
        }
        if cb.results.outcomes.len() != results.outcomes.len() {
            return Err(AuditFailure::ResultsCount {
                height,
                recorded: cb.results.outcomes.len(),
                derived: results.outcomes.len(),
            });
        }
        for (index, derived) in results.outcomes.iter().enumerate() {
            let recorded = cb.results.outcomes.get(index).copied();
            if recorded != Some(*derived) {
                return Err(AuditFailure::Decision {
                    height,
                    index,
                    id: cb.block.events[index].id(),
                    recorded,
                    derived: *derived,
                });
            }
        }
        if self.permitted.is_some() {
            self.check_releases(cb, &results, &next);
        }
        for o in &results.outcomes {
            match o {
                Outcome::Access(Decision::Permit { .. }) => self.summary.permitted += 1,
                Outcome::Access(Decision::Deny { .. }) => self.summary.denied += 1,
                Outcome::Access(Decision::BreakGlass) => self.summary.break_glass += 1,
                Outcome::Applied => {}
            }
        }
        self.summary.blocks += 1;
        self.summary.events += cb.block.events.len() as u64;
        self.state = next;
        Ok(())
    }

    /// Records the block's permitted requests and checks its key releases against the sealed
    /// records after the block (`after`: a release changes no sealed record, and an erasure only
    /// its `erased_at`).
    fn check_releases(&mut self, cb: &CommittedBlock, results: &BlockResults, after: &State) {
        use crate::event::EventPayload;
        let height = cb.block.header.height;
        for (ev, outcome) in cb.block.events.iter().zip(&results.outcomes) {
            let id = ev.id();
            let permitted = matches!(
                outcome,
                Outcome::Access(Decision::Permit { .. } | Decision::BreakGlass)
            );
            let request = match &ev.event.payload {
                EventPayload::AccessRequest(a) if permitted => {
                    Some((a.patient, a.category, a.action))
                }
                EventPayload::BreakGlassRequest(b) if permitted => {
                    Some((b.patient, b.category, b.action))
                }
                _ => None,
            };
            if let (Some((patient, category, action)), Some(map)) = (request, &mut self.permitted) {
                map.insert(
                    id,
                    PermittedRequest {
                        author: ev.event.author,
                        patient,
                        category,
                        action,
                    },
                );
            }
            let (EventPayload::KeyRelease(r), Outcome::Applied) = (&ev.event.payload, outcome)
            else {
                continue;
            };
            self.summary.key_releases += 1;
            let sealed = after.sealed(&r.twin, r.version).copied();
            let req = self
                .permitted
                .as_ref()
                .and_then(|m| m.get(&r.access))
                .copied();
            let why = match (req, sealed) {
                (None, _) => Some("the named request is not an earlier permitted request"),
                (_, None) => Some("the released version was not sealed before the release"),
                (Some(q), Some(s)) => {
                    if q.author != r.requester {
                        Some("the request's author is not the release's requester")
                    } else if q.patient != r.patient || s.patient != r.patient {
                        Some("the request is for another patient")
                    } else if q.category != s.category {
                        Some("the request is for another category than the sealed version's")
                    } else if q.action != crate::codes::Action::Read {
                        Some("the request is not for reading")
                    } else {
                        None
                    }
                }
            };
            if let Some(why) = why {
                self.summary.unmatched_releases.push(UnmatchedRelease {
                    height,
                    release: id,
                    access: r.access,
                    why,
                });
            }
        }
    }

    /// The summary so far.
    pub fn summary(&self) -> AuditSummary {
        let mut s = self.summary.clone();
        s.height = self.state.height();
        s.log_size = self.state.log_size();
        s.log_root = self.state.log_root().to_hex();
        s.unreviewed_break_glass = self.state.review_queue().count() as u64;
        s
    }
}

/// Names the first event of a block whose signature does not verify (ZIP-215, PROTOCOL.md §3).
pub fn first_bad_signature(cb: &CommittedBlock) -> Option<AuditFailure> {
    let items = signature_items(&cb.block);
    match crate::keys::verify_batch(&items) {
        Ok(()) => None,
        Err(index) => Some(AuditFailure::EventSignature {
            height: cb.block.header.height,
            index,
            id: cb.block.events[index].id(),
        }),
    }
}
