//! Snapshot tests (insta) of the human output and of the FHIR JSON, from fixed node answers.
//! Review changes with `cargo insta review`, or accept them with `INSTA_UPDATE=always`.

use serde_json::{Value, json};
use twinledger_core::devkit::dev_key;

fn did(label: &str) -> String {
    dev_key(label).public().to_did()
}

fn consents() -> Value {
    json!({
        "patient": did("snap/alice"),
        "grants": [
            {"id": "a1".repeat(32), "leaf": 0, "status": "active", "height": 1, "revoked_at": null,
             "granted_by": "Patient",
             "grant": {"patient": did("snap/alice"), "grantee": {"actor": did("snap/dr-house")},
                       "scope": {"categories": ["vital-signs", "activity"], "purposes": ["TREAT", "HRESCH"], "actions": ["access"]},
                       "valid_from": 1_767_225_600_000u64, "valid_until": null}},
            {"id": "b2".repeat(32), "leaf": 3, "status": "revoked", "height": 2, "revoked_at": 4,
             "granted_by": "Patient",
             "grant": {"patient": did("snap/alice"), "grantee": {"role": {"role": "researcher", "organisation": did("snap/institute")}},
                       "scope": {"categories": ["GDIS"], "purposes": ["HRESCH"], "actions": ["access", "use"]},
                       "valid_from": 0, "valid_until": 1_798_761_600_000u64}}
        ],
        "delegations": [],
        "next_from": 4
    })
}

fn accesses() -> Vec<Value> {
    vec![
        json!({"id": "c3".repeat(32), "leaf": 1, "height": 2, "time": 1_767_225_601_000u64,
               "actor": did("snap/dr-house"), "organisation": did("snap/hospital"), "kind": "access",
               "category": "vital-signs", "purpose": "TREAT", "action": "access",
               "outcome": {"access": {"permit": {"grant": "a1".repeat(32)}}}, "break_glass_review": null}),
        json!({"id": "d4".repeat(32), "leaf": 2, "height": 2, "time": 1_767_225_601_000u64,
               "actor": did("snap/dr-house"), "organisation": did("snap/hospital"), "kind": "access",
               "category": "GDIS", "purpose": "TREAT", "action": "access",
               "outcome": {"access": {"deny": {"reason": "no_covering_grant"}}}, "break_glass_review": null}),
        json!({"id": "e5".repeat(32), "leaf": 5, "height": 3, "time": 1_767_225_602_500u64,
               "actor": did("snap/dr-house"), "organisation": did("snap/hospital"), "kind": "break_glass",
               "category": "imaging", "purpose": "ETREAT", "action": "access",
               "outcome": {"access": "break_glass"},
               "break_glass_review": {"reviewer": did("snap/officer"), "finding": "justified", "event": "f6".repeat(32)}}),
    ]
}

#[test]
fn consent_list_table() {
    insta::assert_snapshot!(crate::consent::consent_table(&consents()));
}

#[test]
fn access_report_table_and_csv() {
    let rows = crate::access::rows(&accesses());
    insta::assert_snapshot!("access_report_table", crate::access::table(&rows));
    insta::assert_snapshot!("access_report_csv", crate::access::csv(&rows));
    let names = [(did("snap/hospital"), "St. Example Hospital".to_string())].into();
    insta::assert_snapshot!(
        "access_report_table_named",
        crate::access::table_named(&rows, &names)
    );
}

#[test]
fn fhir_resources() {
    let patient = did("snap/alice");
    let mut ledger = crate::fhir::ledger::Ledger {
        chain_id: "0f".repeat(32),
        ..Default::default()
    };
    ledger.time_of.insert("a1".repeat(32), 1_767_225_600_000);
    ledger.time_of.insert("b2".repeat(32), 1_767_225_600_000);
    ledger.time_of.insert("f6".repeat(32), 1_767_225_900_000);
    ledger
        .revoked_time_of
        .insert("b2".repeat(32), 1_767_225_603_000);
    for id in ["c3", "d4", "e5"] {
        ledger.resource_of.insert(id.repeat(32), "9a".repeat(32));
    }
    for r5 in [false, true] {
        let bundle = crate::fhir::bundle(
            &consents(),
            &accesses(),
            &patient,
            &ledger,
            1_767_312_000_000,
            r5,
        );
        let name = if r5 { "fhir_r5" } else { "fhir_r4" };
        insta::assert_json_snapshot!(name, bundle);
    }
}
