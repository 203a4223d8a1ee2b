//! `twinledger-core`: the pure, verifiable heart of Twinledger.
//!
//! Types, the canonical encoding, signatures, events, the consent state machine, blocks, the
//! RFC 9162 event log with inclusion and consistency proofs, checkpoints and commit
//! certificates. The normative description of every byte is `docs/PROTOCOL.md`.
//!
//! **Architecture invariant:** this crate performs no I/O and reads no clock and no randomness.
//! Time arrives in block headers, keys arrive as bytes; the same inputs give the same outputs on
//! every validator and every auditor's machine.

pub mod anomaly;
pub mod audit;
pub mod block;
pub mod checkpoint;
pub mod codec;
pub mod codes;
pub mod commitment;
pub mod consensus;
pub mod consent_proof;
pub mod devkit;
pub mod event;
pub mod hash;
pub mod keys;
pub mod merkle;
pub mod receipt;
pub mod request;
pub mod setproof;
pub mod state;
pub mod statemap;
pub mod time;
pub mod validator;

pub use block::{Block, BlockHeader, BlockResults, BodyMismatch, Decision, DenyReason, Outcome};
pub use checkpoint::{Checkpoint, CommitCertificate, CommitSig, CommitVote};
pub use codes::{Action, DataCategory, Purpose, Role};
pub use commitment::Commitment;
pub use event::{Event, EventPayload, SignedEvent};
pub use hash::{ChainId, EventId, Hash, LocalTwinId, TwinId};
pub use keys::{Keypair, PublicKey, Signature};
pub use receipt::Receipt;
pub use setproof::ValidatorSets;
pub use state::{Genesis, Limits, RejectReason, State, apply};
pub use statemap::{StateProof, Table};
pub use time::Timestamp;
pub use validator::{Validator, ValidatorSet};
