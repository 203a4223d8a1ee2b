//! `twinctl delegate`: a patient names a guardian who may grant and revoke within a scope.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use twinledger_core::event::delegation::{DelegateGrant, DelegateRevoke, Scope};
use twinledger_core::{EventId, EventPayload, PublicKey, Timestamp};

use crate::client::NodeClient;
use crate::consent::{ScopeArgs, entry_ids, listing, signer_patient};
use crate::key::{PassphraseArgs, open_key};
use crate::submit::submit_and_wait;
use crate::time::parse_time;
use crate::{CliError, Output, ids};

/// `twinctl delegate ...`
#[derive(Debug, Args)]
pub struct DelegateArgs {
    /// The delegate command.
    #[command(subcommand)]
    pub command: DelegateCommand,
}

/// Delegation commands (signed by the patient).
#[derive(Debug, Subcommand)]
pub enum DelegateCommand {
    /// Name a delegate (guardian) for a scope; prints the delegation id.
    Grant {
        /// The patient's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The delegate's did:key.
        #[arg(long)]
        to: String,
        /// What the delegate may grant or revoke.
        #[command(flatten)]
        scope: ScopeArgs,
        /// End of the delegation (exclusive).
        #[arg(long)]
        until: Option<String>,
    },
    /// End a delegation.
    Revoke {
        /// The patient's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The delegation's id: as `consent list` shows it, or any unique prefix (at least 4
        /// hex digits), or all 64 hex digits.
        delegation: String,
    },
}

/// Runs a delegate command.
pub fn run(args: &DelegateArgs, node: &str) -> Result<Output, CliError> {
    match &args.command {
        DelegateCommand::Grant {
            key,
            pass,
            to,
            scope,
            until,
        } => {
            let delegate =
                PublicKey::from_did(to).map_err(|e| CliError::Invalid(format!("--to: {e}")))?;
            let scope: Scope = scope.parse()?;
            let valid_until = until.as_deref().map(parse_time).transpose()?.map(Timestamp);
            let key = open_key(key, pass, node)?;
            // After a key rotation the patient is still named by its id (the first key).
            let patient = signer_patient(&NodeClient::connect(node)?, &key, None)?;
            let payload = EventPayload::DelegateGrant(DelegateGrant {
                patient,
                delegate,
                scope,
                valid_until,
            });
            let (id, height) = submit_and_wait(node, &key, payload)?;
            Ok(Output {
                text: format!("delegation: {id}\nfinal in block {height}\n"),
                json: json!({"id": id, "height": height}),
            })
        }
        DelegateCommand::Revoke {
            key,
            pass,
            delegation,
        } => {
            let key = open_key(key, pass, node)?;
            let client = NodeClient::connect(node)?;
            let patient = signer_patient(&client, &key, None)?;
            let delegation = if ids::is_whole(delegation.trim()) {
                ids::resolve("delegation id", delegation, std::iter::empty::<String>())?
            } else {
                let listing = listing(&client, &key, &patient)?;
                ids::resolve(
                    "delegation id",
                    delegation,
                    entry_ids(&listing["delegations"]),
                )?
            };
            let delegation =
                EventId::from_hex(&delegation).map_err(|e| CliError::Invalid(e.to_string()))?;
            let payload = EventPayload::DelegateRevoke(DelegateRevoke {
                patient,
                delegation,
            });
            let (id, height) = submit_and_wait(node, &key, payload)?;
            Ok(Output {
                text: format!("delegation {delegation} ended in block {height}\n"),
                json: json!({"id": id, "height": height, "revoked": delegation}),
            })
        }
    }
}
