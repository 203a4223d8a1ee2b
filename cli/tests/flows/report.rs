//! The patient's access report (as JSON, CSV and text, and verified against the genesis) and
//! `access watch`.

use crate::common::node::TestNode;
use crate::common::{err, run, run_exit, run_ok, twinctl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_report_shows_who_what_when_why_and_under_which_consent() {
    let n = TestNode::start().await;
    let story = n.story().await;
    let grant_id = &story.consented.grant_id;
    // The patient's access report: who, what, when, why, under which consent, break-glass
    // flagged with its review.
    let report = n.report_json().await;
    let rows = report["accesses"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(rows[0]["decision"], "permit");
    assert_eq!(rows[0]["consent"], grant_id.as_str());
    assert_eq!(rows[0]["recipient"], n.phys_did.as_str());
    assert_eq!(rows[0]["purpose"], "TREAT");
    assert!(rows[1]["decision"].as_str().unwrap().starts_with("deny"));
    assert_eq!(rows[4]["decision"], "break-glass");
    assert_eq!(rows[4]["review"], "justified");
    let o = run(
        &n.url,
        &[
            "access",
            "report",
            "--key",
            &n.patient_file,
            "--format",
            "csv",
        ],
    )
    .await;
    let csv = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        csv.starts_with(
            "date,recipient,organisation,category,action,purpose,decision,consent,review,event,key_release\n"
        ),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 6);
    let o = run(
        &n.url,
        &[
            "access",
            "report",
            "--key",
            &n.patient_file,
            "--since",
            "2100-01-01",
        ],
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1,
        "only the header"
    );
    let o = run(
        &n.url,
        &[
            "access",
            "report",
            "--key",
            &n.phys_file,
            "--patient",
            &n.did,
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(4),
        "a clinician may not read the report: {}",
        err(&o)
    );

    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_verified_against_the_genesis_is_the_same_report_and_another_genesis_gets_nothing()
{
    let n = TestNode::start().await;
    let story = n.story().await;
    let grant_id = &story.consented.grant_id;
    let report = n.report_json().await;
    let rows = report["accesses"].as_array().unwrap();
    // Verified against the genesis (issue #11): the report is built from the patient's
    // certified history, every event proven complete against the tip's state hash; it is the
    // same report.
    let o = run_ok(
        &n.url,
        &[
            "access",
            "report",
            "--key",
            &n.patient_file,
            "--format",
            "json",
            "--verify",
            "--genesis",
            &n.genesis,
        ],
    )
    .await;
    let verified: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        &verified["accesses"],
        &serde_json::Value::Array(rows.clone())
    );
    let o = run_ok(
        &n.url,
        &[
            "access",
            "report",
            "--key",
            &n.patient_file,
            "--genesis",
            &n.genesis,
        ],
    )
    .await;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("verified against the genesis: "), "{text}");
    assert_eq!(
        text.lines().count(),
        7,
        "header, 5 rows, the verification: {text}"
    );
    let o = run_ok(
        &n.url,
        &[
            "--json",
            "consent",
            "list",
            "--key",
            &n.patient_file,
            "--genesis",
            &n.genesis,
        ],
    )
    .await;
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        listed["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == grant_id.as_str()),
        "{listed}"
    );
    assert!(
        listed["verified"]["height"].as_u64().unwrap() > 0,
        "{listed}"
    );
    let bundle_path = n.path("verified-bundle.json");
    run_ok(
        &n.url,
        &[
            "fhir",
            "export",
            "--key",
            &n.patient_file,
            "--out",
            bundle_path.to_str().unwrap(),
            "--genesis",
            &n.genesis,
        ],
    )
    .await;
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle_path).unwrap()).unwrap();
    // One BALP AuthZconsent AuditEvent per access decision (validity: `fhir_export.rs`).
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
    assert_eq!(decisions, 5);
    // Checked against another chain's genesis, nothing is printed or written: exit 6.
    let mut other = n.g.clone();
    other.chain_name = "cli-test-other".into();
    let other_path = n.path("other-genesis.json");
    other.save(&other_path).unwrap();
    let other_genesis = other_path.to_str().unwrap();
    let refused_bundle = n.path("refused-bundle.json");
    let refused_out = refused_bundle.to_str().unwrap();
    for args in [
        &[
            "access",
            "report",
            "--key",
            &n.patient_file,
            "--genesis",
            other_genesis,
        ][..],
        &[
            "consent",
            "list",
            "--key",
            &n.patient_file,
            "--genesis",
            other_genesis,
        ][..],
        &[
            "fhir",
            "export",
            "--key",
            &n.patient_file,
            "--out",
            refused_out,
            "--genesis",
            other_genesis,
        ][..],
    ] {
        let o = run(&n.url, args).await;
        assert_eq!(o.status.code(), Some(6), "{args:?}: {}", err(&o));
        assert!(o.stdout.is_empty(), "{args:?}: {}", err(&o));
    }
    assert!(!refused_bundle.exists());
    // --verify without --genesis is a usage error.
    run_exit(
        &n.url,
        &["access", "report", "--key", &n.patient_file, "--verify"],
        2,
    )
    .await;
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_watch_prints_the_next_access_as_soon_as_it_is_final() {
    let n = TestNode::start().await;
    n.guardian_grants_imaging().await;
    // access watch: prints the next access as soon as it is final.
    let watch = {
        let (node, patient_file) = (n.url.clone(), n.patient_file.clone());
        tokio::task::spawn_blocking(move || {
            twinctl(
                &node,
                &["access", "watch", "--key", &patient_file, "--max", "1"],
            )
        })
    };
    // Wait (deadline) until the watcher has taken its starting position, then cause an access.
    let mut seen = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let watch_out = loop {
        let req = n.path(&format!("w{seen}.json"));
        run_exit(
            &n.url,
            &[
                "access",
                "request",
                "--key",
                &n.phys_file,
                "--patient",
                &n.did,
                "--category",
                "imaging",
                "--purpose",
                "TREAT",
                "--resource",
                "twin://alice/mri",
                "--receipt-out",
                req.to_str().unwrap(),
            ],
            0,
        )
        .await;
        seen += 1;
        if watch.is_finished() {
            break watch.await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "access watch printed nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if watch.is_finished() {
            break watch.await.unwrap();
        }
    };
    assert!(watch_out.status.success(), "{}", err(&watch_out));
    assert!(
        String::from_utf8_lossy(&watch_out.stdout).contains("imaging TREAT permit"),
        "{}",
        err(&watch_out)
    );

    n.stop().await;
}
