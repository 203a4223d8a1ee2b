//! Sealed replicas (PROTOCOL.md §5.10, rules §6.12, protocol 2.4): a twin version stored
//! encrypted off chain (ADR 0013), anchored with the hash of its ciphertext and the key-release
//! service that holds its data key; every release of that key, and its erasure, on the ledger.

use serde::{Deserialize, Serialize};

use crate::block::Outcome;
use crate::codes::{DataCategory, Role};
use crate::event::delegation::Scope;
use crate::hash::{EventId, Hash, LocalTwinId, TwinId};
use crate::keys::PublicKey;
use crate::state::records::SealedRecord;
use crate::state::{Ctx, RejectReason, Tx};

use super::integrity::TwinAnchor;

/// The twin anchor extended (tag 13): version `version` of the twin is sealed; `state_hash` is
/// blake3 of its plaintext, `ciphertext_hash` and `ciphertext_size` those of the sealed file,
/// `category` what it holds, and `custodian` the key of the key-release service that holds its
/// data key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinSeal {
    /// The custodian-local twin id, as in a twin anchor (§5.6).
    pub twin: LocalTwinId,
    /// The patient id.
    pub patient: PublicKey,
    /// Version, strictly increasing per twin (anchors and seals share the sequence).
    pub version: u64,
    /// blake3 of the plaintext.
    pub state_hash: Hash,
    /// What the version holds.
    pub category: DataCategory,
    /// blake3 of the sealed file (the age v1 file, ADR 0013).
    pub ciphertext_hash: Hash,
    /// Length of the sealed file, bytes.
    pub ciphertext_size: u64,
    /// The key-release service's key: a live actor with role `service` of the author's
    /// organisation.
    pub custodian: PublicKey,
}

impl TwinSeal {
    /// The anchor part: the §6.6 rule applies to it unchanged.
    pub fn anchor(&self) -> TwinAnchor {
        TwinAnchor {
            twin: self.twin,
            patient: self.patient,
            version: self.version,
            state_hash: self.state_hash,
        }
    }

    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        let actor = tx.live_actor(cx)?;
        match tx.st().actor(&self.custodian) {
            Some(c)
                if c.live && c.role == Role::Service && c.organisation == actor.organisation => {}
            _ => {
                return Err(RejectReason::Sealed(
                    "the custodian is not a live service actor of the author's organisation",
                ));
            }
        }
        let id = self.anchor().twin_id(&actor.organisation);
        self.anchor().apply(tx, cx)?;
        tx.put_sealed(
            (id, self.version),
            SealedRecord {
                organisation: actor.organisation,
                patient: self.patient,
                category: self.category,
                state_hash: self.state_hash,
                ciphertext_hash: self.ciphertext_hash,
                ciphertext_size: self.ciphertext_size,
                custodian: self.custodian,
                event: cx.id,
                erased_at: None,
            },
        );
        Ok(Outcome::Applied)
    }
}

/// A key release (tag 14), signed by the custodian: the data key of a sealed version was
/// handed, wrapped to `requester`, against the permitted request `access`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRelease {
    /// The patient id (the sealed version's patient).
    pub patient: PublicKey,
    /// The twin id (bound, §5.6).
    pub twin: TwinId,
    /// The sealed version.
    pub version: u64,
    /// The permitted access request (or flagged break-glass request) the release answers.
    pub access: EventId,
    /// Who received the wrapped key (that request's author).
    pub requester: PublicKey,
    /// blake3 of the release request the requester signed.
    pub request: Hash,
}

impl KeyRelease {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        tx.live_actor(cx)?;
        let rec = sealed_version(tx, &self.twin, self.version, &self.patient)?;
        if rec.custodian != cx.author {
            return Err(RejectReason::Sealed(
                "the author is not the sealed version's custodian",
            ));
        }
        if rec.erased_at.is_some() {
            return Err(RejectReason::Sealed("the sealed version was erased"));
        }
        if tx.st().release_of(&self.access).is_some() {
            return Err(RejectReason::AlreadyDone {
                what: "access request",
                id: self.access,
                done: "released",
            });
        }
        tx.put_release(self.access, cx.id);
        Ok(Outcome::Applied)
    }
}

/// Erasure of a sealed version (tag 15): its data key is destroyed (crypto-shredding); the
/// anchors, receipts and proofs of the past stay valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinErase {
    /// The patient id (the sealed version's patient).
    pub patient: PublicKey,
    /// The twin id (bound, §5.6).
    pub twin: TwinId,
    /// The sealed version.
    pub version: u64,
}

impl TwinErase {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        let mut rec = sealed_version(tx, &self.twin, self.version, &self.patient)?;
        let st = tx.st();
        let by_custodian_org = st
            .actor(&cx.author)
            .is_some_and(|a| a.live && a.organisation == rec.organisation)
            && st.organisation(&rec.organisation).is_some_and(|o| o.live);
        if !by_custodian_org {
            // The patient (registered by this event if it is their first) or a live delegate
            // of the whole scope (§6.3).
            let whole = Scope::whole();
            tx.acting_for(cx, &self.patient, Some(&whole))
                .map_err(|_| {
                    RejectReason::Sealed(
                        "only the patient, a delegate of the whole scope or an actor of the \
                         hosting organisation erases a sealed version",
                    )
                })?;
        }
        if rec.erased_at.is_some() {
            return Err(RejectReason::Sealed(
                "the sealed version was already erased",
            ));
        }
        rec.erased_at = Some(cx.height);
        tx.put_sealed((self.twin, self.version), rec);
        Ok(Outcome::Applied)
    }
}

fn sealed_version(
    tx: &Tx<'_>,
    twin: &TwinId,
    version: u64,
    patient: &PublicKey,
) -> Result<SealedRecord, RejectReason> {
    let rec = *tx
        .st()
        .sealed(twin, version)
        .ok_or(RejectReason::Sealed("no such sealed twin version"))?;
    if rec.patient != *patient {
        return Err(RejectReason::Sealed(
            "the sealed version belongs to another patient",
        ));
    }
    Ok(rec)
}
