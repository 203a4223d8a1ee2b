//! `twinctl audit history`: save a patient's certified history to a file.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use twinledger_genesis::GenesisFile;

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::{CliError, Output};

/// Save a patient's certified history to a file.
#[derive(Debug, Args)]
pub struct History {
    /// The reader's key file: the patient, their delegate, an auditor or a member
    /// organisation (whoever may read the patient's records).
    #[arg(long)]
    pub key: PathBuf,
    /// Passphrase source.
    #[command(flatten)]
    pub pass: PassphraseArgs,
    /// The patient (did:key, the patient id); the key's own by default.
    #[arg(long)]
    pub patient: Option<String>,
    /// Where to write the answer.
    #[arg(long)]
    pub out: PathBuf,
    /// The chain's genesis file: verify the answer before writing it.
    #[arg(long)]
    pub genesis: Option<PathBuf>,
}

impl History {
    /// Runs the command.
    pub fn run(&self, node: &str) -> Result<Output, CliError> {
        let Self {
            key,
            pass,
            patient,
            out,
            genesis,
        } = self;
        crate::files::check_output(out)?;
        let key = open_key(key, pass, node)?;
        let patient = match patient {
            Some(d) => twinledger_core::PublicKey::from_did(d)
                .map_err(|e| CliError::Invalid(format!("--patient: {e}")))?,
            None => key.public(),
        };
        let v = NodeClient::connect(node)?
            .signed_get(&key, &format!("/v1/patients/{patient}/history"))?;
        let mut text = String::new();
        let mut verified = serde_json::Value::Null;
        if let Some(g) = genesis {
            let ledger = GenesisFile::load(g)?.ledger_genesis()?;
            let h = crate::history::verify(&ledger, &patient, &v, None)?;
            text.push_str(&h.summary());
            verified = h.summary_json();
        }
        crate::files::write(out, serde_json::to_string_pretty(&v).expect("json"))?;
        text.push_str(&format!(
            "wrote the history of patient {patient} at block {} to {}\n",
            v["height"],
            out.display()
        ));
        Ok(Output {
            text,
            json: json!({"file": out, "patient": patient, "height": v["height"], "verified": verified}),
        })
    }
}
