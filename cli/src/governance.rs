//! `twinctl governance`: membership changes on a running network (PROTOCOL.md §5.8, §6.8, §7.1).
//!
//! A change travels as a **proposal file**: `propose` writes it (the action, the chain, the
//! governance sequence it is for), each validator's operator runs `approve` on it with the
//! validator's consensus key (the approvals are signatures over `(seq, action)`), and any
//! validator `submit`s it once the approvals hold more than two thirds of the power. `status`
//! says where a proposal stands; `show` prints the membership the chain is at. The file carries
//! the action's canonical encoding, and every command decodes and shows that encoding, so what
//! an approver reads is what they sign.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use twinledger_core::event::governance::{Approval, Governance, GovernanceAction};
use twinledger_core::validator::{Validator, ValidatorSet};
use twinledger_core::{ChainId, EventPayload, PublicKey, codec};

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::submit::submit_and_wait;
use crate::{CliError, Output, files};

/// The proposal file's format marker.
pub const PROPOSAL_FORMAT: &str = "twinledger-governance-proposal/1";
/// A governance action is a few hundred bytes; a set of 256 validators some 25 KB.
const MAX_ACTION_BYTES: usize = 64 * 1024;

/// `twinctl governance ...`
#[derive(Debug, Args)]
pub struct GovernanceArgs {
    /// The governance command.
    #[command(subcommand)]
    pub command: GovernanceCommand,
}

/// Governance commands.
#[derive(Debug, Subcommand)]
pub enum GovernanceCommand {
    /// Show the network's membership as the chain has it: validators in force and scheduled,
    /// observers, organisations, the governance sequence, the applied validator-set changes.
    Show,
    /// Write a proposal file for one change (no approvals yet).
    Propose {
        /// The proposal file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// The change.
        #[command(subcommand)]
        change: Change,
    },
    /// Approve a proposal with a validator's consensus key (adds its signature to the file).
    Approve {
        /// The proposal file (updated in place).
        proposal: PathBuf,
        /// The validator's key file (a development key, or an encrypted copy of the node key
        /// made with `twinctl key import`).
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Say where a proposal stands: its change, its approvals and their power against the
    /// quorum, and whether the chain can still apply it.
    Status {
        /// The proposal file.
        proposal: PathBuf,
    },
    /// Submit an approved proposal as a governance event signed by a validator, and wait until
    /// it is final.
    Submit {
        /// The proposal file.
        proposal: PathBuf,
        /// A validator's key file (the event's author).
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
    },
}

/// One membership change.
#[derive(Debug, Subcommand)]
pub enum Change {
    /// Add a validator (in force two blocks after the change is committed).
    AddValidator {
        /// Its consensus key (did:key).
        #[arg(long)]
        validator: String,
        /// The live organisation that runs it (did:key).
        #[arg(long)]
        organisation: String,
        /// Its voting power.
        #[arg(long, default_value_t = 1)]
        power: u64,
    },
    /// Remove a validator.
    RemoveValidator {
        /// Its consensus key (did:key).
        #[arg(long)]
        validator: String,
    },
    /// Replace a validator's consensus key by another (same organisation and power): the node
    /// holding the new key signs from the height the new set is in force.
    RotateValidator {
        /// The key in the set now (did:key).
        #[arg(long)]
        from: String,
        /// The new key (did:key).
        #[arg(long)]
        to: String,
    },
    /// Allow an observer node run by a live organisation to connect and follow.
    AddObserver {
        /// The observer node's key (did:key; its peer id is derived from it).
        #[arg(long)]
        observer: String,
        /// The organisation that runs it (did:key).
        #[arg(long)]
        organisation: String,
    },
    /// Withdraw an observer's right to connect (one added by governance or one listed in the
    /// genesis file).
    RemoveObserver {
        /// The observer node's key (did:key).
        #[arg(long)]
        observer: String,
    },
    /// Admit a member organisation (or re-admit a revoked one).
    EnrolOrg {
        /// Its key (did:key).
        #[arg(long)]
        org: String,
        /// Its name.
        #[arg(long)]
        name: String,
    },
    /// Revoke a member organisation.
    RevokeOrg {
        /// Its key (did:key).
        #[arg(long)]
        org: String,
    },
}

/// The proposal file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// [`PROPOSAL_FORMAT`].
    pub format: String,
    /// The chain (hex).
    pub chain_id: String,
    /// The governance sequence the approvals sign.
    pub seq: u64,
    /// The action's canonical encoding (hex): what is signed and submitted.
    pub action_hex: String,
    /// The action, for people (checked against `action_hex` whenever the file is read).
    pub action: GovernanceAction,
    /// The approvals so far, sorted by validator key.
    pub approvals: Vec<Approval>,
}

fn did(flag: &str, s: &str) -> Result<PublicKey, CliError> {
    PublicKey::from_did(s).map_err(|e| CliError::Invalid(format!("--{flag} {s:?}: {e}")))
}

/// The membership view of the node (`GET /v1/governance`).
fn membership(client: &NodeClient) -> Result<Value, CliError> {
    client.get_json("/v1/governance")
}

fn set_of(v: &Value) -> Result<ValidatorSet, CliError> {
    let bad = || CliError::Invalid("the node's /v1/governance answer has no validator set".into());
    let list = v["validators"].as_array().ok_or_else(bad)?;
    let mut out = Vec::new();
    for x in list {
        let key = x["key"].as_str().ok_or_else(bad)?;
        let org = x["organisation"].as_str().ok_or_else(bad)?;
        out.push(Validator {
            key: PublicKey::from_did(key).map_err(|_| bad())?,
            organisation: PublicKey::from_did(org).map_err(|_| bad())?,
            power: x["power"].as_u64().ok_or_else(bad)?,
        });
    }
    ValidatorSet::new(out).map_err(|e| CliError::Invalid(format!("validator set: {e}")))
}

/// The action for a change, given the membership the node reports.
fn action_for(change: &Change, view: &Value) -> Result<GovernanceAction, CliError> {
    let new_set = |edit: &dyn Fn(&mut Vec<Validator>) -> Result<(), CliError>| {
        if !view["scheduled"].is_null() {
            return Err(CliError::Invalid(format!(
                "a validator-set change is pending (in force from height {}); a new change is \
                 accepted only after it is in force: propose again then",
                view["scheduled"]["in_force_from"]
            )));
        }
        let mut vals = set_of(&view["validators"])?.validators().to_vec();
        edit(&mut vals)?;
        vals.sort_by_key(|v| v.key);
        let set = ValidatorSet::new(vals)
            .map_err(|e| CliError::Invalid(format!("the new validator set: {e}")))?;
        set.validate()
            .map_err(|e| CliError::Invalid(format!("the new validator set: {e}")))?;
        Ok(GovernanceAction::ValidatorSetChange { validators: set })
    };
    let position = |vals: &[Validator], key: &PublicKey| {
        vals.iter().position(|v| v.key == *key).ok_or_else(|| {
            CliError::Invalid(format!("{key} is not a validator of the set in force"))
        })
    };
    Ok(match change {
        Change::AddValidator {
            validator,
            organisation,
            power,
        } => {
            let key = did("validator", validator)?;
            let organisation = did("organisation", organisation)?;
            new_set(&|vals| {
                if vals.iter().any(|v| v.key == key) {
                    return Err(CliError::Invalid(format!(
                        "{key} is already a validator of the set in force"
                    )));
                }
                vals.push(Validator {
                    key,
                    organisation,
                    power: *power,
                });
                Ok(())
            })?
        }
        Change::RemoveValidator { validator } => {
            let key = did("validator", validator)?;
            new_set(&|vals| {
                let i = position(vals, &key)?;
                vals.remove(i);
                Ok(())
            })?
        }
        Change::RotateValidator { from, to } => {
            let (from, to) = (did("from", from)?, did("to", to)?);
            new_set(&|vals| {
                if vals.iter().any(|v| v.key == to) {
                    return Err(CliError::Invalid(format!(
                        "{to} is already a validator of the set in force"
                    )));
                }
                let i = position(vals, &from)?;
                vals[i].key = to;
                Ok(())
            })?
        }
        Change::AddObserver {
            observer,
            organisation,
        } => GovernanceAction::ObserverAdd {
            observer: did("observer", observer)?,
            organisation: did("organisation", organisation)?,
        },
        Change::RemoveObserver { observer } => GovernanceAction::ObserverRemove {
            observer: did("observer", observer)?,
        },
        Change::EnrolOrg { org, name } => GovernanceAction::OrgEnrol {
            org: did("org", org)?,
            name: name.clone(),
        },
        Change::RevokeOrg { org } => GovernanceAction::OrgRevoke {
            org: did("org", org)?,
        },
    })
}

/// One line for people, from the action itself.
pub fn describe(action: &GovernanceAction) -> String {
    match action {
        GovernanceAction::OrgEnrol { org, name } => format!("enrol organisation {name:?} ({org})"),
        GovernanceAction::OrgRevoke { org } => format!("revoke organisation {org}"),
        GovernanceAction::AuditorEnrol { auditor } => format!("enrol auditor {auditor}"),
        GovernanceAction::AuditorRevoke { auditor } => format!("revoke auditor {auditor}"),
        GovernanceAction::ValidatorSetChange { validators } => {
            let list: Vec<String> = validators
                .validators()
                .iter()
                .map(|v| {
                    format!(
                        "{} (power {}, organisation {})",
                        v.key, v.power, v.organisation
                    )
                })
                .collect();
            format!(
                "replace the validator set by {} validators, total power {}: {}",
                list.len(),
                validators.total_power(),
                list.join("; ")
            )
        }
        GovernanceAction::ObserverAdd {
            observer,
            organisation,
        } => format!("add observer {observer} run by {organisation}"),
        GovernanceAction::ObserverRemove { observer } => format!("remove observer {observer}"),
    }
}

fn load(path: &Path) -> Result<Proposal, CliError> {
    let text = files::read_to_string(path)?;
    let p: Proposal = serde_json::from_str(&text).map_err(|e| {
        CliError::Invalid(format!(
            "{}: not a governance proposal file: {e}",
            path.display()
        ))
    })?;
    if p.format != PROPOSAL_FORMAT {
        return Err(CliError::Invalid(format!(
            "{}: format {:?}, expected {PROPOSAL_FORMAT:?}",
            path.display(),
            p.format
        )));
    }
    let bytes = hex::decode(&p.action_hex).map_err(|e| {
        CliError::Invalid(format!("{}: action_hex is not hex: {e}", path.display()))
    })?;
    let decoded: GovernanceAction = codec::decode("governance action", &bytes, MAX_ACTION_BYTES)
        .map_err(|e| CliError::Invalid(format!("{}: action_hex: {e}", path.display())))?;
    if decoded != p.action {
        return Err(CliError::Mismatch(format!(
            "{}: the readable `action` and the signed `action_hex` disagree; the file was edited \
             by hand or tampered with: do not approve it, ask for a new proposal",
            path.display()
        )));
    }
    for w in p.approvals.windows(2) {
        if w[0].validator >= w[1].validator {
            return Err(CliError::Invalid(format!(
                "{}: approvals are duplicated or out of order",
                path.display()
            )));
        }
    }
    Ok(p)
}

fn save(path: &Path, p: &Proposal) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(p).expect("a proposal serialises") + "\n";
    let tmp = path.with_extension("json.new");
    files::write(&tmp, text)?;
    std::fs::rename(&tmp, path).map_err(CliError::io("replace", path))
}

/// Where a proposal stands against the chain: checks its chain and sequence and every
/// approval, and sums the valid approvers' power in the set in force.
struct Standing {
    chain_id: ChainId,
    set: ValidatorSet,
    seq_now: u64,
    power: u64,
    approvers: Vec<(PublicKey, u64)>,
}

fn standing(client: &NodeClient, p: &Proposal) -> Result<Standing, CliError> {
    let view = membership(client)?;
    let chain_id = client.chain_id;
    if p.chain_id != chain_id.to_hex() {
        return Err(CliError::Mismatch(format!(
            "the proposal is for chain {}, the node is on chain {}",
            p.chain_id,
            chain_id.to_hex()
        )));
    }
    let set = set_of(&view["validators"])?;
    let seq_now = view["governance_seq"].as_u64().unwrap_or(0);
    let body = Governance::approval_body(p.seq, &p.action);
    let mut power = 0;
    let mut approvers = Vec::new();
    for a in &p.approvals {
        let Some(v) = set.get(&a.validator) else {
            return Err(CliError::Invalid(format!(
                "approval by {} who is not a validator of the set in force",
                a.validator
            )));
        };
        a.validator
            .verify(
                twinledger_core::keys::sig_domain::GOVERNANCE,
                &chain_id,
                &body,
                &a.signature,
            )
            .map_err(|_| {
                CliError::Mismatch(format!(
                    "the approval by {} does not verify for this proposal (sequence {}, this \
                     action, chain {})",
                    a.validator,
                    p.seq,
                    chain_id.to_hex()
                ))
            })?;
        power += v.power;
        approvers.push((a.validator, v.power));
    }
    Ok(Standing {
        chain_id,
        set,
        seq_now,
        power,
        approvers,
    })
}

fn stale(p: &Proposal, s: &Standing) -> Option<String> {
    (p.seq != s.seq_now).then(|| {
        format!(
            "the proposal is for governance sequence {}, the chain is at {}: another change was \
             applied since (or this one already was), so its approvals can no longer be used; \
             propose it again",
            p.seq, s.seq_now
        )
    })
}

fn status_json(p: &Proposal, s: &Standing) -> Value {
    let total = s.set.total_power();
    json!({
        "chain_id": s.chain_id.to_hex(),
        "seq": p.seq,
        "chain_seq": s.seq_now,
        "action": describe(&p.action),
        "approvals": s.approvers.iter().map(|(k, w)| json!({"validator": k, "power": w})).collect::<Vec<_>>(),
        "power": s.power,
        "total_power": total,
        "quorum": s.set.is_quorum(s.power),
        "current": p.seq == s.seq_now,
    })
}

fn status_text(p: &Proposal, s: &Standing) -> String {
    let total = s.set.total_power();
    let mut t = format!(
        "proposal (governance sequence {}): {}\n",
        p.seq,
        describe(&p.action)
    );
    for (k, w) in &s.approvers {
        t.push_str(&format!("  approved by {k} (power {w})\n"));
    }
    t.push_str(&format!(
        "  approvals hold {} of {total} voting power; more than two thirds is needed: {}\n",
        s.power,
        if s.set.is_quorum(s.power) {
            "enough, ready to submit"
        } else {
            "not yet"
        }
    ));
    if let Some(why) = stale(p, s) {
        t.push_str(&format!("  STALE: {why}\n"));
    }
    t
}

fn show(node: &str) -> Result<Output, CliError> {
    let client = NodeClient::connect(node)?;
    let v = membership(&client)?;
    let mut t = format!(
        "chain {} at height {}, governance sequence {}\n",
        v["chain_id"].as_str().unwrap_or(""),
        v["height"],
        v["governance_seq"]
    );
    let set_text = |s: &Value| {
        let mut out = String::new();
        for x in s["validators"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {}  power {}  organisation {}  peer {}\n",
                x["key"].as_str().unwrap_or(""),
                x["power"],
                x["organisation"].as_str().unwrap_or(""),
                x["peer_id"].as_str().unwrap_or("")
            ));
        }
        out
    };
    t.push_str(&format!(
        "validators in force from height {} (total power {}):\n",
        v["validators"]["height"], v["validators"]["total_power"]
    ));
    t.push_str(&set_text(&v["validators"]));
    if v["scheduled"].is_null() {
        t.push_str("pending validator-set change: none\n");
    } else {
        t.push_str(&format!(
            "pending: validators in force from height {}:\n",
            v["scheduled"]["in_force_from"]
        ));
        t.push_str(&set_text(&v["scheduled"]));
    }
    let observers = v["observers"].as_array().cloned().unwrap_or_default();
    if observers.is_empty() {
        t.push_str("observers by governance: none (the genesis file's observers apply)\n");
    } else {
        t.push_str("observers by governance:\n");
        for o in &observers {
            t.push_str(&format!(
                "  {}  {}  organisation {}  peer {}\n",
                o["key"].as_str().unwrap_or(""),
                if o["live"].as_bool() == Some(true) {
                    "live"
                } else {
                    "removed"
                },
                o["organisation"].as_str().unwrap_or("-"),
                o["peer_id"].as_str().unwrap_or("")
            ));
        }
    }
    t.push_str("organisations:\n");
    for o in v["organisations"].as_array().into_iter().flatten() {
        t.push_str(&format!(
            "  {}  {}  {}\n",
            o["key"].as_str().unwrap_or(""),
            o["name"].as_str().unwrap_or(""),
            if o["live"].as_bool() == Some(true) {
                "live"
            } else {
                "revoked"
            }
        ));
    }
    let changes = v["validator_set_changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    t.push_str(&format!(
        "applied validator-set changes: {}\n",
        changes.len()
    ));
    for c in &changes {
        t.push_str(&format!(
            "  block {} (in force from {}): event {}\n",
            c["height"],
            c["in_force_from"],
            c["event"].as_str().unwrap_or("")
        ));
    }
    Ok(Output { text: t, json: v })
}

/// Runs a governance command.
pub fn run(args: &GovernanceArgs, node: &str) -> Result<Output, CliError> {
    match &args.command {
        GovernanceCommand::Show => show(node),
        GovernanceCommand::Propose { out, change } => {
            files::refuse_existing(out)?;
            let client = NodeClient::connect(node)?;
            let view = membership(&client)?;
            let action = action_for(change, &view)?;
            let seq = view["governance_seq"].as_u64().unwrap_or(0);
            let p = Proposal {
                format: PROPOSAL_FORMAT.into(),
                chain_id: client.chain_id.to_hex(),
                seq,
                action_hex: hex::encode(codec::encode(&action)),
                action,
                approvals: Vec::new(),
            };
            save(out, &p)?;
            let what = describe(&p.action);
            Ok(Output {
                text: format!(
                    "wrote {} (governance sequence {seq}): {what}\nnext: each validator runs \
                     `twinctl governance approve {} --key <validator key>`\n",
                    out.display(),
                    out.display()
                ),
                json: json!({"proposal": out, "seq": seq, "action": what}),
            })
        }
        GovernanceCommand::Approve {
            proposal,
            key,
            pass,
        } => {
            let mut p = load(proposal)?;
            let client = NodeClient::connect(node)?;
            let s = standing(&client, &p)?;
            if let Some(why) = stale(&p, &s) {
                return Err(CliError::Invalid(why));
            }
            let key = open_key(key, pass, node)?;
            let me = key.public();
            if s.set.get(&me).is_none() {
                return Err(CliError::Denied(format!(
                    "{me} is not a validator of the set in force: only validators approve \
                     governance changes"
                )));
            }
            if p.approvals.iter().any(|a| a.validator == me) {
                return Err(CliError::Invalid(format!(
                    "{me} has already approved this proposal"
                )));
            }
            p.approvals
                .push(Governance::approve(&s.chain_id, p.seq, &p.action, &key));
            p.approvals.sort_by_key(|a| a.validator);
            save(proposal, &p)?;
            let s = standing(&client, &p)?;
            Ok(Output {
                text: format!("approved by {me}\n{}", status_text(&p, &s)),
                json: status_json(&p, &s),
            })
        }
        GovernanceCommand::Status { proposal } => {
            let p = load(proposal)?;
            let client = NodeClient::connect(node)?;
            let s = standing(&client, &p)?;
            Ok(Output {
                text: status_text(&p, &s),
                json: status_json(&p, &s),
            })
        }
        GovernanceCommand::Submit {
            proposal,
            key,
            pass,
        } => {
            let p = load(proposal)?;
            let client = NodeClient::connect(node)?;
            let s = standing(&client, &p)?;
            if let Some(why) = stale(&p, &s) {
                return Err(CliError::Invalid(why));
            }
            if !s.set.is_quorum(s.power) {
                return Err(CliError::Invalid(format!(
                    "approvals hold {} of {} voting power; more than two thirds is needed before \
                     submitting",
                    s.power,
                    s.set.total_power()
                )));
            }
            let key = open_key(key, pass, node)?;
            if s.set.get(&key.public()).is_none() {
                return Err(CliError::Denied(format!(
                    "{} is not a validator of the set in force: a validator submits governance \
                     events",
                    key.public()
                )));
            }
            let what = describe(&p.action);
            let (id, height) = submit_and_wait(
                node,
                &key,
                EventPayload::Governance(Governance {
                    seq: p.seq,
                    action: p.action,
                    approvals: p.approvals,
                }),
            )?;
            Ok(Output {
                text: format!("applied in block {height} (event {id}): {what}\n"),
                json: json!({"id": id, "height": height, "action": what}),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use twinledger_core::devkit::dev_key;

    use super::*;

    /// PROTOCOL.md §11.7: the readable `action` of a proposal file, as the table writes it.
    #[test]
    fn the_readable_action_has_the_documented_shape() {
        let (a, b) = (dev_key("g/a").public(), dev_key("g/b").public());
        let set = ValidatorSet::new(vec![Validator {
            key: a,
            organisation: b,
            power: 2,
        }])
        .unwrap();
        let cases = [
            (
                GovernanceAction::ValidatorSetChange { validators: set },
                json!({"validator_set_change": {"validators": {"validators": [
                    {"key": a.to_did(), "organisation": b.to_did(), "power": 2}
                ]}}}),
            ),
            (
                GovernanceAction::ObserverAdd {
                    observer: a,
                    organisation: b,
                },
                json!({"observer_add": {"observer": a.to_did(), "organisation": b.to_did()}}),
            ),
            (
                GovernanceAction::ObserverRemove { observer: a },
                json!({"observer_remove": {"observer": a.to_did()}}),
            ),
            (
                GovernanceAction::OrgEnrol {
                    org: a,
                    name: "X".into(),
                },
                json!({"org_enrol": {"org": a.to_did(), "name": "X"}}),
            ),
            (
                GovernanceAction::OrgRevoke { org: a },
                json!({"org_revoke": {"org": a.to_did()}}),
            ),
            (
                GovernanceAction::AuditorEnrol { auditor: a },
                json!({"auditor_enrol": {"auditor": a.to_did()}}),
            ),
            (
                GovernanceAction::AuditorRevoke { auditor: a },
                json!({"auditor_revoke": {"auditor": a.to_did()}}),
            ),
        ];
        for (action, want) in cases {
            assert_eq!(serde_json::to_value(&action).unwrap(), want);
        }
    }
}
