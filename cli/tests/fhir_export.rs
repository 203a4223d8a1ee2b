//! `twinctl fhir export` against a real node (in-process, 127.0.0.1:0): every resource and the
//! Bundle validate against HL7's official FHIR JSON schemas (vendored in `tests/data/fhir/`), and
//! the IHE BALP elements a FHIR auditor relies on are there.

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{Value, json};
use twinledger_core::devkit::dev_key;
use twinledger_core::{Keypair, Role};
use twinledger_genesis::ActorEntry;

mod common;

use common::{err, run, run_exit, run_ok, write_key};

const BALP: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// An official FHIR JSON schema, compiled once per release for this test binary.
struct Schema {
    release: &'static str,
    doc: Value,
    root: jsonschema::Validator,
}

fn load(release: &'static str, file: &str) -> Schema {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fhir")
        .join(file);
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let t = Instant::now();
    let root = jsonschema::validator_for(&doc).unwrap();
    eprintln!("FHIR {release} schema compiled in {:?}", t.elapsed());
    Schema { release, doc, root }
}

fn r4() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| load("R4", "fhir.r4.schema.json.gz"))
}

/// FHIR R5 checked against HL7's own R5 StructureDefinitions (snapshots, vendored unchanged in
/// `tests/data/fhir/fhir.r5.structuredefinitions.json.gz`): every element exists in its type,
/// arrays where the maximum cardinality is above 1 and nowhere else, every required element
/// present, choice types, nested backbone elements and content references followed, contained
/// and entry resources checked by their type, and every primitive of the right JSON kind and
/// matching its type's regex. (No official R5 JSON schema reached us through a registry; see
/// `tests/data/fhir/README.md`.)
struct R5Definitions {
    by_type: std::collections::HashMap<String, Value>,
    regex: std::collections::HashMap<String, regex::Regex>,
}

fn r5() -> &'static R5Definitions {
    static S: OnceLock<R5Definitions> = OnceLock::new();
    S.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/fhir/fhir.r5.structuredefinitions.json.gz");
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let bundle: Value = serde_json::from_str(&text).unwrap();
        let mut by_type = std::collections::HashMap::new();
        let mut regexes = std::collections::HashMap::new();
        for e in bundle["entry"].as_array().unwrap() {
            let sd = e["resource"].clone();
            assert_eq!(sd["fhirVersion"], "5.0.0");
            let ty = sd["type"].as_str().unwrap().to_string();
            if sd["kind"] == "primitive-type" {
                let value = format!("{ty}.value");
                let re = sd["snapshot"]["element"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|el| el["path"] == value.as_str())
                    .flat_map(|el| {
                        el["type"][0]["extension"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .find(|x| x["url"] == "http://hl7.org/fhir/StructureDefinition/regex")
                    .and_then(|x| x["valueString"].as_str().map(str::to_string));
                if let Some(re) = re {
                    regexes.insert(
                        ty.clone(),
                        regex::Regex::new(&format!("^(?:{re})$")).unwrap(),
                    );
                }
            }
            by_type.insert(ty, sd);
        }
        R5Definitions {
            by_type,
            regex: regexes,
        }
    })
}

impl R5Definitions {
    fn elements<'a>(&'a self, sd: &'a Value) -> &'a Vec<Value> {
        sd["snapshot"]["element"].as_array().unwrap()
    }

    /// Every problem of a resource (dispatching on its `resourceType`).
    fn resource(&self, v: &Value, at: &str, errs: &mut Vec<String>) {
        let Some(rt) = v["resourceType"].as_str() else {
            return errs.push(format!("{at}: no resourceType"));
        };
        let Some(sd) = self.by_type.get(rt) else {
            return errs.push(format!("{at}: {rt} is not an R5 resource type here"));
        };
        self.node(sd, rt, v, at, true, errs);
    }

    fn node(
        &self,
        sd: &Value,
        path: &str,
        v: &Value,
        at: &str,
        root: bool,
        errs: &mut Vec<String>,
    ) {
        let Some(obj) = v.as_object() else {
            return errs.push(format!("{at}: {path} must be an object, got {v}"));
        };
        let depth = path.matches('.').count() + 1;
        let children: Vec<&Value> = self
            .elements(sd)
            .iter()
            .filter(|e| {
                let p = e["path"].as_str().unwrap();
                p.starts_with(&format!("{path}.")) && p.matches('.').count() == depth
            })
            .collect();
        for (k, val) in obj {
            if root && k == "resourceType" {
                continue;
            }
            let at = format!("{at}.{k}");
            let exact = children
                .iter()
                .find(|e| e["path"].as_str().unwrap().rsplit('.').next() == Some(k.as_str()));
            let (e, code) = if let Some(e) = exact {
                (*e, e["type"][0]["code"].as_str().unwrap_or("").to_string())
            } else {
                // A choice element: value[x] as valueString, valueCodeableConcept, ...
                let choice = children.iter().find_map(|e| {
                    let name = e["path"].as_str().unwrap().rsplit('.').next().unwrap();
                    let stem = name.strip_suffix("[x]")?;
                    let suffix = k.strip_prefix(stem)?;
                    e["type"].as_array()?.iter().find_map(|t| {
                        let c = t["code"].as_str()?;
                        let mut cap = c.to_string();
                        cap[..1].make_ascii_uppercase();
                        (cap == suffix).then(|| (*e, c.to_string()))
                    })
                });
                match choice {
                    Some(x) => x,
                    None => {
                        errs.push(format!("{at}: {path} has no element {k}"));
                        continue;
                    }
                }
            };
            let many = !matches!(e["max"].as_str(), Some("0") | Some("1"));
            if e["max"] == "0" {
                errs.push(format!("{at}: not allowed (max 0)"));
                continue;
            }
            match (many, val.as_array()) {
                (true, Some(items)) => {
                    if items.is_empty() {
                        errs.push(format!("{at}: an empty array"));
                    }
                    for (i, item) in items.iter().enumerate() {
                        self.value(sd, e, &code, item, &format!("{at}[{i}]"), errs);
                    }
                }
                (true, None) => errs.push(format!("{at}: must be an array (max {})", e["max"])),
                (false, Some(_)) => errs.push(format!("{at}: must not be an array (max 1)")),
                (false, None) => self.value(sd, e, &code, val, &at, errs),
            }
        }
        for e in &children {
            if e["min"].as_u64().unwrap_or(0) >= 1 {
                let name = e["path"].as_str().unwrap().rsplit('.').next().unwrap();
                let present = match name.strip_suffix("[x]") {
                    Some(stem) => obj.keys().any(|k| k.starts_with(stem)),
                    None => obj.contains_key(name),
                };
                if !present {
                    errs.push(format!("{at}: {path}.{name} is required"));
                }
            }
        }
    }

    fn value(
        &self,
        sd: &Value,
        e: &Value,
        code: &str,
        v: &Value,
        at: &str,
        errs: &mut Vec<String>,
    ) {
        let path = e["path"].as_str().unwrap();
        if let Some(r) = e["contentReference"].as_str() {
            let target = r.rsplit('#').next().unwrap();
            return self.node(sd, target, v, at, false, errs);
        }
        let inline = self
            .elements(sd)
            .iter()
            .any(|x| x["path"].as_str().unwrap().starts_with(&format!("{path}.")));
        if matches!(code, "BackboneElement" | "Element") && inline {
            return self.node(sd, path, v, at, false, errs);
        }
        if let Some(system) = code.strip_prefix("http://hl7.org/fhirpath/System.") {
            let ok = match system {
                "Boolean" => v.is_boolean(),
                "Integer" | "Decimal" => v.is_number(),
                _ => v.is_string(),
            };
            if !ok {
                errs.push(format!("{at}: {system} expected, got {v}"));
            }
            return;
        }
        if code == "Resource" {
            return self.resource(v, at, errs);
        }
        let Some(ty) = self.by_type.get(code) else {
            return errs.push(format!("{at}: no definition of type {code}"));
        };
        if ty["kind"] == "primitive-type" {
            let ok = match code {
                "boolean" => v.is_boolean(),
                "integer" | "positiveInt" | "unsignedInt" | "decimal" => v.is_number(),
                _ => v.is_string(),
            };
            if !ok {
                return errs.push(format!("{at}: {code} expected, got {v}"));
            }
            if let (Some(re), Some(s)) = (self.regex.get(code), v.as_str())
                && !re.is_match(s)
            {
                errs.push(format!("{at}: {s:?} is not a valid {code}"));
            }
        } else {
            self.node(ty, code, v, at, false, errs);
        }
    }

    /// Checks the Bundle and every resource in it.
    fn check_bundle(&self, bundle: &Value) {
        let mut errs = Vec::new();
        self.resource(bundle, "Bundle", &mut errs);
        assert!(errs.is_empty(), "not valid FHIR R5: {errs:#?}");
    }
}

/// The R5 elements that the R4 shapes got wrong: `source.type` and `entity.securityLabel` are
/// CodeableConcepts, every agent keeps its `type`. (No official R5 schema is vendored yet: see
/// `tests/data/fhir/README.md`.)
fn check_r5_shapes(bundle: &Value) {
    for ev in resources(bundle, "AuditEvent") {
        for t in ev["source"]["type"].as_array().unwrap() {
            assert!(
                t["coding"].is_array(),
                "R5 source.type is a CodeableConcept: {ev:#}"
            );
        }
        for a in ev["agent"].as_array().unwrap() {
            assert!(
                a["type"]["coding"].is_array(),
                "R5 agent.type is kept: {ev:#}"
            );
        }
        for e in ev["entity"].as_array().unwrap() {
            assert!(e.get("type").is_none(), "R5 entity has no type: {ev:#}");
            for l in e["securityLabel"].as_array().into_iter().flatten() {
                assert!(
                    l["coding"].is_array(),
                    "R5 securityLabel is a CodeableConcept: {ev:#}"
                );
            }
        }
        for k in ["type", "subtype", "outcomeDesc", "purposeOfEvent"] {
            assert!(ev.get(k).is_none(), "{k} is R4 only: {ev:#}");
        }
    }
}

impl Schema {
    /// Validates `instance` (a resource or a Bundle) against the whole schema; on failure names
    /// every error found against the definition of its resource type.
    fn check(&self, instance: &Value) {
        if self.root.is_valid(instance) {
            return;
        }
        let kind = instance["resourceType"].as_str().unwrap_or("?");
        let mut one = self.doc.clone();
        one.as_object_mut().unwrap().remove("oneOf");
        one["$ref"] = json!(format!("#/definitions/{kind}"));
        let v = jsonschema::validator_for(&one).unwrap();
        let errors: Vec<String> = v
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        panic!(
            "{kind} is not valid FHIR {}: {errors:#?}\n{instance:#}",
            self.release
        );
    }

    /// Validates the Bundle and each resource in it.
    fn check_bundle(&self, bundle: &Value) {
        self.check(bundle);
        for e in bundle["entry"].as_array().unwrap() {
            self.check(&e["resource"]);
        }
    }
}

fn key_file(dir: &Path, name: &str) -> (String, Keypair) {
    let key = twinledger_cli::keystore::generate().unwrap();
    (write_key(dir, name, &key), key)
}

fn resources<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

fn profiled<'a>(events: &[&'a Value], profile: &str) -> Vec<&'a Value> {
    let want = format!("{BALP}IHE.BasicAudit.{profile}");
    events
        .iter()
        .copied()
        .filter(|e| e["meta"]["profile"][0] == want.as_str())
        .collect()
}

fn agent_typed<'a>(ev: &'a Value, system: &str, code: &str) -> Option<&'a Value> {
    ev["agent"].as_array().unwrap().iter().find(|a| {
        a["type"]["coding"][0]["system"] == system && a["type"]["coding"][0]["code"] == code
    })
}

/// The BALP elements of one export (`r5`: the release's element names).
fn assert_balp(bundle: &Value, r5: bool, ids: &Ids) {
    for e in bundle["entry"].as_array().unwrap() {
        let url = e["fullUrl"].as_str().unwrap();
        let uuid = url
            .strip_prefix("urn:uuid:")
            .unwrap_or_else(|| panic!("{url}"));
        assert_eq!(uuid.len(), 36, "{url}");
        assert_eq!(e["resource"]["id"], uuid, "id and fullUrl agree");
        assert!(
            e["resource"]["meta"]["profile"][0].as_str().is_some(),
            "every resource names its profile: {}",
            e["resource"]
        );
    }
    let events = resources(bundle, "AuditEvent");
    // The consent decisions: one per request (2 permits, 2 denies, 1 break-glass).
    let authz = profiled(&events, "AuthZconsent");
    assert_eq!(authz.len(), 5, "{authz:#?}");
    let outcome = |ev: &Value| {
        if r5 {
            ev["outcome"]["code"]["code"].as_str().unwrap().to_string()
        } else {
            ev["outcome"].as_str().unwrap().to_string()
        }
    };
    let text = |ev: &Value| {
        if r5 {
            ev["outcome"]["detail"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            ev["outcomeDesc"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(
        authz.iter().filter(|e| outcome(e) == "8").count(),
        2,
        "two denies"
    );
    for ev in &authz {
        assert_eq!(ev["action"], "E");
        let code = if r5 {
            &ev["code"]["coding"][0]
        } else {
            &ev["subtype"][0]
        };
        assert_eq!(code["code"], "AuthZ-Consent", "{ev}");
        for (system, code) in [
            (DCM, "110150"),
            (
                "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "IRCP",
            ),
            ("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV"),
            (
                "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                "authserver",
            ),
        ] {
            assert!(agent_typed(ev, system, code).is_some(), "{code}: {ev:#}");
        }
    }
    let permit = authz
        .iter()
        .find(|e| text(e).contains(&ids.grant))
        .expect("the permit names its grant");
    let consent_entity = permit["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["what"]["type"] == "Consent")
        .expect("consent entity");
    let consent_url = consent_entity["what"]["reference"].as_str().unwrap();
    assert!(
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["fullUrl"] == consent_url && e["resource"]["resourceType"] == "Consent"),
        "the decision references the Consent in the Bundle"
    );
    assert!(
        authz
            .iter()
            .any(|e| text(e).contains("denied: no consent covers access GDIS for TREAT")),
        "the deny says why"
    );

    // The accesses: one per permitted request (2 permits and the break-glass, all reads).
    let reads = profiled(&events, "PatientRead");
    assert_eq!(reads.len(), 3, "{reads:#?}");
    for ev in &reads {
        assert_eq!(ev["action"], "R");
        // BALP Read: the client is the destination of the data, the server its source.
        let client = agent_typed(ev, DCM, "110152").expect("client agent, DCM 110152");
        assert!(
            client["who"]["identifier"]["value"]
                .as_str()
                .unwrap()
                .starts_with("did:key:")
        );
        let server = agent_typed(ev, DCM, "110153").expect("server agent, DCM 110153");
        assert_eq!(server["who"]["identifier"]["value"], ids.chain.as_str());
        let user = agent_typed(
            ev,
            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "IRCP",
        )
        .unwrap();
        assert_eq!(user["requestor"], true);
        assert_eq!(user["who"]["identifier"]["value"], ids.physician.as_str());
        let org = agent_typed(
            ev,
            "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
            "PROV",
        )
        .expect("the user's organisation");
        assert_eq!(org["who"]["identifier"]["value"], ids.hospital.as_str());
        if !r5 {
            assert!(user["purposeOfUse"][0]["coding"][0]["code"].is_string());
        } else {
            assert!(user["authorization"][0]["coding"][0]["code"].is_string());
        }
        let entities = ev["entity"].as_array().unwrap();
        let role = |e: &Value| {
            if r5 {
                e["role"]["coding"][0]["code"].clone()
            } else {
                e["role"]["code"].clone()
            }
        };
        let patient = entities.iter().find(|e| role(e) == "1").expect("patient");
        assert_eq!(patient["what"]["identifier"]["value"], ids.patient.as_str());
        let data = entities
            .iter()
            .find(|e| role(e) == "4")
            .expect("data entity, role 4 Domain Resource");
        let what = data["what"]["identifier"]["value"].as_str().unwrap();
        assert_eq!(what.len(), 64, "the commitment to the twin resource");
        assert!(
            !ids.requests.contains(&what.to_string()),
            "the data is the twin resource, not the ledger event"
        );
        assert!(
            entities.iter().any(|e| e["what"]["identifier"]["value"]
                .as_str()
                .is_some_and(|v| ids.requests.contains(&v.to_string()))),
            "the ledger event is a second entity: {ev:#}"
        );
        let category = if r5 {
            data["detail"][0]["valueCodeableConcept"]["coding"][0]["code"].clone()
        } else {
            json!(
                data["detail"][0]["valueString"]
                    .as_str()
                    .unwrap()
                    .rsplit('|')
                    .next()
            )
        };
        assert!(
            ["vital-signs", "GDIS", "imaging"].contains(&category.as_str().unwrap()),
            "the data category is a detail: {ev:#}"
        );
        // Only sensitivity labels are security labels.
        for l in data["securityLabel"].as_array().into_iter().flatten() {
            let l = if r5 { &l["coding"][0] } else { l };
            assert_eq!(
                l["system"], "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "{l}"
            );
            assert_ne!(l["code"], "vital-signs");
        }
    }
    let bg: Vec<&&Value> = reads
        .iter()
        .filter(|e| e["meta"]["security"][0]["code"] == "BTG")
        .collect();
    assert_eq!(bg.len(), 1, "the break-glass access is labelled BTG");
    assert!(text(bg[0]).contains("reviewed"), "{}", text(bg[0]));
    let data = &bg[0]["entity"][1];
    let label = if r5 {
        &data["securityLabel"][0]["coding"][0]
    } else {
        &data["securityLabel"][0]
    };
    assert_eq!(label["code"], "GDIS", "the genome is labelled GDIS");
    let vital = reads.iter().find(|e| text(e).contains(&ids.grant)).unwrap();
    assert!(
        vital["entity"][1].get("securityLabel").is_none(),
        "vital-signs is not a security label: {vital:#}"
    );

    // The review of the break-glass.
    let reviews: Vec<&&Value> = events
        .iter()
        .filter(|e| e["meta"]["profile"][0] == "http://hl7.org/fhir/StructureDefinition/AuditEvent")
        .collect();
    assert_eq!(reviews.len(), 1);
    let review = reviews[0];
    assert!(text(review).contains("justified"), "{review:#}");
    assert_eq!(
        review["agent"][0]["who"]["identifier"]["value"],
        ids.officer.as_str()
    );
    assert_eq!(review["agent"][0]["type"]["coding"][0]["code"], "VRF");
    assert_ne!(
        review["recorded"], bg[0]["recorded"],
        "the review's own time, a later block than the access"
    );

    // The consents.
    let consents = resources(bundle, "Consent");
    assert_eq!(consents.len(), 3);
    for c in &consents {
        let (date, grantor) = if r5 {
            (&c["date"], &c["grantor"][0])
        } else {
            (&c["dateTime"], &c["performer"][0])
        };
        assert!(date.is_string(), "dateTime: {c:#}");
        assert_eq!(grantor["identifier"]["value"], ids.patient.as_str());
        let org = if r5 {
            &c["controller"][0]
        } else {
            &c["organization"][0]
        };
        assert_eq!(org["identifier"]["value"], ids.hospital.as_str(), "{c:#}");
    }
    let revoked = consents
        .iter()
        .find(|c| c["identifier"][0]["value"] == ids.grant.as_str())
        .unwrap();
    assert_eq!(revoked["status"], "inactive");
    let end = if r5 {
        &revoked["provision"][0]["period"]["end"]
    } else {
        &revoked["provision"]["provision"][0]["period"]["end"]
    };
    assert!(end.is_string(), "the revocation time is kept: {revoked:#}");
    assert!(
        revoked["text"]["div"]
            .as_str()
            .unwrap()
            .contains(&format!("Revoked at {}", end.as_str().unwrap())),
        "{revoked:#}"
    );
    let role = consents
        .iter()
        .find(|c| c["contained"].is_array())
        .expect("the role grant");
    assert_eq!(role["contained"][0]["resourceType"], "PractitionerRole");
    assert_eq!(
        role["contained"][0]["code"][0]["coding"][0]["code"],
        "researcher"
    );
    let text = role.to_string();
    assert!(
        !text.contains("twinledger.example"),
        "no invented system: {text}"
    );
    assert!(
        !bundle.to_string().contains("stroke"),
        "no free text from the reason"
    );
    // Only standard code and identifier systems.
    fn systems(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(s)) = m.get("system") {
                    out.push(s.clone());
                }
                m.values().for_each(|x| systems(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| systems(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    systems(bundle, &mut all);
    for s in all {
        assert!(
            s.starts_with("http://terminology.hl7.org/CodeSystem/")
                || s.starts_with("http://hl7.org/fhir/")
                || s.starts_with("https://profiles.ihe.net/ITI/BALP/CodeSystem/")
                || [DCM, "http://loinc.org", "urn:ietf:rfc:3986"].contains(&s.as_str()),
            "non-standard system {s}"
        );
    }
}

/// What the assertions need to know.
struct Ids {
    patient: String,
    physician: String,
    hospital: String,
    officer: String,
    grant: String,
    chain: String,
    requests: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_validate_against_hl7s_r4_schema_and_r5_definitions_and_follow_balp() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (patient_file, patient) = key_file(dir.path(), "patient");
    let (phys_file, physician) = key_file(dir.path(), "physician");
    let hospital = dev_key("fhir-test/hospital");
    let validator = dev_key("fhir-test/validator");
    let mut g = twinledger_node::dev::solo_genesis(
        "fhir-test",
        1_767_225_600_000,
        "Hospital",
        &hospital,
        &validator,
    )
    .unwrap();
    g.limits.block_interval_ms = 50;
    g.add_actor(ActorEntry {
        key: physician.public(),
        organisation: hospital.public(),
        role: Role::Physician,
    })
    .unwrap();
    let mut served = common::serve::serve(dir.path(), &g, &validator).await;
    let node = served.url.clone();
    let genesis_path = served.genesis.clone();
    let did = patient.public().to_did();
    let phys_did = physician.public().to_did();
    let hospital_did = hospital.public().to_did();
    let hospital_file = write_key(dir.path(), "hospital", &hospital);
    let (officer_file, officer) = key_file(dir.path(), "officer");
    let mut requests = Vec::new();

    // Grants: vital signs to the physician; activity to the hospital's researchers (a role).
    let o = run_ok(
        &node,
        &[
            "--json",
            "consent",
            "grant",
            "--key",
            &patient_file,
            "--to",
            &phys_did,
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
        ],
    )
    .await;
    let grant = serde_json::from_slice::<Value>(&o.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let role_to = format!("role:researcher@{hospital_did}");
    run_ok(
        &node,
        &[
            "consent",
            "grant",
            "--key",
            &patient_file,
            "--to",
            &role_to,
            "--category",
            "activity",
            "--purpose",
            "HRESCH",
        ],
    )
    .await;
    let request = async |category: &str, name: &str, code: i32| {
        let receipt = dir.path().join(format!("{name}.json"));
        run_exit(
            &node,
            &[
                "access",
                "request",
                "--key",
                &phys_file,
                "--patient",
                &did,
                "--category",
                category,
                "--purpose",
                "TREAT",
                "--resource",
                &format!("twin://alice/{name}"),
                "--receipt-out",
                receipt.to_str().unwrap(),
            ],
            code,
        )
        .await;
        serde_json::from_slice::<Value>(&std::fs::read(&receipt).unwrap()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // A permit, a deny.
    requests.push(request("vital-signs", "vitals", 0).await);
    requests.push(request("GDIS", "genome", 4).await);
    // A break-glass, signed off by the privacy officer.
    run_ok(
        &node,
        &[
            "org",
            "enrol-actor",
            "--key",
            &hospital_file,
            "--actor",
            &officer.public().to_did(),
            "--role",
            "privacy-officer",
        ],
    )
    .await;
    let reason = dir.path().join("reason.txt");
    std::fs::write(&reason, "unconscious on arrival, suspected stroke").unwrap();
    let bg = dir.path().join("bg.json");
    let o = run_ok(
        &node,
        &[
            "--json",
            "access",
            "break-glass",
            "--key",
            &phys_file,
            "--patient",
            &did,
            "--category",
            "GDIS",
            "--resource",
            "twin://alice/genome",
            "--reason-file",
            reason.to_str().unwrap(),
            "--receipt-out",
            bg.to_str().unwrap(),
        ],
    )
    .await;
    let bg_id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    requests.push(bg_id.clone());
    run_ok(
        &node,
        &[
            "review",
            "sign-off",
            "--key",
            &officer_file,
            &bg_id,
            "--finding",
            "justified",
        ],
    )
    .await;
    // A revocation, then the same request is denied.
    run_ok(
        &node,
        &["consent", "revoke", "--key", &patient_file, &grant],
    )
    .await;
    requests.push(request("vital-signs", "vitals-again", 4).await);
    // A second permit, under a grant to the hospital (the organisation).
    run_ok(
        &node,
        &[
            "consent",
            "grant",
            "--key",
            &patient_file,
            "--to",
            &format!("org:{hospital_did}"),
            "--category",
            "imaging",
            "--purpose",
            "TREAT",
        ],
    )
    .await;
    requests.push(request("imaging", "mri", 0).await);
    eprintln!("scenario on chain after {:?}", started.elapsed());

    let ids = Ids {
        patient: did.clone(),
        physician: phys_did.clone(),
        hospital: hospital_did.clone(),
        officer: officer.public().to_did(),
        grant: grant.clone(),
        chain: g.chain_id().unwrap().to_hex(),
        requests: requests.clone(),
    };
    let export = async |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "fhir",
            "export",
            "--key",
            &patient_file,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = run(&node, &args).await;
        assert!(o.status.success(), "{}", err(&o));
        serde_json::from_slice::<Value>(&std::fs::read(&out).unwrap()).unwrap()
    };
    let genesis = genesis_path.to_str().unwrap();
    let r4_bundle = export("r4.json", &[]).await;
    let r4_verified = export("r4-verified.json", &["--genesis", genesis]).await;
    let r5_bundle = export("r5.json", &["--r5"]).await;
    let r5_verified = export("r5-verified.json", &["--r5", "--genesis", genesis]).await;
    served.stop().await;
    eprintln!("exports written after {:?}", started.elapsed());

    let t = Instant::now();
    for b in [&r4_bundle, &r4_verified] {
        r4().check_bundle(b);
        assert_balp(b, false, &ids);
    }
    for b in [&r5_bundle, &r5_verified] {
        r5().check_bundle(b);
        check_r5_shapes(b);
        assert_balp(b, true, &ids);
    }
    eprintln!("4 bundles checked in {:?}", t.elapsed());
    // Two exports of one chain agree on every fullUrl, verified or not, R4 or R5.
    let urls = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(urls(&r4_bundle), urls(&r4_verified));
    assert_eq!(urls(&r4_bundle), urls(&r5_bundle));
    assert_eq!(urls(&r5_bundle), urls(&r5_verified));
    eprintln!("test took {:?}", started.elapsed());
}

/// A consents answer with a grant ended by a revoked delegation (status `ended`), a revoked
/// grant and a role grant, and an access log with a permit, a deny and a reviewed break-glass.
fn hand_built() -> (Value, Vec<Value>, twinledger_cli::fhir::ledger::Ledger) {
    let d = |s: &str| dev_key(s).public().to_did();
    let grant = |id: &str, grantee: Value, status: &str| {
        json!({
            "id": id.repeat(32), "leaf": 0, "status": status, "height": 1, "revoked_at": null,
            "granted_by": {"Delegate": "dd".repeat(32)},
            "grant": {"patient": d("p"), "grantee": grantee,
                      "scope": {"categories": ["vital-signs", "GDIS"], "purposes": ["TREAT"], "actions": ["access", "correct"]},
                      "valid_from": 1_767_225_600_000u64, "valid_until": null},
        })
    };
    let mut ended = grant("a1", json!({"actor": d("dr")}), "ended");
    ended["ended"] = json!({"reason": "delegation_revoked", "delegation": "dd".repeat(32), "at_ms": 1_767_312_000_000u64});
    let revoked = grant("b2", json!({"organisation": d("org")}), "revoked");
    let role = grant(
        "c3",
        json!({"role": {"role": "paramedic", "organisation": null}}),
        "active",
    );
    let consents = json!({
        "grants": [ended, revoked, role],
        "delegations": [{"id": "dd".repeat(32), "status": "revoked", "delegation": {"delegate": d("guardian")}}],
    });
    let access = |id: &str,
                  kind: &str,
                  category: &str,
                  action: &str,
                  outcome: Value,
                  review: Value| {
        json!({"id": id.repeat(32), "leaf": 1, "height": 2, "time": 1_767_225_601_000u64,
               "actor": d("dr"), "organisation": d("org"), "kind": kind, "category": category,
               "purpose": "TREAT", "action": action, "outcome": outcome, "break_glass_review": review})
    };
    let accesses = vec![
        access(
            "e1",
            "access",
            "vital-signs",
            "correct",
            json!({"access": {"permit": {"grant": "a1".repeat(32)}}}),
            Value::Null,
        ),
        access(
            "e2",
            "access",
            "GDIS",
            "collect",
            json!({"access": {"permit": {"grant": "a1".repeat(32)}}}),
            Value::Null,
        ),
        access(
            "e3",
            "access",
            "GDIS",
            "access",
            json!({"access": {"deny": {"reason": "no_covering_grant"}}}),
            Value::Null,
        ),
        access(
            "e4",
            "break_glass",
            "MH",
            "access",
            json!({"access": "break_glass"}),
            json!({"reviewer": d("officer"), "finding": "unjustified", "event": "f6".repeat(32)}),
        ),
    ];
    let mut ledger = twinledger_cli::fhir::ledger::Ledger {
        chain_id: "0f".repeat(32),
        ..Default::default()
    };
    ledger.time_of.insert("a1".repeat(32), 1_767_225_600_000);
    ledger
        .revoked_time_of
        .insert("b2".repeat(32), 1_767_225_700_000);
    (consents, accesses, ledger)
}

#[test]
fn ended_revoked_role_update_create_and_unjustified_review_exports_validate_as_r4_and_r5() {
    let (consents, accesses, ledger) = hand_built();
    let patient = dev_key("p").public().to_did();
    let b5 = twinledger_cli::fhir::bundle(&consents, &accesses, &patient, &ledger, 0, true);
    r5().check_bundle(&b5);
    check_r5_shapes(&b5);
    let b = twinledger_cli::fhir::bundle(&consents, &accesses, &patient, &ledger, 0, false);
    r4().check_bundle(&b);
    let events = resources(&b, "AuditEvent");
    assert_eq!(profiled(&events, "PatientUpdate").len(), 1);
    assert_eq!(profiled(&events, "PatientCreate").len(), 1);
    for ev in profiled(&events, "PatientUpdate")
        .into_iter()
        .chain(profiled(&events, "PatientCreate"))
    {
        // BALP Create and Update: the client is the source of the data, the server its destination.
        assert!(
            agent_typed(ev, DCM, "110153").unwrap()["who"]["identifier"]["value"]
                .as_str()
                .unwrap()
                .starts_with("did:key:")
        );
        assert_eq!(
            agent_typed(ev, DCM, "110152").unwrap()["who"]["identifier"]["value"],
            "0f".repeat(32)
        );
    }
    let consents = resources(&b, "Consent");
    assert!(
        consents
            .iter()
            .all(|c| c["status"] != "active" || c["contained"].is_array())
    );
    let ended = consents[0];
    assert_eq!(
        ended["provision"]["provision"][0]["period"]["end"],
        "2026-01-02T00:00:00Z"
    );
    assert_eq!(
        ended["performer"][0]["identifier"]["value"],
        dev_key("guardian").public().to_did()
    );
    let review = events
        .iter()
        .find(|e| e["agent"][0]["type"]["coding"][0]["code"] == "VRF")
        .unwrap();
    assert_eq!(
        review["entity"][1]["detail"][0]["valueString"],
        "unjustified"
    );
}

#[test]
fn the_vendored_r4_schema_refuses_r5_shapes_and_unknown_elements() {
    let (consents, accesses, ledger) = hand_built();
    let patient = dev_key("p").public().to_did();
    let b = twinledger_cli::fhir::bundle(&consents, &accesses, &patient, &ledger, 0, false);
    let ev = resources(&b, "AuditEvent")[0].clone();
    assert!(r4().root.is_valid(&ev));
    // R4 source.type is a Coding: a CodeableConcept there (what R5 wants) is refused.
    let mut wrong = ev.clone();
    wrong["source"]["type"] = json!([{"coding": [{"system": "http://x", "code": "4"}]}]);
    assert!(!r4().root.is_valid(&wrong));
    // An element R4 does not define is refused.
    let mut unknown = ev;
    unknown["authorization"] = json!([]);
    assert!(!r4().root.is_valid(&unknown));
}

#[test]
fn the_r5_definitions_refuse_r4_shapes_unknown_elements_and_bad_dates() {
    let (consents, accesses, ledger) = hand_built();
    let patient = dev_key("p").public().to_did();
    let b = twinledger_cli::fhir::bundle(&consents, &accesses, &patient, &ledger, 0, true);
    let ev = resources(&b, "AuditEvent")[0].clone();
    let errors = |v: &Value| {
        let mut e = Vec::new();
        r5().resource(v, "x", &mut e);
        e
    };
    assert!(errors(&ev).is_empty(), "{:#?}", errors(&ev));
    // What the R4 exporter wrote into R5: a Coding where R5 has a CodeableConcept.
    let mut coding = ev.clone();
    coding["source"]["type"] = json!([{"system": "http://x", "code": "4"}]);
    assert!(!errors(&coding).is_empty());
    let mut r4_only = ev.clone();
    r4_only["outcomeDesc"] = json!("denied");
    assert!(!errors(&r4_only).is_empty());
    let mut single = ev.clone();
    single["agent"] = ev["agent"][0].clone();
    assert!(!errors(&single).is_empty(), "agent is 1..*");
    let mut missing = ev.clone();
    missing.as_object_mut().unwrap().remove("recorded");
    assert!(!errors(&missing).is_empty(), "recorded is required");
    let c = resources(&b, "Consent")[0].clone();
    assert!(errors(&c).is_empty(), "{:#?}", errors(&c));
    let mut bad_date = c;
    bad_date["date"] = json!("2026-01-01T00:00:00Z");
    assert!(!errors(&bad_date).is_empty(), "R5 Consent.date is a date");
}
