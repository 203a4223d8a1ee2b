//! Delegation: a patient names a guardian or delegate who may grant and revoke consent for
//! them, within a scope (PROTOCOL.md §5.2, rules §6.3).

use serde::{Deserialize, Serialize};

use crate::block::Outcome;
use crate::codes::{Action, Actions, Categories, DataCategory, Purpose, Purposes};
use crate::hash::EventId;
use crate::keys::PublicKey;
use crate::state::records::DelegationRecord;
use crate::state::{Ctx, RejectReason, Tx};
use crate::time::Timestamp;

/// What a delegate may grant or revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Data categories.
    pub categories: Categories,
    /// Purposes.
    pub purposes: Purposes,
    /// Actions.
    pub actions: Actions,
}

impl Scope {
    /// Whether the scope holds this category, purpose and action.
    pub fn covers(&self, category: DataCategory, purpose: Purpose, action: Action) -> bool {
        self.categories.contains(category)
            && self.purposes.contains(purpose)
            && self.actions.contains(action)
    }

    /// Refuses a scope with an empty set, naming it.
    pub fn check_not_empty(&self) -> Result<(), RejectReason> {
        if self.categories.is_empty() {
            return Err(RejectReason::EmptyScope("categories"));
        }
        if self.purposes.is_empty() {
            return Err(RejectReason::EmptyScope("purposes"));
        }
        if self.actions.is_empty() {
            return Err(RejectReason::EmptyScope("actions"));
        }
        Ok(())
    }

    /// The scope of every category, purpose and action (a guardian's).
    pub fn whole() -> Self {
        Self {
            categories: Categories::all(),
            purposes: Purposes::all(),
            actions: Actions::all(),
        }
    }

    /// Whether the scope holds every category, purpose and action (a guardian's).
    pub fn is_whole(&self) -> bool {
        *self == Self::whole()
    }

    /// Whether every code of `self` is in `outer`.
    pub fn is_within(&self, outer: &Scope) -> bool {
        self.categories.is_subset(outer.categories)
            && self.purposes.is_subset(outer.purposes)
            && self.actions.is_subset(outer.actions)
    }
}

/// The patient names `delegate` to act for them within `scope` until `valid_until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegateGrant {
    /// The patient id.
    pub patient: PublicKey,
    /// The delegate's key.
    pub delegate: PublicKey,
    /// What the delegate may grant or revoke.
    pub scope: Scope,
    /// End of the delegation (exclusive), or none.
    pub valid_until: Option<Timestamp>,
}

impl DelegateGrant {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        tx.acting_for(cx, &self.patient, None)?;
        self.scope.check_not_empty()?;
        if self.valid_until.is_some_and(|u| u <= cx.time) {
            return Err(RejectReason::InvalidWindow(
                "delegation has already expired",
            ));
        }
        if tx
            .st()
            .patient_of_key(&self.delegate)
            .is_some_and(|k| k.patient == self.patient)
        {
            return Err(RejectReason::InvalidField(
                "a patient cannot be their own delegate".into(),
            ));
        }
        let rec = DelegationRecord {
            patient: self.patient,
            delegate: self.delegate,
            scope: self.scope,
            valid_until: self.valid_until,
            revoked_at: None,
        };
        tx.put_delegation(cx.id, rec);
        Ok(Outcome::Applied)
    }
}

/// The patient ends a delegation; grants the delegate made stop counting from this block on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegateRevoke {
    /// The patient id.
    pub patient: PublicKey,
    /// The delegation (its event id).
    pub delegation: EventId,
}

impl DelegateRevoke {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        tx.acting_for(cx, &self.patient, None)?;
        let mut d = match tx.st().delegation(&self.delegation) {
            Some(d) if d.patient == self.patient => d.clone(),
            _ => {
                return Err(RejectReason::UnknownReference {
                    what: "delegation",
                    id: self.delegation,
                });
            }
        };
        if d.revoked_at.is_some() {
            return Err(RejectReason::AlreadyDone {
                what: "delegation",
                id: self.delegation,
                done: "revoked",
            });
        }
        d.revoked_at = Some(cx.height);
        tx.put_delegation(self.delegation, d);
        Ok(Outcome::Applied)
    }
}
