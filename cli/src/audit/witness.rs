//! `twinctl audit witness`: take in a checkpoint, compare it with those kept, keep it.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use twinledger_genesis::GenesisFile;

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::{CliError, Output};

/// Take in a checkpoint, compare it with those kept, keep it.
#[derive(Debug, Args)]
pub struct Witness {
    /// Where the witness keeps the checkpoints it accepted.
    #[arg(long)]
    pub state: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// A chain of validator-set changes (`audit validator-sets --out`), merged with the
    /// one the witness kept.
    #[arg(long)]
    pub validator_sets: Option<PathBuf>,
    /// A checkpoint file to take in instead of asking the node.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Cosign each accepted checkpoint with this auditor key and send the cosignature to
    /// the node, which then shows who witnessed the height.
    #[arg(long)]
    pub cosign_key: Option<PathBuf>,
    /// Passphrase source for the cosign key.
    #[command(flatten)]
    pub pass: PassphraseArgs,
}

impl Witness {
    /// Runs the command.
    pub fn run(&self, node: &str) -> Result<Output, CliError> {
        let Self {
            state,
            genesis,
            validator_sets,
            checkpoint,
            cosign_key,
            pass,
        } = self;
        let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
        let cosigner = cosign_key
            .as_ref()
            .map(|k| open_key(k, pass, node))
            .transpose()?;
        let (text, client) = match checkpoint {
            Some(f) => (crate::files::read_to_string(f)?, None),
            None => {
                let c = NodeClient::connect(node)?;
                let v = c.get_json("/v1/checkpoint")?;
                (v["text"].as_str().unwrap_or_default().to_string(), Some(c))
            }
        };
        let sets =
            crate::witness::known_sets(state, &ledger, validator_sets.as_deref(), client.as_ref())?;
        let v = crate::witness::ingest(state, &sets, &text, client.as_ref())?;
        if let (
            Some(key),
            crate::witness::Verdict::Accepted(cp) | crate::witness::Verdict::Known(cp),
        ) = (&cosigner, &v)
        {
            let connected;
            let c = match &client {
                Some(c) => c,
                None => {
                    connected = NodeClient::connect(node)?;
                    &connected
                }
            };
            c.post_json(
                "/v1/cosignatures",
                &json!({
                    "checkpoint": text,
                    "auditor": key.public(),
                    "signature": hex::encode(cp.cosign(key).0),
                }),
            )?;
        }
        verdict(v)
    }
}

/// The witness's verdict as output; a fork is exit 6 with its report.
pub(super) fn verdict(v: crate::witness::Verdict) -> Result<Output, CliError> {
    use crate::witness::Verdict;
    match v {
        Verdict::Accepted(cp) => Ok(Output {
            text: format!(
                "accepted checkpoint at height {} ({} events)\n",
                cp.height, cp.log_size
            ),
            json: json!({"accepted": true, "height": cp.height, "log_size": cp.log_size}),
        }),
        Verdict::Known(cp) => Ok(Output {
            text: format!("checkpoint at height {} already witnessed\n", cp.height),
            json: json!({"accepted": true, "known": true, "height": cp.height}),
        }),
        Verdict::Fork(report) => {
            let signers = report["signed_both"]
                .as_array()
                .map(|a| a.len())
                .unwrap_or(0);
            Err(CliError::Mismatch(format!(
                "FORK ({}): {}; {} validator(s) signed both sides: {}\n{:#}",
                report["kind"].as_str().unwrap_or(""),
                report["detail"].as_str().unwrap_or(""),
                signers,
                report["signed_both"],
                report
            )))
        }
    }
}
