//! Validators and validator sets (PROTOCOL.md §7).

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::hash::{Hash, domain, hash_in};
use crate::keys::PublicKey;

/// Most validators a set may hold (bounds certificate size and verification work).
pub const MAX_VALIDATORS: usize = 256;
/// Most voting power one validator may hold; with [`MAX_VALIDATORS`] the total fits in u64.
pub const MAX_POWER: u64 = 1 << 48;

/// One validator: an organisation's consensus key and its voting power.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// The consensus key that signs commit votes.
    pub key: PublicKey,
    /// The organisation (hospital) that runs it.
    pub organisation: PublicKey,
    /// Voting power, 1..=MAX_POWER.
    pub power: u64,
}

/// A validator set: sorted by key, no duplicates, every power in 1..=MAX_POWER.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

/// Why a validator set is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    /// No validators.
    #[error("validator set is empty")]
    Empty,
    /// Too many validators.
    #[error("validator set has {0} validators, over the limit of {MAX_VALIDATORS}")]
    TooMany(usize),
    /// A key appears twice.
    #[error("validator {0} appears twice")]
    Duplicate(PublicKey),
    /// Power 0 or over the cap.
    #[error("validator {key} has power {power}; power must be 1..={MAX_POWER}")]
    BadPower {
        /// The validator.
        key: PublicKey,
        /// Its power.
        power: u64,
    },
    /// Not sorted by key (the canonical order).
    #[error("validator set is not sorted by key")]
    NotSorted,
}

impl ValidatorSet {
    /// Builds a set, sorting by key and refusing duplicates, bad powers, empty or oversized sets.
    pub fn new(mut validators: Vec<Validator>) -> Result<Self, ValidatorSetError> {
        validators.sort_by_key(|v| v.key);
        let set = Self { validators };
        set.validate()?;
        Ok(set)
    }

    /// Checks the invariants (used on decoded sets).
    pub fn validate(&self) -> Result<(), ValidatorSetError> {
        if self.validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if self.validators.len() > MAX_VALIDATORS {
            return Err(ValidatorSetError::TooMany(self.validators.len()));
        }
        for w in self.validators.windows(2) {
            if w[0].key == w[1].key {
                return Err(ValidatorSetError::Duplicate(w[0].key));
            }
            if w[0].key > w[1].key {
                return Err(ValidatorSetError::NotSorted);
            }
        }
        for v in &self.validators {
            if v.power == 0 || v.power > MAX_POWER {
                return Err(ValidatorSetError::BadPower {
                    key: v.key,
                    power: v.power,
                });
            }
        }
        Ok(())
    }

    /// The validators, sorted by key.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// Looks up a validator by key.
    pub fn get(&self, key: &PublicKey) -> Option<&Validator> {
        self.validators
            .binary_search_by(|v| v.key.cmp(key))
            .ok()
            .map(|i| &self.validators[i])
    }

    /// Sum of all voting power.
    pub fn total_power(&self) -> u64 {
        self.validators.iter().map(|v| v.power).sum()
    }

    /// Whether `power` is more than two thirds of the total (3 * power > 2 * total).
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power()) * 2
    }

    /// Hash of the canonical encoding (domain `validator-set`), committed in every header.
    pub fn hash(&self) -> Hash {
        hash_in(domain::VALIDATORS, &codec::encode(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    fn v(n: u8, power: u64) -> Validator {
        Validator {
            key: Keypair::from_secret(&[n; 32]).public(),
            organisation: Keypair::from_secret(&[n + 100; 32]).public(),
            power,
        }
    }

    #[test]
    fn quorum_is_strictly_more_than_two_thirds() {
        let set = ValidatorSet::new(vec![v(1, 1), v(2, 1), v(3, 1), v(4, 1)]).unwrap();
        assert!(!set.is_quorum(2));
        assert!(set.is_quorum(3));
        let set = ValidatorSet::new(vec![v(1, 1), v(2, 1), v(3, 1)]).unwrap();
        assert!(!set.is_quorum(2)); // exactly 2/3 is not enough
        assert!(set.is_quorum(3));
    }

    #[test]
    fn invalid_sets_are_named() {
        assert_eq!(ValidatorSet::new(vec![]), Err(ValidatorSetError::Empty));
        assert!(matches!(
            ValidatorSet::new(vec![v(1, 1), v(1, 2)]),
            Err(ValidatorSetError::Duplicate(_))
        ));
        assert!(matches!(
            ValidatorSet::new(vec![v(1, 0)]),
            Err(ValidatorSetError::BadPower { power: 0, .. })
        ));
    }
}
