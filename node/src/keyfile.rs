//! Plain key files of nodes and development chains: JSON holding the did and the ed25519 secret
//! in hex, created with mode 0600 and never overwritten (ADR 0011).
//!
//! Two kinds, named by the `kind` field beside `"format": "twinledger-plain-key-v1"`:
//! - `node`: a validator's or observer's key, made by `twinledger-node key new`. It sits on the
//!   hospital's server like a TLS private key or CometBFT's `priv_validator_key.json`, readable
//!   by the node's user only, so that the node restarts unattended after a crash.
//! - `dev`: a key written by `twinledger-node --dev` or `twinledger-devnet` for one development
//!   chain, whose chain id it records. `twinctl` signs with it (after a warning) only against a
//!   node of that chain; the node refuses it as the validator key of any other chain.
//!
//! Files written before the format field existed (`did`, `secret_hex`, `note`) are still read;
//! [`mark_dev`] rewrites such a file of a dev chain in the current format.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use twinledger_core::{ChainId, Keypair, PublicKey};

/// The value of the `format` field of the current plain key file format.
pub const FORMAT: &str = "twinledger-plain-key-v1";

/// Largest plain key file accepted.
const MAX_FILE_BYTES: u64 = 16 * 1024;

/// Why a plain key file cannot be written or used. Each names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Cannot read or write the file.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Refusing to overwrite.
    #[error("key file {}: already exists; a key file is never overwritten", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Others can read the file.
    #[error("key file {} is readable by others (mode {mode:o}); run chmod 600 on it", path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A `twinctl` key file (encrypted) where a node key was expected.
    #[error(
        "key file {} is an encrypted twinctl key file; a node's key is a plain file: make one with \
         `twinledger-node key new --out FILE`",
        path.display()
    )]
    Encrypted {
        /// The file.
        path: PathBuf,
    },
    /// Not a key file, or a field is malformed.
    #[error("key file {} is malformed: {why}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The did in the file is not the secret's.
    #[error("key file {}: the did {did} does not match the secret", path.display())]
    DidMismatch {
        /// The file.
        path: PathBuf,
        /// The did written in the file.
        did: String,
    },
    /// The OS random generator failed.
    #[error("OS random generator: {0}")]
    Rng(String),
}

/// What a plain key file is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A node's key (`twinledger-node key new`).
    Node,
    /// A development key of the dev chain (or devnet) with this chain id.
    Dev {
        /// The chain it was made for.
        chain_id: ChainId,
    },
    /// A file of the format before the `format` field (earlier dev chains and devnets).
    Unmarked,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node => f.write_str("unencrypted node key"),
            Self::Dev { chain_id } => write!(
                f,
                "unencrypted development key of dev chain {}",
                &chain_id.to_hex()[..16]
            ),
            Self::Unmarked => {
                f.write_str("unencrypted key of an earlier dev chain (no format field)")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindField {
    Node,
    Dev,
}

/// The file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<KindField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain_id: Option<ChainId>,
    did: String,
    secret_hex: String,
    note: String,
}

/// A key read from a plain key file.
#[derive(Debug)]
pub struct PlainKey {
    /// The key.
    pub key: Keypair,
    /// What the file says it is for.
    pub kind: KeyKind,
}

/// A fresh key from the operating system's RNG.
pub fn generate() -> Result<Keypair, KeyFileError> {
    loop {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyFileError::Rng(e.to_string()))?;
        let k = Keypair::from_secret(&seed);
        // A random seed giving a weak key is astronomically unlikely; retry rather than assume.
        if PublicKey::from_ed25519_bytes(k.public().as_bytes()).is_ok() {
            return Ok(k);
        }
    }
}

/// Writes `key` as a node key to `path` (mode 0600, created new: an existing file is never
/// overwritten).
pub fn write(path: &Path, key: &Keypair, note: &str) -> Result<(), KeyFileError> {
    write_kind(path, key, KindField::Node, None, note)
}

/// Writes `key` as a development key of the chain `chain_id` (mode 0600, created new).
pub fn write_dev(
    path: &Path,
    key: &Keypair,
    chain_id: ChainId,
    note: &str,
) -> Result<(), KeyFileError> {
    write_kind(path, key, KindField::Dev, Some(chain_id), note)
}

fn content(key: &Keypair, kind: KindField, chain_id: Option<ChainId>, note: &str) -> String {
    let kf = KeyFile {
        format: Some(FORMAT.into()),
        kind: Some(kind),
        chain_id,
        did: key.public().to_did(),
        secret_hex: hex::encode(key.secret_bytes()),
        note: note.into(),
    };
    serde_json::to_string_pretty(&kf).expect("a key file serialises")
}

fn write_kind(
    path: &Path,
    key: &Keypair,
    kind: KindField,
    chain_id: Option<ChainId>,
    note: &str,
) -> Result<(), KeyFileError> {
    create_new(path, &content(key, kind, chain_id, note))
}

/// Creates `path` (mode 0600, refusing an existing file) holding `text`, flushed.
fn create_new(path: &Path, text: &str) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists {
                path: path.to_owned(),
            }
        } else {
            io(e)
        }
    })?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Reads a key file, refusing one that others can read, a malformed one, or one whose did
/// does not match its secret.
pub fn read(path: &Path) -> Result<Keypair, KeyFileError> {
    read_file(path).map(|k| k.key)
}

/// [`read`], with what the file says it is for.
pub fn read_file(path: &Path) -> Result<PlainKey, KeyFileError> {
    let (kf, key) = load(path)?;
    let malformed = |why: String| KeyFileError::Malformed {
        path: path.to_owned(),
        why,
    };
    let kind = match (kf.format.as_deref(), kf.kind, kf.chain_id) {
        (None, None, None) => KeyKind::Unmarked,
        (Some(FORMAT), Some(KindField::Node), None) => KeyKind::Node,
        (Some(FORMAT), Some(KindField::Dev), Some(chain_id)) => KeyKind::Dev { chain_id },
        (Some(FORMAT), Some(KindField::Dev), None) => {
            return Err(malformed("a dev key without chain_id".into()));
        }
        (Some(FORMAT), Some(KindField::Node), Some(_)) => {
            return Err(malformed("a node key with a chain_id".into()));
        }
        (Some(FORMAT), None, _) => return Err(malformed("no kind (node or dev)".into())),
        (Some(other), _, _) => return Err(malformed(format!("unknown format {other:?}"))),
        (None, _, _) => return Err(malformed("kind or chain_id without format".into())),
    };
    Ok(PlainKey { key, kind })
}

fn load(path: &Path) -> Result<(KeyFile, Keypair), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let malformed = |why: String| KeyFileError::Malformed {
        path: path.to_owned(),
        why,
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(malformed(format!(
            "{} bytes, larger than any key file",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    if value.get("ciphertext").is_some() {
        return Err(KeyFileError::Encrypted {
            path: path.to_owned(),
        });
    }
    let kf: KeyFile = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(&kf.secret_hex, &mut secret)
        .map_err(|e| malformed(format!("secret_hex is not 64 hex digits: {e}")))?;
    let key = Keypair::from_secret(&secret);
    if key.public().to_did() != kf.did {
        return Err(KeyFileError::DidMismatch {
            path: path.to_owned(),
            did: kf.did,
        });
    }
    Ok((kf, key))
}

/// Marks an unmarked key file (the format of earlier dev chains) as a development key of
/// `chain_id`, replacing it atomically (same key, mode 0600). Returns whether it was rewritten;
/// a file already in the current format is left alone.
pub fn mark_dev(path: &Path, chain_id: ChainId) -> Result<bool, KeyFileError> {
    let (kf, key) = load(path)?;
    if kf.format.is_some() {
        return Ok(false);
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    // A leftover of a start that crashed mid-rewrite: the original is still in place.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(KeyFileError::Io {
                path: tmp,
                source: e,
            });
        }
        _ => {}
    }
    create_new(
        &tmp,
        &content(&key, KindField::Dev, Some(chain_id), &kf.note),
    )?;
    std::fs::rename(&tmp, path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = (path, mode);
    }

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.key");
        let key = generate().unwrap();
        write(&path, &key, "test").unwrap();
        let read_back = read_file(&path).unwrap();
        assert_eq!(read_back.key.public(), key.public());
        assert_eq!(read_back.kind, KeyKind::Node);
        // Never overwritten.
        assert!(matches!(
            write(&path, &key, "test"),
            Err(KeyFileError::Exists { .. })
        ));
        #[cfg(unix)]
        {
            chmod(&path, 0o644);
            let err = read(&path).unwrap_err().to_string();
            assert!(err.contains("readable by others"), "{err}");
            chmod(&path, 0o600);
        }
        // A did that does not match the secret.
        let other = generate().unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(&key.public().to_did(), &other.public().to_did());
        std::fs::write(&path, text).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        std::fs::write(&path, "{").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("malformed"));
    }

    #[test]
    fn a_dev_key_names_its_chain_and_an_unmarked_file_is_marked_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let chain = ChainId([7; 32]);
        let key = generate().unwrap();
        let dev = dir.path().join("dev.key");
        write_dev(&dev, &key, chain, "dev").unwrap();
        assert_eq!(
            read_file(&dev).unwrap().kind,
            KeyKind::Dev { chain_id: chain }
        );

        // The format of earlier dev chains: read, then marked with the chain id.
        let old = dir.path().join("old.key");
        let legacy = serde_json::json!({
            "did": key.public().to_did(),
            "secret_hex": hex::encode(key.secret_bytes()),
            "note": "DEV ONLY: unencrypted key of a local dev chain",
        });
        std::fs::write(&old, legacy.to_string()).unwrap();
        chmod(&old, 0o600);
        assert_eq!(read_file(&old).unwrap().kind, KeyKind::Unmarked);
        assert!(mark_dev(&old, chain).unwrap());
        let marked = read_file(&old).unwrap();
        assert_eq!(marked.kind, KeyKind::Dev { chain_id: chain });
        assert_eq!(marked.key.public(), key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&old).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Already marked: left alone.
        assert!(!mark_dev(&old, ChainId([8; 32])).unwrap());
        assert_eq!(
            read_file(&old).unwrap().kind,
            KeyKind::Dev { chain_id: chain }
        );
    }

    #[test]
    fn a_twinctl_key_file_is_refused_with_the_command_that_makes_a_node_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.key");
        // The fields of twinctl's encrypted format (cli/src/keystore.rs).
        let encrypted = serde_json::json!({
            "version": 1,
            "did": generate().unwrap().public().to_did(),
            "kdf": {"algorithm": "argon2id", "memory_kib": 1024, "iterations": 1,
                    "parallelism": 1, "salt": "00"},
            "cipher": {"algorithm": "xchacha20poly1305", "nonce": "00"},
            "ciphertext": "00",
        });
        std::fs::write(&path, encrypted.to_string()).unwrap();
        chmod(&path, 0o600);
        let err = read(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Encrypted { .. }), "{err}");
        assert!(err.to_string().contains("twinledger-node key new"), "{err}");
    }

    #[test]
    fn inconsistent_markers_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate().unwrap();
        let cases = [
            serde_json::json!({"format": FORMAT, "kind": "dev"}),
            serde_json::json!({"format": FORMAT, "kind": "node", "chain_id": "07".repeat(32)}),
            serde_json::json!({"format": "twinledger-plain-key-v9", "kind": "node"}),
            serde_json::json!({"kind": "node"}),
        ];
        for (i, mut v) in cases.into_iter().enumerate() {
            v["did"] = key.public().to_did().into();
            v["secret_hex"] = hex::encode(key.secret_bytes()).into();
            v["note"] = "x".into();
            let p = dir.path().join(format!("{i}.key"));
            std::fs::write(&p, v.to_string()).unwrap();
            chmod(&p, 0o600);
            let err = read(&p).unwrap_err();
            assert!(
                matches!(err, KeyFileError::Malformed { .. }),
                "case {i}: {err}"
            );
        }
    }
}
