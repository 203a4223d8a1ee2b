//! `twinctl twin`: anchor the hash of a twin version, and check a copy against the anchor.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use twinledger_core::event::integrity::TwinAnchor;
use twinledger_core::{EventPayload, Hash, PublicKey, TwinId};

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::submit::submit_and_wait;
use crate::{CliError, Output};

/// `twinctl twin ...`
#[derive(Debug, Args)]
pub struct TwinArgs {
    /// The twin command.
    #[command(subcommand)]
    pub command: TwinCommand,
}

/// Twin commands (for the hosting organisation's actors and services).
#[derive(Debug, Subcommand)]
pub enum TwinCommand {
    /// Record blake3 of a twin version's state on the ledger.
    #[command(disable_version_flag = true)]
    Anchor {
        /// The actor's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The patient (did:key).
        #[arg(long)]
        patient: String,
        /// The twin id: 64 hex digits, or a label hashed into a pseudonymous id.
        #[arg(long)]
        twin_id: String,
        /// The version (strictly increasing per twin).
        #[arg(long)]
        version: u64,
        /// The file holding the twin's state at that version.
        file: PathBuf,
    },
    /// Check whether a copy of a twin version matches what was anchored (exit 0 if it does,
    /// 6 if not).
    #[command(disable_version_flag = true)]
    Check {
        /// The reader's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The twin id.
        #[arg(long)]
        twin_id: String,
        /// The version.
        #[arg(long)]
        version: u64,
        /// The copy to check.
        file: PathBuf,
    },
}

/// A twin id from 64 hex digits, or from a label (blake3 key derivation, so labels such as a
/// hospital's internal record number never reach the ledger).
pub fn twin_id(s: &str) -> TwinId {
    TwinId::from_hex(s)
        .unwrap_or_else(|_| TwinId(blake3::derive_key("twinledger twin-id v1", s.as_bytes())))
}

fn file_hash(file: &PathBuf) -> Result<Hash, CliError> {
    let bytes =
        std::fs::read(file).map_err(|e| CliError::Invalid(format!("{}: {e}", file.display())))?;
    Ok(Hash(*blake3::hash(&bytes).as_bytes()))
}

/// Runs a twin command.
pub fn run(args: &TwinArgs, node: &str) -> Result<Output, CliError> {
    match &args.command {
        TwinCommand::Anchor {
            key,
            pass,
            patient,
            twin_id: tid,
            version,
            file,
        } => {
            let patient = PublicKey::from_did(patient)
                .map_err(|e| CliError::Invalid(format!("--patient: {e}")))?;
            let state_hash = file_hash(file)?;
            let twin = twin_id(tid);
            let key = open_key(key, pass)?;
            let payload = EventPayload::TwinAnchor(TwinAnchor {
                twin,
                patient,
                version: *version,
                state_hash,
            });
            let (id, height) = submit_and_wait(node, &key, payload)?;
            Ok(Output {
                text: format!(
                    "anchored twin {twin} version {version}: {state_hash} (block {height})\n"
                ),
                json: json!({"id": id, "height": height, "twin": twin, "version": version, "state_hash": state_hash}),
            })
        }
        TwinCommand::Check {
            key,
            pass,
            twin_id: tid,
            version,
            file,
        } => {
            let have = file_hash(file)?;
            let twin = twin_id(tid);
            let key = open_key(key, pass)?;
            let v = NodeClient::connect(node)?
                .signed_get(&key, &format!("/v1/twins/{twin}/{version}"))?;
            let anchored = v["state_hash"].as_str().unwrap_or("");
            if anchored != have.to_hex() {
                return Err(CliError::Mismatch(format!(
                    "{} does not match twin {twin} version {version}: blake3 {have}, anchored {anchored}",
                    file.display()
                )));
            }
            Ok(Output {
                text: format!(
                    "{} matches twin {twin} version {version} ({have})\n",
                    file.display()
                ),
                json: json!({"matches": true, "twin": twin, "version": version, "state_hash": have}),
            })
        }
    }
}
