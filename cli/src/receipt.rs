//! `twinctl receipt verify`: check a receipt offline against a genesis file.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use twinledger_core::{Decision, Outcome, Receipt};
use twinledger_genesis::GenesisFile;

use crate::{CliError, Output};

/// `twinctl receipt ...`
#[derive(Debug, Args)]
pub struct ReceiptArgs {
    /// The receipt command.
    #[command(subcommand)]
    pub command: ReceiptCommand,
}

/// Receipt commands.
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Verify a receipt offline: event signature, block certificate against the genesis
    /// validators, results hash and inclusion proof. Exit 0 if valid, 2 if not; with
    /// `--require-permit`, 4 if valid but not a permit.
    Verify {
        /// The receipt file (as written by `twinctl access request`).
        file: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// Exit 4 unless the receipt proves a permitted access.
        #[arg(long)]
        require_permit: bool,
    },
}

/// Runs a receipt command (no node needed).
pub fn run(args: &ReceiptArgs) -> Result<Output, CliError> {
    let ReceiptCommand::Verify {
        file,
        genesis,
        require_permit,
    } = &args.command;
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", file.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Invalid(format!("{}: not a receipt: {e}", file.display())))?;
    let receipt: Receipt =
        serde_json::from_value(v.get("receipt").cloned().unwrap_or(v.clone()))
            .map_err(|e| CliError::Invalid(format!("{}: not a receipt: {e}", file.display())))?;
    let g = GenesisFile::load(genesis)?;
    let ledger = g.ledger_genesis()?;
    if receipt.header.chain_id != ledger.chain_id() {
        return Err(CliError::Invalid(format!(
            "receipt is for chain {}, the genesis is chain {}",
            receipt.header.chain_id,
            ledger.chain_id()
        )));
    }
    let outcome = receipt
        .verify(&ledger.validators)
        .map_err(|e| CliError::Invalid(format!("receipt does not verify: {e}")))?;
    let decision = match outcome {
        Outcome::Access(Decision::Permit { grant }) => format!("permit (grant {grant})"),
        Outcome::Access(Decision::Deny { reason }) => format!("deny ({reason:?})"),
        Outcome::Access(Decision::BreakGlass) => "break-glass (permitted, flagged)".into(),
        Outcome::Applied => "applied".into(),
    };
    let out = Output {
        text: format!(
            "valid receipt: event {} final in block {}: {decision}\n",
            receipt.event_id(),
            receipt.header.height
        ),
        json: json!({"valid": true, "event": receipt.event_id(), "height": receipt.header.height, "outcome": outcome}),
    };
    if *require_permit
        && !matches!(
            outcome,
            Outcome::Access(Decision::Permit { .. }) | Outcome::Access(Decision::BreakGlass)
        )
    {
        return Err(CliError::Denied(format!(
            "the receipt is valid but not a permit: {decision}"
        )));
    }
    Ok(out)
}
