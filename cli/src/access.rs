//! `twinctl access request`: ask the ledger for access and keep the receipt.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::break_glass::BreakGlassRequest;
use twinledger_core::{Commitment, EventPayload, PublicKey};

use crate::client::NodeClient;
use crate::consent::action_alias;
use crate::key::{PassphraseArgs, open_key};
use crate::{CliError, Output};

/// `twinctl access ...`
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// The access command.
    #[command(subcommand)]
    pub command: AccessCommand,
}

/// Access commands.
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Ask for access; wait for the ledger's decision; write the receipt. Exit 0 if permitted,
    /// 4 if denied.
    Request {
        /// The actor's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The patient (did:key).
        #[arg(long)]
        patient: String,
        /// Data category.
        #[arg(long)]
        category: String,
        /// Purpose of use (HL7 code).
        #[arg(long)]
        purpose: String,
        /// Action (read, update, use, disclose, collect).
        #[arg(long, default_value = "read")]
        action: String,
        /// The twin resource asked for; only its salted commitment goes on the ledger.
        #[arg(long)]
        resource: String,
        /// Where to write the receipt (JSON).
        #[arg(long)]
        receipt_out: PathBuf,
        /// Seconds to wait for the decision (1..=60).
        #[arg(long, default_value_t = 20)]
        timeout_secs: u64,
    },
    /// Emergency access: permitted for clinical roles, always flagged and queued for review.
    /// The written reason stays off the ledger (its salted commitment is recorded).
    BreakGlass {
        /// The actor's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The patient (did:key).
        #[arg(long)]
        patient: String,
        /// Data category.
        #[arg(long)]
        category: String,
        /// Action (read, update, ...).
        #[arg(long, default_value = "read")]
        action: String,
        /// The twin resource.
        #[arg(long)]
        resource: String,
        /// A file holding the written justification.
        #[arg(long)]
        reason_file: PathBuf,
        /// Where to write the receipt (JSON).
        #[arg(long)]
        receipt_out: PathBuf,
    },
}

/// Runs an access command.
pub fn run(args: &AccessArgs, node: &str) -> Result<Output, CliError> {
    let (
        key,
        pass,
        patient,
        category,
        purpose,
        action,
        resource,
        receipt_out,
        timeout_secs,
        reason,
    ) = match &args.command {
        AccessCommand::Request {
            key,
            pass,
            patient,
            category,
            purpose,
            action,
            resource,
            receipt_out,
            timeout_secs,
        } => (
            key,
            pass,
            patient,
            category,
            purpose.as_str(),
            action,
            resource,
            receipt_out,
            *timeout_secs,
            None,
        ),
        AccessCommand::BreakGlass {
            key,
            pass,
            patient,
            category,
            action,
            resource,
            reason_file,
            receipt_out,
        } => {
            let reason = std::fs::read(reason_file)
                .map_err(|e| CliError::Invalid(format!("{}: {e}", reason_file.display())))?;
            if reason.is_empty() {
                return Err(CliError::Invalid("the break-glass reason is empty".into()));
            }
            (
                key,
                pass,
                patient,
                category,
                "ETREAT",
                action,
                resource,
                receipt_out,
                20,
                Some(reason),
            )
        }
    };
    let timeout_secs = &timeout_secs;
    let inv = |e: twinledger_core::codes::UnknownCode| CliError::Invalid(e.to_string());
    let patient =
        PublicKey::from_did(patient).map_err(|e| CliError::Invalid(format!("--patient: {e}")))?;
    let category: DataCategory = category.parse().map_err(inv)?;
    let purpose: Purpose = purpose.parse().map_err(inv)?;
    let action: Action = action_alias(action).parse().map_err(inv)?;
    if !(1..=60).contains(timeout_secs) {
        return Err(CliError::Invalid("--timeout-secs must be 1..=60".into()));
    }
    if receipt_out.exists() {
        return Err(CliError::Invalid(format!(
            "{} already exists",
            receipt_out.display()
        )));
    }
    let key = open_key(key, pass)?;
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).map_err(|e| CliError::Invalid(format!("OS RNG: {e}")))?;
    let client = NodeClient::connect(node)?;
    let resource = Commitment::new(&salt, resource.as_bytes());
    let mut reason_salt = [0u8; 32];
    let payload = match &reason {
        None => EventPayload::AccessRequest(AccessRequest {
            patient,
            category,
            purpose,
            action,
            resource,
        }),
        Some(text) => {
            getrandom::fill(&mut reason_salt)
                .map_err(|e| CliError::Invalid(format!("OS RNG: {e}")))?;
            EventPayload::BreakGlassRequest(BreakGlassRequest {
                patient,
                category,
                action,
                resource,
                reason: Commitment::new(&reason_salt, text),
            })
        }
    };
    let ev = client.sign(&key, payload)?;
    let mut v = client.authorise(&ev, Duration::from_secs(*timeout_secs))?;
    // The openings of the commitments stay with the requester and the twin store.
    v["resource_salt"] = json!(hex::encode(salt));
    if reason.is_some() {
        v["reason_salt"] = json!(hex::encode(reason_salt));
    }
    std::fs::write(receipt_out, serde_json::to_string_pretty(&v).expect("json"))
        .map_err(|e| CliError::Invalid(format!("{}: {e}", receipt_out.display())))?;
    let outcome = &v["outcome"]["access"];
    let text = format!(
        "{}\nreceipt written to {}\n",
        serde_json::to_string(outcome).unwrap_or_default(),
        receipt_out.display()
    );
    if outcome.get("deny").is_some() {
        return Err(CliError::Denied(format!(
            "access denied ({}); receipt written to {}",
            outcome["deny"]["reason"].as_str().unwrap_or("?"),
            receipt_out.display()
        )));
    }
    Ok(Output { text, json: v })
}
