//! The one error type of the genesis crate: every variant names the problem and the offending
//! value, and the field it sits in (`validators[2].power`), so an operator can fix the file.

use std::path::PathBuf;

use twinledger_core::PublicKey;
use twinledger_core::state::GenesisError;

/// Why a genesis file cannot be read, parsed, accepted or written.
#[derive(Debug, thiserror::Error)]
pub enum GenesisFileError {
    /// Reading or writing the file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A problem with the contents of a named file.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        source: Box<GenesisFileError>,
    },
    /// The file is larger than [`crate::MAX_GENESIS_FILE_BYTES`]; refused before parsing.
    #[error("genesis file is {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Not JSON at all (serde_json's message gives the line and column).
    #[error("genesis file is not valid JSON: {0}")]
    Syntax(String),
    /// JSON, but a field has the wrong type or value, is missing or is unknown.
    #[error("{path}: {message}")]
    Malformed {
        /// Where: `validators[2].consensus_key`, or `genesis` for the top level.
        path: String,
        /// serde's description, e.g. `malformed did:key: ...`.
        message: String,
    },
    /// An unsupported file version.
    #[error("version {found} is not supported; this build reads genesis file version {expected}")]
    Version {
        /// The file's version.
        found: u8,
        /// [`crate::GENESIS_FILE_VERSION`].
        expected: u8,
    },
    /// A chain, organisation or auditor name that breaks the naming rules.
    #[error("{field} {value:?} {problem}")]
    InvalidName {
        /// The field, e.g. `organisations[1].name`.
        field: String,
        /// The name (shortened if very long).
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// A list that must not be empty is.
    #[error("genesis lists no {what}; at least one {what} is required")]
    Empty {
        /// `organisation` or `validator`.
        what: &'static str,
    },
    /// More validators than a validator set may hold.
    #[error("genesis lists {count} validators, over the limit of {max}")]
    TooManyValidators {
        /// How many.
        count: usize,
        /// [`twinledger_core::validator::MAX_VALIDATORS`].
        max: usize,
    },
    /// A key used twice (organisation, auditor, actor and consensus keys are all distinct).
    #[error("key {key} appears twice: as {first} and as {second}")]
    DuplicateKey {
        /// The key.
        key: PublicKey,
        /// Its first use.
        first: String,
        /// Its second use.
        second: String,
    },
    /// A name used twice (organisation and auditor names are all distinct).
    #[error("name {name:?} appears twice: as {first} and as {second}")]
    DuplicateName {
        /// The name.
        name: String,
        /// Its first use.
        first: String,
        /// Its second use.
        second: String,
    },
    /// A peer id used by two validators.
    #[error("peer id {peer_id} appears twice: as {first} and as {second}")]
    DuplicatePeerId {
        /// The peer id.
        peer_id: String,
        /// Its first use.
        first: String,
        /// Its second use.
        second: String,
    },
    /// Two validators listening on the same address.
    #[error("listen address {addr} appears twice: as {first} and as {second}")]
    DuplicateListenAddr {
        /// The address (without any `/p2p/` suffix).
        addr: String,
        /// Its first use.
        first: String,
        /// Its second use.
        second: String,
    },
    /// Voting power 0 or over the cap.
    #[error("{field} is {power}; voting power must be 1..={max}")]
    BadPower {
        /// `validators[i].power`.
        field: String,
        /// The power.
        power: u64,
        /// [`twinledger_core::validator::MAX_POWER`].
        max: u64,
    },
    /// A validator or actor names an organisation that is not listed.
    #[error("{field} {org} is not a listed organisation (add it to organisations first)")]
    UnknownOrganisation {
        /// `validators[i].organisation` or `actors[i].organisation`.
        field: String,
        /// The organisation key.
        org: PublicKey,
    },
    /// A peer id that is not a base58btc multihash of an accepted form.
    #[error("{field} {value:?} is not a valid libp2p peer id: {problem}")]
    BadPeerId {
        /// `validators[i].peer_id`.
        field: String,
        /// The peer id (shortened if very long).
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// A listen address that is not a multiaddr of an accepted form.
    #[error("{field} {value:?} is not an accepted multiaddr: {problem}")]
    BadListenAddr {
        /// `validators[i].listen_addr`.
        field: String,
        /// The address (shortened if very long).
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// A limit out of its range.
    #[error("limits.{name} = {value} is out of range {min}..={max}")]
    LimitOutOfRange {
        /// The limit's field name in the file.
        name: &'static str,
        /// Its value.
        value: u64,
        /// Minimum.
        min: u64,
        /// Maximum.
        max: u64,
    },
    /// The ledger content was refused by the core's own genesis validation.
    #[error("ledger genesis refused: {0}")]
    Ledger(#[from] GenesisError),
}

impl GenesisFileError {
    /// Whether this is an I/O failure (the file could not be read or written) rather than a
    /// problem with its contents: the CLI maps the two to different exit codes.
    pub fn is_io(&self) -> bool {
        match self {
            Self::Io { .. } => true,
            Self::InFile { source, .. } => source.is_io(),
            _ => false,
        }
    }

    /// Wraps a content error with the file it came from.
    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        Self::InFile {
            path: path.to_owned(),
            source: Box::new(self),
        }
    }
}

/// A value for an error message: at most 80 characters, marked when shortened.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let mut s: String = value.chars().take(MAX).collect();
        s.push('…');
        s
    }
}
