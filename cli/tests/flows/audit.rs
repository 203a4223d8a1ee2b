//! Auditors: the chain exported and verified offline, the compliance officer's lists from it,
//! evidence bundles, checkpoints and their consistency, witnesses.

use crate::common::node::{TestNode, flipped_copy, id_of};
use crate::common::{err, run, run_exit, run_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_exports_the_chain_and_verifies_it_offline_and_a_changed_byte_fails() {
    let n = TestNode::start().await;
    n.story().await;
    // Auditors: export the chain and verify it offline, batch and strict; a changed byte fails.
    let chain_file = n.export_chain().await;
    for strict in [false, true] {
        let mut args = vec![
            "--json",
            "audit",
            "verify",
            chain_file.to_str().unwrap(),
            "--genesis",
            &n.genesis,
        ];
        if strict {
            args.push("--strict");
        }
        let o = run(&n.url, &args).await;
        assert!(o.status.success(), "{}", err(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["summary"]["break_glass"], 1, "{v}");
        assert!(v["summary"]["denied"].as_u64().unwrap() >= 2, "{v}");
    }
    let bad_chain = flipped_copy(&chain_file, "bad.twl");
    let o = run_exit(
        &n.url,
        &[
            "audit",
            "verify",
            bad_chain.to_str().unwrap(),
            "--genesis",
            &n.genesis,
        ],
        6,
    )
    .await;
    assert!(err(&o).contains("does not verify"), "{}", err(&o));
    let o = run(
        &n.url,
        &[
            "audit",
            "export",
            "--key",
            &n.patient_file,
            "--out",
            n.path("nope.twl").to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(4),
        "patients cannot export the chain: {}",
        err(&o)
    );

    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compliance_lists_come_from_the_verified_export_and_a_changed_one_is_not_analysed() {
    let n = TestNode::start().await;
    let story = n.story().await;
    let chain_file = n.export_chain().await;
    let bad_chain = flipped_copy(&chain_file, "bad.twl");
    // The compliance officer's lists from the verified export.
    let cf = chain_file.to_str().unwrap();
    let o = run_ok(
        &n.url,
        &[
            "--json",
            "audit",
            "break-glass",
            cf,
            "--genesis",
            &n.genesis,
        ],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["break_glass"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["break_glass"][0]["review"]["finding"], "justified", "{v}");
    let o = run(
        &n.url,
        &[
            "--json",
            "audit",
            "break-glass",
            cf,
            "--genesis",
            &n.genesis,
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
        &n.url,
        &["--json", "audit", "denied", cf, "--genesis", &n.genesis],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["denied"].as_array().unwrap().len() >= 2, "{v}");
    // The physician tried again minutes after the revoke: flagged, with both events named.
    let o = run_ok(
        &n.url,
        &["--json", "audit", "anomalies", cf, "--genesis", &n.genesis],
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
    let flagged = |id: &str| {
        after
            .iter()
            .any(|f| f["events"].as_array().unwrap().iter().any(|e| e == id))
    };
    assert!(
        flagged(&id_of(&story.again)),
        "the vitals request the revoked grant covered is flagged: {v}"
    );
    // The imaging permit minutes after the revoke was under the guardian's valid grant, which
    // the revoked (vital-signs) grant never covered: not flagged.
    assert!(
        !flagged(&id_of(&n.path("imaging.json"))),
        "a permit under another valid grant is not flagged: {v}"
    );
    let o = run(
        &n.url,
        &[
            "audit",
            "anomalies",
            bad_chain.to_str().unwrap(),
            "--genesis",
            &n.genesis,
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(6),
        "an export that does not verify is not analysed: {}",
        err(&o)
    );

    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evidence_bundle_verifies_offline_and_checkpoints_prove_the_log_only_grows() {
    let n = TestNode::start().await;
    let heart = n.heart_not_genome().await.heart;
    // Evidence bundle for the first permitted access; checkpoints and their consistency.
    let first_access = id_of(&heart);
    let bundle = n.path("bundle.evidence.json");
    run_ok(
        &n.url,
        &[
            "audit",
            "prove",
            "--key",
            &n.auditor_file,
            &first_access,
            "--out",
            bundle.to_str().unwrap(),
        ],
    )
    .await;
    run_exit(
        &n.url,
        &[
            "audit",
            "verify-bundle",
            bundle.to_str().unwrap(),
            "--genesis",
            &n.genesis,
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
    let bad_bundle = n.path("bad.evidence.json");
    std::fs::write(&bad_bundle, text.replace(sig, &forged)).unwrap();
    run_exit(
        &n.url,
        &[
            "audit",
            "verify-bundle",
            bad_bundle.to_str().unwrap(),
            "--genesis",
            &n.genesis,
        ],
        6,
    )
    .await;
    let cp_old = n.path("old.checkpoint");
    run_ok(
        &n.url,
        &["audit", "checkpoint", "--out", cp_old.to_str().unwrap()],
    )
    .await;
    // One more access (permitted under the live grant) between the two checkpoints.
    let o = n
        .request("vital-signs", "TREAT", "twin://alice/vitals", "more.json")
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let cp_new = n.path("new.checkpoint");
    run_ok(
        &n.url,
        &["audit", "checkpoint", "--out", cp_new.to_str().unwrap()],
    )
    .await;
    let consistency = |old: &std::path::Path, new: &std::path::Path, code: i32| {
        let args = [
            "audit".to_string(),
            "consistency".into(),
            "--old".into(),
            old.to_str().unwrap().into(),
            "--new".into(),
            new.to_str().unwrap().into(),
            "--genesis".into(),
            n.genesis.clone(),
        ];
        let url = n.url.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_exit(&url, &args, code).await
        }
    };
    consistency(&cp_old, &cp_new, 0).await;
    // Swapped: the newer log is not a prefix of the older one.
    consistency(&cp_new, &cp_old, 6).await;

    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_cosigns_what_it_accepted_and_a_clinician_cannot_cosign() {
    let n = TestNode::start().await;
    n.heart_not_genome().await;
    // The witness cosigns what it accepted; the node shows who witnessed the height. Only a
    // live auditor's cosignature of a checkpoint the node has is recorded.
    let wdir = n.path("witness");
    run_ok(
        &n.url,
        &[
            "audit",
            "witness",
            "--state",
            wdir.to_str().unwrap(),
            "--genesis",
            &n.genesis,
            "--cosign-key",
            &n.auditor_file,
        ],
    )
    .await;
    let cp: serde_json::Value = reqwest::get(format!("{}/v1/checkpoint", n.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        cp["witnessed_by"][0]["auditor"],
        n.auditor.public().to_did(),
        "{cp}"
    );
    let o = run(
        &n.url,
        &[
            "audit",
            "witness",
            "--state",
            n.path("w2").to_str().unwrap(),
            "--genesis",
            &n.genesis,
            "--cosign-key",
            &n.phys_file,
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(4),
        "a clinician cannot cosign: {}",
        err(&o)
    );

    n.stop().await;
}
