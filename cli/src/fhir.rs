//! `twinctl fhir export`: a patient's consents and access log as a FHIR Bundle (R4 or R5).
//!
//! One `Consent` per grant: base decision deny, one permit provision with the grantee as actor,
//! the validity period, the purposes, the data categories as codes and the actions; status
//! `inactive` once revoked or expired. One `AuditEvent` per access following the IHE BALP
//! pattern for a patient-data read: requesting agent, patient entity, purpose of use, outcome;
//! break-glass carries the purpose ETREAT and the security label BTG. Only standard code systems
//! are used; keys appear as `did:key` identifiers (RFC 3986 URIs).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use twinledger_core::codes::{Action, Code, DataCategory, Purpose, Role};

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key, patient_or_self};
use crate::time::utc;
use crate::{CliError, Output};

const URI: &str = "urn:ietf:rfc:3986";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const CONSENT_CATEGORY_LOINC: &str = "http://loinc.org";
const AUDIT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const OUTCOME_R5: &str = "http://terminology.hl7.org/CodeSystem/audit-event-outcome";

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
    /// Write a Bundle with one Consent per grant and one AuditEvent per access.
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

fn identifier(did: &str) -> Value {
    json!({"identifier": {"system": URI, "value": did}})
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

fn period(grant: &Value) -> Value {
    let mut p = json!({"start": utc(grant["valid_from"].as_u64().unwrap_or(0))});
    if let Some(end) = grant["valid_until"].as_u64() {
        p["end"] = json!(utc(end));
    }
    p
}

fn grantee_actor(grantee: &Value) -> Value {
    let role = json!({"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]});
    if let Some(did) = grantee["actor"].as_str() {
        json!({"role": role, "reference": identifier(did)})
    } else if let Some(did) = grantee["organisation"].as_str() {
        json!({"role": role, "reference": identifier(did)})
    } else {
        // A role (optionally within one organisation): the reference names the role's code.
        let r = &grantee["role"];
        let role_code: Option<Role> = r["role"].as_str().and_then(|s| s.parse().ok());
        let mut reference = json!({"display": format!(
            "any {}{}",
            role_code.map(|c| c.code()).unwrap_or("?"),
            r["organisation"].as_str().map(|o| format!(" of {o}")).unwrap_or_default()
        )});
        if let Some(c) = role_code {
            reference["type"] = json!("PractitionerRole");
            reference["identifier"] = json!({"system": c.system(), "value": c.code()});
        }
        json!({"role": role, "reference": reference})
    }
}

/// A FHIR Consent for one grant (as returned by the node's consents endpoint).
pub fn consent(entry: &Value, patient: &str, r5: bool) -> Value {
    let grant = &entry["grant"];
    let scope = &grant["scope"];
    let status = if entry["status"] == "active" || entry["status"] == "future" {
        "active"
    } else {
        "inactive"
    };
    let purposes: Vec<Value> = codes::<Purpose>(&scope["purposes"])
        .into_iter()
        .map(coding)
        .collect();
    let categories: Vec<Value> = codes::<DataCategory>(&scope["categories"])
        .into_iter()
        .map(|c| json!({"coding": [coding(c)]}))
        .collect();
    let actions: Vec<Value> = codes::<Action>(&scope["actions"])
        .into_iter()
        .map(|c| json!({"coding": [coding(c)]}))
        .collect();
    let permit = json!({
        "period": period(grant),
        "actor": [grantee_actor(&grant["grantee"])],
        "action": actions,
        "purpose": purposes,
        "code": categories,
    });
    let category = json!([{"coding": [{"system": CONSENT_CATEGORY_LOINC, "code": "59284-0", "display": "Patient Consent"}]}]);
    let id = entry["id"].as_str().unwrap_or("");
    if r5 {
        json!({
            "resourceType": "Consent",
            "id": id,
            "identifier": [{"system": "urn:twinledger:event", "value": id}],
            "status": status,
            "category": category,
            "subject": identifier(patient),
            "decision": "deny",
            "provision": [permit],
        })
    } else {
        let mut p = permit;
        p["type"] = json!("permit");
        json!({
            "resourceType": "Consent",
            "id": id,
            "identifier": [{"system": "urn:twinledger:event", "value": id}],
            "status": status,
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
            "category": category,
            "patient": identifier(patient),
            "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
            "provision": {"type": "deny", "provision": [p]},
        })
    }
}

/// A FHIR AuditEvent for one access (as returned by the node's accesses endpoint).
pub fn audit_event(a: &Value, patient: &str, chain_id: &str, r5: bool) -> Value {
    let id = a["id"].as_str().unwrap_or("");
    let out = &a["outcome"]["access"];
    let permitted = out.get("deny").is_none();
    let break_glass = a["kind"] == "break_glass";
    let purpose: Option<Purpose> = a["purpose"].as_str().and_then(|s| s.parse().ok());
    let purposes: Vec<Value> = purpose
        .map(|p| json!({"coding": [coding(p)]}))
        .into_iter()
        .collect();
    let action = match a["action"].as_str() {
        Some("correct") | Some("collect") => "U",
        _ => "R",
    };
    let category: Option<DataCategory> = a["category"].as_str().and_then(|s| s.parse().ok());
    let mut agent = json!({
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "who": identifier(a["actor"].as_str().unwrap_or("")),
        "requestor": true,
    });
    let mut org_agent = json!({
        "type": {"coding": [{"system": PARTICIPATION, "code": "PRF", "display": "performer"}]},
        "who": identifier(a["organisation"].as_str().unwrap_or("")),
        "requestor": false,
    });
    let mut entity_patient = json!({
        "what": identifier(patient),
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    });
    let mut entity_data = json!({
        "what": {"identifier": {"system": "urn:twinledger:event", "value": id}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "securityLabel": category.map(|c| vec![coding(c)]).unwrap_or_default(),
    });
    let outcome_desc = if let Some(d) = out.get("deny") {
        format!("denied: {}", d["reason"].as_str().unwrap_or("?"))
    } else if break_glass {
        "permitted by break-glass; flagged for review".to_string()
    } else {
        format!(
            "permitted by consent {}",
            out["permit"]["grant"].as_str().unwrap_or("")
        )
    };
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "action": action,
        "recorded": utc(a["time"].as_u64().unwrap_or(0)),
        "source": {
            "observer": {"identifier": {"system": "urn:twinledger:chain", "value": chain_id}},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    });
    if break_glass {
        ev["meta"] = json!({"security": [{"system": ACT_CODE, "code": "BTG", "display": "break the glass"}]});
    }
    if r5 {
        // R5: category/code, outcome as a coding, authorization, patient; roles on the agent.
        ev["category"] = json!([{"coding": [{"system": AUDIT_TYPE, "code": "rest", "display": "Restful Operation"}]}]);
        ev["code"] = json!({"coding": [{"system": RESTFUL, "code": "read"}]});
        ev["outcome"] = json!({"code": {"system": OUTCOME_R5, "code": if permitted { "0" } else { "4" }}, "detail": [{"text": outcome_desc}]});
        ev["authorization"] = json!(purposes);
        ev["patient"] = identifier(patient);
        for ag in [&mut agent, &mut org_agent] {
            ag.as_object_mut().map(|m| m.remove("type"));
        }
        agent["role"] = json!([{"coding": [{"system": PARTICIPATION, "code": "IRCP"}]}]);
        org_agent["role"] = json!([{"coding": [{"system": PARTICIPATION, "code": "PRF"}]}]);
        entity_patient["role"] =
            json!({"coding": [{"system": OBJECT_ROLE, "code": "1", "display": "Patient"}]});
        entity_patient.as_object_mut().map(|m| m.remove("type"));
        entity_data.as_object_mut().map(|m| m.remove("type"));
    } else {
        ev["type"] = json!({"system": AUDIT_TYPE, "code": "rest", "display": "Restful Operation"});
        ev["subtype"] = json!([{"system": RESTFUL, "code": "read"}]);
        ev["outcome"] = json!(if permitted { "0" } else { "4" });
        ev["outcomeDesc"] = json!(outcome_desc);
        ev["purposeOfEvent"] = json!(purposes);
        agent["purposeOfUse"] = json!(purposes);
    }
    ev["agent"] = json!([agent, org_agent]);
    ev["entity"] = json!([entity_patient, entity_data]);
    ev
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
    let key = open_key(key, pass)?;
    let patient = patient_or_self(patient.as_deref(), &key)?;
    let did = patient.to_did();
    let client = NodeClient::connect(node)?;
    // Verified: the Bundle is built from the certified history's events alone.
    let verified = crate::history::fetch_verified(&client, &key, &patient, check)?;
    let (consents, accesses) = match &verified {
        Some((h, genesis)) => (
            h.consents(crate::time::now_ms()?),
            json!({"accesses": h.accesses(genesis)}),
        ),
        None => (
            client.signed_get(&key, &format!("/v1/patients/{patient}/consents?limit=1000"))?,
            client.signed_get(&key, &format!("/v1/patients/{patient}/accesses?limit=1000"))?,
        ),
    };
    let chain = client.chain_id.to_hex();
    let mut entries: Vec<Value> = consents["grants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| consent(g, &did, *r5))
        .collect();
    entries.extend(
        accesses["accesses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| audit_event(a, &did, &chain, *r5)),
    );
    let count = entries.len();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": utc(crate::time::now_ms()?),
        "entry": entries
            .into_iter()
            .map(|r| json!({"fullUrl": format!("urn:uuid:{}", uuid_like(r["id"].as_str().unwrap_or(""))), "resource": r}))
            .collect::<Vec<_>>(),
    });
    std::fs::write(out, serde_json::to_string_pretty(&bundle).expect("json"))
        .map_err(|e| CliError::Invalid(format!("{}: {e}", out.display())))?;
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

/// A UUID-shaped rendering of the first 16 bytes of a hex event id (fullUrl must be a URI).
fn uuid_like(hex_id: &str) -> String {
    let h = format!("{hex_id:0<32}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
