//! The errors of sealing, opening, wrapping and storing. Each names the problem; none leaves a
//! partial change behind (a failed write leaves no object, a failed erase leaves the key as it was).

use std::path::PathBuf;

/// Why a sealed version or a data key cannot be sealed, opened, wrapped, stored or released.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A chunk of the payload failed authentication: the ciphertext was changed (or cut inside
    /// a chunk, when its anchored length was not given).
    #[error(
        "tampered ciphertext: chunk {chunk} (plaintext offset {plaintext_offset}) fails authentication"
    )]
    TamperedChunk {
        /// Index of the 64 KiB chunk.
        chunk: u64,
        /// Offset of its first plaintext byte.
        plaintext_offset: u64,
    },
    /// The age header's MAC or a stanza of ours fails: the header was changed.
    #[error("tampered ciphertext: the age header fails authentication")]
    TamperedHeader,
    /// The data key is not the one the file was sealed to (or a wrapped key is not for this
    /// requester's key).
    #[error("wrong key: the file was not sealed (or wrapped) to this key")]
    WrongKey,
    /// The ciphertext ends early.
    #[error("truncated ciphertext: {read} bytes read{}", expected.map(|e| format!(", {e} expected")).unwrap_or_default())]
    Truncated {
        /// Bytes present.
        read: u64,
        /// Bytes anchored, when known.
        expected: Option<u64>,
    },
    /// Not an age v1 file, or a malformed one.
    #[error("not a sealed twin version (age v1): {0}")]
    NotSealed(String),
    /// The ciphertext authenticates but is not the anchored one.
    #[error("ciphertext mismatch: anchored {expected}, got {actual}")]
    CiphertextMismatch {
        /// Anchored hash (hex) or length.
        expected: String,
        /// What was read.
        actual: String,
    },
    /// The plaintext is not the anchored one.
    #[error("plaintext mismatch: anchored {expected}, got {actual}")]
    PlaintextMismatch {
        /// Anchored BLAKE3 (hex).
        expected: String,
        /// BLAKE3 of what was decrypted (hex).
        actual: String,
    },
    /// The data key of this version was erased (crypto-shredded).
    #[error("erased: the data key of twin {twin} version {version} was erased")]
    Erased {
        /// Twin id (hex).
        twin: String,
        /// Version.
        version: u64,
    },
    /// The custodian holds no data key for this version and never erased one.
    #[error("unknown key: no data key for twin {twin} version {version}")]
    UnknownKey {
        /// Twin id (hex).
        twin: String,
        /// Version.
        version: u64,
    },
    /// The custodian already holds a data key for this version (keys are never replaced).
    #[error("a data key for twin {twin} version {version} already exists; it is never replaced")]
    KeyExists {
        /// Twin id (hex).
        twin: String,
        /// Version.
        version: u64,
    },
    /// A sealed version is already stored under this name (objects are never replaced).
    #[error("sealed object {name} already exists; it is never replaced")]
    ObjectExists {
        /// `<twin hex>/<version>`.
        name: String,
    },
    /// No sealed version is stored under this name.
    #[error("sealed object {name} not found")]
    ObjectNotFound {
        /// `<twin hex>/<version>`.
        name: String,
    },
    /// A twin id that is not lowercase hex of an even length from 2 to 128 digits.
    #[error("invalid twin id {twin:?}: expected 2 to 128 lowercase hex digits")]
    InvalidTwinId {
        /// What was given (at most 129 characters).
        twin: String,
    },
    /// A requester key that is not an ed25519 public key age accepts.
    #[error("invalid requester key {public_hex}: not an ed25519 public key")]
    InvalidRecipient {
        /// The 32 bytes, hex.
        public_hex: String,
    },
    /// A wrapped data key that does not open to a data key of the version asked for.
    #[error("invalid wrapped data key: {0}")]
    WrappedKeyInvalid(String),
    /// The custodian's master key cannot be used.
    #[error("master key {source_name}: {why}")]
    MasterKey {
        /// The file or environment variable.
        source_name: String,
        /// What is wrong.
        why: String,
    },
    /// The master key file can be read by others.
    #[error("master key file {} is readable by others (mode {mode:o}); run chmod 600 on it", path.display())]
    MasterKeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Reading the plaintext or writing the output failed.
    #[error("{stream}: {source}")]
    Io {
        /// Which stream ("plaintext input", "ciphertext output", …).
        stream: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A filesystem operation of a store failed.
    #[error("store I/O on {}: {source}", path.display())]
    StoreIo {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An object store operation failed.
    #[error("object store, {location}: {source}")]
    ObjectStore {
        /// The object's path in the store.
        location: String,
        /// The error.
        source: object_store::Error,
    },
    /// The age library refused to encrypt.
    #[error("age: {0}")]
    Age(String),
    /// The OS random generator failed.
    #[error("OS random generator: {0}")]
    Rng(String),
}
