//! FHIR export: R4 and R5 bundles of the patient's consents and accesses.

use crate::common::node::TestNode;
use crate::common::{err, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_r4_and_r5_bundles_hold_one_consent_per_grant_and_one_audit_event_per_access() {
    let n = TestNode::start().await;
    // Two grants (the patient's, revoked; the guardian's) and five accesses (see `Story`).
    n.story().await;
    // FHIR: R4 and R5 bundles with one Consent per grant and one BALP AuthZconsent AuditEvent
    // per access decision (validity against HL7's definitions is `fhir_export.rs`'s).
    for (flag, r5) in [("", false), ("--r5", true)] {
        let out = n.path(&format!("bundle{flag}.json"));
        let mut args = vec![
            "fhir",
            "export",
            "--key",
            &n.patient_file,
            "--out",
            out.to_str().unwrap(),
        ];
        if r5 {
            args.push("--r5");
        }
        let o = run(&n.url, &args).await;
        assert!(o.status.success(), "{}", err(&o));
        let bundle: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let kinds: Vec<&str> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "Consent").count(),
            2,
            "{kinds:?}"
        );
        let decisions = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["resource"]["meta"]["profile"][0]
                    .as_str()
                    .is_some_and(|p| p.ends_with("IHE.BasicAudit.AuthZconsent"))
            })
            .count();
        assert_eq!(decisions, 5, "{kinds:?}");
        let text = bundle.to_string();
        assert!(text.contains("\"BTG\""), "break-glass is labelled");
        assert!(!text.contains("stroke"), "no free text from the reason");
    }

    n.stop().await;
}
