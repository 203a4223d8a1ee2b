//! What the state keeps about each party, grant, delegation, break-glass access and twin.

use serde::{Deserialize, Serialize};

use crate::codes::{Action, DataCategory, Role};
use crate::event::break_glass::Finding;
use crate::event::consent::ConsentGrant;
use crate::hash::{EventId, Hash};
use crate::keys::PublicKey;
use crate::time::Timestamp;

/// A patient: the id is the key they first signed with; `key` is the one they sign with now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientRecord {
    /// The current signing key (changes with each rotation).
    pub key: PublicKey,
    /// How many grants the patient has (bounded by the chain's limit).
    pub grants: u32,
}

/// Which patient a key belongs to, and whether it was rotated away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientKey {
    /// The patient id.
    pub patient: PublicKey,
    /// Rotated away: the key can no longer sign anything.
    pub retired: bool,
}

/// A member organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    /// Display name (not health data; at most 128 bytes, no control characters).
    pub name: String,
    /// Not revoked.
    pub live: bool,
}

/// An observer node added or removed by governance (2.5, table 16): a non-validator node allowed
/// to connect to the validators and follow the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserverRecord {
    /// The organisation that runs it (none for an observer of the genesis file removed by
    /// governance: the genesis file names observers by peer id only).
    pub organisation: Option<PublicKey>,
    /// Not removed.
    pub live: bool,
}

/// An actor (clinician, service, device) enrolled by an organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRecord {
    /// The enrolling organisation.
    pub organisation: PublicKey,
    /// The role it was enrolled with.
    pub role: Role,
    /// Not revoked.
    pub live: bool,
}

/// Who created a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantedBy {
    /// The patient.
    Patient,
    /// A delegate, under the delegation with this id: the grant counts only while it is live.
    Delegate(EventId),
}

/// A consent grant as the state holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The grant as the patient (or delegate) signed it.
    pub grant: ConsentGrant,
    /// Patient or delegate.
    pub granted_by: GrantedBy,
    /// Height of the block holding the grant.
    pub height: u64,
    /// Height of the block holding its revocation.
    pub revoked_at: Option<u64>,
}

impl GrantRecord {
    /// Whether the grant is in its validity window at `t` and not revoked.
    pub fn active_at(&self, t: Timestamp) -> bool {
        self.revoked_at.is_none()
            && self.grant.valid_from <= t
            && self.grant.valid_until.is_none_or(|u| t < u)
    }
}

/// A guardian / delegate relationship.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationRecord {
    /// The patient id.
    pub patient: PublicKey,
    /// The delegate's key.
    pub delegate: PublicKey,
    /// What the delegate may grant or revoke.
    pub scope: crate::event::delegation::Scope,
    /// End of the delegation (exclusive).
    pub valid_until: Option<Timestamp>,
    /// Height of its revocation.
    pub revoked_at: Option<u64>,
}

impl DelegationRecord {
    /// Whether the delegate may act at `t`.
    pub fn live_at(&self, t: Timestamp) -> bool {
        self.revoked_at.is_none() && self.valid_until.is_none_or(|u| t < u)
    }
}

/// A break-glass access and its review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassRecord {
    /// Who broke the glass.
    pub actor: PublicKey,
    /// Their organisation.
    pub organisation: PublicKey,
    /// Whose twin.
    pub patient: PublicKey,
    /// Which category.
    pub category: DataCategory,
    /// Which action.
    pub action: Action,
    /// Block height of the access.
    pub height: u64,
    /// The review, once signed off.
    pub review: Option<Review>,
}

/// A break-glass review sign-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The reviewer (privacy officer or auditor).
    pub reviewer: PublicKey,
    /// Their finding.
    pub finding: Finding,
    /// The review event.
    pub event: EventId,
}

/// The latest anchored version of a twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinRecord {
    /// The hosting organisation (only its actors may anchor later versions).
    pub organisation: PublicKey,
    /// Whose twin.
    pub patient: PublicKey,
    /// The latest version.
    pub version: u64,
    /// blake3 of that version's state.
    pub state_hash: Hash,
    /// The anchoring event.
    pub event: EventId,
}

/// A sealed twin version (PROTOCOL.md §6.12, table sealed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRecord {
    /// The hosting organisation.
    pub organisation: PublicKey,
    /// Whose twin.
    pub patient: PublicKey,
    /// What the version holds.
    pub category: crate::codes::DataCategory,
    /// blake3 of the plaintext.
    pub state_hash: Hash,
    /// blake3 of the sealed file.
    pub ciphertext_hash: Hash,
    /// Length of the sealed file, bytes.
    pub ciphertext_size: u64,
    /// The key-release service's key.
    pub custodian: PublicKey,
    /// The sealing event.
    pub event: EventId,
    /// Height of the block holding its erasure.
    pub erased_at: Option<u64>,
}

/// Completeness record of a patient (PROTOCOL.md §6.10, table patient-events): how many
/// accepted events concern the patient (`State::patient_concerned`) and the head of their hash
/// chain, `head_n = H_"twinledger v2 patient-events"(head_(n−1) || event id)`, `head_0` = 32
/// zero bytes. A patient no event concerns has no record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientEvents {
    /// Number of events.
    pub count: u64,
    /// Head of the chain after the last one.
    pub head: Hash,
}

impl PatientEvents {
    /// The record after one more event `id`.
    pub fn next(&self, id: &EventId) -> Self {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(self.head.as_bytes());
        bytes[32..].copy_from_slice(id.as_bytes());
        Self {
            count: self.count + 1,
            head: crate::hash::hash_in(crate::hash::domain::PATIENT_EVENTS, &bytes),
        }
    }
}

impl Default for PatientEvents {
    fn default() -> Self {
        Self {
            count: 0,
            head: Hash::ZERO,
        }
    }
}
