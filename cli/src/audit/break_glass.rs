//! `twinctl audit break-glass`: break-glass accesses in a verified export, with their review.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use twinledger_core::anomaly::AccessKind;

use super::log::collect;
use crate::{CliError, Output};

/// Break-glass accesses in a verified export, with their review.
#[derive(Debug, Args)]
pub struct BreakGlass {
    /// The export file.
    pub file: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// Only those not yet signed off.
    #[arg(long)]
    pub unreviewed: bool,
}

impl BreakGlass {
    /// Runs the command.
    pub fn run(&self) -> Result<Output, CliError> {
        let Self {
            file,
            genesis,
            unreviewed,
        } = self;
        let (log, state) = collect(file, genesis)?;
        let rows: Vec<serde_json::Value> = log
            .accesses
            .iter()
            .filter(|a| a.kind == AccessKind::BreakGlass)
            .filter_map(|a| {
                let review = state.break_glass(&a.id).map(|b| b.review);
                if *unreviewed && review.flatten().is_some() {
                    return None;
                }
                Some(json!({"id": a.id, "time": crate::time::utc(a.time.0), "actor": a.actor, "organisation": a.organisation, "patient": a.patient, "review": review.flatten()}))
            })
            .collect();
        let mut text = format!(
            "{} break-glass access(es){}\n",
            rows.len(),
            if *unreviewed { " awaiting review" } else { "" }
        );
        for r in &rows {
            text.push_str(&format!(
                "{} {} {} by {} review: {}\n",
                r["time"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or(""),
                r["patient"].as_str().unwrap_or(""),
                r["actor"].as_str().unwrap_or(""),
                r["review"]["finding"].as_str().unwrap_or("none")
            ));
        }
        Ok(Output {
            text,
            json: json!({"break_glass": rows}),
        })
    }
}
