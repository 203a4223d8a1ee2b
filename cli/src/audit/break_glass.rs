//! `twinctl audit break-glass`: break-glass accesses in a verified export, with their review.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use twinledger_core::anomaly::AccessKind;

use super::log::{collect, org_name};
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
            .core
            .accesses
            .iter()
            .filter(|a| a.kind == AccessKind::BreakGlass)
            .filter_map(|a| {
                let review = state.break_glass(&a.id).map(|b| b.review);
                if *unreviewed && review.flatten().is_some() {
                    return None;
                }
                Some(json!({"id": a.id, "time": crate::time::utc(a.time.0), "actor": a.actor, "organisation": a.organisation, "organisation_name": org_name(&state, &a.organisation), "patient": a.patient, "review": review.flatten()}))
            })
            .collect();
        let mut text = format!(
            "{} break-glass access(es){}\n",
            rows.len(),
            if *unreviewed { " awaiting review" } else { "" }
        );
        for r in &rows {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
            let review = match r["review"]["finding"].as_str() {
                Some(f) => format!("reviewed: {f}"),
                None => "awaiting review".to_string(),
            };
            text.push_str(&format!(
                "{} break-glass {} on patient {} by {} ({}): {review}\n",
                s("time"),
                s("id"),
                s("patient"),
                s("actor"),
                s("organisation_name"),
            ));
        }
        Ok(Output {
            text,
            json: json!({"break_glass": rows}),
        })
    }
}
