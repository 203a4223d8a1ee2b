//! `twinctl audit watch`: the witness, every few seconds.

use std::path::PathBuf;

use clap::Args;
use twinledger_genesis::GenesisFile;

use super::witness::verdict;
use crate::client::NodeClient;
use crate::{CliError, Output};

/// The witness, every few seconds.
#[derive(Debug, Args)]
pub struct Watch {
    /// Where the witness keeps the checkpoints it accepted.
    #[arg(long)]
    pub state: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// Seconds between checkpoints.
    #[arg(long, default_value_t = 10)]
    pub interval_secs: u64,
    /// Stop after this many rounds.
    #[arg(long)]
    pub rounds: Option<u64>,
}

impl Watch {
    /// Runs the command.
    pub fn run(&self, node: &str) -> Result<Output, CliError> {
        let Self {
            state,
            genesis,
            interval_secs,
            rounds,
        } = self;
        let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
        let client = NodeClient::connect(node)?;
        let mut round = 0u64;
        loop {
            let v = client.get_json("/v1/checkpoint")?;
            let text = v["text"].as_str().unwrap_or_default().to_string();
            // The chain of changes after the checkpoint: it covers the checkpoint's height.
            let sets = crate::witness::known_sets(state, &ledger, None, Some(&client))?;
            let out = verdict(crate::witness::ingest(state, &sets, &text, Some(&client))?)?;
            {
                use std::io::Write as _;
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(out.text.as_bytes()).and_then(|()| o.flush());
            }
            round += 1;
            if rounds.is_some_and(|r| round >= r) {
                return Ok(Output {
                    text: String::new(),
                    json: out.json,
                });
            }
            std::thread::sleep(std::time::Duration::from_secs(*interval_secs));
        }
    }
}
