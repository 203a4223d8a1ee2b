//! `twinctl org`: an organisation enrols and revokes its actors.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;
use twinledger_core::event::membership::{ActorEnrol, ActorRevoke};
use twinledger_core::{EventPayload, PublicKey, Role};

use crate::key::{PassphraseArgs, open_key};
use crate::submit::submit_and_wait;
use crate::{CliError, Output};

/// `twinctl org ...`
#[derive(Debug, Args)]
pub struct OrgArgs {
    /// The organisation command.
    #[command(subcommand)]
    pub command: OrgCommand,
}

/// Organisation commands (signed by the organisation's key).
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Enrol an actor (clinician, service, device) with a role.
    EnrolActor {
        /// The organisation's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The actor's did:key.
        #[arg(long)]
        actor: String,
        /// Its role (physician, nurse, paramedic, researcher, privacy-officer, ...).
        #[arg(long)]
        role: String,
    },
    /// Revoke an actor the organisation enrolled.
    RevokeActor {
        /// The organisation's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The actor's did:key.
        #[arg(long)]
        actor: String,
    },
}

fn did(s: &str) -> Result<PublicKey, CliError> {
    PublicKey::from_did(s).map_err(|e| CliError::Invalid(format!("--actor: {e}")))
}

/// Runs an organisation command.
pub fn run(args: &OrgArgs, node: &str) -> Result<Output, CliError> {
    let (key, pass, payload, what) = match &args.command {
        OrgCommand::EnrolActor {
            key,
            pass,
            actor,
            role,
        } => {
            let role: Role = role
                .parse()
                .map_err(|e: twinledger_core::codes::UnknownCode| {
                    CliError::Invalid(e.to_string())
                })?;
            let actor = did(actor)?;
            (
                key,
                pass,
                EventPayload::ActorEnrol(ActorEnrol { actor, role }),
                "enrolled",
            )
        }
        OrgCommand::RevokeActor { key, pass, actor } => {
            let actor = did(actor)?;
            (
                key,
                pass,
                EventPayload::ActorRevoke(ActorRevoke { actor }),
                "revoked",
            )
        }
    };
    let key = open_key(key, pass, node)?;
    let (id, height) = submit_and_wait(node, &key, payload)?;
    Ok(Output {
        text: format!("{what} in block {height} (event {id})\n"),
        json: json!({"id": id, "height": height, "done": what}),
    })
}
