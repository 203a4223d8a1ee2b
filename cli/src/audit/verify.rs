//! `twinctl audit verify`: verify a whole exported chain offline against its genesis.

use std::path::PathBuf;

use clap::Args;
use std::time::Instant;

use serde_json::json;
use twinledger_genesis::GenesisFile;

use super::pipeline::{split_frames, verify};
use crate::{CliError, Output};

/// Verify a whole exported chain offline against its genesis.
#[derive(Debug, Args)]
pub struct Verify {
    /// The export file (from `audit export`).
    pub file: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// Check every signature one by one with the protocol's strict rule instead of in
    /// batches (slower; see PERFORMANCE.md for the difference).
    #[arg(long)]
    pub strict: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl Verify {
    /// Runs the command.
    pub fn run(&self, json_out: bool) -> Result<Output, CliError> {
        let Self {
            file,
            genesis,
            strict,
            quiet,
        } = self;
        let g = GenesisFile::load(genesis)?;
        let ledger = g.ledger_genesis()?;
        let bytes = crate::files::read(file)?;
        let started = Instant::now();
        // Frames counted, not decoded (decoding is a third of the work of verifying).
        let total = split_frames(&bytes).map_or(0, |(frames, _)| frames.len() as u64);
        let bar = if *quiet || json_out {
            indicatif::ProgressBar::hidden()
        } else {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} blocks {per_sec} eta {eta}",
                )
                .expect("valid template"),
            );
            b
        };
        let result = verify(&ledger, &bytes, *strict, &bar, |_, _| {});
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(summary) if !summary.unmatched_releases.is_empty() => {
                let list: Vec<String> = summary
                    .unmatched_releases
                    .iter()
                    .map(|u| {
                        format!(
                            "block {}: key release {} names request {}: {}",
                            u.height, u.release, u.access, u.why
                        )
                    })
                    .collect();
                Err(CliError::Mismatch(format!(
                    "the chain replays, but {} key release(s) do not answer a permitted request \
                     for what they released (PROTOCOL.md §6.12):\n{}",
                    list.len(),
                    list.join("\n")
                )))
            }
            Ok(summary) => {
                let rate = summary.events as f64 / secs.max(1e-9);
                Ok(Output {
                    text: format!(
                        "chain verifies: {} blocks, {} events (height {}, log root {})\n\
                         decisions: {} permitted, {} denied, {} break-glass ({} unreviewed)\n\
                         key releases: {}, each answering a permitted request\n\
                         {:.2} s, {:.0} events/s\n",
                        summary.blocks,
                        summary.events,
                        summary.height,
                        summary.log_root,
                        summary.permitted,
                        summary.denied,
                        summary.break_glass,
                        summary.unreviewed_break_glass,
                        summary.key_releases,
                        secs,
                        rate
                    ),
                    json: json!({"valid": true, "summary": summary, "seconds": secs, "events_per_second": rate}),
                })
            }
            Err(f) => Err(CliError::Mismatch(format!(
                "chain does not verify{}: {f}",
                f.height()
                    .map(|h| format!(" at height {h}"))
                    .unwrap_or_default()
            ))),
        }
    }
}
