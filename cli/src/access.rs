//! `twinctl access`: ask the ledger for access (or break the glass) and keep the receipt;
//! report and watch who accessed a twin.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use twinledger_core::codes::Code as _;
use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::event::access::AccessRequest;
use twinledger_core::event::break_glass::BreakGlassRequest;
use twinledger_core::{Commitment, Decision, EventPayload, Outcome, PublicKey};

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
            let key = open_key(key, pass, node)?;
            let client = NodeClient::connect(node)?;
            let patient = patient_or_self(&client, patient.as_deref(), &key)?;
            let since = since.as_deref().map(parse_time).transpose()?.unwrap_or(0);
            // Verified: the rows are built from the certified history's events alone.
            let verified = crate::history::fetch_verified(&client, &key, &patient, check)?;
            let all = match &verified {
                Some((h, genesis)) => h.accesses(genesis),
                None => fetch(&client, &key, &patient, 0)?.0,
            };
            let rows: Vec<AccessRow> = rows(&all).into_iter().filter(|r| r.time >= since).collect();
            // Organisation names from the genesis the report was verified against.
            let names = verified
                .as_ref()
                .map(|(_, g)| org_names(g))
                .unwrap_or_default();
            let mut out = json!({"patient": patient, "accesses": rows});
            if let Some((h, _)) = &verified {
                out["verified"] = h.summary_json();
            }
            // `--format json` prints what `--json` prints: one shape.
            let text = match format.as_str() {
                "csv" => csv(&rows),
                "json" => format!("{out:#}\n"),
                _ => {
                    let mut t = table_named(&rows, &names);
                    if let Some((h, _)) = &verified {
                        t.push_str(&h.summary());
                    }
                    t
                }
            };
            Ok(Output { text, json: out })
        }
        AccessCommand::Watch {
            key,
            pass,
            patient,
            max,
        } => {
            let key = open_key(key, pass, node)?;
            let client = NodeClient::connect(node)?;
            let patient = patient_or_self(&client, patient.as_deref(), &key)?;
            // Only accesses that become final from now on.
            let (_, mut from) = fetch(&client, &key, &patient, 0)?;
            let mut seen = Vec::new();
            loop {
                let (page, next) = fetch(&client, &key, &patient, from)?;
                for r in rows(&page) {
                    use std::io::Write as _;
                    let line = format!(
                        "{} {} {} {} {} {}\n",
                        r.date,
                        r.recipient,
                        r.category,
                        r.purpose,
                        decision_words(&r),
                        crate::ids::short(&r.event)
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
    /// The key release (2.4) that answered it: the requester decrypted a sealed version.
    pub key_release: String,
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
                key_release: s(&a["key_release"]["id"]),
            }
        })
        .collect()
}

/// The names of the genesis's organisations, by did.
pub(crate) fn org_names(g: &twinledger_core::Genesis) -> BTreeMap<String, String> {
    g.organisations
        .iter()
        .map(|o| (o.key.to_did(), o.name.clone()))
        .collect()
}

/// The decision of a row in words: "permitted", "denied: no consent covers GDIS",
/// "break-glass (review: justified)".
fn decision_words(r: &AccessRow) -> String {
    let base = match r.decision.as_str() {
        "permit" => "permitted".to_string(),
        "break-glass" => "break-glass".to_string(),
        d => match d.strip_prefix("deny (").and_then(|x| x.strip_suffix(')')) {
            Some(reason) => match serde_json::from_value(json!(reason)) {
                Ok(reason) => format!(
                    "denied: {}",
                    crate::codes::deny_words(reason, Some(&r.category))
                ),
                Err(_) => format!("denied: {reason}"),
            },
            None => d.to_string(),
        },
    };
    let base = if r.key_release.is_empty() {
        base
    } else {
        format!("{base}, key released")
    };
    if r.review.is_empty() {
        base
    } else {
        format!("{base} (review: {})", r.review)
    }
}

#[cfg(test)]
pub(crate) fn table(rows: &[AccessRow]) -> String {
    table_named(rows, &BTreeMap::new())
}

/// The report as a table; organisations are named when `names` knows them.
pub(crate) fn table_named(rows: &[AccessRow], names: &BTreeMap<String, String>) -> String {
    let mut t = format!(
        "{:<24} {:<26} {:<20} {:<14} {:<8} {:<8} {:<16} {}\n",
        "DATE", "RECIPIENT", "ORGANISATION", "CATEGORY", "ACTION", "PURPOSE", "CONSENT", "DECISION"
    );
    for r in rows {
        let org = names.get(&r.organisation).cloned().unwrap_or_else(|| {
            r.organisation
                .get(..20)
                .unwrap_or(&r.organisation)
                .to_string()
        });
        t.push_str(&format!(
            "{:<24} {:<26} {:<20} {:<14} {:<8} {:<8} {:<16} {}\n",
            r.date,
            r.recipient.get(..24).unwrap_or(&r.recipient),
            org,
            r.category,
            r.action,
            r.purpose,
            crate::ids::short(&r.consent),
            decision_words(r),
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
        "date,recipient,organisation,category,action,purpose,decision,consent,review,event,key_release\n",
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
            &r.key_release,
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
    // Nothing is submitted unless the receipt can be kept.
    crate::files::check_output(&a.receipt_out)?;
    let key = open_key(&a.key, &a.pass, node)?;
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
    let pretty = serde_json::to_string_pretty(&v).expect("json");
    let outcome: Option<Outcome> = serde_json::from_value(v["outcome"].clone()).ok();
    let words = match &outcome {
        Some(o) => crate::codes::outcome_words(o, Some((category.code(), purpose.code()))),
        None => format!("the node answered without a decision: {}", v["outcome"]),
    };
    let kept = match keep_receipt(&a.receipt_out, &pretty, &mut std::io::stderr().lock()) {
        Ok(kept) => kept,
        Err(e) => {
            return Err(match outcome {
                Some(Outcome::Access(Decision::Deny { .. })) => {
                    CliError::Denied(format!("{words}; {e}"))
                }
                _ => e,
            });
        }
    };
    if matches!(outcome, Some(Outcome::Access(Decision::Deny { .. }))) {
        return Err(CliError::Denied(format!("{words}; {kept}")));
    }
    Ok(Output {
        text: format!("{words}\n{kept}\n"),
        json: v,
    })
}

/// Writes the receipt to `path`. The access is on the ledger by now: if the file cannot be
/// written, the receipt (with its salts) is printed on `fallback` (stderr) rather than lost,
/// and the error says so.
fn keep_receipt(
    path: &std::path::Path,
    pretty: &str,
    fallback: &mut impl std::io::Write,
) -> Result<String, CliError> {
    match crate::files::write(path, pretty) {
        Ok(()) => Ok(format!("receipt written to {}", path.display())),
        Err(e) => {
            let _ = writeln!(
                fallback,
                "the receipt could not be written; here it is, keep it (it holds the resource \
                 salt):\n{pretty}"
            );
            Err(match e {
                CliError::Io { path, source, .. } => CliError::Io {
                    doing: "write the receipt (printed above on stderr) to",
                    path,
                    source,
                },
                other => other,
            })
        }
    }
}

fn random32() -> Result<[u8; 32], CliError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| CliError::Invalid(format!("OS RNG: {e}")))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_that_cannot_be_written_is_printed_rather_than_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone").join("r.json");
        let receipt = "{\n  \"resource_salt\": \"00ff\"\n}";
        let mut stderr = Vec::new();
        let e = keep_receipt(&path, receipt, &mut stderr).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::IO_ERROR);
        assert!(e.to_string().contains("printed above on stderr"), "{e}");
        assert!(String::from_utf8(stderr).unwrap().contains(receipt));
        let ok = dir.path().join("r.json");
        let mut stderr = Vec::new();
        assert!(keep_receipt(&ok, receipt, &mut stderr).is_ok());
        assert!(stderr.is_empty());
        assert_eq!(std::fs::read_to_string(ok).unwrap(), receipt);
    }
}
