//! The read rules: who may read what (PROTOCOL §11.5). A read is never wider than consent: a
//! member organisation reads what concerns it (grants to it, to its actors or to a role it
//! holds, its own actors' accesses, reviews of its own break-glass accesses), a delegate reads
//! within the scope it was given, and only the patient, auditors and delegates of the whole
//! scope read everything about a patient. The whole chain (blocks, export) is for auditors and
//! the operators of validators.

use axum::http::StatusCode;
use twinledger_core::codes::{Action, DataCategory, Purpose, Role};
use twinledger_core::event::consent::Grantee;
use twinledger_core::event::delegation::Scope;
use twinledger_core::state::records::GrantRecord;
use twinledger_core::{EventId, EventPayload, PublicKey, SignedEvent, State, Timestamp};

use super::ApiError;
use crate::chain::now;

/// What a requester may read of one patient's records (PROTOCOL §11.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientView {
    /// The patient's current key, an auditor, or a live delegate of the whole scope (every
    /// category, purpose and action): every record of the patient.
    Whole,
    /// A live delegate: records within the scopes of its live delegations (and those
    /// delegations themselves).
    Delegate {
        /// The delegate's key.
        key: PublicKey,
        /// The scopes of its live delegations.
        scopes: Vec<Scope>,
    },
    /// A live member organisation (its own key, or one of its live privacy officers): what
    /// concerns it.
    Organisation(PublicKey),
}

impl PatientView {
    /// Whether the view holds every record of the patient.
    pub fn is_whole(&self) -> bool {
        matches!(self, Self::Whole)
    }

    /// Whether a consent grant is readable: a delegate reads a grant that shares a category, a
    /// purpose and an action with one of its scopes (a grant it could have made or revoked in
    /// part); an organisation reads a grant whose grantee covers it or its actors.
    pub fn sees_grant(&self, state: &State, g: &GrantRecord) -> bool {
        match self {
            Self::Whole => true,
            Self::Delegate { scopes, .. } => scopes.iter().any(|s| overlaps(s, &g.grant.scope)),
            Self::Organisation(o) => grantee_concerns(state, &g.grant.grantee, o),
        }
    }

    /// Whether a delegation is readable: the patient's and auditors' view holds them all, a
    /// delegate reads its own, an organisation none.
    pub fn sees_delegation(&self, delegate: &PublicKey) -> bool {
        match self {
            Self::Whole => true,
            Self::Delegate { key, .. } => key == delegate,
            Self::Organisation(_) => false,
        }
    }

    /// Whether an access or break-glass request by `author` (of `organisation`, if enrolled) is
    /// readable: a delegate reads a request its scope covers, an organisation its own actors'.
    pub fn sees_access(
        &self,
        organisation: Option<PublicKey>,
        category: DataCategory,
        purpose: Purpose,
        action: Action,
    ) -> bool {
        match self {
            Self::Whole => true,
            Self::Delegate { scopes, .. } => {
                scopes.iter().any(|s| s.covers(category, purpose, action))
            }
            Self::Organisation(o) => organisation == Some(*o),
        }
    }

    /// Whether a committed event concerning the patient is readable in this view.
    pub fn sees_event(&self, state: &State, ev: &SignedEvent) -> bool {
        if matches!(self, Self::Whole) {
            return true;
        }
        let org_of = |k: &PublicKey| state.actor(k).map(|a| a.organisation);
        match &ev.event.payload {
            EventPayload::ConsentGrant(_) => state
                .grant(&ev.id())
                .is_some_and(|g| self.sees_grant(state, g)),
            EventPayload::ConsentRevoke(r) => state
                .grant(&r.grant)
                .is_some_and(|g| self.sees_grant(state, g)),
            EventPayload::DelegateGrant(d) => self.sees_delegation(&d.delegate),
            EventPayload::DelegateRevoke(r) => state
                .delegation(&r.delegation)
                .is_some_and(|d| self.sees_delegation(&d.delegate)),
            EventPayload::AccessRequest(a) => {
                self.sees_access(org_of(&ev.event.author), a.category, a.purpose, a.action)
            }
            EventPayload::BreakGlassRequest(b) => self.sees_access(
                org_of(&ev.event.author),
                b.category,
                Purpose::EmergencyTreat,
                b.action,
            ),
            EventPayload::BreakGlassReview(r) => state.break_glass(&r.request).is_some_and(|b| {
                self.sees_access(
                    Some(b.organisation),
                    b.category,
                    Purpose::EmergencyTreat,
                    b.action,
                )
            }),
            // An anchor carries no category: every live delegate reads it, and the hosting
            // organisation (the anchoring actor's).
            EventPayload::TwinAnchor(_) => match self {
                Self::Organisation(o) => org_of(&ev.event.author) == Some(*o),
                _ => true,
            },
            // Key rotations and everything else: the whole view only.
            _ => false,
        }
    }
}

/// Whether two scopes share a category, a purpose and an action.
fn overlaps(a: &Scope, b: &Scope) -> bool {
    a.categories.bits() & b.categories.bits() != 0
        && a.purposes.bits() & b.purposes.bits() != 0
        && a.actions.bits() & b.actions.bits() != 0
}

/// Whether a grantee names organisation `o`, one of its enrolled actors, or a role in it (or
/// in any member organisation).
fn grantee_concerns(state: &State, grantee: &Grantee, o: &PublicKey) -> bool {
    match grantee {
        Grantee::Organisation(x) => x == o,
        Grantee::Actor(a) => state.actor(a).is_some_and(|r| r.organisation == *o),
        Grantee::Role { organisation, .. } => organisation.is_none_or(|x| x == *o),
    }
}

/// The organisation a key reads for: a live member organisation's own key, or a live privacy
/// officer of a live member organisation.
pub fn reading_organisation(state: &State, key: &PublicKey) -> Option<PublicKey> {
    if state.organisation(key).is_some_and(|o| o.live) {
        return Some(*key);
    }
    state
        .actor(key)
        .filter(|a| a.live && a.role == Role::PrivacyOfficer)
        .map(|a| a.organisation)
        .filter(|o| state.organisation(o).is_some_and(|r| r.live))
}

/// What `key` may read of `patient`'s records at `t`, or nothing (PROTOCOL §11.5).
pub fn patient_view(
    state: &State,
    key: &PublicKey,
    patient: &PublicKey,
    t: Timestamp,
) -> Option<PatientView> {
    let is_patient = state.patient(patient).is_some_and(|p| p.key == *key);
    if is_patient || state.is_auditor(key) {
        return Some(PatientView::Whole);
    }
    let scopes: Vec<Scope> = state
        .live_delegations(patient, key, t)
        .map(|(_, d)| d.scope)
        .collect();
    // A delegate of the whole scope (a guardian) reads as the patient.
    if scopes.iter().any(Scope::is_whole) {
        return Some(PatientView::Whole);
    }
    if !scopes.is_empty() {
        return Some(PatientView::Delegate { key: *key, scopes });
    }
    reading_organisation(state, key).map(PatientView::Organisation)
}

/// Whether `key` reads the whole chain (blocks and the export): an auditor, or the operator of
/// a validator in the set in force for the next block (the organisation's key or the
/// validator's consensus key).
pub fn reads_whole_chain(state: &State, key: &PublicKey) -> bool {
    if state.is_auditor(key) {
        return true;
    }
    let set = state.validators_for(state.height() + 1);
    set.validators().iter().any(|v| {
        v.key == *key || (v.organisation == *key && state.organisation(key).is_some_and(|o| o.live))
    })
}

/// The patient a did in a path names: the patient whose **current** key it is (after a key
/// rotation the patient id stays the first key, PROTOCOL §6.4), else the key itself (a patient
/// id, a retired key, or a key of no patient).
pub fn resolve_patient(state: &State, key: PublicKey) -> PublicKey {
    match state.patient_of_key(&key) {
        Some(k) if !k.retired => k.patient,
        _ => key,
    }
}

/// Whether `key` reads everything about `patient`'s twin anchors: the patient's current key, a
/// live delegate (of any scope: an anchor carries no category) or an auditor. The hosting
/// organisation reads its own twins too (see `twins`).
pub fn may_read_patient(state: &State, key: &PublicKey, patient: &PublicKey) -> bool {
    let is_patient = state.patient(patient).is_some_and(|p| p.key == *key);
    is_patient || state.is_live_delegate(patient, key, now()) || state.is_auditor(key)
}

/// Refusal for a key that may not read.
pub fn forbidden(key: &PublicKey, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{key} may not read {what}"),
    )
}

/// The one answer for an event that does not exist and one the requester may not read: the
/// same status, code and message either way, so that the answer tells nothing about existence.
pub fn no_readable_event(key: &PublicKey, id: &EventId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no final event {id} that {key} may read"),
    )
}
