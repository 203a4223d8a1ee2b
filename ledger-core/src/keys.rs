//! Identities, keys and signatures (PROTOCOL.md §3).
//!
//! Every identity (patient, actor, organisation, validator, auditor) is a public key. Keys and
//! signatures carry an algorithm tag in their encoding; ed25519 (tag 0) is the only algorithm
//! today, so a post-quantum scheme can be added as a new tag without a new chain.
//! People see keys as W3C `did:key` strings (multicodec `ed25519-pub` 0xed01, base58btc).
//!
//! Every signature is over a domain-separated message (see [`signing_message`]) that names the
//! message type and the chain id, so a signature from one chain or one message type never
//! verifies as another.
//!
//! Signature validity is ZIP-215 (PROTOCOL.md §3 since 2.1, ADR 0009): `A` and `R` must decode
//! to curve points (non-canonical encodings accepted), `S < l`, and the cofactored equation
//! `[8][S]B = [8]R + [8][k]A` must hold ([`PublicKey::verify_raw`], [`zip215::verify`]; the
//! `verify_batch` functions apply it to many, one at a time, naming the first bad one). Weak
//! (small-order) keys are still refused as identities ([`PublicKey::from_ed25519_bytes`]): that
//! is a rule on keys, not on signatures (a small-order key "signs" every message with `S = 0`).

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::ChainId;

/// Signature domains (the message type part of every signed message). Changing one is a
/// protocol version bump.
pub mod sig_domain {
    /// A ledger event, signed by its author.
    pub const EVENT: &str = "twinledger/v1/event";
    /// A validator's commit vote: a checkpoint (height, log, block hash) and round.
    pub const COMMIT: &str = "twinledger/v1/commit";
    /// A validator's approval of a governance action.
    pub const GOVERNANCE: &str = "twinledger/v1/governance";
    /// The new key's acceptance of a patient key rotation (proof of possession).
    pub const KEY_ROTATION: &str = "twinledger/v1/key-rotation";
    /// An auditor's cosignature of a checkpoint it witnessed (body: the checkpoint's encoding).
    pub const COSIGN: &str = "twinledger/v1/checkpoint-cosign";
    /// A signed HTTP read request to a node's API (who is asking, proven without a secret).
    pub const HTTP_REQUEST: &str = "twinledger/v1/http-request";
    /// A consensus prevote, or a precommit for nil (PROTOCOL.md §12.1). A precommit for a block
    /// is signed as a [`COMMIT`] vote.
    pub const VOTE: &str = "twinledger/v1/vote";
    /// A consensus block proposal (PROTOCOL.md §12.2).
    pub const PROPOSAL: &str = "twinledger/v1/proposal";
}

/// The message actually signed: `u8(len(domain)) || domain || chain_id || body`.
pub fn signing_message(domain: &str, chain_id: &ChainId, body: &[u8]) -> Vec<u8> {
    let d = domain.as_bytes();
    debug_assert!(d.len() < 256);
    let mut msg = Vec::with_capacity(1 + d.len() + 32 + body.len());
    msg.push(u8::try_from(d.len()).unwrap_or(u8::MAX));
    msg.extend_from_slice(d);
    msg.extend_from_slice(chain_id.as_bytes());
    msg.extend_from_slice(body);
    msg
}

/// What is wrong with a key, a did:key string or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a `did:key:z...` string.
    #[error("malformed did:key: {0}")]
    MalformedDid(&'static str),
    /// The base58btc part does not decode.
    #[error("malformed did:key: base58btc does not decode ({0})")]
    Base58(String),
    /// The multicodec prefix is not ed25519-pub (0xed 0x01).
    #[error("unsupported did:key: multicodec prefix {0} is not ed25519-pub (ed01)")]
    UnsupportedCodec(String),
    /// Wrong number of key bytes.
    #[error("malformed ed25519 public key: {0} bytes, expected 32")]
    KeyLength(usize),
    /// The 32 bytes are not a valid ed25519 point, or (as an identity, [`PublicKey`]) are a weak
    /// (small-order) key.
    #[error("invalid ed25519 public key: not a valid point, or a weak (small-order) key")]
    InvalidPoint,
    /// The signature does not verify for this key and message.
    #[error("signature does not verify")]
    BadSignature,
    /// A hex signature string is malformed.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
}

const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];

/// Keys already found to be valid identities in this process. Checking a key decompresses its
/// point (a field exponentiation, about as costly as a fifth of a signature check), and every
/// event carries two or three keys that a node decodes several times (submission, gossip,
/// proposal, the check of the bytes it stores): the verdict, a pure function of the 32 bytes,
/// is remembered instead. Only valid keys are kept; a full shard is emptied, so memory stays
/// bounded (16 × 8,192 keys, 4 MiB at most).
mod valid_keys {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};

    const SHARDS: usize = 16;
    const PER_SHARD: usize = 8192;

    type Shard = Mutex<HashSet<[u8; 32]>>;

    fn shards() -> &'static [Shard; SHARDS] {
        static CACHE: OnceLock<[Shard; SHARDS]> = OnceLock::new();
        CACHE.get_or_init(|| std::array::from_fn(|_| Mutex::new(HashSet::new())))
    }

    fn shard(bytes: &[u8; 32]) -> std::sync::MutexGuard<'static, HashSet<[u8; 32]>> {
        let s = &shards()[usize::from(bytes[31] & 0x0f)];
        // A poisoned shard only ever holds valid keys: keep using it.
        s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn contains(bytes: &[u8; 32]) -> bool {
        shard(bytes).contains(bytes)
    }

    pub(super) fn insert(bytes: &[u8; 32]) {
        let mut s = shard(bytes);
        if s.len() >= PER_SHARD {
            s.clear();
        }
        s.insert(*bytes);
    }
}

/// A public key identifying someone on the ledger. Always a valid, non-weak ed25519 point
/// (checked on construction and decoding). Kept as its 32 compressed bytes: small in state
/// tables and errors; the point is decompressed when a signature is checked.
///
/// Weak keys stay refused under 2.1 (PROTOCOL.md §3): ZIP-215 accepts a signature by a
/// small-order `A` whenever `[8]R = [8][S]B` (e.g. `R` small-order and `S = 0`, for any
/// message), so such a key would let anyone sign as its identity. Refusing it is a rule on
/// which bytes are an identity, applied when a key is decoded, and has no bearing on whether
/// single and batch verification agree.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// From the 32-byte compressed point; refuses invalid points and weak keys.
    pub fn from_ed25519_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        if valid_keys::contains(bytes) {
            return Ok(Self(*bytes));
        }
        let vk = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPoint)?;
        if vk.is_weak() {
            return Err(KeyError::InvalidPoint);
        }
        valid_keys::insert(bytes);
        Ok(Self(*bytes))
    }

    /// The 32-byte compressed point.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `did:key:z6Mk...`
    pub fn to_did(&self) -> String {
        let mut raw = Vec::with_capacity(34);
        raw.extend_from_slice(&ED25519_MULTICODEC);
        raw.extend_from_slice(&self.0);
        format!("did:key:z{}", bs58::encode(raw).into_string())
    }

    /// Parses a `did:key` string (ed25519 only), naming what is wrong with bad input.
    pub fn from_did(s: &str) -> Result<Self, KeyError> {
        let rest = s
            .strip_prefix("did:key:")
            .ok_or(KeyError::MalformedDid("does not start with \"did:key:\""))?;
        let b58 = rest.strip_prefix('z').ok_or(KeyError::MalformedDid(
            "multibase prefix is not 'z' (base58btc)",
        ))?;
        if b58.len() > 64 {
            return Err(KeyError::MalformedDid("too long for an ed25519 did:key"));
        }
        let raw = bs58::decode(b58)
            .into_vec()
            .map_err(|e| KeyError::Base58(e.to_string()))?;
        if raw.len() < 2 || raw[..2] != ED25519_MULTICODEC {
            return Err(KeyError::UnsupportedCodec(hex::encode(
                &raw[..raw.len().min(2)],
            )));
        }
        let key: [u8; 32] = raw[2..]
            .try_into()
            .map_err(|_| KeyError::KeyLength(raw.len() - 2))?;
        Self::from_ed25519_bytes(&key)
    }

    /// Verifies `signature` over `signing_message(domain, chain_id, body)` (ZIP-215, §3).
    pub fn verify(
        &self,
        domain: &str,
        chain_id: &ChainId,
        body: &[u8],
        signature: &Signature,
    ) -> Result<(), KeyError> {
        let msg = signing_message(domain, chain_id, body);
        self.verify_raw(&msg, signature)
    }

    /// Verifies a signature over an already-built signing message: the protocol's rule,
    /// ZIP-215 ([`zip215::verify`]).
    pub fn verify_raw(&self, msg: &[u8], signature: &Signature) -> Result<(), KeyError> {
        zip215::verify(&self.0, msg, signature)
    }

    /// The dalek key (decompresses the point). For key handling only: signatures are checked
    /// with [`PublicKey::verify_raw`] (ZIP-215), never with dalek's `verify`/`verify_strict`.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::from_bytes(&self.0).expect("a PublicKey is a valid point by construction")
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_did())
    }
}
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_did())
    }
}
impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_did(s)
    }
}

/// The binary form: an algorithm-tagged enum (tag 0 = ed25519, then 32 raw bytes).
#[derive(Serialize, Deserialize)]
enum KeyRepr {
    Ed25519([u8; 32]),
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_did())
        } else {
            KeyRepr::Ed25519(*self.as_bytes()).serialize(s)
        }
    }
}
impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Self::from_did(&s).map_err(serde::de::Error::custom)
        } else {
            let KeyRepr::Ed25519(b) = KeyRepr::deserialize(d)?;
            if UNCHECKED_KEYS.with(std::cell::Cell::get) {
                return Ok(Self(b));
            }
            Self::from_ed25519_bytes(&b).map_err(serde::de::Error::custom)
        }
    }
}

std::thread_local! {
    /// Set only inside [`with_unchecked_keys`].
    static UNCHECKED_KEYS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a binary decode) without checking that decoded keys are valid, non-weak points:
/// only for data whose every key byte is then checked against a commitment that was made when
/// each key was checked (a state snapshot, whose records must rebuild to a certified state
/// root, `State::from_snapshot`). Keys decoded elsewhere, before or after, are checked as usual.
pub(crate) fn with_unchecked_keys<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            UNCHECKED_KEYS.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(UNCHECKED_KEYS.with(|c| c.replace(true)));
    f()
}

/// A signature (ed25519, 64 bytes). Binary: tag 0 then 64 raw bytes; JSON: 128 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

#[derive(Serialize, Deserialize)]
enum SigRepr {
    Ed25519(([u8; 32], [u8; 32])),
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(self.0))
        } else {
            let mut r = [0u8; 32];
            let mut sv = [0u8; 32];
            r.copy_from_slice(&self.0[..32]);
            sv.copy_from_slice(&self.0[32..]);
            SigRepr::Ed25519((r, sv)).serialize(s)
        }
    }
}
impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let mut out = [0u8; 64];
            hex::decode_to_slice(&s, &mut out).map_err(|e| {
                serde::de::Error::custom(KeyError::MalformedSignature(e.to_string()))
            })?;
            Ok(Self(out))
        } else {
            let SigRepr::Ed25519((r, sv)) = SigRepr::deserialize(d)?;
            let mut out = [0u8; 64];
            out[..32].copy_from_slice(&r);
            out[32..].copy_from_slice(&sv);
            Ok(Self(out))
        }
    }
}

/// A signing key held by its owner. Core never generates keys (no randomness here): callers
/// pass 32 secret bytes from their own RNG or key file. The secret is zeroised on drop.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public().to_did())
    }
}

impl Keypair {
    /// From 32 secret bytes (an ed25519 seed).
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(secret))
    }

    /// The 32 secret bytes, for the key-file writer.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public identity. A random seed yields a weak key with negligible probability; the
    /// caller's key generator should retry in that case (`PublicKey::from_ed25519_bytes`).
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `signing_message(domain, chain_id, body)`.
    pub fn sign(&self, domain: &str, chain_id: &ChainId, body: &[u8]) -> Signature {
        let msg = signing_message(domain, chain_id, body);
        Signature(self.0.sign(&msg).to_bytes())
    }
}

/// Verifies many `(key, message, signature)` triples, as an auditor replaying a chain does:
/// `Ok` only if every signature passes [`PublicKey::verify_raw`] (ZIP-215, the protocol's rule,
/// PROTOCOL.md §3), otherwise `Err` with the index of the first one that does not. Checked one
/// at a time here; the node checks many at once with ed25519-zebra's batch equation
/// (`twinledger_node::verify`), which decides the same.
pub fn verify_batch(items: &[(PublicKey, Vec<u8>, Signature)]) -> Result<(), usize> {
    zip215::check_all(
        items
            .iter()
            .map(|(key, msg, sig)| (&key.0, msg.as_slice(), sig)),
    )
}

/// The signature rule (PROTOCOL.md §3, 2.1) on raw key bytes: ZIP-215.
///
/// These take any 32 bytes as `A`, including the weak (small-order) keys that [`PublicKey`]
/// refuses as identities, so that the rule itself can be checked against the ZIP-215 edge
/// cases (`ledger-core/tests/zip215.rs`, `docs/protocol-vectors.json` key `zip215`).
pub mod zip215 {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::IsIdentity as _;
    use sha2::{Digest as _, Sha512};

    use super::{KeyError, Signature};

    /// Verifies `signature` (`R || S`) by the key encoded as `key` (`A`) over `msg`:
    /// `A` and `R` decode to curve points (non-canonical encodings accepted), `S < l`, and
    /// `[8][S]B = [8]R + [8][k]A` with `k = SHA-512(R || A || msg) mod l` over the bytes as
    /// given. [`KeyError::InvalidPoint`] if `A` is not a point encoding, otherwise
    /// [`KeyError::BadSignature`] if the signature is not valid.
    ///
    /// Written on curve25519-dalek's group operations, as ed25519-zebra's `verify` is (ADR
    /// 0009): the core keeps no crate that carries RNG traits. The 196 ZIP-215 edge cases and
    /// the `zip215` golden vectors pin it; the node's batch check (ed25519-zebra) is tested to
    /// agree with it.
    pub fn verify(key: &[u8; 32], msg: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let a = CompressedEdwardsY(*key)
            .decompress()
            .ok_or(KeyError::InvalidPoint)?;
        let (r_bytes, s_bytes) = signature.0.split_at(32);
        let r_bytes: [u8; 32] = r_bytes.try_into().expect("32 bytes");
        let s_bytes: [u8; 32] = s_bytes.try_into().expect("32 bytes");
        let r = CompressedEdwardsY(r_bytes)
            .decompress()
            .ok_or(KeyError::BadSignature)?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
            .ok_or(KeyError::BadSignature)?;
        let hash: [u8; 64] = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(key)
            .chain_update(msg)
            .finalize()
            .into();
        let k = Scalar::from_bytes_mod_order_wide(&hash);
        // [S]B - [k]A, then the cofactored check [8]([S]B - [k]A - R) = 0.
        let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s);
        if (sb_minus_ka - r).mul_by_cofactor().is_identity() {
            Ok(())
        } else {
            Err(KeyError::BadSignature)
        }
    }

    /// Verifies many `(A, message, signature)` triples: `Ok` iff [`verify`] accepts each,
    /// otherwise `Err` with the index of the first it refuses.
    pub fn verify_batch(items: &[([u8; 32], &[u8], Signature)]) -> Result<(), usize> {
        check_all(items.iter().map(|(key, msg, sig)| (key, *msg, sig)))
    }

    /// Checks each triple in order and names the first refused. One at a time: the batch
    /// equation needs an RNG-trait crate, so it lives in the node (`twinledger_node::verify`),
    /// which decides the same (ZIP-215 is cofactored) and names the first bad one with this.
    pub(super) fn check_all<'a>(
        mut items: impl Iterator<Item = (&'a [u8; 32], &'a [u8], &'a Signature)>,
    ) -> Result<(), usize> {
        items
            .position(|(key, msg, sig)| verify(key, msg, sig).is_err())
            .map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(n: u8) -> Keypair {
        Keypair::from_secret(&[n; 32])
    }

    #[test]
    fn did_round_trip() {
        let pk = kp(1).public();
        let did = pk.to_did();
        assert!(did.starts_with("did:key:z6Mk"), "{did}");
        assert_eq!(PublicKey::from_did(&did).unwrap(), pk);
    }

    /// W3C did:key test vector (did-method-key spec, ed25519 section).
    #[test]
    fn did_w3c_vector() {
        let did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        let pk = PublicKey::from_did(did).unwrap();
        assert_eq!(pk.to_did(), did);
    }

    #[test]
    fn did_errors_name_the_problem() {
        let short = format!(
            "did:key:z{}",
            bs58::encode([0xed, 0x01, 1, 2, 3]).into_string()
        );
        let cases = [
            ("did:web:example", "does not start"),
            ("did:key:6Mk", "multibase prefix"),
            ("did:key:z0OIl", "base58btc"),
            // multicodec secp256k1-pub (0xe7 0x01)
            (
                "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
                "ed25519-pub",
            ),
            (short.as_str(), "3 bytes, expected 32"),
        ];
        for (input, want) in cases {
            let err = PublicKey::from_did(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn signatures_are_domain_and_chain_separated() {
        let k = kp(2);
        let chain = ChainId([7; 32]);
        let sig = k.sign(sig_domain::EVENT, &chain, b"body");
        assert!(
            k.public()
                .verify(sig_domain::EVENT, &chain, b"body", &sig)
                .is_ok()
        );
        assert_eq!(
            k.public().verify(sig_domain::COMMIT, &chain, b"body", &sig),
            Err(KeyError::BadSignature)
        );
        assert_eq!(
            k.public()
                .verify(sig_domain::EVENT, &ChainId([8; 32]), b"body", &sig),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (small order) encodes as 0x01 followed by zeros.
        let mut b = [0u8; 32];
        b[0] = 1;
        assert_eq!(
            PublicKey::from_ed25519_bytes(&b),
            Err(KeyError::InvalidPoint)
        );
    }

    #[test]
    fn batch_finds_the_bad_one() {
        let chain = ChainId([1; 32]);
        let mut items: Vec<_> = (0..8u8)
            .map(|i| {
                let k = kp(i + 10);
                let m = signing_message(sig_domain::EVENT, &chain, &[i]);
                let s = k.sign(sig_domain::EVENT, &chain, &[i]);
                (k.public(), m, s)
            })
            .collect();
        assert_eq!(verify_batch(&items), Ok(()));
        items[5].2.0[3] ^= 1;
        assert_eq!(verify_batch(&items), Err(5));
    }
}
