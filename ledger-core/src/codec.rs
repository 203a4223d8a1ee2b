//! The one canonical binary encoding (PROTOCOL.md §1).
//!
//! Every hashed or signed structure is encoded with postcard 1.x (its wire format is stable and
//! specified). postcard is deterministic when encoding, but its decoder accepts a few
//! non-minimal forms (e.g. over-long varints), so [`decode`] re-encodes what it decoded and
//! refuses the input unless the bytes are identical: there is exactly one byte string per value,
//! which is what makes hashes and signatures over it meaningful. Trailing bytes are refused too.
//! There are no maps and no floats in any encoded type.

use serde::{Serialize, de::DeserializeOwned};

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Input larger than the limit for this kind of message; nothing was decoded.
    #[error("{what} is {size} bytes, over the limit of {max}")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// Input length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes do not decode as this type.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// The value decoded but bytes were left over.
    #[error("malformed {what}: {extra} trailing bytes after the value")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// The value decoded but is not in canonical form (re-encoding gives other bytes).
    #[error("non-canonical encoding of {what}")]
    NonCanonical {
        /// What was being decoded.
        what: &'static str,
    },
    /// The version byte is not one this implementation knows.
    #[error("unsupported {what} version {got} (this implementation knows {known})")]
    UnsupportedVersion {
        /// What was being decoded.
        what: &'static str,
        /// The version found.
        got: u8,
        /// The version supported.
        known: u8,
    },
}

/// Canonical bytes of a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serialising our own types into a Vec cannot fail: they contain no maps, no unsized
    // sequences without length, and every custom impl writes plain values.
    postcard::to_stdvec(value).expect("canonical encoding of a ledger type cannot fail")
}

/// Decodes exactly one canonical value from `bytes`, refusing oversized, malformed,
/// trailing-garbage and non-canonical input before returning anything.
pub fn decode<T: Serialize + DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            what,
            size: bytes.len(),
            max,
        });
    }
    let (value, rest): (T, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| CodecError::Malformed {
            what,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes {
            what,
            extra: rest.len(),
        });
    }
    if encode(&value) != bytes {
        return Err(CodecError::NonCanonical { what });
    }
    Ok(value)
}

/// Checks a format's leading version byte.
pub fn check_version(what: &'static str, got: u8, known: u8) -> Result<(), CodecError> {
    if got == known {
        Ok(())
    } else {
        Err(CodecError::UnsupportedVersion { what, got, known })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_trailing_overlong_and_oversized() {
        let bytes = encode(&300u64);
        assert_eq!(decode::<u64>("n", &bytes, 16).unwrap(), 300);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            decode::<u64>("n", &trailing, 16),
            Err(CodecError::TrailingBytes { extra: 1, .. })
        ));
        // 0 encoded as an over-long varint (0x80 0x00) decodes in postcard but is not canonical.
        assert!(matches!(
            decode::<u64>("n", &[0x80, 0x00], 16),
            Err(CodecError::NonCanonical { .. }) | Err(CodecError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<u64>("n", &bytes, 1),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
