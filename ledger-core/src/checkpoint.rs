//! Checkpoints and commit certificates (PROTOCOL.md §9).
//!
//! A checkpoint names a chain, a height, the event log's size and root at that height and the
//! block hash. Validators sign `(checkpoint, round)` as their commit vote; more than two thirds of
//! the power in force at that height makes a [`CommitCertificate`], and the block is final.
//! Because the votes cover the log root and size, a checkpoint with its certificate is
//! self-contained: an auditor needs only the validator set to check it, and two certified
//! checkpoints of one chain at one height with different blocks prove a fork and name the
//! validators that signed both.
//!
//! The text form follows the style of C2SP tlog-checkpoint / signed-note: origin line, tree
//! size, base64 root, extension lines, a blank line, then one `— <name> <base64 sig>` line per
//! signature (the name is the validator's did:key).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::hash::{ChainId, Hash};
use crate::keys::{Keypair, PublicKey, Signature, sig_domain, signing_message};
use crate::validator::ValidatorSet;

/// The checkpoint format version.
pub const CHECKPOINT_VERSION: u8 = 1;

/// Largest text checkpoint accepted (256 signature lines fit comfortably).
pub const MAX_CHECKPOINT_TEXT: usize = 64 * 1024;

/// A signed summary of the chain at one height.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`CHECKPOINT_VERSION`].
    pub version: u8,
    /// The chain.
    pub chain_id: ChainId,
    /// Block height.
    pub height: u64,
    /// Event log size after that block.
    pub log_size: u64,
    /// Event log root after that block.
    pub log_root: Hash,
    /// The block's hash.
    pub block_hash: Hash,
}

/// What a validator signs to commit a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitVote {
    /// The checkpoint of the block.
    pub checkpoint: Checkpoint,
    /// The consensus round in which the block was decided.
    pub round: u32,
}

impl CommitVote {
    /// The signed message (domain `twinledger/v1/commit`).
    pub fn signing_message(&self) -> Vec<u8> {
        signing_message(
            sig_domain::COMMIT,
            &self.checkpoint.chain_id,
            &codec::encode(self),
        )
    }

    /// Signs as a validator.
    pub fn sign(&self, key: &Keypair) -> CommitSig {
        CommitSig {
            validator: key.public(),
            signature: key.sign(
                sig_domain::COMMIT,
                &self.checkpoint.chain_id,
                &codec::encode(self),
            ),
        }
    }
}

/// One validator's commit signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSig {
    /// The validator's consensus key.
    pub validator: PublicKey,
    /// Its signature over the [`CommitVote`].
    pub signature: Signature,
}

/// Commit signatures of one round, sorted by validator key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCertificate {
    /// The round.
    pub round: u32,
    /// Signatures, sorted by validator key, no duplicates.
    pub signatures: Vec<CommitSig>,
}

/// Why a certificate or a checkpoint text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// A signer is not in the validator set in force.
    #[error("signer {0} is not a validator at this height")]
    UnknownSigner(PublicKey),
    /// A signer appears twice, or signatures are not sorted.
    #[error("signer {0} appears twice (or signatures are not sorted by key)")]
    DuplicateOrUnsorted(PublicKey),
    /// A signature does not verify.
    #[error("commit signature by {0} does not verify")]
    BadSignature(PublicKey),
    /// Not enough power.
    #[error("certificate holds {signed} of {total} voting power; more than two thirds is required")]
    NoQuorum {
        /// Power of valid signers.
        signed: u64,
        /// Total power.
        total: u64,
    },
    /// A checkpoint of a version this protocol does not know (PROTOCOL.md §9).
    #[error("checkpoint version {0} is not supported (this protocol has version 1)")]
    UnknownVersion(u8),
    /// More signatures than validators could give.
    #[error("certificate has {0} signatures, more than any validator set")]
    TooManySignatures(usize),
    /// The checkpoint text is malformed.
    #[error("malformed checkpoint text, line {line}: {why}")]
    Text {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

impl CommitCertificate {
    /// Builds a certificate from signatures (sorts them).
    pub fn new(round: u32, mut signatures: Vec<CommitSig>) -> Self {
        signatures.sort_by_key(|s| s.validator);
        Self { round, signatures }
    }

    /// Verifies the certificate over `checkpoint` against the validator set in force at its
    /// height: known, distinct signers whose signatures verify and who hold more than two
    /// thirds of the power. Returns the signed power.
    pub fn verify(
        &self,
        checkpoint: &Checkpoint,
        validators: &ValidatorSet,
    ) -> Result<u64, CertificateError> {
        if checkpoint.version != CHECKPOINT_VERSION {
            return Err(CertificateError::UnknownVersion(checkpoint.version));
        }
        if self.signatures.len() > crate::validator::MAX_VALIDATORS {
            return Err(CertificateError::TooManySignatures(self.signatures.len()));
        }
        let vote = CommitVote {
            checkpoint: *checkpoint,
            round: self.round,
        };
        let msg = vote.signing_message();
        let mut signed: u64 = 0;
        for (i, s) in self.signatures.iter().enumerate() {
            if i > 0 && self.signatures[i - 1].validator >= s.validator {
                return Err(CertificateError::DuplicateOrUnsorted(s.validator));
            }
            let v = validators
                .get(&s.validator)
                .ok_or(CertificateError::UnknownSigner(s.validator))?;
            s.validator
                .verify_raw(&msg, &s.signature)
                .map_err(|_| CertificateError::BadSignature(s.validator))?;
            signed += v.power;
        }
        if !validators.is_quorum(signed) {
            return Err(CertificateError::NoQuorum {
                signed,
                total: validators.total_power(),
            });
        }
        Ok(signed)
    }

    /// The validators that signed both certificates: given two certified checkpoints of one
    /// chain at one height for different blocks, these validators signed conflicting commits.
    pub fn double_signers(&self, other: &CommitCertificate) -> Vec<PublicKey> {
        self.signatures
            .iter()
            .filter(|s| other.signatures.iter().any(|o| o.validator == s.validator))
            .map(|s| s.validator)
            .collect()
    }
}

/// Why two certified checkpoints of one chain cannot both be true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// Two blocks at one height: a fork.
    Fork,
    /// A later height with a smaller event log: a rollback.
    Rollback,
}

impl Conflict {
    /// A short description for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Conflict::Fork => "two certified blocks at one height",
            Conflict::Rollback => "rollback",
        }
    }
}

impl Checkpoint {
    /// Whether `self` and `other` (of one chain) contradict each other on their face. Logs that
    /// merely differ need a consistency proof to be compared (see [`crate::merkle`]).
    pub fn conflict_with(&self, other: &Checkpoint) -> Option<Conflict> {
        if self.chain_id != other.chain_id {
            return None;
        }
        if self.height == other.height {
            return (self.block_hash != other.block_hash).then_some(Conflict::Fork);
        }
        let (lo, hi) = if self.height < other.height {
            (self, other)
        } else {
            (other, self)
        };
        (lo.log_size > hi.log_size).then_some(Conflict::Rollback)
    }

    /// An auditor's cosignature: it witnessed this checkpoint (domain
    /// `twinledger/v1/checkpoint-cosign`, body the canonical encoding).
    pub fn cosign(&self, auditor: &Keypair) -> Signature {
        auditor.sign(sig_domain::COSIGN, &self.chain_id, &codec::encode(self))
    }

    /// Checks an auditor's cosignature.
    pub fn verify_cosignature(&self, auditor: &PublicKey, sig: &Signature) -> bool {
        self.version == CHECKPOINT_VERSION
            && auditor
                .verify(
                    sig_domain::COSIGN,
                    &self.chain_id,
                    &codec::encode(self),
                    sig,
                )
                .is_ok()
    }

    /// The origin line: `twinledger/<chain id hex>`.
    pub fn origin(&self) -> String {
        format!("twinledger/{}", self.chain_id)
    }

    /// Text form with the certificate's signatures (C2SP tlog-checkpoint style).
    pub fn to_text(&self, cert: &CommitCertificate) -> String {
        let mut s = format!(
            "{}\n{}\n{}\nheight {}\nblock {}\nround {}\n\n",
            self.origin(),
            self.log_size,
            B64.encode(self.log_root.as_bytes()),
            self.height,
            self.block_hash,
            cert.round
        );
        for sig in &cert.signatures {
            s.push_str(&format!(
                "\u{2014} {} {}\n",
                sig.validator.to_did(),
                B64.encode(sig.signature.0)
            ));
        }
        s
    }

    /// Parses the text form strictly (exact line order, no extra lines, canonical numbers).
    /// Does not verify the signatures: call [`CommitCertificate::verify`].
    pub fn from_text(text: &str) -> Result<(Checkpoint, CommitCertificate), CertificateError> {
        let err = |line: usize, why: &str| CertificateError::Text {
            line,
            why: why.to_string(),
        };
        if text.len() > MAX_CHECKPOINT_TEXT {
            return Err(err(0, "text too large"));
        }
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| err(0, "must end with a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 7 {
            return Err(err(lines.len(), "too few lines"));
        }
        let chain_hex = lines[0]
            .strip_prefix("twinledger/")
            .ok_or_else(|| err(1, "origin must be twinledger/<chain id>"))?;
        let chain_id = ChainId::from_hex(chain_hex).map_err(|e| err(1, &e.to_string()))?;
        let num = |line: usize, s: &str| -> Result<u64, CertificateError> {
            if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
                return Err(err(line, "not a canonical decimal number"));
            }
            s.parse::<u64>()
                .map_err(|_| err(line, "not a canonical decimal number"))
        };
        let log_size = num(2, lines[1])?;
        let root = B64
            .decode(lines[2])
            .map_err(|_| err(3, "root is not base64"))?;
        let log_root = Hash(
            root.try_into()
                .map_err(|_| err(3, "root is not 32 bytes"))?,
        );
        let height = num(
            4,
            lines[3]
                .strip_prefix("height ")
                .ok_or_else(|| err(4, "expected `height <n>`"))?,
        )?;
        let block_hex = lines[4]
            .strip_prefix("block ")
            .ok_or_else(|| err(5, "expected `block <hex>`"))?;
        let block_hash = Hash::from_hex(block_hex).map_err(|e| err(5, &e.to_string()))?;
        let round = num(
            6,
            lines[5]
                .strip_prefix("round ")
                .ok_or_else(|| err(6, "expected `round <n>`"))?,
        )?;
        let round = u32::try_from(round).map_err(|_| err(6, "round out of range"))?;
        if !lines[6].is_empty() {
            return Err(err(7, "expected a blank line before the signatures"));
        }
        let mut signatures = Vec::new();
        for (i, l) in lines[7..].iter().enumerate() {
            let n = i + 8;
            let rest = l
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| err(n, "signature line must start with an em dash and a space"))?;
            let (name, sig) = rest
                .split_once(' ')
                .ok_or_else(|| err(n, "expected `— <did:key> <base64 signature>`"))?;
            let validator = PublicKey::from_did(name).map_err(|e| err(n, &e.to_string()))?;
            let raw = B64
                .decode(sig)
                .map_err(|_| err(n, "signature is not base64"))?;
            let raw: [u8; 64] = raw
                .try_into()
                .map_err(|_| err(n, "signature is not 64 bytes"))?;
            signatures.push(CommitSig {
                validator,
                signature: Signature(raw),
            });
        }
        let cp = Checkpoint {
            version: CHECKPOINT_VERSION,
            chain_id,
            height,
            log_size,
            log_root,
            block_hash,
        };
        let cert = CommitCertificate { round, signatures };
        // Canonical form only: re-rendering must give the same text.
        if cp.to_text(&cert) != text {
            return Err(err(
                0,
                "not in canonical form (base64 padding, order or spacing)",
            ));
        }
        Ok((cp, cert))
    }
}
