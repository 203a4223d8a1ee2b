//! Twin anchors (PROTOCOL.md §5.6, rules §6.6): the hosting organisation records blake3 of a
//! twin version's state, so any later copy of that version can be checked against the chain.
//!
//! Twin ids are bound to their custodian by construction (protocol 2.3): the event names a
//! custodian-local id, and the ledger records the twin under
//! `TwinId::bound(author's organisation, local id)`. Another organisation anchoring the same
//! local id, even first or in the same block, creates a different twin and cannot block or take
//! the custodian's.

use serde::{Deserialize, Serialize};

use crate::block::Outcome;
use crate::hash::{Hash, LocalTwinId, TwinId};
use crate::keys::PublicKey;
use crate::state::records::TwinRecord;
use crate::state::{Ctx, RejectReason, Tx};

/// Anchors version `version` of twin `twin` (of `patient`) with `state_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinAnchor {
    /// The custodian-local twin id (random, or a label keyed with the custodian's twin salt).
    /// The twin id the ledger records is [`TwinAnchor::twin_id`] of it.
    pub twin: LocalTwinId,
    /// The patient id.
    pub patient: PublicKey,
    /// Version, strictly increasing per twin.
    pub version: u64,
    /// blake3 of the twin's state at that version.
    pub state_hash: Hash,
}

impl TwinAnchor {
    /// The twin id this anchor records when its author is an actor of `organisation` (§5.6).
    pub fn twin_id(&self, organisation: &PublicKey) -> TwinId {
        TwinId::bound(organisation, &self.twin)
    }

    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        let actor = tx.live_actor(cx)?;
        let id = self.twin_id(&actor.organisation);
        if let Some(prev) = tx.st().twin(&id) {
            // `prev.organisation == actor.organisation` by construction of `id`.
            if prev.patient != self.patient {
                return Err(RejectReason::TwinAnchor(
                    "the twin belongs to another patient",
                ));
            }
            if self.version <= prev.version {
                return Err(RejectReason::TwinAnchor(
                    "version is not after the last anchored version",
                ));
            }
        }
        let rec = TwinRecord {
            organisation: actor.organisation,
            patient: self.patient,
            version: self.version,
            state_hash: self.state_hash,
            event: cx.id,
        };
        tx.put_twin(id, rec);
        Ok(Outcome::Applied)
    }
}
