//! Sealed twin replicas (issue #14, ADR 0013): a twin version encrypted at rest in the age v1
//! format, under a fresh per-version data key that only the key custodian holds, wrapped.
//!
//! - [`seal`] / [`open`]: stream a twin version through age (X25519 recipient, STREAM payload of
//!   64 KiB ChaCha20-Poly1305 chunks), in constant memory, hashing plaintext and ciphertext with
//!   BLAKE3 on the way.
//! - [`wrap_for`] / [`unwrap_with`]: a data key wrapped to a requester's ed25519 key (the key of
//!   its `did:key`), as an age file to its `ssh-ed25519` recipient.
//! - [`store`]: where sealed versions live ([`store::LocalStore`], [`store::ObjectStoreBackend`]).
//! - [`custodian`]: the custodian's data keys, wrapped at rest under its master key, with
//!   crypto-shredding ([`custodian::KeyStore::erase`]).
//!
//! A [`DataKey`] never leaves this crate's API unwrapped: it has no accessor for its bytes, its
//! `Debug` is redacted, and it is zeroized on drop.

use std::io::{self, BufReader, Read, Write};
use std::str::FromStr as _;

use zeroize::{Zeroize as _, Zeroizing};

pub mod custodian;
mod error;
pub mod store;

pub use error::SealError;

/// Size of an age STREAM plaintext chunk (C2SP age v1): tampering is reported per chunk.
pub const CHUNK_SIZE: u64 = 64 * 1024;

/// Buffer used to stream plaintext and ciphertext (memory use of [`seal`] and [`open`] is a
/// small constant multiple of it, whatever the size of the file).
const BUF_SIZE: usize = 64 * 1024;

/// Label that starts the plaintext of a data key wrapped for a requester ([`wrap_for`]).
const RELEASE_LABEL: &[u8] = b"twinledger-data-key-v1\n";

/// A sealed version: `twin` (the twin id in lowercase hex) and `version`. It names the data key
/// in the custodian and the ciphertext in a store, and it is bound into every wrapped form of the
/// data key, so a key wrapped for one version cannot be passed off as another's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionId {
    twin_hex: String,
    version: u64,
}

/// Longest twin id accepted, in hex digits (a twin id is a 32-byte hash: 64 digits).
pub const MAX_TWIN_HEX: usize = 128;

impl VersionId {
    /// `twin_hex` must be 2 to [`MAX_TWIN_HEX`] lowercase hex digits, an even number (it names
    /// files and objects, so nothing else is accepted).
    pub fn new(twin_hex: &str, version: u64) -> Result<Self, SealError> {
        let ok = (2..=MAX_TWIN_HEX).contains(&twin_hex.len())
            && twin_hex.len().is_multiple_of(2)
            && twin_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(SealError::InvalidTwinId {
                twin: twin_hex.chars().take(MAX_TWIN_HEX + 1).collect(),
            });
        }
        Ok(Self {
            twin_hex: twin_hex.to_owned(),
            version,
        })
    }

    /// The twin id, lowercase hex.
    pub fn twin_hex(&self) -> &str {
        &self.twin_hex
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// `<twin hex>/<version>`: the relative name of this version in a store.
    pub fn object_name(&self) -> String {
        format!("{}/{}", self.twin_hex, self.version)
    }

    /// The bytes bound into a wrapped data key: `<twin hex>\n<version>\n`.
    fn binding(&self) -> Vec<u8> {
        format!("{}\n{}\n", self.twin_hex, self.version).into_bytes()
    }
}

impl std::fmt::Display for VersionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "twin {} version {}", self.twin_hex, self.version)
    }
}

/// A version's data key: the secret scalar of a fresh age X25519 identity. Zeroized on drop,
/// redacted in `Debug`, with no accessor for its bytes: it leaves this crate only wrapped
/// ([`wrap_for`], [`custodian::KeyStore`]).
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh key from the operating system's RNG.
    pub fn generate() -> Result<Self, SealError> {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(k.as_mut()).map_err(|e| SealError::Rng(e.to_string()))?;
        Ok(Self(k))
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(Self(k))
    }

    /// The age identity (`AGE-SECRET-KEY-1…`) of this key.
    fn identity(&self) -> age::x25519::Identity {
        age_identity(&self.0)
    }

    /// The bytes, for the wrapping code of this crate (and its tests) only.
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// The age recipient (`age1…`) the payload is encrypted to: public, safe to log.
    pub fn recipient(&self) -> String {
        self.identity().to_public().to_string()
    }
}

/// The age X25519 identity with this secret scalar (its bech32 text form, then parsed).
fn age_identity(secret: &[u8; 32]) -> age::x25519::Identity {
    use bech32::ToBase32 as _;
    let lower = Zeroizing::new(
        bech32::encode(
            "age-secret-key-",
            secret.to_base32(),
            bech32::Variant::Bech32,
        )
        .expect("a valid hrp"),
    );
    let upper = Zeroizing::new(lower.to_uppercase());
    age::x25519::Identity::from_str(&upper).expect("a bech32 age secret key parses")
}

/// What [`seal`] made. `data_key` goes to the custodian ([`custodian::KeyStore::put`]); the
/// hashes and sizes go on the ledger (the twin anchor).
#[derive(Debug)]
pub struct Sealed {
    /// The version's fresh data key.
    pub data_key: DataKey,
    /// BLAKE3 of the ciphertext bytes (the whole age file).
    pub ciphertext_hash: [u8; 32],
    /// Length of the ciphertext in bytes.
    pub ciphertext_size: u64,
    /// The salted commitment to the plaintext, [`commit`]: `H_"twinledger v1 commitment"(salt
    /// || plaintext)`, the 32-byte salt drawn fresh and sealed inside the file (the first bytes
    /// of the age payload). Once the data key is erased the salt is gone with it, so the
    /// commitment on the ledger can no longer be opened, nor a guess of the data confirmed.
    pub plaintext_hash: [u8; 32],
    /// Length of the plaintext in bytes (without the salt).
    pub size: u64,
}

/// Length of the salt that opens a sealed version's plaintext commitment.
pub const SALT_LEN: usize = 32;

/// The BLAKE3 key-derivation context of the plaintext commitment (PROTOCOL.md §2.3).
pub const COMMITMENT_CONTEXT: &str = "twinledger v1 commitment";

/// `H_"twinledger v1 commitment"(salt || data)`: the commitment of PROTOCOL.md §2.3.
pub fn commit(salt: &[u8; SALT_LEN], data: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(COMMITMENT_CONTEXT);
    h.update(salt);
    h.update(data);
    *h.finalize().as_bytes()
}

/// What [`open`] checked and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The salted commitment to the plaintext written (see [`Sealed::plaintext_hash`]).
    pub plaintext_hash: [u8; 32],
    /// Length of the plaintext written.
    pub size: u64,
    /// BLAKE3 of the ciphertext read.
    pub ciphertext_hash: [u8; 32],
    /// Length of the ciphertext read.
    pub ciphertext_size: u64,
}

/// What the opener expects (from the ledger's anchor); each field given is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expected {
    /// The ciphertext's BLAKE3.
    pub ciphertext_hash: Option<[u8; 32]>,
    /// The ciphertext's length: with it, a cut file is reported as truncated wherever it is cut.
    pub ciphertext_size: Option<u64>,
    /// The plaintext's salted commitment (what the ledger anchored).
    pub plaintext_hash: Option<[u8; 32]>,
}

/// Counts and hashes what passes through; remembers whether the inner stream itself failed
/// (so that its errors are told apart from age's).
struct Hashing<T> {
    inner: T,
    hasher: blake3::Hasher,
    count: u64,
    failed: bool,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
            count: 0,
            failed: false,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

/// Reads `reader` to its end, encrypting it to a fresh data key, and writes the age file to
/// `writer`. Streaming: memory use does not depend on the size.
pub fn seal<R: Read, W: Write>(reader: R, writer: W) -> Result<Sealed, SealError> {
    let data_key = DataKey::generate()?;
    let recipient = data_key.identity().to_public();
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as _))
        .map_err(|e| SealError::Age(e.to_string()))?;
    let mut out = Hashing::new(writer);
    let mut input = Hashing::new(reader);
    let write_err = |source| SealError::Io {
        stream: "ciphertext output",
        source,
    };
    // The salt of the plaintext commitment, sealed first, inside the payload.
    let mut salt = Zeroizing::new([0u8; SALT_LEN]);
    getrandom::fill(salt.as_mut()).map_err(|e| SealError::Rng(e.to_string()))?;
    let mut commitment = blake3::Hasher::new_derive_key(COMMITMENT_CONTEXT);
    commitment.update(salt.as_ref());
    {
        let mut stream = encryptor.wrap_output(&mut out).map_err(write_err)?;
        stream.write_all(salt.as_ref()).map_err(write_err)?;
        let mut buf = Zeroizing::new(vec![0u8; BUF_SIZE]);
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(SealError::Io {
                        stream: "plaintext input",
                        source,
                    });
                }
            };
            commitment.update(&buf[..n]);
            stream.write_all(&buf[..n]).map_err(write_err)?;
        }
        stream.finish().map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    Ok(Sealed {
        data_key,
        ciphertext_hash: *out.hasher.finalize().as_bytes(),
        ciphertext_size: out.count,
        plaintext_hash: *commitment.finalize().as_bytes(),
        size: input.count,
    })
}

/// Decrypts the age file read from `reader` with `key`, writing the plaintext to `writer`, and
/// checks what `expected` gives.
///
/// The plaintext is written as its chunks authenticate: on an error, what was written is not
/// the version (write to a temporary file and keep it only on `Ok`). Errors: [`SealError::WrongKey`],
/// [`SealError::TamperedHeader`], [`SealError::TamperedChunk`] (with the chunk and its offset),
/// [`SealError::Truncated`], [`SealError::NotSealed`], [`SealError::CiphertextMismatch`],
/// [`SealError::PlaintextMismatch`], [`SealError::Io`].
pub fn open<R: Read, W: Write>(
    reader: R,
    writer: W,
    key: &DataKey,
    expected: &Expected,
) -> Result<Opened, SealError> {
    let identity = key.identity();
    let mut input = BufReader::with_capacity(BUF_SIZE, Hashing::new(reader));
    let decryptor = match age::Decryptor::new_buffered(&mut input) {
        Ok(d) => d,
        Err(e) => return Err(header_error(e, input.get_ref())),
    };
    let mut stream = match decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)) {
        Ok(s) => s,
        Err(e) => return Err(header_error(e, input.get_ref())),
    };
    let mut out = Hashing::new(writer);
    let mut buf = Zeroizing::new(vec![0u8; BUF_SIZE]);
    let mut plain: u64 = 0;
    // The first SALT_LEN bytes of the payload are the commitment's salt, not the data.
    let mut salt = Zeroizing::new([0u8; SALT_LEN]);
    let mut salt_len = 0usize;
    let mut commitment = blake3::Hasher::new_derive_key(COMMITMENT_CONTEXT);
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                drop(stream);
                return Err(payload_error(e, plain, &mut input, expected));
            }
        };
        plain += n as u64;
        let mut data = &buf[..n];
        if salt_len < SALT_LEN {
            let take = (SALT_LEN - salt_len).min(data.len());
            salt[salt_len..salt_len + take].copy_from_slice(&data[..take]);
            salt_len += take;
            data = &data[take..];
            if salt_len == SALT_LEN {
                commitment.update(salt.as_ref());
            }
        }
        commitment.update(data);
        out.write_all(data).map_err(|source| SealError::Io {
            stream: "plaintext output",
            source,
        })?;
    }
    if salt_len < SALT_LEN {
        // An authenticated payload shorter than its salt was not made by `seal`.
        return Err(SealError::NotSealed(format!(
            "its payload is {salt_len} bytes, shorter than the {SALT_LEN}-byte commitment salt"
        )));
    }
    drop(stream);
    out.flush().map_err(|source| SealError::Io {
        stream: "plaintext output",
        source,
    })?;
    buf.zeroize();
    let inner = input.into_inner();
    let opened = Opened {
        plaintext_hash: *commitment.finalize().as_bytes(),
        size: out.count,
        ciphertext_hash: *inner.hasher.finalize().as_bytes(),
        ciphertext_size: inner.count,
    };
    if let Some(size) = expected.ciphertext_size
        && size != opened.ciphertext_size
    {
        // Authenticated but of another length: another sealed file than the one anchored.
        return Err(SealError::CiphertextMismatch {
            expected: format!("{size} bytes"),
            actual: format!("{} bytes", opened.ciphertext_size),
        });
    }
    if let Some(h) = expected.ciphertext_hash
        && h != opened.ciphertext_hash
    {
        return Err(SealError::CiphertextMismatch {
            expected: hex::encode(h),
            actual: hex::encode(opened.ciphertext_hash),
        });
    }
    if let Some(h) = expected.plaintext_hash
        && h != opened.plaintext_hash
    {
        return Err(SealError::PlaintextMismatch {
            expected: hex::encode(h),
            actual: hex::encode(opened.plaintext_hash),
        });
    }
    Ok(opened)
}

fn header_error<R>(e: age::DecryptError, input: &Hashing<R>) -> SealError {
    match e {
        age::DecryptError::NoMatchingKeys => SealError::WrongKey,
        age::DecryptError::InvalidMac => SealError::TamperedHeader,
        age::DecryptError::Io(source) if input.failed => SealError::Io {
            stream: "ciphertext input",
            source,
        },
        age::DecryptError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            SealError::Truncated {
                read: input.count,
                expected: None,
            }
        }
        // A stanza whose body does not decrypt under our recipient's tag: altered header.
        age::DecryptError::DecryptionFailed => SealError::TamperedHeader,
        other => SealError::NotSealed(other.to_string()),
    }
}

fn payload_error<R: Read>(
    e: io::Error,
    plain: u64,
    input: &mut BufReader<Hashing<R>>,
    expected: &Expected,
) -> SealError {
    if input.get_ref().failed {
        return SealError::Io {
            stream: "ciphertext input",
            source: e,
        };
    }
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return SealError::Truncated {
            read: input.get_ref().count,
            expected: expected.ciphertext_size,
        };
    }
    // A chunk failed to authenticate: tampered, or cut inside a chunk. With the anchored length,
    // read the rest to tell them apart.
    if let Some(size) = expected.ciphertext_size {
        let _ = io::copy(input, &mut io::sink());
        let read = input.get_ref().count;
        if read < size {
            return SealError::Truncated {
                read,
                expected: Some(size),
            };
        }
    }
    // `plain` counts the payload (the salt, then the data): the offset reported is the data's.
    let chunk = plain / CHUNK_SIZE;
    SealError::TamperedChunk {
        chunk,
        plaintext_offset: (chunk * CHUNK_SIZE).saturating_sub(SALT_LEN as u64),
    }
}

/// The ssh wire form of an ed25519 public key: string "ssh-ed25519", string key.
fn ssh_ed25519_wire(public: &[u8; 32]) -> Vec<u8> {
    let mut w = Vec::with_capacity(51);
    w.extend_from_slice(&11u32.to_be_bytes());
    w.extend_from_slice(b"ssh-ed25519");
    w.extend_from_slice(&32u32.to_be_bytes());
    w.extend_from_slice(public);
    w
}

/// The age `ssh-ed25519` recipient of a raw ed25519 public key (a `did:key`'s 32 bytes).
fn ssh_recipient(public: &[u8; 32]) -> Result<age::ssh::Recipient, SealError> {
    use base64::Engine as _;
    let line = format!(
        "ssh-ed25519 {}",
        base64::engine::general_purpose::STANDARD.encode(ssh_ed25519_wire(public))
    );
    age::ssh::Recipient::from_str(&line).map_err(|_| SealError::InvalidRecipient {
        public_hex: hex::encode(public),
    })
}

/// The age `ssh-ed25519` identity of an ed25519 key, through the unencrypted OpenSSH private key
/// format (PROTOCOL.key of OpenSSH), the only way age 0.12 takes one; the text is zeroized.
fn ssh_identity(secret: &[u8; 32], public: &[u8; 32]) -> age::ssh::Identity {
    use base64::Engine as _;
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&u32::try_from(s.len()).expect("short").to_be_bytes());
        out.extend_from_slice(s);
    }
    let wire = ssh_ed25519_wire(public);
    let mut private = Zeroizing::new(Vec::with_capacity(160));
    private.extend_from_slice(&[0x74, 0x77, 0x69, 0x6e, 0x74, 0x77, 0x69, 0x6e]); // checkint x2
    string(&mut private, b"ssh-ed25519");
    string(&mut private, public);
    let mut pair = Zeroizing::new([0u8; 64]);
    pair[..32].copy_from_slice(secret);
    pair[32..].copy_from_slice(public);
    string(&mut private, pair.as_ref());
    string(&mut private, b"");
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }
    let mut blob = Zeroizing::new(Vec::with_capacity(300));
    blob.extend_from_slice(b"openssh-key-v1\0");
    string(&mut blob, b"none");
    string(&mut blob, b"none");
    string(&mut blob, b"");
    blob.extend_from_slice(&1u32.to_be_bytes());
    string(&mut blob, &wire);
    string(&mut blob, &private);
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(blob.as_slice()));
    let mut pem = Zeroizing::new(String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
    for line in b64.as_bytes().chunks(70) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    age::ssh::Identity::from_buffer(pem.as_bytes(), None)
        .expect("an unencrypted OpenSSH ed25519 key parses")
}

/// Wraps `key` (of the version `id`) for the holder of the ed25519 key `requester_public`: an
/// age file to its `ssh-ed25519` recipient, whose plaintext is `twinledger-data-key-v1\n`, the
/// binding `<twin hex>\n<version>\n` and the 32 key bytes. Only that ed25519 secret opens it
/// ([`unwrap_with`]).
pub fn wrap_for(
    key: &DataKey,
    id: &VersionId,
    requester_public: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    let recipient = ssh_recipient(requester_public)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(64 + id.twin_hex.len()));
    plain.extend_from_slice(RELEASE_LABEL);
    plain.extend_from_slice(&id.binding());
    plain.extend_from_slice(key.secret());
    age::encrypt(&recipient, &plain).map_err(|e| SealError::Age(e.to_string()))
}

/// Opens what [`wrap_for`] made for the ed25519 key whose 32-byte secret (seed) is
/// `requester_secret`, checking that it is the data key of `id`. Errors:
/// [`SealError::WrongKey`] (wrapped for another key), [`SealError::WrappedKeyInvalid`].
pub fn unwrap_with(
    wrapped: &[u8],
    id: &VersionId,
    requester_secret: &[u8; 32],
) -> Result<DataKey, SealError> {
    let signing = ed25519_dalek::SigningKey::from_bytes(requester_secret);
    let public = signing.verifying_key().to_bytes();
    let identity = ssh_identity(requester_secret, &public);
    let plain = Zeroizing::new(age::decrypt(&identity, wrapped).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => SealError::WrongKey,
        other => SealError::WrappedKeyInvalid(format!("not a wrapped data key: {other}")),
    })?);
    parse_bound(&plain, RELEASE_LABEL, id)
}

/// Parses `label || binding(id) || 32 bytes`.
fn parse_bound(plain: &[u8], label: &[u8], id: &VersionId) -> Result<DataKey, SealError> {
    let rest = plain
        .strip_prefix(label)
        .ok_or_else(|| SealError::WrappedKeyInvalid("unknown label".into()))?;
    let binding = id.binding();
    let Some(key) = rest.strip_prefix(binding.as_slice()) else {
        let other =
            String::from_utf8_lossy(&rest[..rest.len().saturating_sub(32)]).replace('\n', " ");
        return Err(SealError::WrappedKeyInvalid(format!(
            "the key of another version ({}), not of {id}",
            other.trim()
        )));
    };
    DataKey::from_bytes(key).ok_or_else(|| SealError::WrappedKeyInvalid("not 32 key bytes".into()))
}
