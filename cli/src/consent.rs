//! `twinctl consent`: a patient (or a delegate) grants, revokes and lists consent.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use twinledger_core::codes::{Action, Code, CodeSet, DataCategory, Purpose, Role};
use twinledger_core::event::consent::{ConsentGrant, ConsentRevoke, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::{EventId, EventPayload, PublicKey, Timestamp};

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::submit::submit_and_wait;
use crate::time::{parse_time, utc};
use crate::{CliError, Output, ids};

/// `twinctl consent ...`
#[derive(Debug, Args)]
pub struct ConsentArgs {
    /// The consent command.
    #[command(subcommand)]
    pub command: ConsentCommand,
}

/// Who signs and for which patient.
#[derive(Debug, Args)]
pub struct Signer {
    /// The signer's key file (the patient's, or a delegate's).
    #[arg(long)]
    pub key: PathBuf,
    /// The patient (did:key); default: the patient whose current key signs (after a key
    /// rotation, still the patient), else the signer.
    #[arg(long)]
    pub patient: Option<String>,
    /// Passphrase source.
    #[command(flatten)]
    pub pass: PassphraseArgs,
}

/// Categories, purposes and actions on the command line (consent grants, delegations).
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Data categories, comma-separated (vital-signs, laboratory, imaging, activity, GDIS, ...).
    #[arg(long, value_delimiter = ',', required = true)]
    pub category: Vec<String>,
    /// Purposes of use, comma-separated HL7 codes (TREAT, HRESCH, ...).
    #[arg(long, value_delimiter = ',', required = true)]
    pub purpose: Vec<String>,
    /// Actions, comma-separated (read, update, use, disclose, collect); default read.
    #[arg(long, value_delimiter = ',', default_value = "read")]
    pub action: Vec<String>,
}

impl ScopeArgs {
    /// The scope these arguments name.
    pub fn parse(&self) -> Result<Scope, CliError> {
        parse_scope(&self.category, &self.purpose, &self.action)
    }
}

/// Consent commands.
#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Grant consent and wait until it is final; prints the grant id.
    Grant {
        /// Signer.
        #[command(flatten)]
        signer: Signer,
        /// Who: `did:key:...` (an actor), `org:did:key:...` (every actor of an organisation),
        /// `role:physician` or `role:researcher@did:key:...` (a role, optionally in one
        /// organisation).
        #[arg(long)]
        to: String,
        /// What is covered.
        #[command(flatten)]
        scope: ScopeArgs,
        /// Start of validity (2027-01-31, RFC 3339, or ms); default now.
        #[arg(long)]
        from: Option<String>,
        /// End of validity (exclusive); default: until revoked.
        #[arg(long)]
        until: Option<String>,
    },
    /// Revoke a grant by id and wait until the revocation is final.
    Revoke {
        /// Signer.
        #[command(flatten)]
        signer: Signer,
        /// The grant's id: as `consent list` shows it, or any unique prefix (at least 4 hex
        /// digits), or all 64 hex digits.
        grant: String,
    },
    /// List the patient's grants (active, future, expired, revoked) and delegations.
    List {
        /// Signer (the patient, a delegate, an auditor or a member organisation).
        #[command(flatten)]
        signer: Signer,
        /// Verification against the genesis.
        #[command(flatten)]
        check: crate::history::VerifyArgs,
    },
}

fn code_set<T: Code + std::str::FromStr<Err = twinledger_core::codes::UnknownCode>>(
    items: &[String],
    alias: fn(&str) -> &str,
) -> Result<CodeSet<T>, CliError> {
    items
        .iter()
        .map(|s| {
            s.trim()
                .parse::<T>()
                .or_else(|_| alias(s.trim()).parse::<T>())
                .map_err(|e| CliError::Invalid(e.to_string()))
        })
        .collect()
}

/// Parses comma-separated categories, purposes and actions into a scope.
pub fn parse_scope(
    category: &[String],
    purpose: &[String],
    action: &[String],
) -> Result<Scope, CliError> {
    Ok(Scope {
        categories: code_set::<DataCategory>(category, no_alias)?,
        purposes: code_set::<Purpose>(purpose, no_alias)?,
        actions: code_set::<Action>(action, action_alias)?,
    })
}

/// Friendly action names for the FHIR consent action codes.
pub fn action_alias(s: &str) -> &str {
    match s {
        "read" => "access",
        "update" => "correct",
        other => other,
    }
}

fn no_alias(s: &str) -> &str {
    s
}

/// Parses a grantee spec.
pub fn parse_grantee(s: &str) -> Result<Grantee, CliError> {
    let key =
        |d: &str| PublicKey::from_did(d).map_err(|e| CliError::Invalid(format!("--to {s:?}: {e}")));
    if let Some(rest) = s.strip_prefix("org:") {
        return Ok(Grantee::Organisation(key(rest)?));
    }
    if let Some(rest) = s.strip_prefix("role:") {
        let (role, org) = match rest.split_once('@') {
            Some((r, o)) => (r, Some(key(o)?)),
            None => (rest, None),
        };
        let role: Role = role
            .parse()
            .map_err(|e: twinledger_core::codes::UnknownCode| {
                CliError::Invalid(format!("--to {s:?}: {e}"))
            })?;
        return Ok(Grantee::Role {
            role,
            organisation: org,
        });
    }
    Ok(Grantee::Actor(key(s)?))
}

/// Runs a consent command against the node at `node`.
pub fn run(args: &ConsentArgs, node: &str) -> Result<Output, CliError> {
    match &args.command {
        ConsentCommand::Grant {
            signer,
            to,
            scope,
            from,
            until,
        } => {
            let grantee = parse_grantee(to)?;
            let scope = scope.parse()?;
            let valid_from = Timestamp(match from.as_deref() {
                Some(f) => parse_time(f)?,
                None => crate::time::now_ms()?,
            });
            let valid_until = until.as_deref().map(parse_time).transpose()?.map(Timestamp);
            let key = open_key(&signer.key, &signer.pass, node)?;
            let client = NodeClient::connect(node)?;
            let patient = signer_patient(&client, &key, signer.patient.as_deref())?;
            let payload = EventPayload::ConsentGrant(ConsentGrant {
                patient,
                grantee,
                scope,
                valid_from,
                valid_until,
            });
            let (id, height) = submit_and_wait(node, &key, payload)?;
            Ok(Output {
                text: format!("granted: {id}\nfinal in block {height}\n"),
                json: json!({"id": id, "height": height, "patient": patient}),
            })
        }
        ConsentCommand::Revoke { signer, grant } => {
            let key = open_key(&signer.key, &signer.pass, node)?;
            let client = NodeClient::connect(node)?;
            let patient = signer_patient(&client, &key, signer.patient.as_deref())?;
            let grant = if ids::is_whole(grant.trim()) {
                ids::resolve("grant id", grant, std::iter::empty::<String>())?
            } else {
                let listing = listing(&client, &key, &patient)?;
                ids::resolve("grant id", grant, entry_ids(&listing["grants"]))?
            };
            let grant = EventId::from_hex(&grant).map_err(|e| CliError::Invalid(e.to_string()))?;
            let payload = EventPayload::ConsentRevoke(ConsentRevoke { patient, grant });
            let (id, height) = submit_and_wait(node, &key, payload)?;
            Ok(Output {
                text: format!("revoked {grant}: denied from block {height} on\n"),
                json: json!({"id": id, "revoked": grant, "height": height}),
            })
        }
        ConsentCommand::List { signer, check } => {
            let key = open_key(&signer.key, &signer.pass, node)?;
            let client = NodeClient::connect(node)?;
            let patient = signer_patient(&client, &key, signer.patient.as_deref())?;
            // Verified: the list is built from the certified history's events alone.
            if let Some((h, _)) = crate::history::fetch_verified(&client, &key, &patient, check)? {
                let v = h.consents(crate::time::now_ms()?);
                return Ok(Output {
                    text: format!("{}{}", consent_table(&v), h.summary()),
                    json: v,
                });
            }
            let v = listing(&client, &key, &patient)?;
            Ok(Output {
                text: consent_table(&v),
                json: v,
            })
        }
    }
}

/// The patient the signer acts for: `--patient` when given; otherwise the patient whose
/// current key the signer's key is (the node answers from its state: after `key rotate` the
/// new key still names the patient id, its first key), else the signer's own key (a patient's
/// first event registers them under it).
pub(crate) fn signer_patient(
    client: &NodeClient,
    key: &twinledger_core::Keypair,
    given: Option<&str>,
) -> Result<PublicKey, CliError> {
    if let Some(d) = given {
        return PublicKey::from_did(d).map_err(|e| CliError::Invalid(format!("--patient: {e}")));
    }
    let me = key.public();
    let v = client.signed_get(key, &format!("/v1/keys/{me}/sequence"))?;
    match v["patient"].as_str() {
        Some(d) => PublicKey::from_did(d)
            .map_err(|e| CliError::Invalid(format!("the node names patient {d:?}: {e}"))),
        None => Ok(me),
    }
}

/// The node's whole consent listing of `patient` (every page): grants and delegations.
pub(crate) fn listing(
    client: &NodeClient,
    key: &twinledger_core::Keypair,
    patient: &PublicKey,
) -> Result<Value, CliError> {
    let mut grants = Vec::new();
    let mut delegations = Vec::new();
    let mut from = 0u64;
    let mut first = Value::Null;
    loop {
        let page = client.signed_get(
            key,
            &format!("/v1/patients/{patient}/consents?from={from}&limit=1000"),
        )?;
        grants.extend(page["grants"].as_array().cloned().unwrap_or_default());
        delegations.extend(page["delegations"].as_array().cloned().unwrap_or_default());
        let next = page["next_from"].as_u64();
        if first.is_null() {
            first = page;
        }
        match next {
            Some(n) if n > from => from = n,
            _ => break,
        }
    }
    first["grants"] = Value::Array(grants);
    first["delegations"] = Value::Array(delegations);
    first["next_from"] = Value::Null;
    Ok(first)
}

/// The ids of a listing's entries (`grants` or `delegations`).
pub(crate) fn entry_ids(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str().map(String::from))
        .collect()
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A did shortened for a table: its method prefix and the first digits of the key.
fn short_did(d: &str) -> String {
    d.get(..20).unwrap_or(d).to_string()
}

/// Why a grant is ended, as a table shows it: `ended: delegation 96a6… revoked 2026-…`.
fn ended_text(e: &Value) -> String {
    let delegation = ids::short(e["delegation"].as_str().unwrap_or("")).to_string();
    let at = e["at_ms"].as_u64().map(utc).unwrap_or_default();
    match e["reason"].as_str() {
        Some("delegation_revoked") => format!("delegation {delegation} revoked {at}"),
        Some("delegation_expired") => format!("delegation {delegation} expired {at}"),
        Some(other) => format!("{other} {at}"),
        None => String::new(),
    }
}

pub(crate) fn consent_table(v: &Value) -> String {
    let mut rows = vec![
        [
            "GRANT",
            "STATUS",
            "GRANTEE",
            "CATEGORIES",
            "PURPOSES",
            "ACTIONS",
            "UNTIL",
            "NOTE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for g in v["grants"].as_array().into_iter().flatten() {
        let grant = &g["grant"];
        let who = &grant["grantee"];
        let grantee = if let Some(d) = who["actor"].as_str() {
            format!("actor:{}", short_did(d))
        } else if let Some(d) = who["organisation"].as_str() {
            format!("org:{}", short_did(d))
        } else {
            let r = &who["role"];
            match r["organisation"].as_str() {
                Some(o) => format!(
                    "role:{}@{}",
                    r["role"].as_str().unwrap_or("?"),
                    short_did(o)
                ),
                None => format!("role:{}", r["role"].as_str().unwrap_or("?")),
            }
        };
        let until = grant["valid_until"]
            .as_u64()
            .map_or_else(|| "-".to_string(), utc);
        let by = &g["granted_by"];
        let delegation = by.get("Delegate").or_else(|| by.get("delegate"));
        let mut note = match delegation.and_then(Value::as_str) {
            Some(d) => format!("by delegate, delegation {}", ids::short(d)),
            None => String::new(),
        };
        if g.get("ended").is_some_and(|e| !e.is_null()) {
            note = format!("ended: {}", ended_text(&g["ended"]));
        }
        rows.push(vec![
            ids::short(g["id"].as_str().unwrap_or("")).to_string(),
            g["status"].as_str().unwrap_or("").to_string(),
            grantee,
            list(&grant["scope"]["categories"]),
            list(&grant["scope"]["purposes"]),
            list(&grant["scope"]["actions"]),
            until,
            note,
        ]);
    }
    let mut out = crate::table::render(&rows);
    let delegations = v["delegations"].as_array().map_or(&[][..], Vec::as_slice);
    if !delegations.is_empty() {
        let mut rows = vec![
            [
                "DELEGATION",
                "STATUS",
                "DELEGATE",
                "CATEGORIES",
                "PURPOSES",
                "ACTIONS",
                "UNTIL",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for d in delegations {
            let del = &d["delegation"];
            let until = del["valid_until"]
                .as_u64()
                .map_or_else(|| "-".to_string(), utc);
            rows.push(vec![
                ids::short(d["id"].as_str().unwrap_or("")).to_string(),
                d["status"].as_str().unwrap_or("").to_string(),
                short_did(del["delegate"].as_str().unwrap_or("")),
                list(&del["scope"]["categories"]),
                list(&del["scope"]["purposes"]),
                list(&del["scope"]["actions"]),
                until,
            ]);
        }
        out.push('\n');
        out.push_str(&crate::table::render(&rows));
    }
    out
}
