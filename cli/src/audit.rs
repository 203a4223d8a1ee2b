//! `twinctl audit`: export a chain and verify it offline, trusting only the genesis file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, mpsc};
use std::time::Instant;

use clap::{Args, Subcommand};
use serde_json::json;
use twinledger_core::anomaly::{AccessKind, AccessRecord, RevokeRecord, Thresholds};
use twinledger_core::audit::{
    AuditFailure, Auditor, CommittedBlock, EXPORT_MAGIC, ExportError, read_export, signature_items,
};
use twinledger_core::block::MAX_BLOCK_BYTES;
use twinledger_core::codec;
use twinledger_core::keys::verify_batch;
use twinledger_core::state::SignatureCheck;
use twinledger_core::{Decision, EventPayload, Outcome, ValidatorSets};
use twinledger_genesis::GenesisFile;

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::receipt::CHANGES;
use crate::{CliError, Output};

/// `twinctl audit ...`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The audit command.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Download the chain (or a range of heights) as one file.
    Export {
        /// The auditor's (or a member organisation's) key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// Where to write the export.
        #[arg(long)]
        out: PathBuf,
        /// First height.
        #[arg(long)]
        from: Option<u64>,
        /// Last height.
        #[arg(long)]
        to: Option<u64>,
    },
    /// Verify a whole exported chain offline against its genesis: every certificate, hash link,
    /// event signature, Merkle root and re-derived decision. Exit 0 if it verifies, 6 naming
    /// the first bad height, event and reason if not.
    Verify {
        /// The export file (from `audit export`).
        file: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// Check every signature one by one with the protocol's strict rule instead of in
        /// batches (slower; see PERFORMANCE.md for the difference).
        #[arg(long)]
        strict: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Save a patient's certified history (`GET /v1/patients/{did}/history`, PROTOCOL.md §11.3)
    /// to a file, for `receipt verify --history` and `audit verify-bundle --history` (§11.4);
    /// with `--genesis` it is verified first (exit 6 if it does not verify, nothing written).
    History {
        /// The reader's key file: the patient, their delegate, an auditor or a member
        /// organisation (whoever may read the patient's records).
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The patient (did:key, the patient id); the key's own by default.
        #[arg(long)]
        patient: Option<String>,
        /// Where to write the answer.
        #[arg(long)]
        out: PathBuf,
        /// The chain's genesis file: verify the answer before writing it.
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
    /// Write a single-file evidence bundle for one event (PROTOCOL.md §9.3, version 2): the
    /// event, its decision, its inclusion proof, its block's header, results and certificate,
    /// and the certified chain of validator-set changes in force at its height.
    Prove {
        /// The reader's key file: an auditor, a member organisation, the event's author, or the
        /// patient it concerns (or their delegate).
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The event id.
        event: String,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
        /// Embed the patient's certified history (PROTOCOL.md §11.3) in the bundle (version 3,
        /// §11.4), for an access or break-glass event, so that `verify-bundle` re-derives its
        /// decision offline; the key must be allowed to read the patient's records.
        #[arg(long)]
        with_history: bool,
    },
    /// Verify an evidence bundle offline against the genesis and the bundle's chain of
    /// validator-set changes: the receipt against the set in force at its height, and every
    /// other field against what the receipt proves (exit 0 valid; 6 not, naming the field).
    VerifyBundle {
        /// The bundle.
        file: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// A chain of validator-set changes from a source you trust (`audit validator-sets
        /// --out`), merged with the bundle's own.
        #[arg(long)]
        validator_sets: Option<PathBuf>,
        /// The patient's history (`GET /v1/patients/{did}/history`, PROTOCOL.md §11.3) for an
        /// access or break-glass bundle: the decision is re-derived from it (§11.4) and must be
        /// the bundle's (exit 6 if not, naming the grant).
        #[arg(long)]
        history: Option<PathBuf>,
    },
    /// Verify that a newer checkpoint extends an older one: both certificates against the
    /// validator set in force at their heights (the node's certified chain of validator-set
    /// changes, verified from the genesis), and the RFC 9162 consistency proof fetched from the
    /// node (exit 0 if consistent, 6 if not).
    Consistency {
        /// The older checkpoint (text form).
        #[arg(long)]
        old: PathBuf,
        /// The newer checkpoint (text form).
        #[arg(long)]
        new: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// A chain of validator-set changes from a source you trust, merged with the node's.
        #[arg(long)]
        validator_sets: Option<PathBuf>,
    },
    /// Fetch the node's certified chain of validator-set changes, verify it from the genesis
    /// (merged with `--validator-sets` if given), print the set in force from each height, and
    /// write it with `--out` for offline use (`--validator-sets FILE` of the other commands).
    /// Exit 6 if it does not verify or conflicts with the given chain.
    ValidatorSets {
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// A chain you hold already (it must agree with the node's).
        #[arg(long)]
        validator_sets: Option<PathBuf>,
        /// Where to write the verified chain.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Checkpoint witness: take in the node's latest checkpoint (or a checkpoint file, e.g.
    /// one another auditor received), check its certificate against the validator set in force
    /// at its height, compare it with every checkpoint kept in `--state`, and keep it. Exit 6
    /// with a fork report naming the validators that signed both sides if two valid checkpoints
    /// cannot both be true. The witness also keeps the longest verified chain of validator-set
    /// changes (`validator-sets.json`; from the node, or `--validator-sets`).
    Witness {
        /// Where the witness keeps the checkpoints it accepted.
        #[arg(long)]
        state: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// A chain of validator-set changes (`audit validator-sets --out`), merged with the
        /// one the witness kept.
        #[arg(long)]
        validator_sets: Option<PathBuf>,
        /// A checkpoint file to take in instead of asking the node.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Cosign each accepted checkpoint with this auditor key and send the cosignature to
        /// the node, which then shows who witnessed the height.
        #[arg(long)]
        cosign_key: Option<PathBuf>,
        /// Passphrase source for the cosign key.
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Run the witness against the node every `--interval-secs` (default forever; `--rounds`
    /// stops after that many).
    Watch {
        /// Where the witness keeps the checkpoints it accepted.
        #[arg(long)]
        state: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// Seconds between checkpoints.
        #[arg(long, default_value_t = 10)]
        interval_secs: u64,
        /// Stop after this many rounds.
        #[arg(long)]
        rounds: Option<u64>,
    },
    /// Break-glass accesses in a verified export, with their review (or only the unreviewed).
    BreakGlass {
        /// The export file.
        file: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// Only those not yet signed off.
        #[arg(long)]
        unreviewed: bool,
    },
    /// Denied access attempts in a verified export.
    Denied {
        /// The export file.
        file: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
    },
    /// Irregular access for review, from rules over a verified export; each finding names its
    /// events. Exit 0 whether or not there are findings.
    Anomalies {
        /// The export file.
        file: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// Only accesses at or after this time.
        #[arg(long)]
        since: Option<String>,
        /// Volume rule: factor over the actor's median daily distinct patients.
        #[arg(long, default_value_t = 3)]
        volume_factor: u64,
        /// Volume rule: minimum distinct patients a day before it applies.
        #[arg(long, default_value_t = 10)]
        volume_min_patients: u64,
        /// Off-hours rule: an hour holding at most this share (per mille) of an organisation's accesses is unusual.
        #[arg(long, default_value_t = 10)]
        hours_max_share_permille: u64,
        /// Off-hours rule: accesses an organisation needs before it applies.
        #[arg(long, default_value_t = 100)]
        hours_min_history: u64,
        /// Denied-burst rule: this many denied attempts...
        #[arg(long, default_value_t = 5)]
        denied_burst: u64,
        /// ...within this many minutes.
        #[arg(long, default_value_t = 10)]
        denied_window_min: u64,
        /// Repeated break-glass rule: this many by one actor...
        #[arg(long, default_value_t = 3)]
        break_glass_repeat: u64,
        /// ...within this many days.
        #[arg(long, default_value_t = 7)]
        break_glass_window_days: u64,
        /// After-revoke rule: an access within this many hours after the patient revoked consent.
        #[arg(long, default_value_t = 24)]
        after_revoke_hours: u64,
    },
    /// Save the node's latest checkpoint (text form) to a file.
    Checkpoint {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs an audit command.
pub fn run(args: &AuditArgs, node: &str, json_out: bool) -> Result<Output, CliError> {
    match &args.command {
        AuditCommand::Export {
            key,
            pass,
            out,
            from,
            to,
        } => {
            refuse_existing(out)?;
            let key = open_key(key, pass)?;
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
            std::fs::write(out, &bytes)
                .map_err(|e| CliError::Invalid(format!("{}: {e}", out.display())))?;
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
        AuditCommand::Verify {
            file,
            genesis,
            strict,
            quiet,
        } => {
            let g = GenesisFile::load(genesis)?;
            let ledger = g.ledger_genesis()?;
            let bytes = std::fs::read(file)
                .map_err(|e| CliError::Invalid(format!("{}: {e}", file.display())))?;
            let started = Instant::now();
            // Frames counted, not decoded (decoding is a third of the work of verifying).
            let total = split_frames(&bytes).map_or(0, |(frames, _)| frames.len() as u64);
            let bar = if *quiet || json_out {
                indicatif::ProgressBar::hidden()
            } else {
                let b = indicatif::ProgressBar::new(total);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} blocks {per_sec} eta {eta}",
                    )
                    .expect("valid template"),
                );
                b
            };
            let result = verify(&ledger, &bytes, *strict, &bar, |_, _| {});
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            match result {
                Ok(summary) => {
                    let rate = summary.events as f64 / secs.max(1e-9);
                    Ok(Output {
                        text: format!(
                            "chain verifies: {} blocks, {} events (height {}, log root {})\n\
                             decisions: {} permitted, {} denied, {} break-glass ({} unreviewed)\n\
                             {:.2} s, {:.0} events/s\n",
                            summary.blocks,
                            summary.events,
                            summary.height,
                            summary.log_root,
                            summary.permitted,
                            summary.denied,
                            summary.break_glass,
                            summary.unreviewed_break_glass,
                            secs,
                            rate
                        ),
                        json: json!({"valid": true, "summary": summary, "seconds": secs, "events_per_second": rate}),
                    })
                }
                Err(f) => Err(CliError::Mismatch(format!(
                    "chain does not verify{}: {f}",
                    f.height()
                        .map(|h| format!(" at height {h}"))
                        .unwrap_or_default()
                ))),
            }
        }
        AuditCommand::History {
            key,
            pass,
            patient,
            out,
            genesis,
        } => {
            refuse_existing(out)?;
            let key = open_key(key, pass)?;
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
            std::fs::write(out, serde_json::to_string_pretty(&v).expect("json"))
                .map_err(|e| CliError::Invalid(format!("{}: {e}", out.display())))?;
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
        AuditCommand::Prove {
            key,
            pass,
            event,
            out,
            with_history,
        } => {
            refuse_existing(out)?;
            let id = twinledger_core::EventId::from_hex(event)
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            let key = open_key(key, pass)?;
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
            std::fs::write(out, serde_json::to_string_pretty(&bundle).expect("json"))
                .map_err(|e| CliError::Invalid(format!("{}: {e}", out.display())))?;
            Ok(Output {
                text: format!("wrote evidence bundle for {id} to {}\n", out.display()),
                json: json!({"file": out, "id": id}),
            })
        }
        AuditCommand::VerifyBundle {
            file,
            genesis,
            validator_sets,
            history,
        } => verify_bundle(file, genesis, validator_sets.as_deref(), history.as_deref()),
        AuditCommand::Consistency {
            old,
            new,
            genesis,
            validator_sets,
        } => {
            let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
            let client = NodeClient::connect(node)?;
            let (mut sets, _) = crate::witness::node_sets(&ledger, &client)?;
            if let Some(f) = validator_sets {
                sets = crate::receipt::merge(sets, crate::receipt::sets_file(&ledger, f)?)?;
            }
            let a = read_checkpoint(old, &sets)?;
            let b = read_checkpoint(new, &sets)?;
            if a.chain_id != b.chain_id || a.chain_id != ledger.chain_id() {
                return Err(mismatch(
                    "the checkpoints are not both of this genesis's chain",
                ));
            }
            if a.height == b.height && a.block_hash != b.block_hash {
                return Err(mismatch(format!(
                    "fork: two certified blocks at height {}",
                    a.height
                )));
            }
            if a.log_size > b.log_size {
                return Err(mismatch(format!(
                    "the old checkpoint's log ({}) is larger than the new one's ({})",
                    a.log_size, b.log_size
                )));
            }
            let v = client.get_json(&format!(
                "/v1/consistency?from={}&to={}",
                a.log_size, b.log_size
            ))?;
            let proof: Vec<Vec<u8>> = v["proof"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    hex::decode(h.as_str().unwrap_or(""))
                        .map_err(|_| CliError::Invalid("node sent a malformed proof".into()))
                })
                .collect::<Result<_, _>>()?;
            twinledger_core::merkle::verify_consistency::<twinledger_core::merkle::Blake3Tree>(
                a.log_size,
                b.log_size,
                &proof,
                a.log_root.as_bytes(),
                b.log_root.as_bytes(),
            )
            .map_err(|e| mismatch(format!("the logs are not consistent: {e}")))?;
            Ok(Output {
                text: format!(
                    "consistent: the log of {} events at height {} is a prefix of the log of {} events at height {}\n",
                    a.log_size, a.height, b.log_size, b.height
                ),
                json: json!({"consistent": true, "old": {"height": a.height, "log_size": a.log_size}, "new": {"height": b.height, "log_size": b.log_size}}),
            })
        }
        AuditCommand::Witness {
            state,
            genesis,
            validator_sets,
            checkpoint,
            cosign_key,
            pass,
        } => {
            let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
            let cosigner = cosign_key.as_ref().map(|k| open_key(k, pass)).transpose()?;
            let (text, client) = match checkpoint {
                Some(f) => (
                    std::fs::read_to_string(f)
                        .map_err(|e| CliError::Invalid(format!("{}: {e}", f.display())))?,
                    None,
                ),
                None => {
                    let c = NodeClient::connect(node)?;
                    let v = c.get_json("/v1/checkpoint")?;
                    (v["text"].as_str().unwrap_or_default().to_string(), Some(c))
                }
            };
            let sets = crate::witness::known_sets(
                state,
                &ledger,
                validator_sets.as_deref(),
                client.as_ref(),
            )?;
            let v = crate::witness::ingest(state, &sets, &text, client.as_ref())?;
            if let (
                Some(key),
                crate::witness::Verdict::Accepted(cp) | crate::witness::Verdict::Known(cp),
            ) = (&cosigner, &v)
            {
                let connected;
                let c = match &client {
                    Some(c) => c,
                    None => {
                        connected = NodeClient::connect(node)?;
                        &connected
                    }
                };
                c.post_json(
                    "/v1/cosignatures",
                    &json!({
                        "checkpoint": text,
                        "auditor": key.public(),
                        "signature": hex::encode(cp.cosign(key).0),
                    }),
                )?;
            }
            verdict(v)
        }
        AuditCommand::Watch {
            state,
            genesis,
            interval_secs,
            rounds,
        } => {
            let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
            let client = NodeClient::connect(node)?;
            let mut round = 0u64;
            loop {
                let v = client.get_json("/v1/checkpoint")?;
                let text = v["text"].as_str().unwrap_or_default().to_string();
                // The chain of changes after the checkpoint: it covers the checkpoint's height.
                let sets = crate::witness::known_sets(state, &ledger, None, Some(&client))?;
                let out = verdict(crate::witness::ingest(state, &sets, &text, Some(&client))?)?;
                {
                    use std::io::Write as _;
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(out.text.as_bytes()).and_then(|()| o.flush());
                }
                round += 1;
                if rounds.is_some_and(|r| round >= r) {
                    return Ok(Output {
                        text: String::new(),
                        json: out.json,
                    });
                }
                std::thread::sleep(std::time::Duration::from_secs(*interval_secs));
            }
        }
        AuditCommand::BreakGlass {
            file,
            genesis,
            unreviewed,
        } => {
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
        AuditCommand::Denied { file, genesis } => {
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
        AuditCommand::Anomalies {
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
        } => {
            let since = since
                .as_deref()
                .map(crate::time::parse_time)
                .transpose()?
                .unwrap_or(0);
            let (mut log, _) = collect(file, genesis)?;
            log.accesses.retain(|a| a.time.0 >= since);
            log.revokes.retain(|r| r.time.0 >= since);
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
            let findings = twinledger_core::anomaly::find(&log.accesses, &log.revokes, &t);
            let mut text = format!(
                "{} finding(s) over {} access attempts\n",
                findings.len(),
                log.accesses.len()
            );
            for f in &findings {
                text.push_str(&format!(
                    "[{}] {}: {} (events: {})\n",
                    f.rule,
                    f.actor,
                    f.detail,
                    f.events
                        .iter()
                        .map(|e| e.to_hex()[..12].to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Ok(Output {
                text,
                json: json!({"findings": findings}),
            })
        }
        AuditCommand::ValidatorSets {
            genesis,
            validator_sets,
            out,
        } => validator_sets_cmd(node, genesis, validator_sets.as_deref(), out.as_deref()),
        AuditCommand::Checkpoint { out } => {
            let v = NodeClient::connect(node)?.get_json("/v1/checkpoint")?;
            let text = v["text"]
                .as_str()
                .ok_or_else(|| CliError::Invalid("node sent no checkpoint".into()))?;
            std::fs::write(out, text)
                .map_err(|e| CliError::Invalid(format!("{}: {e}", out.display())))?;
            Ok(Output {
                text: format!(
                    "wrote checkpoint at height {} to {}\n",
                    v["checkpoint"]["height"],
                    out.display()
                ),
                json: json!({"file": out, "checkpoint": v["checkpoint"]}),
            })
        }
    }
}

fn verdict(v: crate::witness::Verdict) -> Result<Output, CliError> {
    use crate::witness::Verdict;
    match v {
        Verdict::Accepted(cp) => Ok(Output {
            text: format!(
                "accepted checkpoint at height {} ({} events)\n",
                cp.height, cp.log_size
            ),
            json: json!({"accepted": true, "height": cp.height, "log_size": cp.log_size}),
        }),
        Verdict::Known(cp) => Ok(Output {
            text: format!("checkpoint at height {} already witnessed\n", cp.height),
            json: json!({"accepted": true, "known": true, "height": cp.height}),
        }),
        Verdict::Fork(report) => {
            let signers = report["signed_both"]
                .as_array()
                .map(|a| a.len())
                .unwrap_or(0);
            Err(CliError::Mismatch(format!(
                "FORK ({}): {}; {} validator(s) signed both sides: {}\n{:#}",
                report["kind"].as_str().unwrap_or(""),
                report["detail"].as_str().unwrap_or(""),
                signers,
                report["signed_both"],
                report
            )))
        }
    }
}

/// The access log of a verified export.
#[derive(Debug, Default)]
struct Log {
    accesses: Vec<AccessRecord>,
    revokes: Vec<RevokeRecord>,
}

/// Verifies an export (refusing one that does not verify) and collects its access log.
fn collect(
    file: &std::path::Path,
    genesis: &std::path::Path,
) -> Result<(Log, twinledger_core::State), CliError> {
    let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
    let bytes =
        std::fs::read(file).map_err(|e| CliError::Invalid(format!("{}: {e}", file.display())))?;
    let mut log = Log::default();
    let mut last = None;
    verify(
        &ledger,
        &bytes,
        false,
        &indicatif::ProgressBar::hidden(),
        |cb, state| {
            let time = cb.block.header.time;
            for (ev, outcome) in cb.block.events.iter().zip(&cb.results.outcomes) {
                let actor = ev.event.author;
                let organisation = state.actor(&actor).map(|a| a.organisation).unwrap_or(actor);
                let kind = match outcome {
                    Outcome::Access(Decision::Permit { .. }) => AccessKind::Permitted,
                    Outcome::Access(Decision::Deny { .. }) => AccessKind::Denied,
                    Outcome::Access(Decision::BreakGlass) => AccessKind::BreakGlass,
                    Outcome::Applied => {
                        if let EventPayload::ConsentRevoke(r) = &ev.event.payload {
                            log.revokes.push(RevokeRecord {
                                id: ev.id(),
                                time,
                                patient: r.patient,
                            });
                        }
                        continue;
                    }
                };
                let patient = match &ev.event.payload {
                    EventPayload::AccessRequest(a) => a.patient,
                    EventPayload::BreakGlassRequest(b) => b.patient,
                    _ => continue,
                };
                log.accesses.push(AccessRecord {
                    id: ev.id(),
                    time,
                    actor,
                    organisation,
                    patient,
                    kind,
                });
            }
            last = Some(state.clone());
        },
    )
    .map_err(|f| CliError::Mismatch(format!("chain does not verify: {f}")))?;
    let state = match last {
        Some(s) => s,
        None => twinledger_core::State::from_genesis(&ledger)
            .map_err(|e| CliError::Invalid(e.to_string()))?,
    };
    Ok((log, state))
}

fn mismatch(what: impl std::fmt::Display) -> CliError {
    CliError::Mismatch(what.to_string())
}

fn read_checkpoint(
    path: &PathBuf,
    sets: &ValidatorSets,
) -> Result<twinledger_core::Checkpoint, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
    let (cp, cert) = twinledger_core::Checkpoint::from_text(&text)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
    if cp.chain_id != sets.chain_id() {
        return Err(mismatch(format!(
            "{}: checkpoint of chain {}, the genesis is {}",
            path.display(),
            cp.chain_id,
            sets.chain_id()
        )));
    }
    sets.verify_checkpoint(&cp, &cert).map_err(|e| {
        mismatch(format!(
            "{}: certificate does not verify against the {}: {e}",
            path.display(),
            crate::receipt::set_line(sets, cp.height)
        ))
    })?;
    Ok(cp)
}

/// Verifies an evidence bundle (PROTOCOL.md §9.3): exactly the keys of its version, the chain
/// of changes from the genesis, the receipt against the set in force at its height, and `id`
/// and `outcome` against what the receipt proves. Every refusal names the field (exit 6).
fn verify_bundle(
    file: &Path,
    genesis: &Path,
    trusted: Option<&Path>,
    history: Option<&Path>,
) -> Result<Output, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", file.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", file.display())))?;
    if v.get("kind").is_none() {
        return Err(mismatch(format!(
            "field `kind` is missing: {} is not an evidence bundle",
            file.display()
        )));
    }
    let (receipt, changes) = crate::receipt::read_evidence(&v)?;
    let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
    if receipt.header.chain_id != ledger.chain_id() {
        return Err(mismatch(format!(
            "field `receipt`: the bundle is for chain {}, the genesis is {}",
            receipt.header.chain_id,
            ledger.chain_id()
        )));
    }
    let sets = crate::receipt::sets_for(&ledger, &changes, "the bundle", trusted)?;
    let height = receipt.header.height;
    let outcome = sets.verify_receipt(&receipt).map_err(|e| {
        mismatch(format!(
            "field `receipt`: evidence bundle does not verify against the validator set in \
             force at block {height} ({} validator-set change(s) known since genesis): {e}",
            sets.changes_in_force_at(height)
        ))
    })?;
    crate::receipt::check_id_and_outcome(&v, &receipt, &outcome)?;
    let mut text = format!(
        "evidence verifies: event {} is leaf {} of the log at block {height} with outcome {}\n{}\n",
        receipt.event_id(),
        receipt.leaf_index,
        serde_json::to_string(&outcome).unwrap_or_default(),
        crate::receipt::set_line(&sets, height)
    );
    let mut j = json!({
        "valid": true,
        "event": receipt.event_id(),
        "height": height,
        "outcome": outcome,
        "validator_set": {
            "hash": sets.set_at(height).hash(),
            "changes_since_genesis": sets.changes_in_force_at(height),
        },
    });
    if let Some(h) = crate::history::history_for(&v, history)? {
        let (t, c) = crate::history::consent_check(&ledger, &receipt, &outcome, &h, trusted)?;
        text.push_str(&t);
        j["consent"] = c;
    }
    Ok(Output { text, json: j })
}

/// `audit validator-sets`: the node's chain of changes, verified, merged, printed, written.
fn validator_sets_cmd(
    node: &str,
    genesis: &Path,
    trusted: Option<&Path>,
    out: Option<&Path>,
) -> Result<Output, CliError> {
    let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
    let client = NodeClient::connect(node)?;
    let v = client.get_json("/v1/validator-sets")?;
    let node_changes = crate::receipt::changes_in(&v)?;
    let mut sets = crate::receipt::verify_changes(&ledger, &node_changes, "the node's answer")?;
    if let Some(f) = trusted {
        sets = crate::receipt::merge(sets, crate::receipt::sets_file(&ledger, f)?)?;
    }
    if sets.changes().len() > node_changes.len() {
        return Err(mismatch(format!(
            "the node's chain of validator-set changes ({} changes) lacks changes of the given \
             chain ({}): the node is behind or hides a change",
            node_changes.len(),
            sets.changes().len()
        )));
    }
    let g = sets.genesis_set();
    let mut text = format!(
        "chain {}: {} validator-set change(s) since genesis, verified\n\
         from block 1: {} (genesis, {} validator(s), power {})\n",
        sets.chain_id(),
        sets.changes().len(),
        g.hash(),
        g.validators().len(),
        g.total_power()
    );
    let mut rows = vec![
        json!({"from_height": 1, "validators_hash": g.hash(), "event": null, "validators": g}),
    ];
    for c in sets.changes() {
        text.push_str(&format!(
            "from block {}: {} (change in block {}, event {}, {} validator(s), power {})\n",
            c.in_force_from,
            c.validators.hash(),
            c.height,
            c.event,
            c.validators.validators().len(),
            c.validators.total_power()
        ));
        rows.push(json!({"from_height": c.in_force_from, "validators_hash": c.validators.hash(), "event": c.event, "validators": c.validators}));
    }
    if let Some(out) = out {
        refuse_existing(out)?;
        let file = json!({ CHANGES: node_changes });
        std::fs::write(out, serde_json::to_string_pretty(&file).expect("json"))
            .map_err(|e| CliError::Invalid(format!("{}: {e}", out.display())))?;
        text.push_str(&format!("wrote {}\n", out.display()));
    }
    Ok(Output {
        text,
        json: json!({"chain_id": sets.chain_id(), "sets": rows}),
    })
}

/// Frames of consecutive blocks one worker takes at a time: small blocks are grouped until
/// their frames reach this size, so that one `verify_batch` call checks many signatures (about
/// 1,000 events of a typical size) across block boundaries; a larger block is a job alone.
const JOB_BYTES: usize = 256 * 1024;

/// Jobs decoded and verified ahead of the in-order replay, per worker: the memory bound of the
/// pipeline (at most this many jobs, each `JOB_BYTES` or one block, wait decoded in memory).
const JOBS_AHEAD_PER_WORKER: usize = 4;

/// Verifies an export as a pipeline: worker threads (one per core) decode the frames of
/// consecutive blocks and batch-verify all their event signatures together, while this thread
/// re-executes the verified blocks in order (`SignatureCheck::AlreadyVerified`), at most
/// `JOBS_AHEAD_PER_WORKER` jobs per worker ahead of it. Returns the summary or the first
/// failure in chain order, whichever worker found it first.
pub fn verify(
    genesis: &twinledger_core::Genesis,
    bytes: &[u8],
    strict: bool,
    bar: &indicatif::ProgressBar,
    mut on_block: impl FnMut(&CommittedBlock, &twinledger_core::State),
) -> Result<twinledger_core::audit::AuditSummary, AuditFailure> {
    let mut auditor = Auditor::new(genesis)?;
    if strict {
        for cb in read_export(bytes)? {
            let cb = cb?;
            auditor.check(&cb, SignatureCheck::Verify)?;
            on_block(&cb, auditor.state());
            bar.inc(1);
        }
        return Ok(auditor.summary());
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    pipelined(auditor, bytes, bar, on_block, JOB_BYTES, workers)
}

/// [`verify`]'s pipeline, with `workers` threads taking jobs of `job_bytes` of frames.
fn pipelined(
    mut auditor: Auditor,
    bytes: &[u8],
    bar: &indicatif::ProgressBar,
    mut on_block: impl FnMut(&CommittedBlock, &twinledger_core::State),
    job_bytes: usize,
    workers: usize,
) -> Result<twinledger_core::audit::AuditSummary, AuditFailure> {
    let (frames, unreadable) = split_frames(bytes)?;
    let jobs = group_frames(&frames, job_bytes);
    let ahead = workers * JOBS_AHEAD_PER_WORKER;
    let window = Window::new();
    std::thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<(usize, Checked)>();
        for _ in 0..workers {
            let (tx, window, frames, jobs) = (done_tx.clone(), &window, &frames, &jobs);
            s.spawn(move || {
                while let Some(j) = window.take(jobs.len(), ahead) {
                    let checked = check_frames(&frames[jobs[j].clone()]);
                    if tx.send((j, checked)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        // Stops the workers however this returns (a failure, or a panic in `on_block`).
        let _stop = StopOnDrop(&window);
        // Replay in order as jobs come back, whatever order they finish in.
        let mut pending: BTreeMap<usize, Checked> = BTreeMap::new();
        for next in 0..jobs.len() {
            let checked = loop {
                if let Some(c) = pending.remove(&next) {
                    break c;
                }
                let (j, c) = done_rx.recv().expect("audit worker thread");
                pending.insert(j, c);
            };
            for cb in &checked.blocks {
                auditor.check(cb, SignatureCheck::AlreadyVerified)?;
                on_block(cb, auditor.state());
                bar.inc(1);
            }
            if let Some(f) = checked.failure {
                return Err(f);
            }
            window.applied(next + 1);
        }
        match unreadable {
            Some(e) => Err(e.into()),
            None => Ok(auditor.summary()),
        }
    })
}

/// One frame of an export: its position, its byte offset in the file and its bytes.
struct Frame<'a> {
    index: u64,
    offset: usize,
    bytes: &'a [u8],
}

/// Splits an export into its frames without decoding them (as [`read_export`] reads them):
/// every complete frame, then the truncation that ends the file, if any.
fn split_frames(bytes: &[u8]) -> Result<(Vec<Frame<'_>>, Option<ExportError>), ExportError> {
    let mut rest = bytes
        .strip_prefix(EXPORT_MAGIC.as_slice())
        .ok_or(ExportError::Magic)?;
    let mut offset = EXPORT_MAGIC.len();
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let index = frames.len() as u64;
        let frame = rest.get(..4).and_then(|len| {
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            rest.get(4..4 + len)
        });
        let Some(frame) = frame else {
            let truncated = ExportError::Truncated {
                blocks: index,
                offset,
            };
            return Ok((frames, Some(truncated)));
        };
        frames.push(Frame {
            index,
            offset,
            bytes: frame,
        });
        rest = &rest[4 + frame.len()..];
        offset += 4 + frame.len();
    }
    Ok((frames, None))
}

/// Groups consecutive frames into jobs of at least `job_bytes` (or one frame, or the rest).
fn group_frames(frames: &[Frame<'_>], job_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut jobs = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, f) in frames.iter().enumerate() {
        size += f.bytes.len();
        if size >= job_bytes {
            jobs.push(start..i + 1);
            (start, size) = (i + 1, 0);
        }
    }
    if start < frames.len() {
        jobs.push(start..frames.len());
    }
    jobs
}

/// A job's outcome: its leading blocks that decoded and whose every event signature verifies,
/// then the failure of the next one (a frame that does not decode or the first bad signature);
/// blocks after a failure are left out (the replay stops there).
struct Checked {
    blocks: Vec<CommittedBlock>,
    failure: Option<AuditFailure>,
}

/// Decodes frames and checks all their event signatures in one `verify_batch` call.
fn check_frames(frames: &[Frame<'_>]) -> Checked {
    let mut blocks = Vec::with_capacity(frames.len());
    let mut failure = None;
    for f in frames {
        match codec::decode::<CommittedBlock>("committed block", f.bytes, MAX_BLOCK_BYTES) {
            Ok(cb) => blocks.push(cb),
            Err(error) => {
                failure = Some(AuditFailure::Export(ExportError::Frame {
                    index: f.index,
                    offset: f.offset,
                    error,
                }));
                break;
            }
        }
    }
    let items: Vec<_> = blocks
        .iter()
        .flat_map(|cb| signature_items(&cb.block))
        .collect();
    if let Err(mut index) = verify_batch(&items) {
        // The first bad signature, in chain order: name its block and event.
        let at = blocks
            .iter()
            .position(|cb| {
                let n = cb.block.events.len();
                if index < n {
                    return true;
                }
                index -= n;
                false
            })
            .expect("a bad signature lies in one of the job's blocks");
        let cb = &blocks[at];
        failure = Some(AuditFailure::EventSignature {
            height: cb.block.header.height,
            index,
            id: cb.block.events[index].id(),
        });
        blocks.truncate(at);
    }
    Checked { blocks, failure }
}

/// How far the replay has come, and so how far workers may run ahead of it.
struct Window {
    state: Mutex<WindowState>,
    moved: Condvar,
}

struct WindowState {
    /// The next job to hand out.
    next: usize,
    /// Jobs replayed.
    applied: usize,
    /// The replay stopped (a failure): take no more jobs.
    stopped: bool,
}

impl Window {
    fn new() -> Self {
        Self {
            state: Mutex::new(WindowState {
                next: 0,
                applied: 0,
                stopped: false,
            }),
            moved: Condvar::new(),
        }
    }

    /// The next job for a worker, once it is at most `ahead` jobs past the replay; `None` when
    /// every job is taken or the replay stopped.
    fn take(&self, jobs: usize, ahead: usize) -> Option<usize> {
        let mut st = self.state.lock().expect("audit window");
        loop {
            if st.stopped || st.next >= jobs {
                return None;
            }
            if st.next < st.applied + ahead {
                st.next += 1;
                return Some(st.next - 1);
            }
            st = self.moved.wait(st).expect("audit window");
        }
    }

    fn applied(&self, jobs: usize) {
        self.state.lock().expect("audit window").applied = jobs;
        self.moved.notify_all();
    }

    fn stop(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.stopped = true;
        }
        self.moved.notify_all();
    }
}

struct StopOnDrop<'a>(&'a Window);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Refuses to write over an existing file at `out`.
pub(crate) fn refuse_existing(out: &Path) -> Result<(), CliError> {
    if out.exists() {
        return Err(CliError::Invalid(format!(
            "{} already exists",
            out.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use twinledger_core::audit::{
        AuditFailure, CommittedBlock, EXPORT_MAGIC, ExportError, export_frame,
    };
    use twinledger_core::devkit::{DevChain, dev_key};
    use twinledger_core::event::consent::{ConsentGrant, Grantee};
    use twinledger_core::event::delegation::Scope;
    use twinledger_core::state::BlockError;
    use twinledger_core::{Action, DataCategory, EventPayload, Hash, Purpose, Timestamp};

    /// A chain of `blocks` blocks of one consent grant each (a new patient per block).
    fn chain(blocks: usize) -> (DevChain, Vec<CommittedBlock>) {
        let mut chain = DevChain::new(4);
        let phys = chain.physician.public();
        for i in 0..blocks {
            let p = dev_key(&format!("audit-test/p/{i}"));
            let grant = EventPayload::ConsentGrant(ConsentGrant {
                patient: p.public(),
                grantee: Grantee::Actor(phys),
                scope: Scope {
                    categories: [DataCategory::VitalSigns].into_iter().collect(),
                    purposes: [Purpose::Treat].into_iter().collect(),
                    actions: [Action::Read].into_iter().collect(),
                },
                valid_from: Timestamp(0),
                valid_until: None,
            });
            let ev = chain.event(&p, grant);
            chain.commit(vec![ev]);
        }
        let blocks = chain.blocks.iter().map(|c| c.committed.clone()).collect();
        (chain, blocks)
    }

    fn export(blocks: &[CommittedBlock]) -> Vec<u8> {
        let mut out = EXPORT_MAGIC.to_vec();
        for b in blocks {
            out.extend(export_frame(b));
        }
        out
    }

    /// `audit verify`, checked to report the same with one block per job on 4 workers (so that
    /// later blocks are often verified before earlier ones).
    fn verify(chain: &DevChain, blocks: &[CommittedBlock]) -> Result<u64, AuditFailure> {
        let bytes = export(blocks);
        let bar = indicatif::ProgressBar::hidden();
        let got = super::verify(&chain.genesis, &bytes, false, &bar, |_, _| {});
        for _ in 0..5 {
            let auditor = super::Auditor::new(&chain.genesis).unwrap();
            let racing = super::pipelined(auditor, &bytes, &bar, |_, _| {}, 1, 4);
            assert_eq!(racing, got);
        }
        got.map(|s| s.blocks)
    }

    /// Index in `blocks` of the block at `height`.
    fn at(blocks: &[CommittedBlock], height: u64) -> usize {
        blocks
            .iter()
            .position(|b| b.block.header.height == height)
            .expect("height in chain")
    }

    /// The worker that checks the late block finds its bad signature long before the replay
    /// reaches the early broken link: the report is still the early block's, as in order.
    #[test]
    fn an_earlier_broken_link_is_reported_before_a_later_bad_signature() {
        let (chain, mut blocks) = chain(40);
        assert_eq!(verify(&chain, &blocks), Ok(blocks.len() as u64));
        let tip = blocks.last().expect("blocks").block.header.height;
        let early = at(&blocks, 3);
        blocks[early].block.header.prev_hash = Hash([7; 32]);
        let late = at(&blocks, tip);
        blocks[late].block.events[0].signature.0[5] ^= 1;
        let err = verify(&chain, &blocks).unwrap_err();
        assert!(
            matches!(
                err,
                AuditFailure::Block(BlockError::BrokenLink { height: 3, .. })
            ),
            "{err}"
        );
        // Alone, each is named at its own block and event.
        let err = verify(&chain, &{
            let mut b = blocks.clone();
            b[early].block.header.prev_hash = chain.blocks[early].block.header.prev_hash;
            b
        })
        .unwrap_err();
        assert!(
            matches!(err, AuditFailure::EventSignature { height, index: 0, id }
                if height == tip && id == blocks[late].block.events[0].id()),
            "{err}"
        );
    }

    /// Frames that do not decode and a truncated file are named as the sequential reader
    /// (`read_export`, as `--strict` reads) names them: the same index, offset and reason.
    #[test]
    fn unreadable_frames_are_named_as_the_sequential_reader_names_them() {
        let (chain, blocks) = chain(30);
        let check = |bytes: &[u8]| {
            let bar = indicatif::ProgressBar::hidden();
            let pipelined = super::verify(&chain.genesis, bytes, false, &bar, |_, _| {});
            let sequential = super::verify(&chain.genesis, bytes, true, &bar, |_, _| {});
            assert_eq!(pipelined, sequential);
            if let Ok(auditor) = super::Auditor::new(&chain.genesis) {
                let racing = super::pipelined(auditor, bytes, &bar, |_, _| {}, 1, 4);
                assert_eq!(racing, sequential);
            }
            pipelined.unwrap_err()
        };
        let bytes = export(&blocks);
        let err = check(&bytes[..bytes.len() - 10]);
        assert!(
            matches!(
                err,
                AuditFailure::Export(ExportError::Truncated { blocks: 29, .. })
            ),
            "{err}"
        );
        // A frame length that runs past what its block encodes: frame 20 does not decode.
        let mut bad = EXPORT_MAGIC.to_vec();
        for (i, b) in blocks.iter().enumerate() {
            let mut f = export_frame(b);
            if i == 20 {
                f.push(0);
                let len = u32::try_from(f.len() - 4).unwrap().to_be_bytes();
                f[..4].copy_from_slice(&len);
            }
            bad.extend(f);
        }
        let err = check(&bad);
        assert!(
            matches!(
                err,
                AuditFailure::Export(ExportError::Frame { index: 20, .. })
            ),
            "{err}"
        );
        assert!(matches!(
            check(b"not an export"),
            AuditFailure::Export(ExportError::Magic)
        ));
    }

    /// Small blocks share one signature batch; a bad signature in the middle of a batch names
    /// its own block, and the blocks before it are replayed.
    #[test]
    fn a_bad_signature_in_a_shared_batch_names_its_block() {
        let (chain, mut blocks) = chain(12);
        let bad = at(&blocks, 7);
        blocks[bad].block.events[0].signature.0[40] ^= 1;
        let err = verify(&chain, &blocks).unwrap_err();
        assert!(
            matches!(
                err,
                AuditFailure::EventSignature {
                    height: 7,
                    index: 0,
                    ..
                }
            ),
            "{err}"
        );
    }
}
