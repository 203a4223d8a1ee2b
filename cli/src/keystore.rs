//! Key files: the encrypted ones of patients, guardians, clinicians and auditors, and the plain
//! development keys of dev chains (ADR 0011).
//!
//! Encrypted format (JSON, version 1): the did:key in clear (so `key export-public` needs no passphrase),
//! the 32-byte ed25519 secret encrypted with XChaCha20-Poly1305 under a key derived from the
//! passphrase with Argon2id (salt and cost parameters in the file), and the did bound as
//! associated data, so a file whose did was swapped does not open. Files are created with mode
//! 0600 and never overwritten; reading refuses a file others can read. Secrets and derived keys
//! are zeroised after use.
//!
//! Plain format (`"format": "twinledger-plain-key-v1"`, written by `twinledger-node`): the did and
//! the secret in hex, with `"kind": "dev"` and the chain id for the keys of `twinledger-node
//! --dev` and `twinledger-devnet`, or `"kind": "node"` for `twinledger-node key new`. twinctl
//! signs with a development key without a passphrase, only against a node of that chain (see
//! `key::open_key`); a node key, or a plain file of earlier dev chains without the marker, only
//! after `twinctl key import` made an encrypted copy.

use std::io::Write as _;
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use twinledger_core::{ChainId, Keypair, PublicKey};
use zeroize::{Zeroize, Zeroizing};

/// The key file format version.
pub const KEY_FILE_VERSION: u8 = 1;
/// Argon2id cost for new files: 64 MiB, 3 passes, 1 lane (OWASP's second recommended setting).
pub const MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes.
pub const ITERATIONS: u32 = 3;
/// Limits on what a file may ask for, so a crafted file cannot make opening it take minutes.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 16;
/// Largest key file accepted.
const MAX_FILE_BYTES: u64 = 16 * 1024;
/// Shortest passphrase accepted for a new key.
pub const MIN_PASSPHRASE: usize = 8;
/// The `format` of plain key files (node/src/keyfile.rs).
pub const PLAIN_FORMAT: &str = "twinledger-plain-key-v1";

/// Why a key file cannot be used. Each names the file and the problem; nothing is sent.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Cannot read or write the file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Refusing to overwrite.
    #[error("{0}: already exists; a key file is never overwritten")]
    Exists(String),
    /// Others can read the file.
    #[error("{path}: readable by others (mode {mode:o}); run chmod 600 {path}")]
    Permissions {
        /// The file.
        path: String,
        /// Its mode bits.
        mode: u32,
    },
    /// Not a key file, truncated, or a field is malformed.
    #[error("{path}: not a valid key file: {why}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The passphrase does not open the file (or the file was altered).
    #[error("{0}: wrong passphrase, or the key file was altered")]
    WrongPassphrase(String),
    /// A new passphrase that is too short.
    #[error("passphrase too short: at least {MIN_PASSPHRASE} characters")]
    WeakPassphrase,
    /// The OS random generator failed.
    #[error("OS random generator: {0}")]
    Rng(String),
    /// A plain node key where twinctl signs: it is used only through an encrypted copy.
    #[error(
        "{0}: an unencrypted node key (made by `twinledger-node key new`); twinctl signs only with \
         encrypted keys and development keys: make an encrypted copy with \
         `twinctl key import {0} --out <new file>`"
    )]
    NodeKey(String),
    /// A plain key file without the format marker (earlier dev chains and devnets).
    #[error(
        "{0}: an unencrypted key of an earlier dev chain, without the development-key marker: \
         start `twinledger-node --dev` (or `twinledger-devnet up`) once to mark it, or make an \
         encrypted copy with `twinctl key import {0} --out <new file>`"
    )]
    UnmarkedPlain(String),
    /// A development key used against a node of another chain.
    #[error(
        "{path}: a development key of dev chain {key_chain}, but the node serves chain \
         {node_chain}; a development key signs only on the dev chain it was made for"
    )]
    DevKeyOtherChain {
        /// The file.
        path: String,
        /// The chain the key was made for.
        key_chain: ChainId,
        /// The node's chain.
        node_chain: ChainId,
    },
    /// A plain key file where the encrypted format was required.
    #[error("{path}: an {kind}, not an encrypted twinctl key file")]
    NotEncrypted {
        /// The file.
        path: String,
        /// What it is.
        kind: KeyFileKind,
    },
}

/// What a key file is, as read without a passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileKind {
    /// twinctl's encrypted format.
    Encrypted,
    /// A plain development key of the dev chain (or devnet) `chain_id`.
    Dev {
        /// The chain it was made for.
        chain_id: ChainId,
    },
    /// A plain node key (`twinledger-node key new`).
    Node,
    /// A plain key file without the format marker (earlier dev chains and devnets).
    Unmarked,
}

impl std::fmt::Display for KeyFileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Encrypted => f.write_str("encrypted key file"),
            Self::Dev { chain_id } => write!(
                f,
                "unencrypted development key of dev chain {}",
                &chain_id.to_hex()[..16]
            ),
            Self::Node => f.write_str("unencrypted node key"),
            Self::Unmarked => f.write_str("unencrypted key of an earlier dev chain"),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    algorithm: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cipher {
    algorithm: String,
    nonce: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u8,
    did: String,
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

/// A plain key file (node/src/keyfile.rs writes them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainFile {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    chain_id: Option<String>,
    did: String,
    secret_hex: String,
    #[serde(default)]
    #[allow(dead_code)] // read so that deny_unknown_fields accepts it
    note: Option<String>,
}

/// A key file as read, before any passphrase.
#[derive(Debug)]
enum Stored {
    Encrypted(KeyFile),
    Plain(PlainFile),
}

fn random<const N: usize>() -> Result<[u8; N], KeyFileError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| KeyFileError::Rng(e.to_string()))?;
    Ok(b)
}

fn derive(
    passphrase: &[u8],
    salt: &[u8],
    memory_kib: u32,
    iterations: u32,
) -> Result<Zeroizing<[u8; 32]>, String> {
    let params = Params::new(memory_kib, iterations, 1, Some(32)).map_err(|e| e.to_string())?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn aad(did: &str) -> Vec<u8> {
    let mut a = b"twinledger-key v1\n".to_vec();
    a.extend_from_slice(did.as_bytes());
    a
}

/// A fresh key from the OS random generator.
pub fn generate() -> Result<Keypair, KeyFileError> {
    loop {
        let mut seed = random::<32>()?;
        let k = Keypair::from_secret(&seed);
        seed.zeroize();
        if PublicKey::from_ed25519_bytes(k.public().as_bytes()).is_ok() {
            return Ok(k);
        }
    }
}

/// Encrypts `key` under `passphrase` into a new file at `path` (mode 0600, never overwriting).
pub fn write(path: &Path, key: &Keypair, passphrase: &[u8]) -> Result<(), KeyFileError> {
    write_with_cost(path, key, passphrase, MEMORY_KIB, ITERATIONS)
}

/// [`write`] with explicit Argon2id cost (tests use a small one).
pub fn write_with_cost(
    path: &Path,
    key: &Keypair,
    passphrase: &[u8],
    memory_kib: u32,
    iterations: u32,
) -> Result<(), KeyFileError> {
    let p = path.display().to_string();
    if passphrase.len() < MIN_PASSPHRASE {
        return Err(KeyFileError::WeakPassphrase);
    }
    if path.exists() {
        return Err(KeyFileError::Exists(p));
    }
    let did = key.public().to_did();
    let salt = random::<16>()?;
    let nonce = random::<24>()?;
    let dk =
        derive(passphrase, &salt, memory_kib, iterations).map_err(|why| KeyFileError::Corrupt {
            path: p.clone(),
            why,
        })?;
    let cipher = XChaCha20Poly1305::new_from_slice(dk.as_ref()).expect("32-byte key");
    let secret = Zeroizing::new(key.secret_bytes());
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: secret.as_ref(),
                aad: &aad(&did),
            },
        )
        .map_err(|_| KeyFileError::Corrupt {
            path: p.clone(),
            why: "encryption failed".into(),
        })?;
    let file = KeyFile {
        version: KEY_FILE_VERSION,
        did,
        kdf: Kdf {
            algorithm: "argon2id".into(),
            memory_kib,
            iterations,
            parallelism: 1,
            salt: hex::encode(salt),
        },
        cipher: Cipher {
            algorithm: "xchacha20poly1305".into(),
            nonce: hex::encode(nonce),
        },
        ciphertext: hex::encode(ct),
    };
    let json = serde_json::to_string_pretty(&file).expect("key file serialises");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let io = |source| KeyFileError::Io {
        path: p.clone(),
        source,
    };
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists(p.clone())
        } else {
            io(e)
        }
    })?;
    f.write_all(json.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Reads a key file's text, refusing one that others can read or one too large to be a key.
fn read_text(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    let p = path.display().to_string();
    let io = |source| KeyFileError::Io {
        path: p.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions { path: p, mode });
        }
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(KeyFileError::Corrupt {
            path: p,
            why: format!("{} bytes, larger than any key file", meta.len()),
        });
    }
    Ok(Zeroizing::new(std::fs::read_to_string(path).map_err(io)?))
}

fn load(path: &Path) -> Result<Stored, KeyFileError> {
    let p = path.display().to_string();
    let text = read_text(path)?;
    let corrupt = |why: String| KeyFileError::Corrupt {
        path: p.clone(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if value.get("secret_hex").is_some() {
        let pf: PlainFile = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        PublicKey::from_did(&pf.did).map_err(|e| corrupt(format!("did: {e}")))?;
        return Ok(Stored::Plain(pf));
    }
    let kf: KeyFile = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    if kf.version != KEY_FILE_VERSION {
        return Err(corrupt(format!("unsupported version {}", kf.version)));
    }
    if kf.kdf.algorithm != "argon2id" || kf.cipher.algorithm != "xchacha20poly1305" {
        return Err(corrupt("unsupported algorithm".into()));
    }
    if kf.kdf.memory_kib > MAX_MEMORY_KIB
        || kf.kdf.iterations > MAX_ITERATIONS
        || kf.kdf.parallelism != 1
    {
        return Err(corrupt("key derivation cost out of range".into()));
    }
    PublicKey::from_did(&kf.did).map_err(|e| corrupt(format!("did: {e}")))?;
    Ok(Stored::Encrypted(kf))
}

/// The kind a plain file declares (its markers must agree with each other).
fn plain_kind(path: &Path, pf: &PlainFile) -> Result<KeyFileKind, KeyFileError> {
    let corrupt = |why: String| KeyFileError::Corrupt {
        path: path.display().to_string(),
        why,
    };
    match (
        pf.format.as_deref(),
        pf.kind.as_deref(),
        pf.chain_id.as_deref(),
    ) {
        (None, None, None) => Ok(KeyFileKind::Unmarked),
        (Some(PLAIN_FORMAT), Some("node"), None) => Ok(KeyFileKind::Node),
        (Some(PLAIN_FORMAT), Some("dev"), Some(c)) => Ok(KeyFileKind::Dev {
            chain_id: ChainId::from_hex(c).map_err(|e| corrupt(format!("chain_id: {e}")))?,
        }),
        (Some(PLAIN_FORMAT), kind, chain) => Err(corrupt(format!(
            "kind {kind:?} with chain_id {chain:?} (expected \"node\" without, or \"dev\" with \
             a chain id)"
        ))),
        (Some(other), _, _) => Err(corrupt(format!("unknown format {other:?}"))),
        (None, _, _) => Err(corrupt("kind or chain_id without format".into())),
    }
}

/// The secret of a plain file, checked against its did.
fn plain_key(path: &Path, pf: &PlainFile) -> Result<Keypair, KeyFileError> {
    let p = path.display().to_string();
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(&pf.secret_hex, seed.as_mut()).map_err(|e| KeyFileError::Corrupt {
        path: p.clone(),
        why: format!("secret_hex is not 64 hex digits: {e}"),
    })?;
    let key = Keypair::from_secret(&seed);
    if key.public().to_did() != pf.did {
        return Err(KeyFileError::Corrupt {
            path: p,
            why: "the did does not match the secret".into(),
        });
    }
    Ok(key)
}

/// The public identity recorded in a key file and what kind of file it is (no passphrase
/// needed; opening checks the identity against the secret).
pub fn inspect(path: &Path) -> Result<(PublicKey, KeyFileKind), KeyFileError> {
    let corrupt = |e: twinledger_core::keys::KeyError| KeyFileError::Corrupt {
        path: path.display().to_string(),
        why: format!("did: {e}"),
    };
    match load(path)? {
        Stored::Encrypted(kf) => Ok((
            PublicKey::from_did(&kf.did).map_err(corrupt)?,
            KeyFileKind::Encrypted,
        )),
        Stored::Plain(pf) => Ok((
            PublicKey::from_did(&pf.did).map_err(corrupt)?,
            plain_kind(path, &pf)?,
        )),
    }
}

/// The public identity recorded in a key file (no passphrase needed; `open` checks it).
pub fn public(path: &Path) -> Result<PublicKey, KeyFileError> {
    inspect(path).map(|(k, _)| k)
}

/// Opens a plain key file (development, node, or unmarked): the key and the file's kind. Who
/// may sign with which kind is the caller's decision (`key::open_key`, `key import`).
pub fn open_plain(path: &Path) -> Result<(Keypair, KeyFileKind), KeyFileError> {
    match load(path)? {
        Stored::Plain(pf) => Ok((plain_key(path, &pf)?, plain_kind(path, &pf)?)),
        Stored::Encrypted(_) => Err(KeyFileError::Corrupt {
            path: path.display().to_string(),
            why: "an encrypted key file, not a plain one".into(),
        }),
    }
}

/// Reads a raw key to import: a plain key file (any kind) or a file holding the 32-byte
/// ed25519 secret as 64 hex digits. Refuses an encrypted key file (nothing to import) and a
/// file others can read.
pub fn read_raw(path: &Path) -> Result<Keypair, KeyFileError> {
    let p = path.display().to_string();
    let text = read_text(path)?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        return match load(path)? {
            Stored::Plain(pf) => {
                plain_kind(path, &pf)?;
                plain_key(path, &pf)
            }
            Stored::Encrypted(_) => Err(KeyFileError::Corrupt {
                path: p,
                why: "already an encrypted twinctl key file; nothing to import".into(),
            }),
        };
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(trimmed, seed.as_mut()).map_err(|e| KeyFileError::Corrupt {
        path: p.clone(),
        why: format!(
            "neither a plain key file nor 64 hex digits of an ed25519 secret ({} characters: {e})",
            trimmed.len()
        ),
    })?;
    let key = Keypair::from_secret(&seed);
    PublicKey::from_ed25519_bytes(key.public().as_bytes()).map_err(|e| KeyFileError::Corrupt {
        path: p,
        why: format!("the secret gives a weak public key: {e}"),
    })?;
    Ok(key)
}

/// Opens a key file with its passphrase.
pub fn open(path: &Path, passphrase: &[u8]) -> Result<Keypair, KeyFileError> {
    let p = path.display().to_string();
    let kf = match load(path)? {
        Stored::Encrypted(kf) => kf,
        Stored::Plain(pf) => {
            return Err(KeyFileError::NotEncrypted {
                path: p,
                kind: plain_kind(path, &pf)?,
            });
        }
    };
    let corrupt = |why: &str| KeyFileError::Corrupt {
        path: p.clone(),
        why: why.into(),
    };
    let salt = hex::decode(&kf.kdf.salt).map_err(|_| corrupt("salt is not hex"))?;
    let nonce: [u8; 24] = hex::decode(&kf.cipher.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| corrupt("nonce is not 24 bytes of hex"))?;
    let ct = hex::decode(&kf.ciphertext).map_err(|_| corrupt("ciphertext is not hex"))?;
    if ct.len() != 48 {
        return Err(corrupt("ciphertext is not 48 bytes (truncated?)"));
    }
    let dk = derive(passphrase, &salt, kf.kdf.memory_kib, kf.kdf.iterations).map_err(|why| {
        KeyFileError::Corrupt {
            path: p.clone(),
            why,
        }
    })?;
    let cipher = XChaCha20Poly1305::new_from_slice(dk.as_ref()).expect("32-byte key");
    let secret = Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &ct,
                    aad: &aad(&kf.did),
                },
            )
            .map_err(|_| KeyFileError::WrongPassphrase(p.clone()))?,
    );
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        secret
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("secret is not 32 bytes"))?,
    );
    let key = Keypair::from_secret(&seed);
    if key.public().to_did() != kf.did {
        return Err(corrupt("the did does not match the secret"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &[u8] = b"correct horse battery staple";

    #[test]
    fn round_trip_and_every_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.key");
        let key = generate().unwrap();
        write_with_cost(&path, &key, PASS, 1024, 1).unwrap();
        assert_eq!(open(&path, PASS).unwrap().public(), key.public());
        assert_eq!(public(&path).unwrap(), key.public());
        assert!(matches!(
            write_with_cost(&path, &key, PASS, 1024, 1),
            Err(KeyFileError::Exists(_))
        ));
        assert!(matches!(
            open(&path, b"wrong passphrase"),
            Err(KeyFileError::WrongPassphrase(_))
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        let edit = |name: &str, new: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, new).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            p
        };
        // Truncated file.
        let t = edit("t.key", text[..text.len() / 2].to_string());
        assert!(matches!(open(&t, PASS), Err(KeyFileError::Corrupt { .. })));
        // Swapped did: the associated data no longer matches.
        let other = generate().unwrap().public().to_did();
        let s = edit("s.key", text.replace(&key.public().to_did(), &other));
        assert!(matches!(
            open(&s, PASS),
            Err(KeyFileError::WrongPassphrase(_))
        ));
        // A flipped ciphertext byte.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ct = v["ciphertext"].as_str().unwrap();
        let flipped = format!("{}{}", if &ct[..1] == "0" { "1" } else { "0" }, &ct[1..]);
        let c = edit("c.key", text.replace(ct, &flipped));
        assert!(matches!(
            open(&c, PASS),
            Err(KeyFileError::WrongPassphrase(_))
        ));
        // A cost no file may ask for.
        let big = edit(
            "b.key",
            text.replace("\"memory_kib\": 1024", "\"memory_kib\": 99999999"),
        );
        assert!(matches!(
            open(&big, PASS),
            Err(KeyFileError::Corrupt { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                open(&path, PASS),
                Err(KeyFileError::Permissions { .. })
            ));
        }
        assert!(matches!(
            write_with_cost(&dir.path().join("w.key"), &key, b"short", 1024, 1),
            Err(KeyFileError::WeakPassphrase)
        ));
    }

    #[test]
    fn plain_files_are_told_apart_by_their_markers_and_never_opened_as_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate().unwrap();
        let chain = ChainId([3; 32]);
        let write_plain = |name: &str, extra: serde_json::Value| {
            let mut v = serde_json::json!({
                "did": key.public().to_did(),
                "secret_hex": hex::encode(key.secret_bytes()),
                "note": "test",
            });
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            let p = dir.path().join(name);
            std::fs::write(&p, v.to_string()).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            p
        };
        let dev = write_plain(
            "dev.key",
            serde_json::json!({"format": PLAIN_FORMAT, "kind": "dev", "chain_id": chain}),
        );
        let node = write_plain(
            "node.key",
            serde_json::json!({"format": PLAIN_FORMAT, "kind": "node"}),
        );
        let old = write_plain("old.key", serde_json::json!({}));
        let bad = write_plain(
            "bad.key",
            serde_json::json!({"format": PLAIN_FORMAT, "kind": "dev"}),
        );
        assert_eq!(
            inspect(&dev).unwrap(),
            (key.public(), KeyFileKind::Dev { chain_id: chain })
        );
        assert_eq!(inspect(&node).unwrap().1, KeyFileKind::Node);
        assert_eq!(inspect(&old).unwrap().1, KeyFileKind::Unmarked);
        assert!(matches!(inspect(&bad), Err(KeyFileError::Corrupt { .. })));
        for p in [&dev, &node, &old] {
            assert_eq!(open_plain(p).unwrap().0.public(), key.public());
            assert_eq!(read_raw(p).unwrap().public(), key.public());
            assert!(matches!(
                open(p, PASS),
                Err(KeyFileError::NotEncrypted { .. })
            ));
        }
        // A plain file whose did is not its secret's.
        let other = generate().unwrap().public().to_did();
        let swapped = write_plain(
            "swapped.key",
            serde_json::json!({"format": PLAIN_FORMAT, "kind": "node", "did": other}),
        );
        assert!(matches!(
            open_plain(&swapped),
            Err(KeyFileError::Corrupt { .. })
        ));
    }
}
