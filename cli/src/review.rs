//! `twinctl review`: the break-glass review queue, for privacy officers and auditors.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use twinledger_core::event::break_glass::{BreakGlassReview, Finding};
use twinledger_core::{Commitment, EventId, EventPayload};

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::submit::submit_and_wait;
use crate::{CliError, Output, ids};

/// `twinctl review ...`
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The review command.
    #[command(subcommand)]
    pub command: ReviewCommand,
}

/// Review commands.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List break-glass accesses awaiting review (auditors and member organisations: every
    /// one; a privacy officer: those of its organisation).
    List {
        /// The reader's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Sign off a break-glass access (a privacy officer of the same organisation, or an auditor).
    SignOff {
        /// The reviewer's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The break-glass request's id: as `review list` shows it, or any unique prefix (at
        /// least 4 hex digits), or all 64 hex digits.
        request: String,
        /// The finding.
        #[arg(long, value_parser = ["justified", "unjustified"])]
        finding: String,
        /// The reviewer's notes (kept off the ledger; only a salted commitment is recorded).
        #[arg(long, default_value = "")]
        notes: String,
    },
}

/// Runs a review command.
pub fn run(args: &ReviewArgs, node: &str) -> Result<Output, CliError> {
    match &args.command {
        ReviewCommand::List { key, pass } => {
            let key = open_key(key, pass, node)?;
            let v = NodeClient::connect(node)?.signed_get(&key, "/v1/reviews")?;
            let mut rows = vec![
                ["REQUEST", "HEIGHT", "CATEGORY", "ACTOR"]
                    .map(String::from)
                    .to_vec(),
            ];
            for r in v["unreviewed"].as_array().into_iter().flatten() {
                rows.push(vec![
                    ids::short(r["id"].as_str().unwrap_or("")).to_string(),
                    r["access"]["height"].to_string(),
                    r["access"]["category"].as_str().unwrap_or("").to_string(),
                    r["access"]["actor"].as_str().unwrap_or("").to_string(),
                ]);
            }
            let text = crate::table::render(&rows);
            Ok(Output { text, json: v })
        }
        ReviewCommand::SignOff {
            key,
            pass,
            request,
            finding,
            notes,
        } => {
            let key = open_key(key, pass, node)?;
            let request = if ids::is_whole(request.trim()) {
                ids::resolve(
                    "break-glass request id",
                    request,
                    std::iter::empty::<String>(),
                )?
            } else {
                let queue = NodeClient::connect(node)?.signed_get(&key, "/v1/reviews")?;
                let candidates = queue["unreviewed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["id"].as_str().map(String::from))
                    .collect::<Vec<_>>();
                ids::resolve("break-glass request id", request, candidates)?
            };
            let request =
                EventId::from_hex(&request).map_err(|e| CliError::Invalid(e.to_string()))?;
            let finding = if finding == "justified" {
                Finding::Justified
            } else {
                Finding::Unjustified
            };
            let mut salt = [0u8; 32];
            getrandom::fill(&mut salt).map_err(|e| CliError::Invalid(format!("OS RNG: {e}")))?;
            let payload = EventPayload::BreakGlassReview(BreakGlassReview {
                request,
                finding,
                notes: Commitment::new(&salt, notes.as_bytes()),
            });
            let (id, height) = submit_and_wait(node, &key, payload)?;
            Ok(Output {
                text: format!("signed off {request} in block {height}\n"),
                json: json!({"id": id, "height": height, "request": request, "notes_salt": hex::encode(salt)}),
            })
        }
    }
}
