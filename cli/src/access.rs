//! `twinctl access`: ask the ledger for access (or break the glass) and keep the receipt;
//! report and watch who accessed a twin.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::break_glass::BreakGlassRequest;
use twinledger_core::{Commitment, EventPayload, PublicKey};

use crate::client::NodeClient;
use crate::consent::action_alias;
use crate::key::{PassphraseArgs, open_key, patient_or_self};
use crate::time::{parse_time, utc};
use crate::{CliError, Output};

/// `twinctl access ...`
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// The access command.
    #[command(subcommand)]
    pub command: AccessCommand,
}

/// What an access or break-glass request asks for, and where its receipt goes.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The actor's key file.
    #[arg(long)]
    key: PathBuf,
    /// Passphrase source.
    #[command(flatten)]
    pass: PassphraseArgs,
    /// The patient (did:key).
    #[arg(long)]
    patient: String,
    /// Data category.
    #[arg(long)]
    category: String,
    /// Action (read, update, use, disclose, collect).
    #[arg(long, default_value = "read")]
    action: String,
    /// The twin resource asked for; only its salted commitment goes on the ledger.
    #[arg(long)]
    resource: String,
    /// Where to write the receipt (JSON).
    #[arg(long)]
    receipt_out: PathBuf,
}

/// Access commands.
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Ask for access; wait for the ledger's decision; write the receipt. Exit 0 if permitted,
    /// 4 if denied.
    Request {
        /// What is asked for.
        #[command(flatten)]
        ask: AskArgs,
        /// Purpose of use (HL7 code).
        #[arg(long)]
        purpose: String,
        /// Seconds to wait for the decision (1..=60).
        #[arg(long, default_value_t = 20)]
        timeout_secs: u64,
    },
    /// Emergency access: permitted for clinical roles, always flagged and queued for review.
    /// The written reason stays off the ledger (its salted commitment is recorded).
    BreakGlass {
        /// What is asked for.
        #[command(flatten)]
        ask: AskArgs,
        /// A file holding the written justification.
        #[arg(long)]
        reason_file: PathBuf,
    },
    /// Who accessed which part of a twin, when, for what purpose, under which consent,
    /// permitted or denied, break-glass flagged: an accounting of disclosures (HIPAA 45 CFR
    /// 164.528: date, recipient, what, purpose) and an access log (EHDS Art. 9).
    Report {
        /// The reader's key file (the patient, a delegate, an auditor or a member organisation).
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The patient; default: the reader.
        #[arg(long)]
        patient: Option<String>,
        /// Only accesses at or after this time (2027-01-31, RFC 3339 or ms).
        #[arg(long)]
        since: Option<String>,
        /// Output format.
        #[arg(long, value_parser = ["table", "json", "csv"], default_value = "table")]
        format: String,
        /// Verification against the genesis.
        #[command(flatten)]
        check: crate::history::VerifyArgs,
    },
    /// Print new accesses to a twin as they become final (polls the node every second).
    Watch {
        /// The reader's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The patient; default: the reader.
        #[arg(long)]
        patient: Option<String>,
        /// Stop after this many accesses (default: run until interrupted).
        #[arg(long)]
        max: Option<usize>,
    },
}

/// Runs an access command.
pub fn run(args: &AccessArgs, node: &str) -> Result<Output, CliError> {
    match &args.command {
        AccessCommand::Request {
            ask: a,
            purpose,
            timeout_secs,
        } => ask(a, purpose, *timeout_secs, None, node),
        AccessCommand::BreakGlass {
            ask: a,
            reason_file,
        } => {
            let reason = std::fs::read(reason_file).map_err(CliError::io("read", reason_file))?;
            if reason.is_empty() {
                return Err(CliError::Invalid("the break-glass reason is empty".into()));
            }
            ask(a, "ETREAT", 20, Some(reason), node)
        }
        AccessCommand::Report {
            key,
            pass,
            patient,
            since,
            format,
            check,
        } => {
            let key = open_key(key, pass)?;
            let patient = patient_or_self(patient.as_deref(), &key)?;
            let since = since.as_deref().map(parse_time).transpose()?.unwrap_or(0);
            let client = NodeClient::connect(node)?;
            // Verified: the rows are built from the certified history's events alone.
            let verified = crate::history::fetch_verified(&client, &key, &patient, check)?;
            let all = match &verified {
                Some((h, genesis)) => h.accesses(genesis),
                None => fetch(&client, &key, &patient, 0)?.0,
            };
            let rows: Vec<AccessRow> = rows(&all).into_iter().filter(|r| r.time >= since).collect();
            let mut text = match format.as_str() {
                "csv" => csv(&rows),
                "json" => format!("{:#}\n", json!(rows)),
                _ => table(&rows),
            };
            let mut out = json!({"patient": patient, "accesses": rows});
            if let Some((h, _)) = &verified {
                // Only the table gains a line: csv and json stay machine-readable.
                if format == "table" {
                    text.push_str(&h.summary());
                }
                out["verified"] = h.summary_json();
            }
            Ok(Output { text, json: out })
        }
        AccessCommand::Watch {
            key,
            pass,
            patient,
            max,
        } => {
            let key = open_key(key, pass)?;
            let patient = patient_or_self(patient.as_deref(), &key)?;
            let client = NodeClient::connect(node)?;
            // Only accesses that become final from now on.
            let (_, mut from) = fetch(&client, &key, &patient, 0)?;
            let mut seen = Vec::new();
            loop {
                let (page, next) = fetch(&client, &key, &patient, from)?;
                for r in rows(&page) {
                    use std::io::Write as _;
                    let line = format!(
                        "{} {} {} {} {} {}\n",
                        r.date, r.recipient, r.category, r.purpose, r.decision, r.event
                    );
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
                    seen.push(r);
                    if max.is_some_and(|m| seen.len() >= m) {
                        return Ok(Output {
                            text: String::new(),
                            json: json!({ "accesses": seen }),
                        });
                    }
                }
                from = next.max(from);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// One row of an access report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccessRow {
    /// When (ms since the Unix epoch: the block time).
    pub time: u64,
    /// When (RFC 3339).
    pub date: String,
    /// The requesting actor (did:key).
    pub recipient: String,
    /// Its organisation (did:key).
    pub organisation: String,
    /// Data category.
    pub category: String,
    /// Action.
    pub action: String,
    /// Purpose of use.
    pub purpose: String,
    /// permit, deny (reason) or break-glass.
    pub decision: String,
    /// The consent (grant id) that permitted it, if any.
    pub consent: String,
    /// Break-glass review finding, if reviewed.
    pub review: String,
    /// The access event's id.
    pub event: String,
}

pub(crate) fn rows(accesses: &[Value]) -> Vec<AccessRow> {
    let s = |x: &Value| x.as_str().unwrap_or("").to_string();
    accesses
        .iter()
        .map(|a| {
            let out = &a["outcome"]["access"];
            let (decision, consent) = if let Some(p) = out.get("permit") {
                ("permit".to_string(), s(&p["grant"]))
            } else if let Some(d) = out.get("deny") {
                (format!("deny ({})", s(&d["reason"])), String::new())
            } else {
                ("break-glass".to_string(), String::new())
            };
            let time = a["time"].as_u64().unwrap_or(0);
            AccessRow {
                time,
                date: utc(time),
                recipient: s(&a["actor"]),
                organisation: s(&a["organisation"]),
                category: s(&a["category"]),
                action: s(&a["action"]),
                purpose: s(&a["purpose"]),
                decision,
                consent,
                review: s(&a["break_glass_review"]["finding"]),
                event: s(&a["id"]),
            }
        })
        .collect()
}

pub(crate) fn table(rows: &[AccessRow]) -> String {
    let mut t = format!(
        "{:<24} {:<26} {:<14} {:<8} {:<8} {:<28} {}\n",
        "DATE", "RECIPIENT", "CATEGORY", "ACTION", "PURPOSE", "DECISION", "CONSENT"
    );
    for r in rows {
        let decision = if r.review.is_empty() {
            r.decision.clone()
        } else {
            format!("{} (review: {})", r.decision, r.review)
        };
        t.push_str(&format!(
            "{:<24} {:<26} {:<14} {:<8} {:<8} {:<28} {}\n",
            r.date,
            r.recipient.get(..24).unwrap_or(&r.recipient),
            r.category,
            r.action,
            r.purpose,
            decision,
            r.consent.get(..12).unwrap_or("")
        ));
    }
    t
}

pub(crate) fn csv(rows: &[AccessRow]) -> String {
    let esc = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut t = String::from(
        "date,recipient,organisation,category,action,purpose,decision,consent,review,event\n",
    );
    for r in rows {
        let fields = [
            &r.date,
            &r.recipient,
            &r.organisation,
            &r.category,
            &r.action,
            &r.purpose,
            &r.decision,
            &r.consent,
            &r.review,
            &r.event,
        ];
        t.push_str(&fields.iter().map(|x| esc(x)).collect::<Vec<_>>().join(","));
        t.push('\n');
    }
    t
}

/// All access entries of a patient from log position `from` on, following the node's paging;
/// returns them and the position to continue from.
fn fetch(
    client: &NodeClient,
    key: &twinledger_core::Keypair,
    patient: &PublicKey,
    mut from: u64,
) -> Result<(Vec<Value>, u64), CliError> {
    let mut all = Vec::new();
    loop {
        let v = client.signed_get(
            key,
            &format!("/v1/patients/{patient}/accesses?from={from}&limit=1000"),
        )?;
        all.extend(v["accesses"].as_array().cloned().unwrap_or_default());
        match v["next_from"].as_u64() {
            Some(n) if n > from => from = n,
            _ => return Ok((all, from)),
        }
    }
}

/// Signs the request, waits for the decision, writes the receipt.
fn ask(
    a: &AskArgs,
    purpose: &str,
    timeout_secs: u64,
    reason: Option<Vec<u8>>,
    node: &str,
) -> Result<Output, CliError> {
    let inv = |e: twinledger_core::codes::UnknownCode| CliError::Invalid(e.to_string());
    let patient = PublicKey::from_did(&a.patient)
        .map_err(|e| CliError::Invalid(format!("--patient: {e}")))?;
    let category: DataCategory = a.category.parse().map_err(inv)?;
    let purpose: Purpose = purpose.parse().map_err(inv)?;
    let action: Action = action_alias(&a.action).parse().map_err(inv)?;
    if !(1..=60).contains(&timeout_secs) {
        return Err(CliError::Invalid("--timeout-secs must be 1..=60".into()));
    }
    crate::audit::refuse_existing(&a.receipt_out)?;
    let key = open_key(&a.key, &a.pass)?;
    let salt = random32()?;
    let client = NodeClient::connect(node)?;
    let resource = Commitment::new(&salt, a.resource.as_bytes());
    let mut reason_salt = None;
    let payload = match &reason {
        None => EventPayload::AccessRequest(AccessRequest {
            patient,
            category,
            purpose,
            action,
            resource,
        }),
        Some(text) => {
            let rs = random32()?;
            reason_salt = Some(rs);
            EventPayload::BreakGlassRequest(BreakGlassRequest {
                patient,
                category,
                action,
                resource,
                reason: Commitment::new(&rs, text),
            })
        }
    };
    let ev = client.sign(&key, payload)?;
    let mut v = client.authorise(&ev, Duration::from_secs(timeout_secs))?;
    // The openings of the commitments stay with the requester and the twin store.
    v["resource_salt"] = json!(hex::encode(salt));
    if let Some(rs) = reason_salt {
        v["reason_salt"] = json!(hex::encode(rs));
    }
    std::fs::write(
        &a.receipt_out,
        serde_json::to_string_pretty(&v).expect("json"),
    )
    .map_err(CliError::io("write", &a.receipt_out))?;
    let outcome = &v["outcome"]["access"];
    if outcome.get("deny").is_some() {
        return Err(CliError::Denied(format!(
            "access denied ({}); receipt written to {}",
            outcome["deny"]["reason"].as_str().unwrap_or("?"),
            a.receipt_out.display()
        )));
    }
    Ok(Output {
        text: format!(
            "{}\nreceipt written to {}\n",
            serde_json::to_string(outcome).unwrap_or_default(),
            a.receipt_out.display()
        ),
        json: v,
    })
}

fn random32() -> Result<[u8; 32], CliError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| CliError::Invalid(format!("OS RNG: {e}")))?;
    Ok(b)
}
