//! One FHIR `Consent` per grant (R4 or R5).
//!
//! Base decision deny with one permit provision: the grantee as actor, the validity period, the
//! purposes, the data categories and the actions. `dateTime` (R5 `date`) is the time of the
//! block that holds the grant; the grantor (R4 `performer`, R5 `grantor`) is the patient or the
//! delegate who signed it; the organisation (R4 `organization`, R5 `controller`) is the
//! grantee's. A revoked grant, and one that ended because the delegation it was made under was
//! revoked, is `inactive` with its permit period ending at that time, and the narrative says
//! when and why. Role grantees are a contained `PractitionerRole` (its `code` names the role)
//! rather than an identifier with an invented system.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use twinledger_core::codes::{Action, Code, DataCategory, Purpose, Role};

use super::ledger::{Ledger, uuid};
use super::{
    ACT_CODE, CONSENT_CATEGORY_LOINC, CONSENT_PROFILE, CONSENT_SCOPE, PARTICIPATION, codes, coding,
    did_ref, escape,
};
use crate::time::utc;

/// Why a grant stopped before its validity ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Revoked by the patient (or a delegate) at this time (ms); `None`: time unknown.
    Revoked(Option<u64>),
    /// Ended because the delegation it was made under was revoked.
    DelegationRevoked {
        /// The delegation (event id, hex).
        delegation: String,
        /// When (ms).
        at_ms: u64,
    },
    /// Ended for another reason the node gave.
    Other {
        /// The node's reason code.
        reason: String,
        /// When (ms), if given.
        at_ms: Option<u64>,
    },
}

impl Ended {
    /// The end of a grant from its entry in a consents answer, if it ended early: status
    /// `revoked` (time from the entry's `revoked_at_ms`, else the revoke event's block), or
    /// status `ended` with `{"ended": {"reason": "delegation_revoked", "delegation", "at_ms"}}`.
    pub fn of(entry: &Value, ledger: &Ledger) -> Option<Ended> {
        let id = entry["id"].as_str().unwrap_or("");
        match entry["status"].as_str() {
            Some("revoked") => Some(Ended::Revoked(
                entry["revoked_at_ms"]
                    .as_u64()
                    .or_else(|| ledger.revoked_time_of.get(id).copied()),
            )),
            Some("ended") => {
                let e = &entry["ended"];
                match (
                    e["reason"].as_str(),
                    e["delegation"].as_str(),
                    e["at_ms"].as_u64(),
                ) {
                    (Some("delegation_revoked"), Some(d), Some(at)) => {
                        Some(Ended::DelegationRevoked {
                            delegation: d.to_string(),
                            at_ms: at,
                        })
                    }
                    // An ending this exporter does not know: still ended, as the node says.
                    _ => Some(Ended::Other {
                        reason: e["reason"].as_str().unwrap_or("unknown").to_string(),
                        at_ms: e["at_ms"].as_u64(),
                    }),
                }
            }
            _ => None,
        }
    }

    fn at(&self) -> Option<u64> {
        match self {
            Ended::Revoked(t) => *t,
            Ended::DelegationRevoked { at_ms, .. } => Some(*at_ms),
            Ended::Other { at_ms, .. } => *at_ms,
        }
    }

    fn sentence(&self) -> String {
        match self {
            Ended::Revoked(Some(t)) => format!("Revoked at {}.", utc(*t)),
            Ended::Revoked(None) => "Revoked.".to_string(),
            Ended::DelegationRevoked { delegation, at_ms } => format!(
                "Ended at {}: the delegation {delegation} under which it was granted was revoked.",
                utc(*at_ms)
            ),
            Ended::Other { reason, at_ms } => format!(
                "Ended{}: {}.",
                at_ms.map(|t| format!(" at {}", utc(t))).unwrap_or_default(),
                reason.replace('_', " ")
            ),
        }
    }
}

/// What the consent builder knows beyond the grant entry.
#[derive(Debug, Default)]
pub struct Parties {
    /// Delegate did by delegation id (from the consents answer's `delegations`).
    pub delegate_of: BTreeMap<String, String>,
    /// Organisation did by actor did (from the access log).
    pub organisation_of: BTreeMap<String, String>,
}

impl Parties {
    /// From a consents answer and the access list.
    pub fn new(consents: &Value, accesses: &[Value]) -> Self {
        let mut p = Parties::default();
        for d in consents["delegations"].as_array().into_iter().flatten() {
            if let (Some(id), Some(delegate)) =
                (d["id"].as_str(), d["delegation"]["delegate"].as_str())
            {
                p.delegate_of.insert(id.to_string(), delegate.to_string());
            }
        }
        for a in accesses {
            if let (Some(actor), Some(org)) = (a["actor"].as_str(), a["organisation"].as_str()) {
                p.organisation_of.insert(actor.to_string(), org.to_string());
            }
        }
        p
    }

    /// Who signed the grant: the entry's `author` (verified histories), else from
    /// `granted_by` (`"Patient"` or `{"Delegate": <delegation id>}`).
    fn grantor(&self, entry: &Value, patient: &str) -> Option<String> {
        if let Some(a) = entry["author"].as_str() {
            return Some(a.to_string());
        }
        let by = &entry["granted_by"];
        if by == "Patient" {
            return Some(patient.to_string());
        }
        by["Delegate"]
            .as_str()
            .and_then(|d| self.delegate_of.get(d).cloned())
    }
}

/// The role as a CodeableConcept: its twinctl code as text, with the matching code of HL7's
/// practitioner-role code system where there is one.
fn role_concept(role: Role) -> Value {
    let standard = match role {
        Role::Physician => Some(("doctor", "Doctor")),
        Role::Nurse => Some(("nurse", "Nurse")),
        Role::Pharmacist => Some(("pharmacist", "Pharmacist")),
        Role::Researcher => Some(("researcher", "Researcher")),
        _ => None,
    };
    let mut c = json!({"text": role.code()});
    if let Some((code, display)) = standard {
        c["coding"] = json!([{
            "system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
            "code": code, "display": display,
        }]);
    }
    c
}

/// The grantee: a reference (to an actor or an organisation by did), or for a role a
/// contained `PractitionerRole` and a local reference to it; and the grantee's organisation.
fn grantee(grantee: &Value, parties: &Parties) -> (Value, Option<Value>, Option<String>) {
    if let Some(did) = grantee["actor"].as_str() {
        let org = parties.organisation_of.get(did).cloned();
        (did_ref(did, None), None, org)
    } else if let Some(did) = grantee["organisation"].as_str() {
        (
            did_ref(did, Some("Organization")),
            None,
            Some(did.to_string()),
        )
    } else {
        let r = &grantee["role"];
        let role: Option<Role> = r["role"].as_str().and_then(|s| s.parse().ok());
        let org = r["organisation"].as_str().map(str::to_string);
        let mut contained = json!({
            "resourceType": "PractitionerRole",
            "id": "grantee",
            "active": true,
            "code": [role.map(role_concept).unwrap_or_else(|| json!({"text": "unknown role"}))],
        });
        if let Some(o) = &org {
            contained["organization"] = did_ref(o, Some("Organization"));
        }
        let display = format!(
            "any {}{}",
            role.map(|c| c.code()).unwrap_or("actor"),
            org.as_deref()
                .map(|o| format!(" of {o}"))
                .unwrap_or_else(|| " of any member organisation".to_string())
        );
        (
            json!({"reference": "#grantee", "type": "PractitionerRole", "display": display}),
            Some(contained),
            org,
        )
    }
}

/// A FHIR Consent for one grant (an entry of the consents answer).
pub fn consent(
    entry: &Value,
    patient: &str,
    ledger: &Ledger,
    parties: &Parties,
    r5: bool,
) -> Value {
    let grant = &entry["grant"];
    let scope = &grant["scope"];
    let id = entry["id"].as_str().unwrap_or("");
    let ended = Ended::of(entry, ledger);
    let status = match entry["status"].as_str() {
        Some("active") | Some("future") => "active",
        _ => "inactive",
    };
    let start = grant["valid_from"].as_u64().unwrap_or(0);
    let until = grant["valid_until"].as_u64();
    // The permit ends at the earliest of its validity and an early end (never before it starts).
    let end = match (until, ended.as_ref().and_then(Ended::at)) {
        (Some(u), Some(e)) => Some(u.min(e).max(start)),
        (Some(u), None) => Some(u),
        (None, Some(e)) => Some(e.max(start)),
        (None, None) => None,
    };
    let mut period = json!({"start": utc(start)});
    if let Some(e) = end {
        period["end"] = json!(utc(e));
    }
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
    let (grantee_ref, contained, org) = grantee(&grant["grantee"], parties);
    let recipient = json!({"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]});
    let permit = json!({
        "period": period,
        "actor": [{"role": recipient, "reference": grantee_ref}],
        "action": actions,
        "purpose": purposes,
        "code": categories,
    });
    let grantor = parties.grantor(entry, patient);
    let granted_at = ledger.time_of.get(id).copied();
    let mut text = format!("Consent grant {id} of patient {patient}");
    if let Some(g) = &grantor {
        text.push_str(&format!(", signed by {g}"));
    }
    if let Some(t) = granted_at {
        text.push_str(&format!(", recorded at {}", utc(t)));
    }
    text.push('.');
    if let Some(e) = &ended {
        text.push(' ');
        text.push_str(&e.sentence());
    }
    let category = json!([{"coding": [{"system": CONSENT_CATEGORY_LOINC, "code": "59284-0", "display": "Patient Consent"}]}]);
    let mut c = json!({
        "resourceType": "Consent",
        "id": uuid("consent", id),
        "meta": {"profile": [CONSENT_PROFILE]},
        "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", escape(&text))},
        "identifier": [{"type": {"text": "twinledger grant id"}, "value": id}],
        "status": status,
        "category": category,
    });
    if let Some(x) = contained {
        c["contained"] = json!([x]);
    }
    let grantor_ref = grantor.as_deref().map(|g| did_ref(g, None));
    let org_ref = org.as_deref().map(|o| did_ref(o, Some("Organization")));
    if r5 {
        c["subject"] = did_ref(patient, Some("Patient"));
        if let Some(t) = granted_at {
            // R5 `date` is a date.
            c["date"] = json!(utc(t)[..10]);
        }
        c["period"] = permit["period"].clone();
        if let Some(g) = grantor_ref {
            c["grantor"] = json!([g]);
        }
        c["grantee"] = json!([permit["actor"][0]["reference"].clone()]);
        if let Some(o) = org_ref {
            c["controller"] = json!([o]);
        }
        c["regulatoryBasis"] = json!([{"coding": [{"system": ACT_CODE, "code": "OPTIN"}]}]);
        c["decision"] = json!("deny");
        c["provision"] = json!([permit]);
    } else {
        c["scope"] = json!({"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]});
        c["patient"] = did_ref(patient, Some("Patient"));
        if let Some(t) = granted_at {
            c["dateTime"] = json!(utc(t));
        }
        if let Some(g) = grantor_ref {
            c["performer"] = json!([g]);
        }
        if let Some(o) = org_ref {
            c["organization"] = json!([o]);
        }
        c["policyRule"] = json!({"coding": [{"system": ACT_CODE, "code": "OPTIN"}]});
        let mut p = permit;
        p["type"] = json!("permit");
        c["provision"] = json!({"type": "deny", "provision": [p]});
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        let mut l = Ledger {
            chain_id: "00".repeat(32),
            ..Ledger::default()
        };
        l.time_of.insert("aa".repeat(32), 1_767_225_600_000);
        l.revoked_time_of.insert("aa".repeat(32), 1_767_312_000_000);
        l
    }

    fn entry(status: &str) -> Value {
        json!({
            "id": "aa".repeat(32),
            "status": status,
            "grant": {
                "patient": "did:key:zPatient",
                "grantee": {"actor": "did:key:zPhysician"},
                "scope": {"categories": ["vital-signs"], "purposes": ["TREAT"], "actions": ["access"]},
                "valid_from": 1_767_225_600_000u64,
                "valid_until": 1_798_761_600_000u64,
            },
            "granted_by": {"Delegate": "dd".repeat(32)},
            "revoked_at": null,
        })
    }

    fn parties() -> Parties {
        let consents = json!({"delegations": [
            {"id": "dd".repeat(32), "delegation": {"delegate": "did:key:zGuardian"}}
        ]});
        Parties::new(&consents, &[])
    }

    #[test]
    fn a_grant_ended_by_a_revoked_delegation_is_an_inactive_consent_ending_then_with_its_reason() {
        let mut e = entry("ended");
        e["ended"] = json!({"reason": "delegation_revoked", "delegation": "dd".repeat(32), "at_ms": 1_767_398_400_000u64});
        for r5 in [false, true] {
            let c = consent(&e, "did:key:zPatient", &ledger(), &parties(), r5);
            assert_eq!(c["status"], "inactive", "{c}");
            let provision = if r5 {
                &c["provision"][0]
            } else {
                &c["provision"]["provision"][0]
            };
            assert_eq!(provision["period"]["end"], "2026-01-03T00:00:00Z", "{c}");
            let div = c["text"]["div"].as_str().unwrap();
            assert!(
                div.contains(&format!(
                    "Ended at 2026-01-03T00:00:00Z: the delegation {} under which it was granted was revoked",
                    "dd".repeat(32)
                )),
                "{div}"
            );
            let grantor = if r5 {
                &c["grantor"][0]
            } else {
                &c["performer"][0]
            };
            assert_eq!(grantor["identifier"]["value"], "did:key:zGuardian", "{c}");
        }
    }

    #[test]
    fn an_ending_of_another_kind_is_inactive_with_the_nodes_reason_not_called_a_revocation() {
        let mut e = entry("ended");
        e["ended"] = json!({"reason": "grantee_removed", "at_ms": 1_767_398_400_000u64});
        let c = consent(&e, "did:key:zPatient", &ledger(), &parties(), false);
        assert_eq!(c["status"], "inactive");
        let div = c["text"]["div"].as_str().unwrap();
        assert!(
            div.contains("Ended at 2026-01-03T00:00:00Z: grantee removed."),
            "{div}"
        );
        assert!(!div.contains("Revoked"), "{div}");
    }

    #[test]
    fn a_revoked_grant_is_an_inactive_consent_ending_at_the_revocation() {
        for r5 in [false, true] {
            let c = consent(
                &entry("revoked"),
                "did:key:zPatient",
                &ledger(),
                &parties(),
                r5,
            );
            assert_eq!(c["status"], "inactive", "{c}");
            let provision = if r5 {
                &c["provision"][0]
            } else {
                &c["provision"]["provision"][0]
            };
            assert_eq!(provision["period"]["end"], "2026-01-02T00:00:00Z", "{c}");
            assert!(
                c["text"]["div"]
                    .as_str()
                    .unwrap()
                    .contains("Revoked at 2026-01-02T00:00:00Z."),
                "{c}"
            );
            if r5 {
                assert_eq!(c["date"], "2026-01-01", "{c}");
            } else {
                assert_eq!(c["dateTime"], "2026-01-01T00:00:00Z", "{c}");
            }
        }
    }

    #[test]
    fn an_active_grant_keeps_its_validity_and_says_nothing_of_an_end() {
        let c = consent(
            &entry("active"),
            "did:key:zPatient",
            &ledger(),
            &parties(),
            false,
        );
        assert_eq!(c["status"], "active");
        assert_eq!(
            c["provision"]["provision"][0]["period"]["end"],
            "2027-01-01T00:00:00Z"
        );
        let div = c["text"]["div"].as_str().unwrap();
        assert!(!div.contains("Revoked") && !div.contains("Ended"), "{div}");
    }

    #[test]
    fn a_role_grantee_is_a_contained_practitioner_role_not_an_invented_identifier_system() {
        let mut e = entry("active");
        e["grant"]["grantee"] =
            json!({"role": {"role": "physician", "organisation": "did:key:zHospital"}});
        let c = consent(&e, "did:key:zPatient", &ledger(), &parties(), false);
        let role = &c["contained"][0];
        assert_eq!(role["resourceType"], "PractitionerRole");
        assert_eq!(
            role["code"][0]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/practitioner-role"
        );
        assert_eq!(role["code"][0]["coding"][0]["code"], "doctor");
        assert_eq!(
            role["organization"]["identifier"]["value"],
            "did:key:zHospital"
        );
        let actor = &c["provision"]["provision"][0]["actor"][0]["reference"];
        assert_eq!(actor["reference"], "#grantee");
        assert!(actor.get("identifier").is_none(), "{actor}");
        assert_eq!(
            c["organization"][0]["identifier"]["value"],
            "did:key:zHospital"
        );
    }
}
