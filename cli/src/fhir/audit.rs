//! FHIR `AuditEvent`s for the access log, after IHE Basic Audit Log Patterns (BALP 1.1):
//!
//! - every access or break-glass request: the ledger's consent decision, profile
//!   `IHE.BasicAudit.AuthZconsent` (Security Alert, `AuthZ-Consent`, action E, outcome 0 for a
//!   permit and 8 for a deny with the reason), with the client, user, user-organisation and
//!   authoriser agents and the patient and consent entities;
//! - every permitted request: the access to the twin resource, profile
//!   `IHE.BasicAudit.PatientRead` (`PatientUpdate` for `correct`, `PatientCreate` for `collect`),
//!   with the client and server agents (DICOM 110152/110153 by the direction of the data), the
//!   user and the organisation, the patient entity, the data entity (role 4, Domain Resource:
//!   its `what` is the twin resource by the ledger's commitment to it; its security labels are
//!   the sensitivity codes only) and the decision as a second entity;
//! - every signed-off break-glass review: who reviewed, when, and the finding.
//!
//! Break-glass events carry the security label BTG. R5 moves `type`/`subtype` to
//! `category`/`code`, `outcome` to a coding with detail, purposes to `authorization`, and makes
//! `source.type` and `entity.securityLabel` CodeableConcepts.

use serde_json::{Value, json};
use twinledger_core::codes::{Code, DataCategory, Purpose};

use super::ledger::{Ledger, uuid};
use super::{ACT_CODE, PARTICIPATION, coding, did_ref};
use crate::time::utc;

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const AUTHZ_SUBTYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType";
const AUDIT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const OUTCOME: &str = "http://terminology.hl7.org/CodeSystem/audit-event-outcome";
const ROLE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleClass";
const SECURITY_ROLE: &str = "http://terminology.hl7.org/CodeSystem/extra-security-role-type";
const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

/// BALP 1.1 profile canonicals.
pub const BALP: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/";
/// The base AuditEvent profile (for the reviews, which BALP does not profile).
pub const AUDIT_EVENT_PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/AuditEvent";

fn c(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

fn cc(coding: Value) -> Value {
    json!({"coding": [coding]})
}

/// A Coding in R4, a CodeableConcept in R5.
fn coded(coding: Value, r5: bool) -> Value {
    if r5 { cc(coding) } else { coding }
}

/// The ledger (the chain) as the audit source, authoriser and server.
fn ledger_ref(ledger: &Ledger) -> Value {
    json!({
        "type": "Device",
        "identifier": {"type": {"text": "twinledger chain id"}, "value": ledger.chain_id},
        "display": format!("twinledger chain {}", &ledger.chain_id[..ledger.chain_id.len().min(16)]),
    })
}

/// One access as the access list gives it.
struct Access<'a> {
    a: &'a Value,
    id: &'a str,
    time: u64,
    actor: &'a str,
    organisation: Option<&'a str>,
    purpose: Option<Purpose>,
    category: Option<DataCategory>,
    action: &'a str,
    break_glass: bool,
    permitted: bool,
}

impl<'a> Access<'a> {
    fn new(a: &'a Value) -> Self {
        let out = &a["outcome"]["access"];
        Access {
            a,
            id: a["id"].as_str().unwrap_or(""),
            time: a["time"].as_u64().unwrap_or(0),
            actor: a["actor"].as_str().unwrap_or(""),
            organisation: a["organisation"].as_str(),
            purpose: a["purpose"].as_str().and_then(|s| s.parse().ok()),
            category: a["category"].as_str().and_then(|s| s.parse().ok()),
            action: a["action"].as_str().unwrap_or("access"),
            break_glass: a["kind"] == "break_glass",
            permitted: out.get("deny").is_none(),
        }
    }

    fn grant(&self) -> Option<&'a str> {
        self.a["outcome"]["access"]["permit"]["grant"].as_str()
    }

    fn purposes(&self) -> Vec<Value> {
        self.purpose.map(|p| cc(coding(p))).into_iter().collect()
    }

    /// Base of every event: id, profile, break-glass label, recorded, source.
    fn base(&self, kind: &str, profile: String, ledger: &Ledger, r5: bool) -> Value {
        let mut meta = json!({"profile": [profile]});
        if self.break_glass {
            meta["security"] = json!([c(ACT_CODE, "BTG", "break the glass")]);
        }
        json!({
            "resourceType": "AuditEvent",
            "id": uuid(kind, self.id),
            "meta": meta,
            "recorded": utc(self.time),
            "source": {
                "observer": ledger_ref(ledger),
                "type": [coded(c(SOURCE_TYPE, "6", "Security Server"), r5)],
            },
        })
    }

    fn user(&self, r5: bool) -> Value {
        let mut u = json!({
            "type": cc(c(PARTICIPATION, "IRCP", "information recipient")),
            "who": did_ref(self.actor, None),
            "requestor": true,
        });
        u[if r5 { "authorization" } else { "purposeOfUse" }] = json!(self.purposes());
        u
    }

    fn organisation(&self) -> Option<Value> {
        self.organisation.map(|o| {
            json!({
                "type": cc(c(ROLE_CLASS, "PROV", "healthcare provider")),
                "who": did_ref(o, Some("Organization")),
                "requestor": false,
            })
        })
    }

    fn patient_entity(patient: &str, r5: bool) -> Value {
        let mut e = json!({
            "what": did_ref(patient, Some("Patient")),
            "role": coded(c(OBJECT_ROLE, "1", "Patient"), r5),
        });
        if !r5 {
            e["type"] = c(ENTITY_TYPE, "1", "Person");
        }
        e
    }

    /// The decision in words.
    fn outcome_text(&self, ledger: &Ledger) -> String {
        let out = &self.a["outcome"]["access"];
        let what = format!(
            "{} {} for {}",
            self.action,
            self.category.map(|c| c.code()).unwrap_or("?"),
            self.purpose.map(|p| p.code()).unwrap_or("?")
        );
        if let Some(d) = out.get("deny") {
            match d["reason"].as_str() {
                Some("no_covering_grant") => format!("denied: no consent covers {what}"),
                Some("role_may_not_break_glass") => {
                    format!("denied: the requester's role may not break the glass ({what})")
                }
                Some(r) => format!("denied: {} ({what})", r.replace('_', " ")),
                None => format!("denied ({what})"),
            }
        } else if self.break_glass {
            let review = match self.review() {
                Some((reviewer, finding, event)) => format!(
                    "reviewed{}: {finding} by {reviewer}",
                    ledger
                        .time_of
                        .get(event)
                        .map(|t| format!(" at {}", utc(*t)))
                        .unwrap_or_default()
                ),
                None => "awaiting review".to_string(),
            };
            format!("permitted by break-glass (emergency access to {what}); {review}")
        } else {
            format!(
                "permitted under consent grant {} ({what})",
                self.grant().unwrap_or("?")
            )
        }
    }

    /// The break-glass review: reviewer, finding, review event id.
    fn review(&self) -> Option<(&'a str, &'a str, &'a str)> {
        let r = &self.a["break_glass_review"];
        Some((
            r["reviewer"].as_str()?,
            r["finding"].as_str()?,
            r["event"].as_str()?,
        ))
    }
}

/// The consent decision on one access or break-glass request (BALP `AuthZconsent`).
pub fn decision(a: &Value, patient: &str, ledger: &Ledger, r5: bool) -> Value {
    let x = Access::new(a);
    let mut ev = x.base(
        "authz",
        format!("{BALP}IHE.BasicAudit.AuthZconsent"),
        ledger,
        r5,
    );
    let text = x.outcome_text(ledger);
    let (code, display) = if x.permitted {
        ("0", "Success")
    } else {
        ("8", "Serious failure")
    };
    ev["action"] = json!("E");
    let alert = c(DCM, "110113", "Security Alert");
    let sub = c(
        AUTHZ_SUBTYPE,
        "AuthZ-Consent",
        "Authorization Decision using Roles and Consent",
    );
    if r5 {
        ev["category"] = json!([cc(alert)]);
        ev["code"] = cc(sub);
        ev["outcome"] = json!({"code": c(OUTCOME, code, display), "detail": [{"text": text}]});
        ev["authorization"] = json!(x.purposes());
        ev["patient"] = did_ref(patient, Some("Patient"));
    } else {
        ev["type"] = alert;
        ev["subtype"] = json!([sub]);
        ev["outcome"] = json!(code);
        ev["outcomeDesc"] = json!(text);
        ev["purposeOfEvent"] = json!(x.purposes());
    }
    let mut agents = vec![
        json!({
            "type": cc(c(DCM, "110150", "Application")),
            "who": did_ref(x.actor, None),
            "requestor": false,
        }),
        x.user(r5),
    ];
    agents.extend(x.organisation());
    agents.push(json!({
        "type": cc(c(SECURITY_ROLE, "authserver", "authorization server")),
        "who": ledger_ref(ledger),
        "requestor": false,
    }));
    ev["agent"] = json!(agents);
    let mut entities = vec![Access::patient_entity(patient, r5)];
    if let Some(g) = x.grant() {
        let mut e = json!({
            "what": {
                "reference": format!("urn:uuid:{}", uuid("consent", g)),
                "type": "Consent",
                "identifier": {"type": {"text": "twinledger grant id"}, "value": g},
            },
        });
        if !r5 {
            e["type"] = c(RESOURCE_TYPES, "Consent", "Consent");
        }
        entities.push(e);
    }
    ev["entity"] = json!(entities);
    ev
}

/// The access to the twin resource under a permitted request (BALP `PatientRead`,
/// `PatientUpdate` or `PatientCreate`); `None` for a denied request.
pub fn access(a: &Value, patient: &str, ledger: &Ledger, r5: bool) -> Option<Value> {
    let x = Access::new(a);
    if !x.permitted {
        return None;
    }
    // Data flows from the twin store (source) to the client on a read, the other way on a
    // write: BALP's Read uses 110152 for the client, Create and Update 110153.
    let (action, interaction, profile, client, server) = match x.action {
        "correct" => ("U", "update", "PatientUpdate", "110153", "110152"),
        "collect" => ("C", "create", "PatientCreate", "110153", "110152"),
        _ => ("R", "read", "PatientRead", "110152", "110153"),
    };
    let role_name = |code: &str| {
        if code == "110152" {
            "Destination Role ID"
        } else {
            "Source Role ID"
        }
    };
    let mut ev = x.base(
        "access",
        format!("{BALP}IHE.BasicAudit.{profile}"),
        ledger,
        r5,
    );
    ev["action"] = json!(action);
    let rest = c(AUDIT_TYPE, "rest", "Restful Operation");
    let op = c(RESTFUL, interaction, interaction);
    if r5 {
        ev["category"] = json!([cc(rest)]);
        ev["code"] = cc(op);
        ev["outcome"] = json!({"code": c(OUTCOME, "0", "Success"), "detail": [{"text": x.outcome_text(ledger)}]});
        ev["authorization"] = json!(x.purposes());
        ev["patient"] = did_ref(patient, Some("Patient"));
    } else {
        ev["type"] = rest;
        ev["subtype"] = json!([op]);
        ev["outcome"] = json!("0");
        ev["outcomeDesc"] = json!(x.outcome_text(ledger));
        ev["purposeOfEvent"] = json!(x.purposes());
    }
    let mut agents = vec![
        json!({
            "type": cc(c(DCM, client, role_name(client))),
            "who": did_ref(x.actor, None),
            "requestor": false,
        }),
        json!({
            "type": cc(c(DCM, server, role_name(server))),
            "who": ledger_ref(ledger),
            "requestor": false,
        }),
        x.user(r5),
    ];
    agents.extend(x.organisation());
    ev["agent"] = json!(agents);

    // The twin resource, by the ledger's commitment to it (the resource name stays off chain).
    let mut data = json!({
        "what": {"identifier": {
            "type": {"text": "twinledger commitment to the twin resource"},
            "value": ledger.resource_of.get(x.id).map(String::as_str).unwrap_or("unknown"),
        }},
        "role": coded(c(OBJECT_ROLE, "4", "Domain Resource"), r5),
    });
    // Security labels are sensitivity codes only (GDIS, MH, ...); observation categories such
    // as vital-signs are not labels and go in a detail.
    let labels: Vec<Value> = x
        .category
        .filter(|k| k.system() == ACT_CODE)
        .map(|k| coded(coding(k), r5))
        .into_iter()
        .collect();
    if !labels.is_empty() {
        data["securityLabel"] = json!(labels);
    }
    if let Some(k) = x.category {
        data["detail"] = if r5 {
            json!([{"type": {"text": "data category"}, "valueCodeableConcept": cc(coding(k))}])
        } else {
            json!([{"type": "data category", "valueString": format!("{}|{}", k.system(), k.code())}])
        };
    }
    let mut decision = json!({
        "what": {
            "reference": format!("urn:uuid:{}", uuid("authz", x.id)),
            "type": "AuditEvent",
            "identifier": {"type": {"text": "twinledger event id"}, "value": x.id},
        },
    });
    if !r5 {
        data["type"] = c(ENTITY_TYPE, "2", "System Object");
        decision["type"] = c(ENTITY_TYPE, "4", "Other");
    }
    ev["entity"] = json!([Access::patient_entity(patient, r5), data, decision]);
    Some(ev)
}

/// The sign-off of a break-glass access: who reviewed, when, the finding; `None` when the
/// request is not a reviewed break-glass.
pub fn review(a: &Value, patient: &str, ledger: &Ledger, r5: bool) -> Option<Value> {
    let x = Access::new(a);
    let (reviewer, finding, event) = x.review()?;
    let recorded = ledger.time_of.get(event).copied().unwrap_or(x.time);
    let text = format!(
        "break-glass access {} reviewed by {reviewer}: {finding}",
        x.id
    );
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": uuid("review", event),
        "meta": {
            "profile": [AUDIT_EVENT_PROFILE],
            "security": [c(ACT_CODE, "BTG", "break the glass")],
        },
        "action": "E",
        "recorded": utc(recorded),
        "source": {
            "observer": ledger_ref(ledger),
            "type": [coded(c(SOURCE_TYPE, "6", "Security Server"), r5)],
        },
        "agent": [{
            "type": cc(c(PARTICIPATION, "VRF", "verifier")),
            "who": did_ref(reviewer, None),
            "requestor": true,
        }],
    });
    let alert = c(DCM, "110113", "Security Alert");
    if r5 {
        ev["category"] = json!([cc(alert.clone())]);
        ev["code"] = json!({"coding": [alert], "text": "break-glass review"});
        ev["outcome"] = json!({"code": c(OUTCOME, "0", "Success"), "detail": [{"text": text}]});
        ev["patient"] = did_ref(patient, Some("Patient"));
    } else {
        ev["type"] = alert;
        ev["outcome"] = json!("0");
        ev["outcomeDesc"] = json!(text);
    }
    let mut reviewed = json!({
        "what": {
            "reference": format!("urn:uuid:{}", uuid("authz", x.id)),
            "type": "AuditEvent",
            "identifier": {"type": {"text": "twinledger event id"}, "value": x.id},
        },
        "role": coded(c(OBJECT_ROLE, "13", "Security Resource"), r5),
        "detail": [if r5 {
            json!({"type": {"text": "finding"}, "valueString": finding})
        } else {
            json!({"type": "finding", "valueString": finding})
        }],
    });
    let mut record = json!({
        "what": {"identifier": {"type": {"text": "twinledger event id"}, "value": event}},
    });
    if !r5 {
        reviewed["type"] = c(ENTITY_TYPE, "2", "System Object");
        record["type"] = c(ENTITY_TYPE, "4", "Other");
    }
    ev["entity"] = json!([Access::patient_entity(patient, r5), reviewed, record]);
    Some(ev)
}
