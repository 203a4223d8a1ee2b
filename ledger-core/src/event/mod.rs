//! Events: everything that happens on the ledger (PROTOCOL.md §5).
//!
//! An [`Event`] names its chain, its author, the author's next sequence number and a deadline
//! (`not_after`), and carries one payload of one family. The author signs the canonical
//! encoding (domain `twinledger/v1/event`). The event id is the hash of the unsigned encoding;
//! the event log's leaves are the signed encoding.

pub mod access;
pub mod break_glass;
pub mod consent;
pub mod delegation;
pub mod governance;
pub mod integrity;
pub mod membership;
pub mod misbehaviour;
pub mod rotation;
pub mod sealing;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::hash::{ChainId, EventId, domain, hash_in};
use crate::keys::{KeyError, Keypair, PublicKey, Signature, sig_domain, signing_message};
use crate::merkle::{Blake3Tree, TreeHasher};
use crate::time::Timestamp;

/// The event format version this implementation writes and accepts.
pub const EVENT_VERSION: u8 = 1;

/// Length of an encoded signature: the algorithm tag (ed25519 = 0) and 64 bytes.
pub const SIGNATURE_ENCODED_LEN: usize = 65;

/// Hard ceiling on one signed event's encoding, whatever a genesis says: decoding refuses
/// anything larger before parsing it.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The unsigned content of an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// [`EVENT_VERSION`].
    pub version: u8,
    /// The chain this event is for.
    pub chain_id: ChainId,
    /// Who signs it.
    pub author: PublicKey,
    /// The author's sequence number: 0 for their first event, then +1 each (replay protection).
    pub seq: u64,
    /// The event must be in a block whose time is at most this; later it is refused as expired.
    pub not_after: Timestamp,
    /// What happens.
    pub payload: EventPayload,
}

/// One payload per event family. The variant order is the encoding: append only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")] // externally tagged: postcard cannot carry internally tagged enums
pub enum EventPayload {
    /// A patient (or delegate) grants consent.
    ConsentGrant(consent::ConsentGrant),
    /// A patient (or delegate) revokes a grant.
    ConsentRevoke(consent::ConsentRevoke),
    /// A patient names a guardian / delegate.
    DelegateGrant(delegation::DelegateGrant),
    /// A patient ends a delegation.
    DelegateRevoke(delegation::DelegateRevoke),
    /// A patient moves to a new key.
    KeyRotation(rotation::KeyRotation),
    /// An actor asks to access part of a twin.
    AccessRequest(access::AccessRequest),
    /// An actor invokes emergency access.
    BreakGlassRequest(break_glass::BreakGlassRequest),
    /// A privacy officer or auditor signs off a break-glass access.
    BreakGlassReview(break_glass::BreakGlassReview),
    /// An organisation anchors a twin version's state hash.
    TwinAnchor(integrity::TwinAnchor),
    /// An organisation enrols an actor.
    ActorEnrol(membership::ActorEnrol),
    /// An organisation revokes an actor.
    ActorRevoke(membership::ActorRevoke),
    /// A governance action approved by more than 2/3 of the validator power.
    Governance(governance::Governance),
    /// Evidence that a validator double-signed, reported by a validator (tag 12, protocol 1.1).
    Misbehaviour(crate::consensus::DoubleSign),
    /// A sealed twin version: the twin anchor extended (tag 13, protocol 2.4).
    TwinSeal(sealing::TwinSeal),
    /// A custodian released a sealed version's data key (tag 14, protocol 2.4).
    KeyRelease(sealing::KeyRelease),
    /// A sealed version's data key was destroyed (tag 15, protocol 2.4).
    TwinErase(sealing::TwinErase),
}

/// Whom an event is about, as far as the event alone says (PROTOCOL.md §6.10, patient-events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concerns {
    /// The patient the payload names.
    Patient(PublicKey),
    /// A break-glass review: the patient of the break-glass request it reviews (that request
    /// names it; the state's break-glass record, or the request itself, answers).
    ReviewOf(EventId),
    /// No patient (membership, governance, misbehaviour).
    Nobody,
}

impl EventPayload {
    /// Whom this payload is about (§6.10). The one place that says which payloads concern a
    /// patient: the state machine, the node's indexes and offline verifiers all start here.
    pub fn concerns(&self) -> Concerns {
        match self {
            EventPayload::ConsentGrant(p) => Concerns::Patient(p.patient),
            EventPayload::ConsentRevoke(p) => Concerns::Patient(p.patient),
            EventPayload::DelegateGrant(p) => Concerns::Patient(p.patient),
            EventPayload::DelegateRevoke(p) => Concerns::Patient(p.patient),
            EventPayload::KeyRotation(p) => Concerns::Patient(p.patient),
            EventPayload::AccessRequest(p) => Concerns::Patient(p.patient),
            EventPayload::BreakGlassRequest(p) => Concerns::Patient(p.patient),
            EventPayload::BreakGlassReview(p) => Concerns::ReviewOf(p.request),
            EventPayload::TwinAnchor(p) => Concerns::Patient(p.patient),
            EventPayload::TwinSeal(p) => Concerns::Patient(p.patient),
            EventPayload::KeyRelease(p) => Concerns::Patient(p.patient),
            EventPayload::TwinErase(p) => Concerns::Patient(p.patient),
            EventPayload::ActorEnrol(_)
            | EventPayload::ActorRevoke(_)
            | EventPayload::Governance(_)
            | EventPayload::Misbehaviour(_) => Concerns::Nobody,
        }
    }

    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ConsentGrant(_) => "consent_grant",
            Self::ConsentRevoke(_) => "consent_revoke",
            Self::DelegateGrant(_) => "delegate_grant",
            Self::DelegateRevoke(_) => "delegate_revoke",
            Self::KeyRotation(_) => "key_rotation",
            Self::AccessRequest(_) => "access_request",
            Self::BreakGlassRequest(_) => "break_glass_request",
            Self::BreakGlassReview(_) => "break_glass_review",
            Self::TwinAnchor(_) => "twin_anchor",
            Self::ActorEnrol(_) => "actor_enrol",
            Self::ActorRevoke(_) => "actor_revoke",
            Self::Governance(_) => "governance",
            Self::Misbehaviour(_) => "misbehaviour",
            Self::TwinSeal(_) => "twin_seal",
            Self::KeyRelease(_) => "key_release",
            Self::TwinErase(_) => "twin_erase",
        }
    }
}

impl Event {
    /// A version-1 event.
    pub fn new(
        chain_id: ChainId,
        author: PublicKey,
        seq: u64,
        not_after: Timestamp,
        payload: EventPayload,
    ) -> Self {
        Self {
            version: EVENT_VERSION,
            chain_id,
            author,
            seq,
            not_after,
            payload,
        }
    }

    /// Canonical bytes (what is signed, after the domain prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// The event id.
    pub fn id(&self) -> EventId {
        EventId(hash_in(domain::EVENT_ID, &self.to_bytes()).0)
    }

    /// Signs with the author's key. The caller must pass the key of `self.author`; a mismatch
    /// yields an event that every verifier refuses.
    pub fn sign(self, key: &Keypair) -> SignedEvent {
        let signature = key.sign(sig_domain::EVENT, &self.chain_id, &self.to_bytes());
        SignedEvent {
            event: self,
            signature,
        }
    }
}

/// An event and its author's signature: what is submitted, gossiped, put in blocks and logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvent {
    /// The content.
    pub event: Event,
    /// The author's signature over `signing_message("twinledger/v1/event", chain_id, event)`.
    pub signature: Signature,
}

impl SignedEvent {
    /// Canonical bytes: the event's encoding followed by the signature's.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes one signed event, refusing anything over `max` bytes (and over
    /// [`MAX_EVENT_BYTES`]), malformed, non-canonical, with trailing bytes or of an unknown
    /// version. Does not check the signature: see [`SignedEvent::verify_signature`].
    pub fn from_bytes(bytes: &[u8], max: usize) -> Result<Self, CodecError> {
        let ev: Self = codec::decode("event", bytes, max.min(MAX_EVENT_BYTES))?;
        codec::check_version("event", ev.event.version, EVENT_VERSION)?;
        Ok(ev)
    }

    /// The event id (hash of the unsigned event).
    pub fn id(&self) -> EventId {
        self.event.id()
    }

    /// The event id from the signed encoding: the unsigned encoding is its prefix (the signature
    /// is the last [`SIGNATURE_ENCODED_LEN`] bytes), so no re-encoding is needed.
    pub fn id_from_bytes(signed: &[u8]) -> EventId {
        let unsigned = &signed[..signed.len().saturating_sub(SIGNATURE_ENCODED_LEN)];
        EventId(hash_in(domain::EVENT_ID, unsigned).0)
    }

    /// The message the author signed.
    pub fn signing_message(&self) -> Vec<u8> {
        signing_message(
            sig_domain::EVENT,
            &self.event.chain_id,
            &self.event.to_bytes(),
        )
    }

    /// Checks the author's signature (strict ed25519).
    pub fn verify_signature(&self) -> Result<(), KeyError> {
        self.event
            .author
            .verify_raw(&self.signing_message(), &self.signature)
    }

    /// The RFC 9162 leaf hash of this event in the event log (blake3 of `0x00 || bytes`).
    pub fn leaf_hash(&self) -> [u8; 32] {
        Blake3Tree::leaf(&self.to_bytes())
    }
}
