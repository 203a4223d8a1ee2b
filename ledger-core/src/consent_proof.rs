//! Consent at time *t* and absence of consent (PROTOCOL.md §11.4): the access decision of
//! §6.1 re-derived from a patient's complete history (§11.3) instead of from the state.
//!
//! The state map keeps only the latest state (ADR 0008), so it cannot show which grants were
//! live when an old request was decided. But a verified patient history is every accepted
//! event that concerns the patient up to its tip, in chain order (§6.10, §11.3), so its prefix
//! before any event is every such event before it: every grant, revoke, delegation, delegation
//! revoke and key rotation of the patient. Replaying that prefix rebuilds the part of the state
//! the decision reads (the patient's grants with `granted_by` and `revoked_at`, the patient's
//! delegations); with what the verifier knows of the requester (its organisation and role),
//! [`rederive`] decides the request again by the rule of §6.1 (or §6.5 for break-glass), and
//! says, for every grant of the patient, whether it covered the request and why not.
//! [`verify_decision`] also compares the re-derived decision with the recorded outcome.
//!
//! Pure: no I/O, no clock; the block time of the request is the entry's `time`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::SignedEvent;
use crate::block::{Decision, DenyReason, Outcome};
use crate::codes::Role;
use crate::event::EventPayload;
use crate::event::consent::{ConsentGrant, Grantee};
use crate::event::delegation::Scope;
use crate::hash::EventId;
use crate::keys::PublicKey;
use crate::state::records::{ActorRecord, GrantedBy};
use crate::time::Timestamp;

/// One accepted event of a patient's history with what its receipt proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The event id.
    pub id: EventId,
    /// The signed event.
    pub event: SignedEvent,
    /// Its proven outcome.
    pub outcome: Outcome,
    /// The height of its block.
    pub height: u64,
    /// The time of its block.
    pub time: Timestamp,
}

/// What the verifier knows of the requesting actor: its key, organisation and role (from the
/// genesis actors, or from an actor record it holds a proof of).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// The actor's key (the request's author).
    pub key: PublicKey,
    /// Its organisation.
    pub organisation: PublicKey,
    /// Its role.
    pub role: Role,
}

/// Why a grant did not cover the request (every condition of §6.1 that fails is listed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotCovering {
    /// Revoked before the request (§6.2: from the revoke's place in the chain on).
    Revoked {
        /// Height of the block holding the revoke.
        at_height: u64,
        /// The revoke event.
        by: EventId,
    },
    /// `valid_from` after the request's block time (§6.1 condition 1).
    NotYetValid {
        /// The grant's `valid_from`.
        valid_from: Timestamp,
    },
    /// `valid_until` at or before the request's block time (§6.1 condition 1).
    Expired {
        /// The grant's `valid_until`.
        valid_until: Timestamp,
    },
    /// The grantee does not cover the requester (§6.1 condition 2).
    OtherGrantee,
    /// The category is not in the grant's categories (§6.1 condition 3).
    Category,
    /// The purpose is not in the grant's purposes (§6.1 condition 3).
    Purpose,
    /// The action is not in the grant's actions (§6.1 condition 3).
    Action,
    /// Made by a delegate whose delegation was revoked before the request (§6.1 condition 4).
    DelegationRevoked {
        /// The delegation.
        delegation: EventId,
        /// Height of the block holding its revoke.
        at_height: u64,
        /// The revoke event.
        by: EventId,
    },
    /// Made by a delegate whose delegation had expired at the request (§6.1 condition 4).
    DelegationExpired {
        /// The delegation.
        delegation: EventId,
        /// Its `valid_until`.
        valid_until: Timestamp,
    },
}

impl fmt::Display for NotCovering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotCovering::Revoked { at_height, by } => {
                write!(f, "revoked at block {at_height} (event {by})")
            }
            NotCovering::NotYetValid { valid_from } => {
                write!(f, "not yet valid (valid from {} ms)", valid_from.0)
            }
            NotCovering::Expired { valid_until } => {
                write!(f, "expired (valid until {} ms)", valid_until.0)
            }
            NotCovering::OtherGrantee => write!(f, "another grantee"),
            NotCovering::Category => write!(f, "category not granted"),
            NotCovering::Purpose => write!(f, "purpose not granted"),
            NotCovering::Action => write!(f, "action not granted"),
            NotCovering::DelegationRevoked {
                delegation,
                at_height,
                by,
            } => write!(
                f,
                "made under delegation {delegation}, revoked at block {at_height} (event {by})"
            ),
            NotCovering::DelegationExpired {
                delegation,
                valid_until,
            } => write!(
                f,
                "made under delegation {delegation}, expired (valid until {} ms)",
                valid_until.0
            ),
        }
    }
}

/// One grant of the patient made before the request, checked against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantCheck {
    /// The grant (its event id).
    pub grant: EventId,
    /// Its position in the history.
    pub index: usize,
    /// Height of the block holding it.
    pub height: u64,
    /// Who made it (§6.2), re-derived from the history.
    pub granted_by: GrantedBy,
    /// The grant as signed.
    pub payload: ConsentGrant,
    /// Every condition of §6.1 it fails; empty: it covers the request.
    pub not_covering: Vec<NotCovering>,
}

impl GrantCheck {
    /// Whether the grant covered the request.
    pub fn covers(&self) -> bool {
        self.not_covering.is_empty()
    }
}

/// The decision of a request re-derived from the history before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentProof {
    /// The request.
    pub request: EventId,
    /// Its position in the history.
    pub index: usize,
    /// Its block.
    pub height: u64,
    /// Its block time.
    pub time: Timestamp,
    /// The requester as the verifier knows it.
    pub requester: Requester,
    /// The re-derived decision.
    pub decision: Decision,
    /// Every grant of the patient before the request, in ascending grant id (empty for a
    /// break-glass request, which no grant decides).
    pub grants: Vec<GrantCheck>,
}

impl ConsentProof {
    /// The grant that permits the request (the first covering one in grant-id order).
    pub fn permitting(&self) -> Option<&GrantCheck> {
        match self.decision {
            Decision::Permit { grant } => self.grants.iter().find(|g| g.grant == grant),
            _ => None,
        }
    }
}

/// Why a decision cannot be re-derived, or disagrees with the recorded one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsentProofError {
    /// The index is past the history.
    #[error("history position {index} is past its {len} events")]
    OutOfRange {
        /// The index.
        index: usize,
        /// The history's length.
        len: usize,
    },
    /// The event at the index is not an access or break-glass request of the patient.
    #[error("event {id} is not an access or break-glass request of patient {patient}")]
    NotARequest {
        /// The event.
        id: EventId,
        /// The patient.
        patient: PublicKey,
    },
    /// The requester facts are of another key than the request's author.
    #[error("the requester facts are of {given}, the request {id} is signed by {author}")]
    OtherRequester {
        /// The request.
        id: EventId,
        /// Its author.
        author: PublicKey,
        /// The key the facts are of.
        given: PublicKey,
    },
    /// An event of the history the ledger could not have accepted (a forged or foreign list).
    #[error("history event {index} (event {id}): {why}: the ledger would have refused it")]
    Inconsistent {
        /// Its position.
        index: usize,
        /// The event.
        id: EventId,
        /// What is wrong.
        why: String,
    },
    /// The recorded outcome is not the re-derived decision.
    #[error("{0}")]
    Disagrees(Box<Disagreement>),
}

/// A recorded outcome that the history does not support.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disagreement {
    /// The recorded outcome.
    pub recorded: Outcome,
    /// The re-derivation.
    pub proof: ConsentProof,
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.proof;
        write!(
            f,
            "request {} (block {}) is recorded as {}, but the patient's history before it gives {}",
            p.request,
            p.height,
            serde_json_like(&self.recorded),
            serde_json_like(&Outcome::Access(p.decision))
        )?;
        if let Outcome::Access(Decision::Permit { grant }) = self.recorded {
            match p.grants.iter().find(|g| g.grant == grant) {
                None => write!(
                    f,
                    ": grant {grant} is not a grant of this patient made before the request"
                )?,
                Some(g) => {
                    let why: Vec<String> = g.not_covering.iter().map(|n| n.to_string()).collect();
                    if why.is_empty() {
                        write!(f, ": grant {grant} covers it, but grant ")?;
                        if let Some(first) = p.permitting() {
                            write!(f, "{} comes first in grant-id order", first.grant)?;
                        }
                    } else {
                        write!(f, ": grant {grant} did not cover it: {}", why.join(", "))?;
                    }
                }
            }
        }
        if let Some(g) = p.permitting()
            && !matches!(self.recorded, Outcome::Access(Decision::Permit { .. }))
        {
            write!(
                f,
                ": grant {} (block {}) was live and covered it, the ledger would have permitted it",
                g.grant, g.height
            )?;
        }
        Ok(())
    }
}

fn serde_json_like(o: &Outcome) -> String {
    match o {
        Outcome::Applied => "applied".into(),
        Outcome::Access(Decision::Permit { grant }) => format!("permit (grant {grant})"),
        Outcome::Access(Decision::Deny { reason }) => match reason {
            DenyReason::NoCoveringGrant => "deny (no_covering_grant)".into(),
            DenyReason::RoleMayNotBreakGlass => "deny (role_may_not_break_glass)".into(),
            DenyReason::ActorRevoked => "deny (actor_revoked)".into(),
            DenyReason::OrganisationRevoked => "deny (organisation_revoked)".into(),
        },
        Outcome::Access(Decision::BreakGlass) => "break_glass".into(),
    }
}

struct Grant {
    index: usize,
    height: u64,
    payload: ConsentGrant,
    granted_by: GrantedBy,
    revoked: Option<(u64, EventId)>,
}

struct Delegation {
    delegate: PublicKey,
    scope: Scope,
    valid_until: Option<Timestamp>,
    revoked: Option<(u64, EventId)>,
}

impl Delegation {
    fn live_at(&self, t: Timestamp) -> bool {
        self.revoked.is_none() && self.valid_until.is_none_or(|u| t < u)
    }
}

/// The patient's grants and delegations as the state held them before event `index`.
#[derive(Default)]
struct Replay {
    current_key: Option<PublicKey>,
    grants: BTreeMap<EventId, Grant>,
    delegations: BTreeMap<EventId, Delegation>,
}

impl Replay {
    /// §6 "acting for a patient" as the patient: the current key, or the patient id registering.
    fn as_patient(&mut self, patient: &PublicKey, author: &PublicKey) -> bool {
        match self.current_key {
            Some(k) => k == *author,
            None if author == patient => {
                self.current_key = Some(*patient);
                true
            }
            None => false,
        }
    }

    fn apply(&mut self, patient: &PublicKey, index: usize, e: &HistoryEntry) -> Result<(), String> {
        let author = e.event.event.author;
        let of_patient = |p: &PublicKey| {
            if p == patient {
                Ok(())
            } else {
                Err(format!("it names patient {p}, not {patient}"))
            }
        };
        match &e.event.event.payload {
            EventPayload::ConsentGrant(g) => {
                of_patient(&g.patient)?;
                let granted_by = if self.as_patient(patient, &author) {
                    GrantedBy::Patient
                } else {
                    // §6: of the live delegations to the author whose scope contains the
                    // grant's, the smallest delegation id.
                    let d = self
                        .delegations
                        .iter()
                        .find(|(_, d)| {
                            d.delegate == author && d.live_at(e.time) && g.scope.is_within(&d.scope)
                        })
                        .map(|(id, _)| *id)
                        .ok_or_else(|| {
                            format!(
                                "grant signed by {author}, neither the patient's current key nor \
                                 a live delegate whose scope holds the grant's"
                            )
                        })?;
                    GrantedBy::Delegate(d)
                };
                self.grants.insert(
                    e.id,
                    Grant {
                        index,
                        height: e.height,
                        payload: g.clone(),
                        granted_by,
                        revoked: None,
                    },
                );
            }
            EventPayload::ConsentRevoke(r) => {
                of_patient(&r.patient)?;
                let revoked = self.grants.get_mut(&r.grant).map(|g| &mut g.revoked);
                mark_revoked(revoked, "grant", r.grant, (e.height, e.id))?;
            }
            EventPayload::DelegateGrant(d) => {
                of_patient(&d.patient)?;
                if !self.as_patient(patient, &author) {
                    return Err(format!("delegation signed by {author}, not the patient"));
                }
                self.delegations.insert(
                    e.id,
                    Delegation {
                        delegate: d.delegate,
                        scope: d.scope,
                        valid_until: d.valid_until,
                        revoked: None,
                    },
                );
            }
            EventPayload::DelegateRevoke(r) => {
                of_patient(&r.patient)?;
                let revoked = self
                    .delegations
                    .get_mut(&r.delegation)
                    .map(|d| &mut d.revoked);
                mark_revoked(revoked, "delegation", r.delegation, (e.height, e.id))?;
            }
            EventPayload::KeyRotation(r) => {
                of_patient(&r.patient)?;
                if !self.as_patient(patient, &author) {
                    return Err(format!(
                        "rotation signed by {author}, not the patient's current key"
                    ));
                }
                self.current_key = Some(r.new_key);
            }
            // Requests, reviews and anchors change nothing a decision reads.
            _ => {}
        }
        Ok(())
    }
}

/// Re-derives the decision of the request at `history[index]` of `patient` (PROTOCOL.md
/// §11.4) from the events before it, for the requester `requester`. `history` must be the
/// patient's complete history in chain order (a verified §11.3 answer, or any prefix of it
/// that holds the request): an event missing from it can change the answer.
pub fn rederive(
    patient: &PublicKey,
    history: &[HistoryEntry],
    index: usize,
    requester: &Requester,
) -> Result<ConsentProof, ConsentProofError> {
    let req = history.get(index).ok_or(ConsentProofError::OutOfRange {
        index,
        len: history.len(),
    })?;
    let not_a_request = || ConsentProofError::NotARequest {
        id: req.id,
        patient: *patient,
    };
    let (req_patient, scope) = match &req.event.event.payload {
        EventPayload::AccessRequest(a) => (a.patient, Some((a.category, a.purpose, a.action))),
        EventPayload::BreakGlassRequest(b) => (b.patient, None),
        _ => return Err(not_a_request()),
    };
    if req_patient != *patient {
        return Err(not_a_request());
    }
    if req.event.event.author != requester.key {
        return Err(ConsentProofError::OtherRequester {
            id: req.id,
            author: req.event.event.author,
            given: requester.key,
        });
    }
    let base = ConsentProof {
        request: req.id,
        index,
        height: req.height,
        time: req.time,
        requester: *requester,
        decision: Decision::BreakGlass,
        grants: Vec::new(),
    };
    // §11.4 (2.2): whether the requester's enrolment or organisation was revoked when it asked
    // is not in the patient's history (membership events concern no patient), so a denial for
    // that reason is taken from the request's proven outcome; the grants are still checked.
    let revoked_requester = match req.outcome {
        Outcome::Access(Decision::Deny {
            reason: reason @ (DenyReason::ActorRevoked | DenyReason::OrganisationRevoked),
        }) => Some(Decision::Deny { reason }),
        _ => None,
    };
    let Some((category, purpose, action)) = scope else {
        // §6.5: the outcome of a break-glass request depends only on the requester's role.
        let decision = if let Some(d) = revoked_requester {
            d
        } else if requester.role.may_break_glass() {
            Decision::BreakGlass
        } else {
            Decision::Deny {
                reason: DenyReason::RoleMayNotBreakGlass,
            }
        };
        return Ok(ConsentProof { decision, ..base });
    };
    let mut replay = Replay::default();
    for (i, e) in history[..index].iter().enumerate() {
        replay
            .apply(patient, i, e)
            .map_err(|why| ConsentProofError::Inconsistent {
                index: i,
                id: e.id,
                why,
            })?;
    }
    let t = req.time;
    let actor = ActorRecord {
        organisation: requester.organisation,
        role: requester.role,
        live: true,
    };
    let grants: Vec<GrantCheck> = replay
        .grants
        .iter()
        .map(|(id, g)| {
            let p = &g.payload;
            let mut why = Vec::new();
            if let Some((at_height, by)) = g.revoked {
                why.push(NotCovering::Revoked { at_height, by });
            }
            if p.valid_from > t {
                why.push(NotCovering::NotYetValid {
                    valid_from: p.valid_from,
                });
            }
            if let Some(u) = p.valid_until
                && t >= u
            {
                why.push(NotCovering::Expired { valid_until: u });
            }
            if !covers(&p.grantee, &requester.key, &actor) {
                why.push(NotCovering::OtherGrantee);
            }
            if !p.scope.categories.contains(category) {
                why.push(NotCovering::Category);
            }
            if !p.scope.purposes.contains(purpose) {
                why.push(NotCovering::Purpose);
            }
            if !p.scope.actions.contains(action) {
                why.push(NotCovering::Action);
            }
            if let GrantedBy::Delegate(d) = g.granted_by
                && let Some(del) = replay.delegations.get(&d)
            {
                if let Some((at_height, by)) = del.revoked {
                    why.push(NotCovering::DelegationRevoked {
                        delegation: d,
                        at_height,
                        by,
                    });
                } else if let Some(u) = del.valid_until
                    && t >= u
                {
                    why.push(NotCovering::DelegationExpired {
                        delegation: d,
                        valid_until: u,
                    });
                }
            }
            GrantCheck {
                grant: *id,
                index: g.index,
                height: g.height,
                granted_by: g.granted_by,
                payload: p.clone(),
                not_covering: why,
            }
        })
        .collect();
    let decision = match (revoked_requester, grants.iter().find(|g| g.covers())) {
        (Some(d), _) => d,
        (None, Some(g)) => Decision::Permit { grant: g.grant },
        (None, None) => Decision::Deny {
            reason: DenyReason::NoCoveringGrant,
        },
    };
    Ok(ConsentProof {
        decision,
        grants,
        ..base
    })
}

fn covers(grantee: &Grantee, key: &PublicKey, actor: &ActorRecord) -> bool {
    grantee.covers(key, actor)
}

/// [`rederive`], then compares the decision with the outcome recorded for the request
/// (`history[index].outcome`): `Disagrees` when they differ, naming the grant at fault.
pub fn verify_decision(
    patient: &PublicKey,
    history: &[HistoryEntry],
    index: usize,
    requester: &Requester,
) -> Result<ConsentProof, ConsentProofError> {
    let proof = rederive(patient, history, index, requester)?;
    let recorded = history[index].outcome;
    if recorded != Outcome::Access(proof.decision) {
        return Err(ConsentProofError::Disagrees(Box::new(Disagreement {
            recorded,
            proof,
        })));
    }
    Ok(proof)
}

/// Marks a grant or delegation (`what`, `id`) revoked by the event `by` (height, id): refused
/// when it is unknown (`revoked` is None) or already revoked.
fn mark_revoked(
    revoked: Option<&mut Option<(u64, EventId)>>,
    what: &str,
    id: EventId,
    by: (u64, EventId),
) -> Result<(), String> {
    match revoked {
        Some(r) if r.is_none() => {
            *r = Some(by);
            Ok(())
        }
        Some(_) => Err(format!("it revokes {what} {id} again")),
        None => Err(format!(
            "it revokes {what} {id}, not a {what} of the patient before it"
        )),
    }
}
