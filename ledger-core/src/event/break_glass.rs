//! Break-glass (emergency) access and its review (PROTOCOL.md §5.5, rules §6.5).
//!
//! Emergency treatment (purpose ETREAT) may not wait for consent: a clinician in a role that may
//! break glass is permitted, the access is flagged in the results and enters the review queue;
//! only a review sign-off by a privacy officer of the same organisation, or an auditor, takes it
//! out. The written justification stays off chain; its salted commitment is on chain.

use serde::{Deserialize, Serialize};

use crate::block::{Decision, DenyReason, Outcome};
use crate::codes::{Action, DataCategory, Role};
use crate::commitment::Commitment;
use crate::hash::EventId;
use crate::keys::PublicKey;
use crate::state::records::{BreakGlassRecord, Review};
use crate::state::{Ctx, RejectReason, Tx};

/// Emergency access to a patient's twin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassRequest {
    /// The patient id.
    pub patient: PublicKey,
    /// Data category.
    pub category: DataCategory,
    /// Action.
    pub action: Action,
    /// Commitment to the twin resource.
    pub resource: Commitment,
    /// Commitment to the written justification.
    pub reason: Commitment,
}

impl BreakGlassRequest {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        let (actor, denial) = tx.requesting_actor(cx)?;
        if let Some(reason) = denial {
            // 2.2: a revoked actor's attempt is recorded, denied, and not queued for review.
            return Ok(Outcome::Access(Decision::Deny { reason }));
        }
        if !actor.role.may_break_glass() {
            // Recorded as a denied attempt: auditors see who tried.
            return Ok(Outcome::Access(Decision::Deny {
                reason: DenyReason::RoleMayNotBreakGlass,
            }));
        }
        let rec = BreakGlassRecord {
            actor: cx.author,
            organisation: actor.organisation,
            patient: self.patient,
            category: self.category,
            action: self.action,
            height: cx.height,
            review: None,
        };
        tx.put_break_glass(cx.id, rec);
        Ok(Outcome::Access(Decision::BreakGlass))
    }
}

/// A reviewer's finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// The emergency access was justified.
    Justified,
    /// It was not: follow-up happens off chain, the finding stays on chain.
    Unjustified,
}

/// Signs off a break-glass access, taking it out of the review queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassReview {
    /// The break-glass request (its event id).
    pub request: EventId,
    /// The finding.
    pub finding: Finding,
    /// Commitment to the reviewer's notes.
    pub notes: Commitment,
}

impl BreakGlassReview {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        let mut rec =
            tx.st()
                .break_glass(&self.request)
                .cloned()
                .ok_or(RejectReason::UnknownReference {
                    what: "break-glass access",
                    id: self.request,
                })?;
        if rec.review.is_some() {
            return Err(RejectReason::AlreadyDone {
                what: "break-glass access",
                id: self.request,
                done: "reviewed",
            });
        }
        if rec.actor == cx.author {
            return Err(RejectReason::NotPermitted {
                author: cx.author,
                what: "review their own break-glass access",
            });
        }
        let is_auditor = tx.st().is_auditor(&cx.author);
        if !is_auditor {
            let reviewer = tx.live_actor(cx)?;
            if reviewer.role != Role::PrivacyOfficer || reviewer.organisation != rec.organisation {
                return Err(RejectReason::NotPermitted {
                    author: cx.author,
                    what: "review this break-glass access (needs an auditor or a privacy officer of the same organisation)",
                });
            }
        }
        rec.review = Some(Review {
            reviewer: cx.author,
            finding: self.finding,
            event: cx.id,
        });
        tx.put_break_glass(self.request, rec);
        Ok(Outcome::Applied)
    }
}
