//! `twinctl audit verify-bundle`: verify an evidence bundle offline.

use std::path::PathBuf;

use clap::Args;
use std::path::Path;

use serde_json::json;
use twinledger_genesis::GenesisFile;

use super::mismatch;
use crate::{CliError, Output};

/// Verify an evidence bundle offline.
#[derive(Debug, Args)]
pub struct VerifyBundle {
    /// The bundle.
    pub file: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// A chain of validator-set changes from a source you trust (`audit validator-sets
    /// --out`), merged with the bundle's own.
    #[arg(long)]
    pub validator_sets: Option<PathBuf>,
    /// The patient's history (`GET /v1/patients/{did}/history`, PROTOCOL.md §11.3) for an
    /// access or break-glass bundle: the decision is re-derived from it (§11.4) and must be
    /// the bundle's (exit 6 if not, naming the grant).
    #[arg(long)]
    pub history: Option<PathBuf>,
}

impl VerifyBundle {
    /// Runs the command.
    pub fn run(&self) -> Result<Output, CliError> {
        let Self {
            file,
            genesis,
            validator_sets,
            history,
        } = self;
        verify_bundle(file, genesis, validator_sets.as_deref(), history.as_deref())
    }
}

/// Verifies an evidence bundle (PROTOCOL.md §9.3): exactly the keys of its version, the chain
/// of changes from the genesis, the receipt against the set in force at its height, and `id`
/// and `outcome` against what the receipt proves. Every refusal names the field (exit 6).
fn verify_bundle(
    file: &Path,
    genesis: &Path,
    trusted: Option<&Path>,
    history: Option<&Path>,
) -> Result<Output, CliError> {
    let text = crate::files::read_to_string(file)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", file.display())))?;
    if v.get("kind").is_none() {
        return Err(mismatch(format!(
            "field `kind` is missing: {} is not an evidence bundle",
            file.display()
        )));
    }
    let (receipt, changes) = crate::receipt::read_evidence(&v)?;
    let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
    if receipt.header.chain_id != ledger.chain_id() {
        return Err(mismatch(format!(
            "field `receipt`: the bundle is for chain {}, the genesis is {}",
            receipt.header.chain_id,
            ledger.chain_id()
        )));
    }
    let sets = crate::receipt::sets_for(&ledger, &changes, "the bundle", trusted)?;
    let height = receipt.header.height;
    let outcome = sets.verify_receipt(&receipt).map_err(|e| {
        mismatch(format!(
            "field `receipt`: evidence bundle does not verify against the validator set in \
             force at block {height} ({} validator-set change(s) known since genesis): {e}",
            sets.changes_in_force_at(height)
        ))
    })?;
    crate::receipt::check_id_and_outcome(&v, &receipt, &outcome)?;
    let mut text = format!(
        "evidence verifies: event {} is leaf {} of the log at block {height} ({})\n{}\n",
        receipt.event_id(),
        receipt.leaf_index,
        crate::receipt::describe_outcome(&outcome),
        crate::receipt::set_line(&sets, height)
    );
    let mut j = json!({
        "valid": true,
        "event": receipt.event_id(),
        "height": height,
        "outcome": outcome,
        "validator_set": {
            "hash": sets.set_at(height).hash(),
            "changes_since_genesis": sets.changes_in_force_at(height),
        },
    });
    if let Some(h) = crate::history::history_for(&v, history)? {
        let (t, c) = crate::history::consent_check(&ledger, &receipt, &outcome, &h, trusted)?;
        text.push_str(&t);
        j["consent"] = c;
    }
    Ok(Output { text, json: j })
}
