//! Access requests and the access decision (PROTOCOL.md §5.4, rules §6.1).

use serde::{Deserialize, Serialize};

use crate::block::{Decision, DenyReason, Outcome};
use crate::codes::{Action, DataCategory, Purpose};
use crate::commitment::Commitment;
use crate::keys::PublicKey;
use crate::state::records::ActorRecord;
use crate::state::{Ctx, RejectReason, State, Tx};
use crate::time::Timestamp;

/// An actor asks to perform `action` on `category` of a patient's twin for `purpose`.
/// `resource` commits to the twin resource (salted; the reference itself stays off chain).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// The patient id.
    pub patient: PublicKey,
    /// Data category.
    pub category: DataCategory,
    /// Purpose of use.
    pub purpose: Purpose,
    /// Action.
    pub action: Action,
    /// Commitment to the twin resource.
    pub resource: Commitment,
}

/// The access rule (PROTOCOL.md §6.1), deny by default: the first grant, in grant-id order,
/// that is unrevoked, inside its validity window at `time`, made by the patient or by a
/// delegate whose delegation is live at `time`, whose grantee covers the actor (the actor
/// itself, its organisation, or its role), and that holds the category, purpose and action.
pub fn decide(
    state: &State,
    actor_key: &PublicKey,
    actor: &ActorRecord,
    req: &AccessRequest,
    time: Timestamp,
) -> Decision {
    for (id, g) in state.patient_grants(&req.patient) {
        let covers = g.grant.grantee.covers(actor_key, actor)
            && g.grant.scope.covers(req.category, req.purpose, req.action);
        if covers && state.grant_in_force(g, time) {
            return Decision::Permit { grant: *id };
        }
    }
    Decision::Deny {
        reason: DenyReason::NoCoveringGrant,
    }
}

impl AccessRequest {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        let (actor, denial) = tx.requesting_actor(cx)?;
        if let Some(reason) = denial {
            // 2.2: a revoked actor's attempt is recorded, denied, for auditors to see.
            return Ok(Outcome::Access(Decision::Deny { reason }));
        }
        let decision = decide(tx.st(), &cx.author, &actor, self, cx.time);
        Ok(Outcome::Access(decision))
    }
}
