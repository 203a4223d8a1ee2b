//! twinctl against a real node (in-process, 127.0.0.1:0): the heart-not-genome scenario,
//! revoke then deny, receipts that verify offline and fail after any change.

use std::path::Path;

use twinledger_core::devkit::dev_key;
use twinledger_core::{Keypair, Role};
use twinledger_genesis::ActorEntry;

mod common;

use common::{err, run, run_exit, run_ok, twinctl, write_key};

fn key_file(dir: &Path, name: &str) -> (String, Keypair) {
    let key = twinledger_cli::keystore::generate().unwrap();
    (write_key(dir, name, &key), key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_clinician_flows_against_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let (patient_file, patient) = key_file(dir.path(), "patient");
    let (phys_file, physician) = key_file(dir.path(), "physician");
    let hospital = dev_key("cli-test/hospital");
    let validator = dev_key("cli-test/validator");
    let mut g = twinledger_node::dev::solo_genesis(
        "cli-test",
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
    let auditor = dev_key("cli-test/auditor");
    g.add_auditor("Regulator", auditor.public()).unwrap();
    let genesis_path = dir.path().join("genesis.json");
    g.save(&genesis_path).unwrap();
    let store = twinledger_node::open_store(&dir.path().join("data")).unwrap();
    let chain = twinledger_node::open_chain(&g, store, validator.clone(), false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(twinledger_node::run(
        listener,
        chain,
        validator,
        async move {
            let _ = stopped.await;
        },
    ));
    let did = patient.public().to_did();
    let phys_did = physician.public().to_did();
    let genesis = genesis_path.to_str().unwrap();

    // Heart, not genome: one command.
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
            "vital-signs,activity",
            "--purpose",
            "TREAT,HRESCH",
        ],
    )
    .await;
    let grant: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let grant_id = grant["id"].as_str().unwrap().to_string();

    let heart = dir.path().join("heart.json");
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
            "vital-signs",
            "--purpose",
            "TREAT",
            "--resource",
            "twin://alice/vitals",
            "--receipt-out",
            heart.to_str().unwrap(),
        ],
        0,
    )
    .await;
    let genome = dir.path().join("genome.json");
    let o = run(
        &node,
        &[
            "access",
            "request",
            "--key",
            &phys_file,
            "--patient",
            &did,
            "--category",
            "GDIS",
            "--purpose",
            "TREAT",
            "--resource",
            "twin://alice/genome",
            "--receipt-out",
            genome.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(4), "genome denied: {}", err(&o));

    // Receipts verify offline; a permit is a permit, a deny is not.
    let o = run_exit(
        &node,
        &[
            "receipt",
            "verify",
            heart.to_str().unwrap(),
            "--genesis",
            genesis,
            "--require-permit",
        ],
        0,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&grant_id),
        "{}",
        err(&o)
    );
    run_exit(
        &node,
        &[
            "receipt",
            "verify",
            genome.to_str().unwrap(),
            "--genesis",
            genesis,
            "--require-permit",
        ],
        4,
    )
    .await;
    // Any change to the receipt: refused.
    let text = std::fs::read_to_string(&heart).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let root = v["receipt"]["header"]["log_root"].as_str().unwrap();
    let flipped = format!(
        "{}{}",
        if &root[..1] == "0" { "1" } else { "0" },
        &root[1..]
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, text.replace(root, &flipped)).unwrap();
    run_exit(
        &node,
        &[
            "receipt",
            "verify",
            bad.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
        6,
    )
    .await;

    // Revoke: denied from the next block on; the list shows it revoked.
    run_ok(
        &node,
        &["consent", "revoke", "--key", &patient_file, &grant_id],
    )
    .await;
    // Consent at t and absence (PROTOCOL.md §11.4): the patient's history, saved now, ends
    // before the next request.
    let early_history = dir.path().join("history-early.json");
    run_ok(
        &node,
        &[
            "audit",
            "history",
            "--key",
            &patient_file,
            "--out",
            early_history.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
    )
    .await;
    let again = dir.path().join("again.json");
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
            "vital-signs",
            "--purpose",
            "TREAT",
            "--resource",
            "twin://alice/vitals",
            "--receipt-out",
            again.to_str().unwrap(),
        ],
        4,
    )
    .await;
    // With the history saved after it: the permit was under a live grant, the deny after the
    // revoke names the revoke; a history that ends before the request is refused (exit 6).
    let history = dir.path().join("history.json");
    run_ok(
        &node,
        &[
            "audit",
            "history",
            "--key",
            &patient_file,
            "--out",
            history.to_str().unwrap(),
        ],
    )
    .await;
    let check = async |receipt: &Path, hist: &Path| {
        run(
            &node,
            &[
                "receipt",
                "verify",
                receipt.to_str().unwrap(),
                "--genesis",
                genesis,
                "--history",
                hist.to_str().unwrap(),
            ],
        )
        .await
    };
    let o = check(&heart, &history).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains(&format!("grant {grant_id}")), "{out}");
    assert!(out.contains("was live at the request"), "{out}");
    let o = check(&again, &history).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("revoked at block"), "{out}");
    let o = check(&genome, &history).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("category not granted"),
        "{}",
        err(&o)
    );
    let o = check(&again, &early_history).await;
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    assert!(
        err(&o).contains("not in the patient's history"),
        "{}",
        err(&o)
    );
    // The bundle can carry the history (version 3): verify-bundle re-derives offline; a
    // history swapped for one that ends before the request is refused.
    let again_id =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&again).unwrap())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    let b3 = dir.path().join("again.evidence.json");
    run_ok(
        &node,
        &[
            "audit",
            "prove",
            "--key",
            &patient_file,
            &again_id,
            "--with-history",
            "--out",
            b3.to_str().unwrap(),
        ],
    )
    .await;
    let verify_bundle = async |b: &Path| {
        run(
            &node,
            &[
                "audit",
                "verify-bundle",
                b.to_str().unwrap(),
                "--genesis",
                genesis,
            ],
        )
        .await
    };
    let o = verify_bundle(&b3).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("revoked at block"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mut swapped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&b3).unwrap()).unwrap();
    assert_eq!(swapped["version"], 3);
    swapped["history"] =
        serde_json::from_str(&std::fs::read_to_string(&early_history).unwrap()).unwrap();
    let b3_bad = dir.path().join("again.swapped.json");
    std::fs::write(&b3_bad, swapped.to_string()).unwrap();
    let o = verify_bundle(&b3_bad).await;
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    assert!(
        err(&o).contains("not in the patient's history"),
        "{}",
        err(&o)
    );
    let o = run_ok(
        &node,
        &["--json", "consent", "list", "--key", &patient_file],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["grants"][0]["status"], "revoked", "{v}");

    // Bad input: names the problem, exit 2; an unreachable node: exit 5; someone else's
    // consents: exit 4.
    let o = run_exit(
        &node,
        &[
            "consent",
            "grant",
            "--key",
            &patient_file,
            "--to",
            &phys_did,
            "--category",
            "heart",
            "--purpose",
            "TREAT",
        ],
        2,
    )
    .await;
    assert!(
        err(&o).contains("unknown DataCategory code \"heart\""),
        "{}",
        err(&o)
    );
    let o = run(
        "http://127.0.0.1:9",
        &["consent", "list", "--key", &patient_file],
    )
    .await;
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    run_exit(
        &node,
        &["consent", "list", "--key", &phys_file, "--patient", &did],
        4,
    )
    .await;

    // Delegation: a guardian grants within scope, is refused outside it.
    let (guardian_file, guardian) = key_file(dir.path(), "guardian");
    run_ok(
        &node,
        &[
            "--json",
            "delegate",
            "grant",
            "--key",
            &patient_file,
            "--to",
            &guardian.public().to_did(),
            "--category",
            "imaging",
            "--purpose",
            "TREAT",
        ],
    )
    .await;
    run_ok(
        &node,
        &[
            "consent",
            "grant",
            "--key",
            &guardian_file,
            "--patient",
            &did,
            "--to",
            &phys_did,
            "--category",
            "imaging",
            "--purpose",
            "TREAT",
        ],
    )
    .await;
    let o = run_exit(
        &node,
        &[
            "consent",
            "grant",
            "--key",
            &guardian_file,
            "--patient",
            &did,
            "--to",
            &phys_did,
            "--category",
            "GDIS",
            "--purpose",
            "TREAT",
        ],
        2,
    )
    .await;
    assert!(err(&o).contains("outside_delegation"), "{}", err(&o));
    let imaging = dir.path().join("imaging.json");
    let o = run(
        &node,
        &[
            "access",
            "request",
            "--key",
            &phys_file,
            "--patient",
            &did,
            "--category",
            "imaging",
            "--purpose",
            "TREAT",
            "--resource",
            "twin://alice/mri",
            "--receipt-out",
            imaging.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "delegate's grant permits: {}",
        err(&o)
    );

    // Break-glass: permitted, flagged, queued until the privacy officer signs it off.
    let (officer_file, officer) = key_file(dir.path(), "officer");
    let hospital_file = write_key(dir.path(), "hospital", &hospital);
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
    let o = run_exit(
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
        0,
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"]["access"], "break_glass", "{v}");
    let bg_id = v["id"].as_str().unwrap().to_string();
    assert!(
        !std::fs::read_to_string(&bg).unwrap().contains("stroke"),
        "the reason stays off the ledger"
    );
    let o = run_ok(
        &node,
        &["--json", "review", "list", "--key", &hospital_file],
    )
    .await;
    assert!(String::from_utf8_lossy(&o.stdout).contains(&bg_id));
    let o = run(
        &node,
        &[
            "review",
            "sign-off",
            "--key",
            &phys_file,
            &bg_id,
            "--finding",
            "justified",
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(2),
        "the requester cannot review: {}",
        err(&o)
    );
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
    let o = run(
        &node,
        &["--json", "review", "list", "--key", &hospital_file],
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&bg_id),
        "queue emptied"
    );

    // The patient's access report: who, what, when, why, under which consent, break-glass
    // flagged with its review.
    let o = run_ok(
        &node,
        &[
            "access",
            "report",
            "--key",
            &patient_file,
            "--format",
            "json",
        ],
    )
    .await;
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(rows[0]["decision"], "permit");
    assert_eq!(rows[0]["consent"], grant_id.as_str());
    assert_eq!(rows[0]["recipient"], phys_did.as_str());
    assert_eq!(rows[0]["purpose"], "TREAT");
    assert!(rows[1]["decision"].as_str().unwrap().starts_with("deny"));
    assert_eq!(rows[4]["decision"], "break-glass");
    assert_eq!(rows[4]["review"], "justified");
    let o = run(
        &node,
        &[
            "access",
            "report",
            "--key",
            &patient_file,
            "--format",
            "csv",
        ],
    )
    .await;
    let csv = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        csv.starts_with(
            "date,recipient,organisation,category,action,purpose,decision,consent,review,event\n"
        ),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 6);
    let o = run(
        &node,
        &[
            "access",
            "report",
            "--key",
            &patient_file,
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
    // Verified against the genesis (issue #11): the report is built from the patient's
    // certified history, every event proven complete against the tip's state hash; it is the
    // same report.
    let o = run_ok(
        &node,
        &[
            "access",
            "report",
            "--key",
            &patient_file,
            "--format",
            "json",
            "--verify",
            "--genesis",
            genesis,
        ],
    )
    .await;
    let verified: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(&verified, &serde_json::Value::Array(rows.clone()));
    let o = run_ok(
        &node,
        &[
            "access",
            "report",
            "--key",
            &patient_file,
            "--genesis",
            genesis,
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
        &node,
        &[
            "--json",
            "consent",
            "list",
            "--key",
            &patient_file,
            "--genesis",
            genesis,
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
    let bundle_path = dir.path().join("verified-bundle.json");
    run_ok(
        &node,
        &[
            "fhir",
            "export",
            "--key",
            &patient_file,
            "--out",
            bundle_path.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
    )
    .await;
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle_path).unwrap()).unwrap();
    validate_bundle(&bundle, false);
    let audit_events = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "AuditEvent")
        .count();
    assert_eq!(audit_events, 5);
    // Checked against another chain's genesis, nothing is printed or written: exit 6.
    let mut other = g.clone();
    other.chain_name = "cli-test-other".into();
    let other_path = dir.path().join("other-genesis.json");
    other.save(&other_path).unwrap();
    let other_genesis = other_path.to_str().unwrap();
    let refused_bundle = dir.path().join("refused-bundle.json");
    let refused_out = refused_bundle.to_str().unwrap();
    for args in [
        &[
            "access",
            "report",
            "--key",
            &patient_file,
            "--genesis",
            other_genesis,
        ][..],
        &[
            "consent",
            "list",
            "--key",
            &patient_file,
            "--genesis",
            other_genesis,
        ][..],
        &[
            "fhir",
            "export",
            "--key",
            &patient_file,
            "--out",
            refused_out,
            "--genesis",
            other_genesis,
        ][..],
    ] {
        let o = run(&node, args).await;
        assert_eq!(o.status.code(), Some(6), "{args:?}: {}", err(&o));
        assert!(o.stdout.is_empty(), "{args:?}: {}", err(&o));
    }
    assert!(!refused_bundle.exists());
    // --verify without --genesis is a usage error.
    run_exit(
        &node,
        &["access", "report", "--key", &patient_file, "--verify"],
        2,
    )
    .await;
    let o = run(
        &node,
        &["access", "report", "--key", &phys_file, "--patient", &did],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(4),
        "a clinician may not read the report: {}",
        err(&o)
    );

    // access watch: prints the next access as soon as it is final.
    let watch = {
        let (node, patient_file) = (node.clone(), patient_file.clone());
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
        let req = dir.path().join(format!("w{seen}.json"));
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

    // Twin anchors: a copy matches its version, a changed copy does not (exit 6).
    let v1 = dir.path().join("twin-v1.json");
    std::fs::write(&v1, b"{\"heart_rate\": [61, 63, 60]}").unwrap();
    run_ok(
        &node,
        &[
            "twin",
            "anchor",
            "--key",
            &phys_file,
            "--patient",
            &did,
            "--twin-id",
            "alice-cardio",
            "--version",
            "1",
            v1.to_str().unwrap(),
        ],
    )
    .await;
    run_exit(
        &node,
        &[
            "twin",
            "check",
            "--genesis",
            genesis,
            "--key",
            &patient_file,
            "--twin-id",
            "alice-cardio",
            "--version",
            "1",
            v1.to_str().unwrap(),
        ],
        0,
    )
    .await;
    let altered = dir.path().join("twin-v1-altered.json");
    std::fs::write(&altered, b"{\"heart_rate\": [61, 63, 99]}").unwrap();
    run_exit(
        &node,
        &[
            "twin",
            "check",
            "--genesis",
            genesis,
            "--key",
            &patient_file,
            "--twin-id",
            "alice-cardio",
            "--version",
            "1",
            altered.to_str().unwrap(),
        ],
        6,
    )
    .await;
    let o = run(
        &node,
        &[
            "twin",
            "check",
            "--genesis",
            genesis,
            "--key",
            &patient_file,
            "--twin-id",
            "alice-cardio",
            "--version",
            "2",
            v1.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "never anchored: {}", err(&o));

    // FHIR: R4 and R5 bundles with one Consent per grant and one AuditEvent per access, checked
    // against the required elements and code systems of the specification.
    for (flag, r5) in [("", false), ("--r5", true)] {
        let out = dir.path().join(format!("bundle{flag}.json"));
        let mut args = vec![
            "fhir",
            "export",
            "--key",
            &patient_file,
            "--out",
            out.to_str().unwrap(),
        ];
        if r5 {
            args.push("--r5");
        }
        let o = run(&node, &args).await;
        assert!(o.status.success(), "{}", err(&o));
        let bundle: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        validate_bundle(&bundle, r5);
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
        assert_eq!(
            kinds.iter().filter(|k| **k == "AuditEvent").count(),
            5 + seen,
            "{kinds:?}"
        );
        let text = bundle.to_string();
        assert!(text.contains("\"BTG\""), "break-glass is labelled");
        assert!(!text.contains("stroke"), "no free text from the reason");
    }

    // Every bad argument is named, exit 2, nothing sent.
    let never = dir.path().join("never.json");
    let never = never.to_str().unwrap();
    for (args, want) in [
        (
            vec![
                "consent",
                "grant",
                "--key",
                &patient_file,
                "--to",
                "did:key:zNotAKey",
                "--category",
                "imaging",
                "--purpose",
                "TREAT",
            ],
            "did:key",
        ),
        (
            vec![
                "consent",
                "grant",
                "--key",
                &patient_file,
                "--to",
                &phys_did,
                "--category",
                "imaging",
                "--purpose",
                "TREAT",
                "--until",
                "someday",
            ],
            "use 2027-01-31",
        ),
        (
            vec![
                "consent",
                "grant",
                "--key",
                &patient_file,
                "--to",
                &phys_did,
                "--category",
                "imaging",
                "--purpose",
                "TREAT",
                "--until",
                "2020-01-01",
            ],
            "invalid_window",
        ),
        (
            vec!["consent", "revoke", "--key", &patient_file, "not-an-id"],
            "malformed EventId",
        ),
        (
            vec![
                "access",
                "request",
                "--key",
                &phys_file,
                "--patient",
                &did,
                "--category",
                "imaging",
                "--purpose",
                "CURIOSITY",
                "--resource",
                "x",
                "--receipt-out",
                never,
            ],
            "unknown Purpose code",
        ),
        (
            vec![
                "org",
                "enrol-actor",
                "--key",
                &hospital_file,
                "--actor",
                &phys_did,
                "--role",
                "wizard",
            ],
            "unknown Role code",
        ),
    ] {
        let o = run(&node, &args).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(want), "{args:?}: {}", err(&o));
    }
    assert!(!std::path::Path::new(never).exists());

    // Auditors: export the chain and verify it offline, batch and strict; a changed byte fails.
    let auditor_file = write_key(dir.path(), "auditor", &auditor);
    let chain_file = dir.path().join("chain.twl");
    run_ok(
        &node,
        &[
            "audit",
            "export",
            "--key",
            &auditor_file,
            "--out",
            chain_file.to_str().unwrap(),
        ],
    )
    .await;
    for strict in [false, true] {
        let mut args = vec![
            "--json",
            "audit",
            "verify",
            chain_file.to_str().unwrap(),
            "--genesis",
            genesis,
        ];
        if strict {
            args.push("--strict");
        }
        let o = run(&node, &args).await;
        assert!(o.status.success(), "{}", err(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["summary"]["break_glass"], 1, "{v}");
        assert!(v["summary"]["denied"].as_u64().unwrap() >= 2, "{v}");
    }
    let mut bytes = std::fs::read(&chain_file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    let bad_chain = dir.path().join("bad.twl");
    std::fs::write(&bad_chain, &bytes).unwrap();
    let o = run_exit(
        &node,
        &[
            "audit",
            "verify",
            bad_chain.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
        6,
    )
    .await;
    assert!(err(&o).contains("does not verify"), "{}", err(&o));
    let o = run(
        &node,
        &[
            "audit",
            "export",
            "--key",
            &patient_file,
            "--out",
            dir.path().join("nope.twl").to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(4),
        "patients cannot export the chain: {}",
        err(&o)
    );

    // The compliance officer's lists from the verified export.
    let cf = chain_file.to_str().unwrap();
    let o = run_ok(
        &node,
        &["--json", "audit", "break-glass", cf, "--genesis", genesis],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["break_glass"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["break_glass"][0]["review"]["finding"], "justified", "{v}");
    let o = run(
        &node,
        &[
            "--json",
            "audit",
            "break-glass",
            cf,
            "--genesis",
            genesis,
            "--unreviewed",
        ],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["break_glass"].as_array().unwrap().len(),
        0,
        "reviewed: {v}"
    );
    let o = run(
        &node,
        &["--json", "audit", "denied", cf, "--genesis", genesis],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["denied"].as_array().unwrap().len() >= 2, "{v}");
    // The physician tried again minutes after the revoke: flagged, with both events named.
    let o = run_ok(
        &node,
        &["--json", "audit", "anomalies", cf, "--genesis", genesis],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let after: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "after_revoke")
        .collect();
    assert!(!after.is_empty(), "{v}");
    assert_eq!(after[0]["events"].as_array().unwrap().len(), 2);
    let o = run(
        &node,
        &[
            "audit",
            "anomalies",
            bad_chain.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(6),
        "an export that does not verify is not analysed: {}",
        err(&o)
    );

    // Evidence bundle for the first permitted access; checkpoints and their consistency.
    let first_access = rows[0]["event"].as_str().unwrap().to_string();
    let bundle = dir.path().join("bundle.evidence.json");
    run_ok(
        &node,
        &[
            "audit",
            "prove",
            "--key",
            &auditor_file,
            &first_access,
            "--out",
            bundle.to_str().unwrap(),
        ],
    )
    .await;
    run_exit(
        &node,
        &[
            "audit",
            "verify-bundle",
            bundle.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
        0,
    )
    .await;
    let text = std::fs::read_to_string(&bundle).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sig = v["receipt"]["certificate"]["signatures"][0]["signature"]
        .as_str()
        .unwrap();
    let forged = format!("{}{}", if &sig[..1] == "0" { "1" } else { "0" }, &sig[1..]);
    let bad_bundle = dir.path().join("bad.evidence.json");
    std::fs::write(&bad_bundle, text.replace(sig, &forged)).unwrap();
    run_exit(
        &node,
        &[
            "audit",
            "verify-bundle",
            bad_bundle.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
        6,
    )
    .await;
    let cp_old = dir.path().join("old.checkpoint");
    run_ok(
        &node,
        &["audit", "checkpoint", "--out", cp_old.to_str().unwrap()],
    )
    .await;
    let more = dir.path().join("more.json");
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
            "imaging",
            "--purpose",
            "TREAT",
            "--resource",
            "twin://alice/mri",
            "--receipt-out",
            more.to_str().unwrap(),
        ],
        0,
    )
    .await;
    let cp_new = dir.path().join("new.checkpoint");
    run_ok(
        &node,
        &["audit", "checkpoint", "--out", cp_new.to_str().unwrap()],
    )
    .await;
    run_exit(
        &node,
        &[
            "audit",
            "consistency",
            "--old",
            cp_old.to_str().unwrap(),
            "--new",
            cp_new.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
        0,
    )
    .await;
    // Swapped: the newer log is not a prefix of the older one.
    run_exit(
        &node,
        &[
            "audit",
            "consistency",
            "--old",
            cp_new.to_str().unwrap(),
            "--new",
            cp_old.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
        6,
    )
    .await;

    // The witness cosigns what it accepted; the node shows who witnessed the height. Only a
    // live auditor's cosignature of a checkpoint the node has is recorded.
    let wdir = dir.path().join("witness");
    run_ok(
        &node,
        &[
            "audit",
            "witness",
            "--state",
            wdir.to_str().unwrap(),
            "--genesis",
            genesis,
            "--cosign-key",
            &auditor_file,
        ],
    )
    .await;
    let cp: serde_json::Value = reqwest::get(format!("{node}/v1/checkpoint"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cp["witnessed_by"][0]["auditor"],
        auditor.public().to_did(),
        "{cp}"
    );
    let o = run(
        &node,
        &[
            "audit",
            "witness",
            "--state",
            dir.path().join("w2").to_str().unwrap(),
            "--genesis",
            genesis,
            "--cosign-key",
            &phys_file,
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(4),
        "a clinician cannot cosign: {}",
        err(&o)
    );

    // Key rotation: the new key acts for the patient, the old one is retired.
    let new_file = dir.path().join("patient-2.key");
    run_ok(
        &node,
        &[
            "key",
            "rotate",
            "--key",
            &patient_file,
            "--out",
            new_file.to_str().unwrap(),
        ],
    )
    .await;
    let o = run(
        &node,
        &[
            "--json",
            "consent",
            "list",
            "--key",
            new_file.to_str().unwrap(),
            "--patient",
            &did,
        ],
    )
    .await;
    assert!(
        o.status.success(),
        "history follows the patient: {}",
        err(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["grants"].as_array().unwrap().len() >= 2, "{v}");
    let o = run(
        &node,
        &[
            "consent",
            "grant",
            "--key",
            &patient_file,
            "--to",
            &phys_did,
            "--category",
            "laboratory",
            "--purpose",
            "TREAT",
        ],
    )
    .await;
    assert_ne!(
        o.status.code(),
        Some(0),
        "the old key is retired: {}",
        err(&o)
    );

    // Consent at t for an actor enrolled after the genesis (PROTOCOL.md §11.4): the privacy
    // officer's break-glass is denied for its role, and the history proves that role.
    let bg2 = dir.path().join("bg2.json");
    run_exit(
        &node,
        &[
            "access",
            "break-glass",
            "--key",
            &officer_file,
            "--patient",
            &did,
            "--category",
            "GDIS",
            "--resource",
            "twin://alice/genome",
            "--reason-file",
            reason.to_str().unwrap(),
            "--receipt-out",
            bg2.to_str().unwrap(),
        ],
        4,
    )
    .await;
    let history2 = dir.path().join("history-officer.json");
    run_ok(
        &node,
        &[
            "audit",
            "history",
            "--key",
            &auditor_file,
            "--patient",
            &did,
            "--out",
            history2.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
    )
    .await;
    let o = run_exit(
        &node,
        &[
            "--json",
            "receipt",
            "verify",
            bg2.to_str().unwrap(),
            "--genesis",
            genesis,
            "--history",
            history2.to_str().unwrap(),
        ],
        0,
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["consent"]["requester"]["role"], "privacy-officer", "{v}");
    assert_eq!(v["consent"]["requester_from"], "actor_record", "{v}");

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Structural validation of the FHIR output: required elements per resource (R4 or R5) and
/// codings only from standard code systems.
fn validate_bundle(b: &serde_json::Value, r5: bool) {
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
