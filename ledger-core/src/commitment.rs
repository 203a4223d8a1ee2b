//! Salted commitments to data that must stay off the ledger (PROTOCOL.md §2.3).
//!
//! A twin resource reference or a break-glass reason is never written to the chain; its
//! commitment `blake3_derive_key("twinledger v1 commitment", salt || data)` is. The holder of the
//! salt and the data can later prove what was committed; without the salt, a guess of the data
//! cannot be confirmed (the salt is 32 bytes the caller draws from its own RNG).

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, domain, hash_in};

/// A salted blake3 commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Commitment(pub Hash);

impl Commitment {
    /// Commits to `data` with a 32-byte `salt`.
    pub fn new(salt: &[u8; 32], data: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(32 + data.len());
        buf.extend_from_slice(salt);
        buf.extend_from_slice(data);
        Self(hash_in(domain::COMMITMENT, &buf))
    }

    /// Whether `salt` and `data` open this commitment.
    pub fn opens(&self, salt: &[u8; 32], data: &[u8]) -> bool {
        Self::new(salt, data) == *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_salt_and_data() {
        let c = Commitment::new(&[1; 32], b"fhir/Observation/123");
        assert!(c.opens(&[1; 32], b"fhir/Observation/123"));
        assert!(!c.opens(&[2; 32], b"fhir/Observation/123"));
        assert!(!c.opens(&[1; 32], b"fhir/Observation/124"));
    }
}
