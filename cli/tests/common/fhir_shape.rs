//! The shape of `twinctl fhir export` output, checked without a FHIR library: the required
//! elements of each resource (R4 or R5) and codings only from standard code systems.

/// Structural validation of the FHIR output: required elements per resource (R4 or R5) and
/// codings only from standard code systems.
pub fn validate_bundle(b: &serde_json::Value, r5: bool) {
    use serde_json::Value;
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "collection");
    let rfc3339 = |v: &Value| {
        let s = v.as_str().unwrap_or("");
        assert!(
            s.len() >= 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T',
            "not a FHIR instant: {s:?}"
        );
    };
    let coding = |c: &Value| {
        let sys = c["system"]
            .as_str()
            .unwrap_or_else(|| panic!("coding without system: {c}"));
        assert!(
            c["code"].as_str().is_some_and(|x| !x.is_empty()),
            "coding without code: {c}"
        );
        assert!(
            sys.starts_with("http://terminology.hl7.org/CodeSystem/")
                || sys.starts_with("http://hl7.org/fhir/")
                || sys == "http://loinc.org",
            "non-standard code system {sys}"
        );
    };
    for e in b["entry"].as_array().unwrap() {
        assert!(e["fullUrl"].as_str().unwrap().starts_with("urn:uuid:"));
        let r = &e["resource"];
        match r["resourceType"].as_str().unwrap() {
            "Consent" => {
                assert!(["active", "inactive"].contains(&r["status"].as_str().unwrap()));
                for c in r["category"].as_array().unwrap() {
                    c["coding"].as_array().unwrap().iter().for_each(coding);
                }
                let permits = if r5 {
                    assert_eq!(r["decision"], "deny", "base decision deny");
                    assert!(
                        r["subject"]["identifier"]["value"]
                            .as_str()
                            .unwrap()
                            .starts_with("did:key:")
                    );
                    r["provision"].as_array().unwrap().clone()
                } else {
                    r["scope"]["coding"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .for_each(coding);
                    r["policyRule"]["coding"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .for_each(coding);
                    assert!(
                        r["patient"]["identifier"]["value"]
                            .as_str()
                            .unwrap()
                            .starts_with("did:key:")
                    );
                    assert_eq!(r["provision"]["type"], "deny", "base decision deny");
                    r["provision"]["provision"].as_array().unwrap().clone()
                };
                assert!(!permits.is_empty());
                for p in permits {
                    if !r5 {
                        assert_eq!(p["type"], "permit");
                    }
                    rfc3339(&p["period"]["start"]);
                    assert!(!p["actor"].as_array().unwrap().is_empty());
                    for a in p["actor"].as_array().unwrap() {
                        a["role"]["coding"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .for_each(coding);
                    }
                    p["purpose"].as_array().unwrap().iter().for_each(coding);
                    for x in p["action"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .chain(p["code"].as_array().unwrap())
                    {
                        x["coding"].as_array().unwrap().iter().for_each(coding);
                    }
                }
            }
            "AuditEvent" => {
                rfc3339(&r["recorded"]);
                assert!(["C", "R", "U", "D", "E"].contains(&r["action"].as_str().unwrap()));
                assert!(
                    r["source"]["observer"]["identifier"]["value"]
                        .as_str()
                        .is_some()
                );
                let agents = r["agent"].as_array().unwrap();
                assert!(
                    agents.iter().any(|a| a["requestor"] == true),
                    "a requesting agent"
                );
                for a in agents {
                    assert!(
                        a["who"]["identifier"]["value"]
                            .as_str()
                            .unwrap()
                            .starts_with("did:key:")
                    );
                }
                if r5 {
                    r["code"]["coding"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .for_each(coding);
                    coding(&r["outcome"]["code"]);
                    for a in r["authorization"].as_array().unwrap() {
                        a["coding"].as_array().unwrap().iter().for_each(coding);
                    }
                } else {
                    coding(&r["type"]);
                    assert!(["0", "4", "8", "12"].contains(&r["outcome"].as_str().unwrap()));
                    for p in r["purposeOfEvent"].as_array().unwrap() {
                        p["coding"].as_array().unwrap().iter().for_each(coding);
                    }
                }
                let entities = r["entity"].as_array().unwrap();
                assert!(
                    entities.iter().any(|e| e["what"]["identifier"]["value"]
                        .as_str()
                        .is_some_and(|v| v.starts_with("did:key:"))),
                    "the patient entity"
                );
                for e in entities {
                    for l in e["securityLabel"].as_array().into_iter().flatten() {
                        coding(l);
                    }
                }
            }
            other => panic!("unexpected resource {other}"),
        }
    }
}
