//! `twinctl fhir export`: a patient's consents and access log as a FHIR Bundle (R4 or R5).
//!
//! One `Consent` per grant ([`consent`]); for every access or break-glass request an
//! `AuditEvent` of the ledger's consent decision, for every permitted one an `AuditEvent` of the
//! access to the twin resource, and for every signed-off break-glass an `AuditEvent` of its
//! review ([`audit`], after IHE BALP 1.1). Every resource names its profile in `meta.profile`;
//! every `fullUrl` is a `urn:uuid:` derived from the ledger event it comes from, so two exports
//! of one chain agree ([`ledger::uuid`]). Only standard code systems are used; keys appear as
//! `did:key` URIs (identifier system `urn:ietf:rfc:3986`), ledger ids as identifiers typed by
//! text, with no invented system.

pub mod audit;
pub mod consent;
pub mod ledger;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use twinledger_core::codes::Code;

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key, patient_or_self};
use crate::time::utc;
use crate::{CliError, Output};

/// RFC 3986 URIs as identifiers (a did is one).
pub const URI: &str = "urn:ietf:rfc:3986";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const CONSENT_CATEGORY_LOINC: &str = "http://loinc.org";
/// The profile of the exported Consents (BALP profiles AuditEvents only).
pub const CONSENT_PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/Consent";

/// `twinctl fhir ...`
#[derive(Debug, Args)]
pub struct FhirArgs {
    /// The FHIR command.
    #[command(subcommand)]
    pub command: FhirCommand,
}

/// FHIR commands.
#[derive(Debug, Subcommand)]
pub enum FhirCommand {
    /// Write a Bundle: one Consent per grant; AuditEvents (IHE BALP) of every consent decision,
    /// of every permitted access and of every break-glass review.
    Export {
        /// The reader's key file (the patient, a delegate, an auditor or a member organisation).
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The patient; default: the reader.
        #[arg(long)]
        patient: Option<String>,
        /// FHIR R5 instead of R4.
        #[arg(long)]
        r5: bool,
        /// Where to write the Bundle (JSON).
        #[arg(long)]
        out: PathBuf,
        /// Verification against the genesis.
        #[command(flatten)]
        check: crate::history::VerifyArgs,
    },
}

/// A reference by did (an RFC 3986 URI), optionally typed.
fn did_ref(did: &str, kind: Option<&str>) -> Value {
    let mut r = json!({"identifier": {"system": URI, "value": did}});
    if let Some(k) = kind {
        r["type"] = json!(k);
    }
    r
}

fn coding<T: Code>(c: T) -> Value {
    json!({"system": c.system(), "code": c.code()})
}

fn codes<T: Code + std::str::FromStr>(v: &Value) -> Vec<T> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// Text for an XHTML narrative.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Bundle of a patient's consents (the node's consents answer) and accesses, with the
/// facts of `ledger`.
pub fn bundle(
    consents: &Value,
    accesses: &[Value],
    patient: &str,
    ledger: &ledger::Ledger,
    timestamp_ms: u64,
    r5: bool,
) -> Value {
    let parties = consent::Parties::new(consents, accesses);
    let mut resources: Vec<Value> = consents["grants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| consent::consent(g, patient, ledger, &parties, r5))
        .collect();
    for a in accesses {
        resources.push(audit::decision(a, patient, ledger, r5));
        resources.extend(audit::access(a, patient, ledger, r5));
        resources.extend(audit::review(a, patient, ledger, r5));
    }
    json!({
        "resourceType": "Bundle",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/Bundle"]},
        "type": "collection",
        "timestamp": utc(timestamp_ms),
        "entry": resources
            .into_iter()
            .map(|r| json!({"fullUrl": format!("urn:uuid:{}", r["id"].as_str().unwrap_or("")), "resource": r}))
            .collect::<Vec<_>>(),
    })
}

/// Every page of a paged patient list (`?from=&limit=1000`, following `next_from`).
fn paged(
    client: &NodeClient,
    key: &twinledger_core::Keypair,
    path: &str,
) -> Result<Vec<Value>, CliError> {
    let mut pages = Vec::new();
    let mut from = 0u64;
    loop {
        let v = client.signed_get(key, &format!("{path}?from={from}&limit=1000"))?;
        let next = v["next_from"].as_u64();
        pages.push(v);
        match next {
            Some(n) if n > from => from = n,
            _ => return Ok(pages),
        }
    }
}

/// The entries of list `name` across pages.
fn lists(pages: &[Value], name: &str) -> Vec<Value> {
    pages
        .iter()
        .flat_map(|p| p[name].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Runs a FHIR command.
pub fn run(args: &FhirArgs, node: &str) -> Result<Output, CliError> {
    let FhirCommand::Export {
        key,
        pass,
        patient,
        r5,
        out,
        check,
    } = &args.command;
    // An existing file is never overwritten; a path that cannot be written fails before the
    // node is asked.
    crate::files::check_output(out)?;
    let key = open_key(key, pass, node)?;
    let client = NodeClient::connect(node)?;
    let patient = patient_or_self(&client, patient.as_deref(), &key)?;
    let did = patient.to_did();
    // Verified: the Bundle is built from the certified history's events alone.
    let verified = crate::history::fetch_verified(&client, &key, &patient, check)?;
    let (consents, accesses, events) = match &verified {
        Some((h, genesis)) => (
            h.consents(crate::time::now_ms()?),
            h.accesses(genesis),
            ledger::from_verified(h),
        ),
        None => {
            let c = paged(&client, &key, &format!("/v1/patients/{patient}/consents"))?;
            let consents = json!({
                "grants": lists(&c, "grants"),
                "delegations": lists(&c, "delegations"),
            });
            let a = paged(&client, &key, &format!("/v1/patients/{patient}/accesses"))?;
            // Block times and resource commitments: the patient's events, as the node gives them.
            let history = client.signed_get(&key, &format!("/v1/patients/{patient}/history"))?;
            (
                consents,
                lists(&a, "accesses"),
                ledger::from_answer(&history)?,
            )
        }
    };
    let ledger = ledger::Ledger::new(client.chain_id.to_hex(), &events);
    let bundle = bundle(
        &consents,
        &accesses,
        &did,
        &ledger,
        crate::time::now_ms()?,
        *r5,
    );
    let count = bundle["entry"].as_array().map_or(0, Vec::len);
    crate::files::write(out, serde_json::to_string_pretty(&bundle).expect("json"))?;
    let mut text = format!(
        "wrote {} ({count} resources, FHIR {})\n",
        out.display(),
        if *r5 { "R5" } else { "R4" }
    );
    let mut json = json!({"file": out, "resources": count, "fhir": if *r5 { "R5" } else { "R4" }});
    if let Some((h, _)) = &verified {
        text.push_str(&h.summary());
        json["verified"] = h.summary_json();
    }
    Ok(Output { text, json })
}
