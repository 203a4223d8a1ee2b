//! `twinctl audit anomalies`: irregular access for review, from rules over a verified export.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use twinledger_core::anomaly::Thresholds;

use super::log::{collect, org_name};
use crate::{CliError, Output};

/// Irregular access for review, from rules over a verified export.
#[derive(Debug, Args)]
pub struct Anomalies {
    /// The export file.
    pub file: PathBuf,
    /// The chain's genesis file.
    #[arg(long)]
    pub genesis: PathBuf,
    /// Only accesses at or after this time.
    #[arg(long)]
    pub since: Option<String>,
    /// Volume rule: factor over the actor's median daily distinct patients.
    #[arg(long, default_value_t = 3)]
    pub volume_factor: u64,
    /// Volume rule: minimum distinct patients a day before it applies.
    #[arg(long, default_value_t = 10)]
    pub volume_min_patients: u64,
    /// Off-hours rule: an hour holding at most this share (per mille) of an organisation's accesses is unusual.
    #[arg(long, default_value_t = 10)]
    pub hours_max_share_permille: u64,
    /// Off-hours rule: accesses an organisation needs before it applies.
    #[arg(long, default_value_t = 100)]
    pub hours_min_history: u64,
    /// Denied-burst rule: this many denied attempts...
    #[arg(long, default_value_t = 5)]
    pub denied_burst: u64,
    /// ...within this many minutes.
    #[arg(long, default_value_t = 10)]
    pub denied_window_min: u64,
    /// Repeated break-glass rule: this many by one actor...
    #[arg(long, default_value_t = 3)]
    pub break_glass_repeat: u64,
    /// ...within this many days.
    #[arg(long, default_value_t = 7)]
    pub break_glass_window_days: u64,
    /// After-revoke rule: an access within this many hours after the patient revoked consent.
    #[arg(long, default_value_t = 24)]
    pub after_revoke_hours: u64,
}

impl Anomalies {
    /// Runs the command.
    pub fn run(&self) -> Result<Output, CliError> {
        let Self {
            file,
            genesis,
            since,
            volume_factor,
            volume_min_patients,
            hours_max_share_permille,
            hours_min_history,
            denied_burst,
            denied_window_min,
            break_glass_repeat,
            break_glass_window_days,
            after_revoke_hours,
        } = self;
        let since = since
            .as_deref()
            .map(crate::time::parse_time)
            .transpose()?
            .unwrap_or(0);
        let (mut log, state) = collect(file, genesis)?;
        log.core.retain_since(twinledger_core::Timestamp(since));
        let t = Thresholds {
            volume_factor: *volume_factor,
            volume_min_patients: *volume_min_patients,
            hours_max_share_permille: *hours_max_share_permille,
            hours_min_history: *hours_min_history,
            denied_burst: *denied_burst,
            denied_window_ms: denied_window_min * 60_000,
            break_glass_repeat: *break_glass_repeat,
            break_glass_window_ms: break_glass_window_days * 24 * 3_600_000,
            after_revoke_ms: after_revoke_hours * 3_600_000,
        };
        let findings = log.core.find(&t);
        let mut text = format!(
            "{} finding(s) over {} access attempts\n",
            findings.len(),
            log.core.accesses.len()
        );
        for f in &findings {
            let org = state
                .actor(&f.actor)
                .map(|a| org_name(&state, &a.organisation));
            text.push_str(&format!(
                "{}: {}{}: {} (events: {})\n",
                rule_words(f.rule),
                f.actor,
                org.map(|o| format!(" ({o})")).unwrap_or_default(),
                f.detail,
                f.events
                    .iter()
                    .map(|e| e.to_hex())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(Output {
            text,
            json: json!({"findings": findings}),
        })
    }
}

/// An anomaly rule's name in words.
fn rule_words(rule: &str) -> String {
    match rule {
        "volume" => "unusual volume".into(),
        "off_hours" => "off-hours access".into(),
        "denied_burst" => "burst of denied attempts".into(),
        "repeated_break_glass" => "repeated break-glass".into(),
        "after_revoke" => "access after a consent revoke".into(),
        other => other.replace('_', " "),
    }
}
