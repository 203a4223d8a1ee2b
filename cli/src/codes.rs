//! `twinctl codes`: the data categories, purposes of use, actions and roles the ledger knows,
//! each with its standard code, its code system and what it means (PROTOCOL.md §4).

use clap::Args;
use serde_json::{Value, json};
use twinledger_core::codes::{Action, Code, DataCategory, Purpose, Role};
use twinledger_core::{Decision, DenyReason, Outcome};

use crate::Output;

/// `twinctl codes`
#[derive(Debug, Args)]
pub struct CodesArgs {
    /// Only this list.
    #[arg(long, value_parser = ["categories", "purposes", "actions", "roles"])]
    pub only: Option<String>,
}

fn category(c: DataCategory) -> &'static str {
    match c {
        DataCategory::VitalSigns => "vital signs (heart rate, blood pressure, wearable vitals)",
        DataCategory::Laboratory => "laboratory results",
        DataCategory::Imaging => "imaging",
        DataCategory::Activity => "physical activity (wearables)",
        DataCategory::SocialHistory => "social history",
        DataCategory::Exam => "physical exam",
        DataCategory::Procedure => "procedures",
        DataCategory::Survey => "surveys and questionnaires",
        DataCategory::Therapy => "therapy",
        DataCategory::Genetic => "genetic information: the genome (sensitivity label)",
        DataCategory::MentalHealth => "mental health information (sensitivity label)",
        DataCategory::Psychiatry => "psychiatry disorder information (sensitivity label)",
        DataCategory::SubstanceUse => "substance use disorder information (sensitivity label)",
        DataCategory::Hiv => "HIV/AIDS information (sensitivity label)",
        DataCategory::Sexuality => {
            "sexuality and reproductive health information (sensitivity label)"
        }
    }
}

fn purpose(p: Purpose) -> &'static str {
    match p {
        Purpose::Treat => "treatment",
        Purpose::EmergencyTreat => "emergency treatment (break-glass)",
        Purpose::Research => "research",
        Purpose::ClinicalTrial => "clinical trial research",
        Purpose::Payment => "payment",
        Purpose::Operations => "health care operations",
        Purpose::PublicHealth => "public health",
        Purpose::PatientRequest => "at the patient's request",
        Purpose::FamilyRequest => "at a family member's request",
        Purpose::PowerOfAttorney => "under a power of attorney",
        Purpose::CareCoordination => "coordination of care",
        Purpose::SystemAdmin => "health system administration",
    }
}

fn action(a: Action) -> &'static str {
    match a {
        Action::Read => "read or view (`--action read` on the command line)",
        Action::Update => "update or correct (`--action update` on the command line)",
        Action::Use => "use in processing, e.g. a model run",
        Action::Disclose => "disclose to a third party, e.g. an export",
        Action::Collect => "collect new data into the twin",
    }
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Physician => "physician",
        Role::Nurse => "nurse",
        Role::Paramedic => "paramedic or emergency staff",
        Role::Pharmacist => "pharmacist",
        Role::Researcher => "researcher",
        Role::LabTechnician => "laboratory technician",
        Role::CareCoordinator => "care coordinator",
        Role::Device => "a device (a wearable gateway)",
        Role::Service => "a service (the twin store, a model pipeline)",
        Role::PrivacyOfficer => "privacy officer: reviews break-glass accesses",
    }
}

fn role_meaning(r: Role) -> String {
    if r.may_break_glass() {
        format!("{} (may break the glass)", role(r))
    } else {
        role(r).to_string()
    }
}

/// A code, its system and its meaning.
type Row = (&'static str, &'static str, String);

/// One list's codes with their meanings.
fn list<C: Code>(meaning: impl Fn(C) -> String) -> Vec<Row> {
    C::ALL
        .iter()
        .map(|c| (c.code(), c.system(), meaning(*c)))
        .collect()
}

/// The four lists (name, the option that takes the codes, rows), in the order they are printed.
fn lists() -> Vec<(&'static str, &'static str, Vec<Row>)> {
    vec![
        (
            "categories",
            "--category",
            list(|c| category(c).to_string()),
        ),
        ("purposes", "--purpose", list(|p| purpose(p).to_string())),
        ("actions", "--action", list(|a| action(a).to_string())),
        ("roles", "--role", list(role_meaning)),
    ]
}

/// Runs `twinctl codes` (offline).
pub fn run(args: &CodesArgs) -> Output {
    let mut text = String::new();
    let mut json = serde_json::Map::new();
    for (name, option, codes) in lists() {
        if args.only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        text.push_str(&format!("{name} ({option}):\n"));
        let width = codes.iter().map(|(c, _, _)| c.len()).max().unwrap_or(0);
        let mut systems: Vec<&str> = Vec::new();
        for (code, system, meaning) in &codes {
            text.push_str(&format!("  {code:<width$}  {meaning}\n"));
            if !systems.contains(system) {
                systems.push(system);
            }
        }
        for s in systems {
            let of: Vec<&str> = codes
                .iter()
                .filter(|(_, sys, _)| *sys == s)
                .map(|(c, _, _)| *c)
                .collect();
            text.push_str(&format!("  code system {s}: {}\n", of.join(", ")));
        }
        text.push('\n');
        let rows: Vec<Value> = codes
            .iter()
            .map(|(code, system, meaning)| json!({"code": code, "system": system, "meaning": meaning}))
            .collect();
        json.insert(name.to_string(), Value::Array(rows));
    }
    Output {
        text,
        json: Value::Object(json),
    }
}

/// What a purpose code means ("research" for `HRESCH`); an unknown code as it is.
pub fn purpose_words(code: &str) -> String {
    Purpose::parse(code).map_or_else(|| code.to_string(), |p| purpose(p).to_string())
}

/// Why an access was denied, in words; `category` names what was asked for, if known.
pub fn deny_words(reason: DenyReason, category: Option<&str>) -> String {
    match (reason, category) {
        (DenyReason::NoCoveringGrant, Some(c)) => format!("no consent covers {c}"),
        (DenyReason::NoCoveringGrant, None) => "no consent covers the request".into(),
        (DenyReason::RoleMayNotBreakGlass, _) => {
            "the requester's role may not break the glass".into()
        }
        (DenyReason::ActorRevoked, _) => "the requester's enrolment was revoked".into(),
        (DenyReason::OrganisationRevoked, _) => "the requester's organisation was revoked".into(),
    }
}

/// A decision as a sentence: "permitted under grant 96a6… (vital-signs, research)", "denied:
/// no consent covers GDIS", "break-glass: permitted, flagged and queued for review".
/// `asked` is the category and purpose code asked for, if known.
pub fn decision_words(d: &Decision, asked: Option<(&str, &str)>) -> String {
    match d {
        Decision::Permit { grant } => {
            let hex = grant.to_hex();
            let mut s = format!("permitted under grant {}", crate::ids::short(&hex));
            if let Some((category, purpose)) = asked {
                s.push_str(&format!(" ({category}, {})", purpose_words(purpose)));
            }
            s
        }
        Decision::Deny { reason } => {
            format!("denied: {}", deny_words(*reason, asked.map(|(c, _)| c)))
        }
        Decision::BreakGlass => "break-glass: permitted, flagged and queued for review".into(),
    }
}

/// An outcome as a sentence ([`decision_words`], or "applied").
pub fn outcome_words(o: &Outcome, asked: Option<(&str, &str)>) -> String {
    match o {
        Outcome::Access(d) => decision_words(d, asked),
        Outcome::Applied => "applied".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decisions_read_as_sentences() {
        let grant = twinledger_core::EventId::from_hex(&"96a6".repeat(16)).unwrap();
        assert_eq!(
            decision_words(&Decision::Permit { grant }, Some(("vital-signs", "HRESCH"))),
            "permitted under grant 96a696a696a696a6 (vital-signs, research)"
        );
        assert_eq!(
            decision_words(
                &Decision::Deny {
                    reason: DenyReason::NoCoveringGrant
                },
                Some(("GDIS", "TREAT"))
            ),
            "denied: no consent covers GDIS"
        );
        assert!(!decision_words(&Decision::BreakGlass, None).contains('"'));
        assert_eq!(
            decision_words(
                &Decision::Deny {
                    reason: DenyReason::ActorRevoked
                },
                Some(("vital-signs", "TREAT"))
            ),
            "denied: the requester's enrolment was revoked"
        );
    }

    use super::*;

    #[test]
    fn every_code_of_the_core_is_listed_with_its_system() {
        let out = run(&CodesArgs { only: None });
        let n = DataCategory::ALL.len() + Purpose::ALL.len() + Action::ALL.len() + Role::ALL.len();
        let listed: usize = ["categories", "purposes", "actions", "roles"]
            .iter()
            .map(|k| out.json[k].as_array().unwrap().len())
            .sum();
        assert_eq!(listed, n);
        assert_eq!(out.json["categories"][0]["code"], "vital-signs");
        assert!(out.text.contains(twinledger_core::codes::ACT_CODE_SYSTEM));
        assert!(out.text.contains("GDIS"), "{}", out.text);
    }
}
