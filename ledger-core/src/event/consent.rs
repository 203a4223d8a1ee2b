//! Consent grant and revoke (PROTOCOL.md §5.1, rules §6.2).

use serde::{Deserialize, Serialize};

use crate::block::Outcome;
use crate::codes::Role;
use crate::event::delegation::Scope;
use crate::hash::EventId;
use crate::keys::PublicKey;
use crate::state::records::{ActorRecord, GrantRecord};
use crate::state::{Ctx, RejectReason, Tx};
use crate::time::Timestamp;

/// Who a grant is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    /// One actor (a clinician, a service, a device).
    Actor(PublicKey),
    /// Every actor of an organisation.
    Organisation(PublicKey),
    /// Every actor with a role, in one organisation or (none) in any member organisation.
    Role {
        /// The role.
        role: Role,
        /// Restrict to this organisation.
        organisation: Option<PublicKey>,
    },
}

impl Grantee {
    /// Whether the actor `key`, enrolled as `actor`, is covered.
    pub fn covers(&self, key: &PublicKey, actor: &ActorRecord) -> bool {
        match self {
            Grantee::Actor(k) => k == key,
            Grantee::Organisation(o) => *o == actor.organisation,
            Grantee::Role { role, organisation } => {
                *role == actor.role && organisation.is_none_or(|o| o == actor.organisation)
            }
        }
    }
}

/// A patient's consent: `grantee` may perform `actions` on `categories` of the patient's twin
/// for `purposes`, from `valid_from` until `valid_until` (exclusive) or revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentGrant {
    /// The patient id (their first key).
    pub patient: PublicKey,
    /// Who may access.
    pub grantee: Grantee,
    /// Data categories, purposes of use and actions covered (each non-empty).
    pub scope: Scope,
    /// Start of validity.
    pub valid_from: Timestamp,
    /// End of validity (exclusive), or none.
    pub valid_until: Option<Timestamp>,
}

impl ConsentGrant {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        self.scope.check_not_empty()?;
        if let Some(until) = self.valid_until {
            if until <= self.valid_from {
                return Err(RejectReason::InvalidWindow(
                    "valid_until is not after valid_from",
                ));
            }
            if until <= cx.time {
                return Err(RejectReason::InvalidWindow("grant has already expired"));
            }
        }
        let granted_by = tx.acting_for(cx, &self.patient, Some(&self.scope))?;
        match self.grantee {
            Grantee::Actor(k) => {
                if !tx.st().actor(&k).is_some_and(|a| a.live) {
                    return Err(RejectReason::UnknownGrantee(k));
                }
            }
            Grantee::Organisation(o)
            | Grantee::Role {
                organisation: Some(o),
                ..
            } => {
                if !tx.st().organisation(&o).is_some_and(|r| r.live) {
                    return Err(RejectReason::UnknownGrantee(o));
                }
            }
            Grantee::Role {
                organisation: None, ..
            } => {}
        }
        let mut patient = tx
            .st()
            .patient(&self.patient)
            .cloned()
            .expect("acting_for registered the patient");
        let max = tx.limits().max_grants_per_patient;
        if patient.grants >= max {
            return Err(RejectReason::LimitReached {
                what: "grants per patient",
                max: u64::from(max),
            });
        }
        patient.grants += 1;
        let rec = GrantRecord {
            grant: self.clone(),
            granted_by,
            height: cx.height,
            revoked_at: None,
        };
        tx.put_patient(self.patient, patient);
        tx.put_grant(cx.id, rec);
        Ok(Outcome::Applied)
    }
}

/// Revokes a grant from the block that holds this event on: every access decided after it
/// (later in the block or in any later block) no longer sees the grant. Never retroactive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRevoke {
    /// The patient id.
    pub patient: PublicKey,
    /// The grant (its event id).
    pub grant: EventId,
}

impl ConsentRevoke {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        let mut g = match tx.st().grant(&self.grant) {
            Some(g) if g.grant.patient == self.patient => g.clone(),
            _ => {
                return Err(RejectReason::UnknownReference {
                    what: "grant",
                    id: self.grant,
                });
            }
        };
        if g.revoked_at.is_some() {
            return Err(RejectReason::AlreadyDone {
                what: "grant",
                id: self.grant,
                done: "revoked",
            });
        }
        tx.acting_for(cx, &self.patient, Some(&g.grant.scope))?;
        g.revoked_at = Some(cx.height);
        let mut patient = tx
            .st()
            .patient(&self.patient)
            .cloned()
            .expect("a grant's patient exists");
        patient.grants -= 1;
        tx.put_grant(self.grant, g);
        tx.put_patient(self.patient, patient);
        Ok(Outcome::Applied)
    }
}
