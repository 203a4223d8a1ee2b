//! `twinctl audit denied`: denied access attempts in a verified export.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use twinledger_core::anomaly::AccessKind;

use super::log::collect;
use crate::{CliError, Output};

/// Denied access attempts in a verified export.
#[derive(Debug, Args)]
pub struct Denied {
    /// The export file.
    pub file: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
}

impl Denied {
    /// Runs the command.
    pub fn run(&self) -> Result<Output, CliError> {
        let Self { file, genesis } = self;
        let (log, _) = collect(file, genesis)?;
        let rows: Vec<serde_json::Value> = log
            .accesses
            .iter()
            .filter(|a| a.kind == AccessKind::Denied)
            .map(|a| json!({"id": a.id, "time": crate::time::utc(a.time.0), "actor": a.actor, "organisation": a.organisation, "patient": a.patient}))
            .collect();
        let mut text = format!("{} denied attempt(s)\n", rows.len());
        for r in &rows {
            text.push_str(&format!(
                "{} {} {} by {}\n",
                r["time"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or(""),
                r["patient"].as_str().unwrap_or(""),
                r["actor"].as_str().unwrap_or("")
            ));
        }
        Ok(Output {
            text,
            json: json!({"denied": rows}),
        })
    }
}
