//! Governance (PROTOCOL.md §5.8, rules §6.8): organisation and auditor membership and
//! validator-set changes, each approved by validators holding more than two thirds of the
//! voting power in force.
//!
//! Approvals sign `(governance_seq, action)` (domain `twinledger/v1/governance`). The state's
//! governance sequence advances with every applied governance event, so an approval can be used
//! exactly once and never replayed later (e.g. to revoke an organisation again after it was
//! re-admitted).

use serde::{Deserialize, Serialize};

use crate::block::Outcome;
use crate::codec;
use crate::keys::{Keypair, PublicKey, Signature, sig_domain};
use crate::state::records::{ObserverRecord, OrgRecord};
use crate::state::{Ctx, RejectReason, Tx, check_name};
use crate::validator::{MAX_VALIDATORS, ValidatorSet};

/// What governance can do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GovernanceAction {
    /// Admit an organisation (or re-admit a revoked one).
    OrgEnrol {
        /// Its key.
        org: PublicKey,
        /// Its name (1..=128 bytes).
        name: String,
    },
    /// Revoke an organisation: its actors' events are refused from then on.
    OrgRevoke {
        /// Its key.
        org: PublicKey,
    },
    /// Admit an auditor.
    AuditorEnrol {
        /// Its key.
        auditor: PublicKey,
    },
    /// Revoke an auditor.
    AuditorRevoke {
        /// Its key.
        auditor: PublicKey,
    },
    /// Replace the validator set, in force from [`crate::state::VALIDATOR_SET_DELAY`] blocks on.
    ValidatorSetChange {
        /// The new set.
        validators: ValidatorSet,
    },
    /// (2.5) Allow an observer node, run by a live organisation, to connect and follow.
    ObserverAdd {
        /// The observer node's key (its peer id is derived from it).
        observer: PublicKey,
        /// The organisation that runs it.
        organisation: PublicKey,
    },
    /// (2.5) Withdraw an observer's right to connect (one added by governance or one listed in
    /// a genesis file).
    ObserverRemove {
        /// The observer node's key.
        observer: PublicKey,
    },
}

/// One validator's approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The validator's consensus key.
    pub validator: PublicKey,
    /// Its signature over `(seq, action)`.
    pub signature: Signature,
}

/// A governance action with its approvals, submitted by a validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governance {
    /// The governance sequence number the approvals are for.
    pub seq: u64,
    /// The action.
    pub action: GovernanceAction,
    /// Approvals, sorted by validator key.
    pub approvals: Vec<Approval>,
}

impl Governance {
    /// The bytes approvals sign.
    pub fn approval_body(seq: u64, action: &GovernanceAction) -> Vec<u8> {
        codec::encode(&(seq, action))
    }

    /// A validator's approval.
    pub fn approve(
        chain: &crate::hash::ChainId,
        seq: u64,
        action: &GovernanceAction,
        key: &Keypair,
    ) -> Approval {
        Approval {
            validator: key.public(),
            signature: key.sign(
                sig_domain::GOVERNANCE,
                chain,
                &Self::approval_body(seq, action),
            ),
        }
    }

    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        if tx.validators().get(&cx.author).is_none() {
            return Err(RejectReason::UnknownAuthor {
                author: cx.author,
                kind: cx.kind,
            });
        }
        if self.seq != tx.governance_seq() {
            return Err(RejectReason::Governance(format!(
                "approvals are for governance sequence {}, the chain is at {}",
                self.seq,
                tx.governance_seq()
            )));
        }
        if self.approvals.len() > MAX_VALIDATORS {
            return Err(RejectReason::Governance("too many approvals".into()));
        }
        let body = Self::approval_body(self.seq, &self.action);
        let chain = tx.st().chain_id();
        let mut power = 0u64;
        for (i, a) in self.approvals.iter().enumerate() {
            if i > 0 && self.approvals[i - 1].validator >= a.validator {
                return Err(RejectReason::Governance(format!(
                    "approval by {} is duplicated or out of order",
                    a.validator
                )));
            }
            let v = tx.validators().get(&a.validator).ok_or_else(|| {
                RejectReason::Governance(format!("approver {} is not a validator", a.validator))
            })?;
            a.validator
                .verify(sig_domain::GOVERNANCE, &chain, &body, &a.signature)
                .map_err(|_| RejectReason::BadSignature(a.validator))?;
            power += v.power;
        }
        if !tx.validators().is_quorum(power) {
            return Err(RejectReason::Governance(format!(
                "approvals hold {power} of {} voting power; more than two thirds is required",
                tx.validators().total_power()
            )));
        }
        match &self.action {
            GovernanceAction::OrgEnrol { org, name } => {
                check_name("organisation name", name, 128).map_err(RejectReason::InvalidField)?;
                match tx.st().organisation(org) {
                    Some(o) if !o.live => {}
                    None if !tx.key_in_use(org) => {}
                    _ => return Err(RejectReason::KeyInUse(*org)),
                }
                let rec = OrgRecord {
                    name: name.clone(),
                    live: true,
                };
                tx.put_org(*org, rec);
            }
            GovernanceAction::OrgRevoke { org } => {
                let mut rec = match tx.st().organisation(org) {
                    Some(o) if o.live => o.clone(),
                    _ => {
                        return Err(RejectReason::Governance(format!(
                            "organisation {org} is not a live member"
                        )));
                    }
                };
                rec.live = false;
                tx.put_org(*org, rec);
            }
            GovernanceAction::AuditorEnrol { auditor } => {
                match tx.st().auditor(auditor) {
                    Some(false) => {}
                    None if !tx.key_in_use(auditor) => {}
                    _ => return Err(RejectReason::KeyInUse(*auditor)),
                }
                tx.put_auditor(*auditor, true);
            }
            GovernanceAction::AuditorRevoke { auditor } => {
                if tx.st().auditor(auditor) != Some(true) {
                    return Err(RejectReason::Governance(format!(
                        "{auditor} is not a live auditor"
                    )));
                }
                tx.put_auditor(*auditor, false);
            }
            GovernanceAction::ValidatorSetChange { validators } => {
                validators.validate()?;
                for v in validators.validators() {
                    if !tx
                        .st()
                        .organisation(&v.organisation)
                        .is_some_and(|o| o.live)
                    {
                        return Err(RejectReason::Governance(format!(
                            "validator {} names {} which is not a live organisation",
                            v.key, v.organisation
                        )));
                    }
                }
                tx.schedule_validators(cx, validators.clone())?;
            }
            GovernanceAction::ObserverAdd {
                observer,
                organisation,
            } => {
                if !tx.st().organisation(organisation).is_some_and(|o| o.live) {
                    return Err(RejectReason::Governance(format!(
                        "observer {observer} names {organisation} which is not a live organisation"
                    )));
                }
                if tx.st().observer(observer).is_some_and(|o| o.live) {
                    return Err(RejectReason::Governance(format!(
                        "{observer} is already a live observer"
                    )));
                }
                if tx.validators().get(observer).is_some() {
                    return Err(RejectReason::Governance(format!(
                        "{observer} is a validator of the set in force; a validator needs no observer entry"
                    )));
                }
                tx.put_observer(
                    *observer,
                    ObserverRecord {
                        organisation: Some(*organisation),
                        live: true,
                    },
                );
            }
            GovernanceAction::ObserverRemove { observer } => {
                let prev = tx.st().observer(observer).copied();
                if prev.is_some_and(|o| !o.live) {
                    return Err(RejectReason::Governance(format!(
                        "{observer} is already removed"
                    )));
                }
                tx.put_observer(
                    *observer,
                    ObserverRecord {
                        organisation: prev.and_then(|o| o.organisation),
                        live: false,
                    },
                );
            }
        }
        tx.bump_governance_seq();
        Ok(Outcome::Applied)
    }
}
