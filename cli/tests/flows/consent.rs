//! Consent: heart, not genome; receipts that verify offline; a revoke that denies from the
//! next block on, proven by the patient's history.

use std::path::Path;

use crate::common::node::{Consented, TestNode};
use crate::common::{err, run, run_exit, run_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_receipt_verifies_offline_a_deny_is_no_permit_and_any_change_is_refused() {
    let n = TestNode::start().await;
    let Consented {
        grant_id,
        heart,
        genome,
    } = n.heart_not_genome().await;

    // Receipts verify offline; a permit is a permit, a deny is not.
    let o = run_exit(
        &n.url,
        &[
            "receipt",
            "verify",
            heart.to_str().unwrap(),
            "--genesis",
            &n.genesis,
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
        &n.url,
        &[
            "receipt",
            "verify",
            genome.to_str().unwrap(),
            "--genesis",
            &n.genesis,
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
    let bad = n.path("bad.json");
    std::fs::write(&bad, text.replace(root, &flipped)).unwrap();
    run_exit(
        &n.url,
        &[
            "receipt",
            "verify",
            bad.to_str().unwrap(),
            "--genesis",
            &n.genesis,
        ],
        6,
    )
    .await;

    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_denies_from_the_next_block_and_the_history_proves_why() {
    let n = TestNode::start().await;
    let Consented {
        grant_id,
        heart,
        genome,
    } = n.heart_not_genome().await;

    // Revoke: denied from the next block on; the list shows it revoked.
    n.revoke(&grant_id).await;
    // Consent at t and absence (PROTOCOL.md §11.4): the patient's history, saved now, ends
    // before the next request.
    let early_history = n.path("history-early.json");
    run_ok(
        &n.url,
        &[
            "audit",
            "history",
            "--key",
            &n.patient_file,
            "--out",
            early_history.to_str().unwrap(),
            "--genesis",
            &n.genesis,
        ],
    )
    .await;
    let again = n.vitals_after_revoke().await;
    // With the history saved after it: the permit was under a live grant, the deny after the
    // revoke names the revoke; a history that ends before the request is refused (exit 6).
    let history = n.path("history.json");
    run_ok(
        &n.url,
        &[
            "audit",
            "history",
            "--key",
            &n.patient_file,
            "--out",
            history.to_str().unwrap(),
        ],
    )
    .await;
    let check = async |receipt: &Path, hist: &Path| {
        run(
            &n.url,
            &[
                "receipt",
                "verify",
                receipt.to_str().unwrap(),
                "--genesis",
                &n.genesis,
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
    let b3 = n.path("again.evidence.json");
    run_ok(
        &n.url,
        &[
            "audit",
            "prove",
            "--key",
            &n.patient_file,
            &again_id,
            "--with-history",
            "--out",
            b3.to_str().unwrap(),
        ],
    )
    .await;
    let verify_bundle = async |b: &Path| {
        run(
            &n.url,
            &[
                "audit",
                "verify-bundle",
                b.to_str().unwrap(),
                "--genesis",
                &n.genesis,
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
    let b3_bad = n.path("again.swapped.json");
    std::fs::write(&b3_bad, swapped.to_string()).unwrap();
    let o = verify_bundle(&b3_bad).await;
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    assert!(
        err(&o).contains("not in the patient's history"),
        "{}",
        err(&o)
    );
    let o = run_ok(
        &n.url,
        &["--json", "consent", "list", "--key", &n.patient_file],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["grants"][0]["status"], "revoked", "{v}");

    n.stop().await;
}
