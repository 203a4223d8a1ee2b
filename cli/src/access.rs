//! `twinctl access request`: ask the ledger for access and keep the receipt.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::event::access::AccessRequest;
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
}

/// Runs an access command.
pub fn run(args: &AccessArgs, node: &str) -> Result<Output, CliError> {
    let AccessCommand::Request {
        key,
        pass,
        patient,
        category,
        purpose,
        action,
        resource,
        receipt_out,
        timeout_secs,
    } = &args.command;
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
    let ev = client.sign(
        &key,
        EventPayload::AccessRequest(AccessRequest {
            patient,
            category,
            purpose,
            action,
            resource: Commitment::new(&salt, resource.as_bytes()),
        }),
    )?;
    let mut v = client.authorise(&ev, Duration::from_secs(*timeout_secs))?;
    // The opening of the resource commitment stays with the requester and the twin store.
    v["resource_salt"] = json!(hex::encode(salt));
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
