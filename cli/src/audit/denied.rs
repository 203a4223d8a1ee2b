//! `twinctl audit denied`: denied access attempts in a verified export.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use twinledger_core::anomaly::AccessKind;

use super::log::{collect, org_name};
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
        let (log, state) = collect(file, genesis)?;
        let rows: Vec<serde_json::Value> = log
            .core
            .accesses
            .iter()
            .filter(|a| a.kind == AccessKind::Denied)
            .map(|a| json!({"id": a.id, "time": crate::time::utc(a.time.0), "actor": a.actor, "organisation": a.organisation, "organisation_name": org_name(&state, &a.organisation), "patient": a.patient, "reason": log.deny_reasons.get(&a.id)}))
            .collect();
        let mut text = format!("{} denied attempt(s)\n", rows.len());
        for r in &rows {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            text.push_str(&format!(
                "{} denied {} on patient {} to {} ({}): {}\n",
                s("time"),
                s("id"),
                s("patient"),
                s("actor"),
                s("organisation_name"),
                s("reason"),
            ));
        }
        Ok(Output {
            text,
            json: json!({"denied": rows}),
        })
    }
}
