//! 32-byte digests and the domain-separated hashing every format uses (PROTOCOL.md §2).
//!
//! All ledger hashes are blake3. Each purpose has its own blake3 key-derivation context string,
//! so a digest computed for one purpose can never be presented as a digest of another.
//! The event log's Merkle tree is the one exception: it follows RFC 9162 §2.1 (plain blake3
//! over `0x00 || leaf` and `0x01 || left || right`) so that it can be checked against the RFC
//! 6962 vectors with SHA-256.

use std::fmt;

/// Domain (blake3 `derive_key` context) of each hash the protocol defines. Changing one is a
/// protocol version bump.
pub mod domain {
    /// Event id: over the canonical encoding of the unsigned [`crate::event::Event`].
    pub const EVENT_ID: &str = "twinledger v1 event-id";
    /// Block hash: over the canonical encoding of a [`crate::block::BlockHeader`].
    pub const BLOCK_HEADER: &str = "twinledger v1 block-header";
    /// Hash of a block's results (decisions), see [`crate::block::BlockResults`].
    pub const RESULTS: &str = "twinledger v1 block-results";
    /// Key hashes of the state map (protocol 2.0, §6.10): over `table tag || encoded key`.
    pub const STATE_KEY: &str = "twinledger v2 state-key";
    /// Node, leaf and value hashes of the state map (protocol 2.0, §6.10).
    pub const STATE_MAP: &str = "twinledger v2 state-map";
    /// Chain heads of the events concerning a patient (protocol 2.0, §6.10 table 13).
    pub const PATIENT_EVENTS: &str = "twinledger v2 patient-events";
    /// Hash of a validator set.
    pub const VALIDATORS: &str = "twinledger v1 validator-set";
    /// Chain id: over the canonical encoding of the genesis.
    pub const CHAIN_ID: &str = "twinledger v1 chain-id";
    /// Salted commitments to off-chain data (twin resources, break-glass reasons).
    pub const COMMITMENT: &str = "twinledger v1 commitment";
    /// Twin id (protocol 2.3, §5.6): over `organisation key (32 bytes) || custodian-local id`.
    pub const TWIN_ID: &str = "twinledger v2 twin-id";
}

/// blake3 in key-derivation mode with `context` as the domain.
pub fn hash_in(context: &str, bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(bytes);
    Hash(*h.finalize().as_bytes())
}

/// Defines a 32-byte digest newtype: raw bytes in the canonical encoding, lower-case hex in JSON.
macro_rules! digest_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// All zero bytes.
            pub const ZERO: Self = Self([0; 32]);
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// Parses 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self, $crate::hash::HexError> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|e| $crate::hash::HexError {
                    what: stringify!($name),
                    reason: e.to_string(),
                })?;
                Ok(Self(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..16])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::hash::HexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    serde::Serialize::serialize(&self.0, s)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = <String as serde::Deserialize>::deserialize(d)?;
                    Self::from_hex(&s).map_err(serde::de::Error::custom)
                } else {
                    <[u8; 32] as serde::Deserialize>::deserialize(d).map(Self)
                }
            }
        }
    };
}

/// A hex string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} (expected 64 hex digits): {reason}")]
pub struct HexError {
    /// Which type was being parsed.
    pub what: &'static str,
    /// What was wrong.
    pub reason: String,
}

digest_type!(
    /// A blake3 digest.
    Hash
);

digest_type!(
    /// The id of a chain: blake3 (domain `chain-id`) of its genesis. Every signature covers it.
    ChainId
);

digest_type!(
    /// The id of an event: blake3 (domain `event-id`) of its unsigned canonical encoding.
    EventId
);

digest_type!(
    /// The twin id the ledger records (protocol 2.3, §5.6): bound by construction to the
    /// organisation that anchors it, `H_"twinledger v2 twin-id"(organisation || local id)`
    /// ([`TwinId::bound`]). Another organisation anchoring the same local id gets another twin.
    TwinId
);

digest_type!(
    /// A custodian-local twin id (the `twin` field of a twin anchor, §5.6): chosen by the hosting
    /// organisation, either 32 random bytes or a label keyed with its secret twin salt
    /// ([`LocalTwinId::from_label`]), so that labels such as record numbers cannot be recovered
    /// by enumeration.
    LocalTwinId
);

impl LocalTwinId {
    /// The local id of `label` under the custodian's secret 32-byte twin salt:
    /// `blake3::keyed_hash(salt, utf-8 bytes of label)` (§5.6).
    pub fn from_label(salt: &[u8; 32], label: &str) -> Self {
        Self(*blake3::keyed_hash(salt, label.as_bytes()).as_bytes())
    }
}

impl TwinId {
    /// The twin id of local id `local` anchored by an actor of `organisation`:
    /// `H_"twinledger v2 twin-id"(organisation's 32 key bytes || local)` (§2, §5.6).
    pub fn bound(organisation: &crate::keys::PublicKey, local: &LocalTwinId) -> Self {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(organisation.as_bytes());
        bytes[32..].copy_from_slice(local.as_bytes());
        Self(hash_in(domain::TWIN_ID, &bytes).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_digests() {
        let a = hash_in(domain::EVENT_ID, b"x");
        let b = hash_in(domain::BLOCK_HEADER, b"x");
        assert_ne!(a, b);
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = hash_in(domain::STATE_MAP, b"abc");
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        let err = Hash::from_hex("zz").unwrap_err();
        assert!(err.to_string().contains("malformed Hash"), "{err}");
        assert!(Hash::from_hex(&"ab".repeat(33)).is_err());
    }
}
