//! Twin anchors (PROTOCOL.md §5.6, rules §6.6): the hosting organisation records blake3 of a
//! twin version's state, so any later copy of that version can be checked against the chain.

use serde::{Deserialize, Serialize};

use crate::block::Outcome;
use crate::hash::{Hash, TwinId};
use crate::keys::PublicKey;
use crate::state::records::TwinRecord;
use crate::state::{Ctx, RejectReason, Tx};

/// Anchors version `version` of twin `twin` (of `patient`) with `state_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinAnchor {
    /// Pseudonymous twin id.
    pub twin: TwinId,
    /// The patient id.
    pub patient: PublicKey,
    /// Version, strictly increasing per twin.
    pub version: u64,
    /// blake3 of the twin's state at that version.
    pub state_hash: Hash,
}

impl TwinAnchor {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        let actor = tx.live_actor(cx)?;
        if let Some(prev) = tx.st().twin(&self.twin) {
            if prev.organisation != actor.organisation {
                return Err(RejectReason::TwinAnchor(
                    "the twin is hosted by another organisation",
                ));
            }
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
        tx.put_twin(self.twin, rec);
        Ok(Outcome::Applied)
    }
}
