//! `twinctl audit consistency`: a newer checkpoint extends an older one.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use twinledger_core::ValidatorSets;
use twinledger_genesis::GenesisFile;

use super::mismatch;
use crate::client::NodeClient;
use crate::{CliError, Output};

/// A newer checkpoint extends an older one.
#[derive(Debug, Args)]
pub struct Consistency {
    /// The older checkpoint (text form).
    #[arg(long)]
    pub old: PathBuf,
    /// The newer checkpoint (text form).
    #[arg(long)]
    pub new: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// A chain of validator-set changes from a source you trust, merged with the node's.
    #[arg(long)]
    pub validator_sets: Option<PathBuf>,
}

impl Consistency {
    /// Runs the command.
    pub fn run(&self, node: &str) -> Result<Output, CliError> {
        let Self {
            old,
            new,
            genesis,
            validator_sets,
        } = self;
        let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
        let client = NodeClient::connect(node)?;
        let (mut sets, _) = crate::witness::node_sets(&ledger, &client)?;
        if let Some(f) = validator_sets {
            sets = crate::receipt::merge(sets, crate::receipt::sets_file(&ledger, f)?)?;
        }
        let a = read_checkpoint(old, &sets)?;
        let b = read_checkpoint(new, &sets)?;
        if a.chain_id != b.chain_id || a.chain_id != ledger.chain_id() {
            return Err(mismatch(
                "the checkpoints are not both of this genesis's chain",
            ));
        }
        if a.height == b.height && a.block_hash != b.block_hash {
            return Err(mismatch(format!(
                "fork: two certified blocks at height {}",
                a.height
            )));
        }
        if a.log_size > b.log_size {
            return Err(mismatch(format!(
                "the old checkpoint's log ({}) is larger than the new one's ({})",
                a.log_size, b.log_size
            )));
        }
        let v = client.get_json(&format!(
            "/v1/consistency?from={}&to={}",
            a.log_size, b.log_size
        ))?;
        let proof: Vec<Vec<u8>> = v["proof"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                hex::decode(h.as_str().unwrap_or(""))
                    .map_err(|_| CliError::Invalid("node sent a malformed proof".into()))
            })
            .collect::<Result<_, _>>()?;
        twinledger_core::merkle::verify_consistency::<twinledger_core::merkle::Blake3Tree>(
            a.log_size,
            b.log_size,
            &proof,
            a.log_root.as_bytes(),
            b.log_root.as_bytes(),
        )
        .map_err(|e| mismatch(format!("the logs are not consistent: {e}")))?;
        Ok(Output {
            text: format!(
                "consistent: the log of {} events at height {} is a prefix of the log of {} events at height {}\n",
                a.log_size, a.height, b.log_size, b.height
            ),
            json: json!({"consistent": true, "old": {"height": a.height, "log_size": a.log_size}, "new": {"height": b.height, "log_size": b.log_size}}),
        })
    }
}

fn read_checkpoint(
    path: &Path,
    sets: &ValidatorSets,
) -> Result<twinledger_core::Checkpoint, CliError> {
    let text = crate::files::read_to_string(path)?;
    let (cp, cert) = twinledger_core::Checkpoint::from_text(&text)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
    if cp.chain_id != sets.chain_id() {
        return Err(mismatch(format!(
            "{}: checkpoint of chain {}, the genesis is {}",
            path.display(),
            cp.chain_id,
            sets.chain_id()
        )));
    }
    sets.verify_checkpoint(&cp, &cert).map_err(|e| {
        mismatch(format!(
            "{}: certificate does not verify against the {}: {e}",
            path.display(),
            crate::receipt::set_line(sets, cp.height)
        ))
    })?;
    Ok(cp)
}
