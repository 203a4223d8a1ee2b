//! `twinctl audit prove`: a single-file evidence bundle for one event.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::receipt::CHANGES;
use crate::{CliError, Output};

/// A single-file evidence bundle for one event.
#[derive(Debug, Args)]
pub struct Prove {
    /// The reader's key file: an auditor, a member organisation, the event's author, or the
    /// patient it concerns (or their delegate).
    #[arg(long)]
    pub key: PathBuf,
    /// Passphrase source.
    #[command(flatten)]
    pub pass: PassphraseArgs,
    /// The event id.
    pub event: String,
    /// Where to write the bundle.
    #[arg(long)]
    pub out: PathBuf,
    /// Embed the patient's certified history (PROTOCOL.md §11.3) in the bundle (version 3,
    /// §11.4), for an access or break-glass event, so that `verify-bundle` re-derives its
    /// decision offline; the key must be allowed to read the patient's records.
    #[arg(long)]
    pub with_history: bool,
}

impl Prove {
    /// Runs the command.
    pub fn run(&self, node: &str) -> Result<Output, CliError> {
        let Self {
            key,
            pass,
            event,
            out,
            with_history,
        } = self;
        crate::files::check_output(out)?;
        let id = twinledger_core::EventId::from_hex(event)
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        let key = open_key(key, pass, node)?;
        let client = NodeClient::connect(node)?;
        let v = client.signed_get(&key, &format!("/v1/events/{id}"))?;
        let mut bundle = json!({
            "kind": crate::receipt::BUNDLE_KIND,
            "version": 2,
            "id": id,
            "outcome": v["outcome"],
            "receipt": v["receipt"],
            CHANGES: v.get(CHANGES).cloned().unwrap_or_else(|| json!([])),
        });
        if *with_history {
            let receipt: twinledger_core::Receipt =
                crate::receipt::canonical(&v["receipt"], "receipt")?;
            let patient = crate::history::request_patient(&receipt).ok_or_else(|| {
                CliError::Invalid(format!(
                    "--with-history: event {id} is a {} event, not an access or break-glass \
                     request",
                    receipt.event.event.payload.kind()
                ))
            })?;
            let h = client.signed_get(&key, &format!("/v1/patients/{patient}/history"))?;
            bundle["version"] = json!(3);
            bundle["history"] = h;
        }
        crate::files::write(out, serde_json::to_string_pretty(&bundle).expect("json"))?;
        Ok(Output {
            text: format!("wrote evidence bundle for {id} to {}\n", out.display()),
            json: json!({"file": out, "id": id}),
        })
    }
}
