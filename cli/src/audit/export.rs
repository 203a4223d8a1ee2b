//! `twinctl audit export`: download the chain (or a range of heights) as one file.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use twinledger_core::audit::read_export;

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::{CliError, Output};

/// Download the chain (or a range of heights) as one file.
#[derive(Debug, Args)]
pub struct Export {
    /// The auditor's (or a member organisation's) key file.
    #[arg(long)]
    pub key: PathBuf,
    /// Passphrase source.
    #[command(flatten)]
    pub pass: PassphraseArgs,
    /// Where to write the export.
    #[arg(long)]
    pub out: PathBuf,
    /// First height.
    #[arg(long)]
    pub from: Option<u64>,
    /// Last height.
    #[arg(long)]
    pub to: Option<u64>,
}

impl Export {
    /// Runs the command.
    pub fn run(&self, node: &str) -> Result<Output, CliError> {
        let Self {
            key,
            pass,
            out,
            from,
            to,
        } = self;
        crate::files::check_output(out)?;
        let key = open_key(key, pass, node)?;
        let client = NodeClient::connect(node)?;
        let mut q = Vec::new();
        if let Some(f) = from {
            q.push(format!("from={f}"));
        }
        if let Some(t) = to {
            q.push(format!("to={t}"));
        }
        let path = if q.is_empty() {
            "/v1/export".to_string()
        } else {
            format!("/v1/export?{}", q.join("&"))
        };
        let bytes = client.signed_get_bytes(&key, &path)?;
        crate::files::write(out, &bytes)?;
        let blocks = read_export(&bytes).map(|it| it.count()).unwrap_or(0);
        Ok(Output {
            text: format!(
                "wrote {} ({blocks} blocks, {} bytes)\n",
                out.display(),
                bytes.len()
            ),
            json: json!({"file": out, "blocks": blocks, "bytes": bytes.len()}),
        })
    }
}
