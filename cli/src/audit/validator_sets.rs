//! `twinctl audit validator-sets`: the node's chain of validator-set changes, verified.

use std::path::PathBuf;

use clap::Args;
use std::path::Path;

use serde_json::json;
use twinledger_genesis::GenesisFile;

use super::mismatch;
use crate::client::NodeClient;
use crate::receipt::CHANGES;
use crate::{CliError, Output};

/// The node's chain of validator-set changes, verified.
#[derive(Debug, Args)]
pub struct ValidatorSets {
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// A chain you hold already (it must agree with the node's).
    #[arg(long)]
    pub validator_sets: Option<PathBuf>,
    /// Where to write the verified chain.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ValidatorSets {
    /// Runs the command.
    pub fn run(&self, node: &str) -> Result<Output, CliError> {
        let Self {
            genesis,
            validator_sets,
            out,
        } = self;
        validator_sets_cmd(node, genesis, validator_sets.as_deref(), out.as_deref())
    }
}

/// `audit validator-sets`: the node's chain of changes, verified, merged, printed, written.
fn validator_sets_cmd(
    node: &str,
    genesis: &Path,
    trusted: Option<&Path>,
    out: Option<&Path>,
) -> Result<Output, CliError> {
    let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
    let client = NodeClient::connect(node)?;
    let v = client.get_json("/v1/validator-sets")?;
    let node_changes = crate::receipt::changes_in(&v)?;
    let mut sets = crate::receipt::verify_changes(&ledger, &node_changes, "the node's answer")?;
    if let Some(f) = trusted {
        sets = crate::receipt::merge(sets, crate::receipt::sets_file(&ledger, f)?)?;
    }
    if sets.changes().len() > node_changes.len() {
        return Err(mismatch(format!(
            "the node's chain of validator-set changes ({} changes) lacks changes of the given \
             chain ({}): the node is behind or hides a change",
            node_changes.len(),
            sets.changes().len()
        )));
    }
    let g = sets.genesis_set();
    let mut text = format!(
        "chain {}: {} validator-set change(s) since genesis, verified\n\
         from block 1: {} (genesis, {} validator(s), power {})\n",
        sets.chain_id(),
        sets.changes().len(),
        g.hash(),
        g.validators().len(),
        g.total_power()
    );
    let mut rows = vec![
        json!({"from_height": 1, "validators_hash": g.hash(), "event": null, "validators": g}),
    ];
    for c in sets.changes() {
        text.push_str(&format!(
            "from block {}: {} (change in block {}, event {}, {} validator(s), power {})\n",
            c.in_force_from,
            c.validators.hash(),
            c.height,
            c.event,
            c.validators.validators().len(),
            c.validators.total_power()
        ));
        rows.push(json!({"from_height": c.in_force_from, "validators_hash": c.validators.hash(), "event": c.event, "validators": c.validators}));
    }
    if let Some(out) = out {
        crate::files::check_output(out)?;
        let file = json!({ CHANGES: node_changes });
        crate::files::write(out, serde_json::to_string_pretty(&file).expect("json"))?;
        text.push_str(&format!("wrote {}\n", out.display()));
    }
    Ok(Output {
        text,
        json: json!({"chain_id": sets.chain_id(), "sets": rows}),
    })
}
