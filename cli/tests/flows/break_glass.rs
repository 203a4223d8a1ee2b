//! Break-glass: permitted, flagged, queued until someone else signs it off; an actor enrolled
//! after the genesis is judged by its role, and the history proves the role.

use crate::common::node::TestNode;
use crate::common::{err, run, run_exit, run_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_permitted_flagged_and_queued_until_another_person_signs_it_off() {
    let n = TestNode::start().await;
    // Break-glass: permitted, flagged, queued until the privacy officer signs it off.
    let (officer_file, _) = n.enrol_officer().await;
    let o = n.break_glass(&n.phys_file, "bg.json", 0).await;
    let bg = n.path("bg.json");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["outcome"]["access"], "break_glass", "{v}");
    let bg_id = v["id"].as_str().unwrap().to_string();
    assert!(
        !std::fs::read_to_string(&bg).unwrap().contains("stroke"),
        "the reason stays off the ledger"
    );
    let o = run_ok(
        &n.url,
        &["--json", "review", "list", "--key", &n.hospital_file],
    )
    .await;
    assert!(String::from_utf8_lossy(&o.stdout).contains(&bg_id));
    let o = run(
        &n.url,
        &[
            "review",
            "sign-off",
            "--key",
            &n.phys_file,
            &bg_id,
            "--finding",
            "justified",
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(4),
        "the requester cannot review: {}",
        err(&o)
    );
    n.sign_off(&officer_file, &bg_id).await;
    let o = run(
        &n.url,
        &["--json", "review", "list", "--key", &n.hospital_file],
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains(&bg_id),
        "queue emptied"
    );

    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_enrolled_after_the_genesis_is_judged_by_its_role_and_the_history_proves_it() {
    let n = TestNode::start().await;
    let (officer_file, _) = n.enrol_officer().await;
    let reason = n.reason();
    // Consent at t for an actor enrolled after the genesis (PROTOCOL.md §11.4): the privacy
    // officer's break-glass is denied for its role, and the history proves that role.
    let bg2 = n.path("bg2.json");
    run_exit(
        &n.url,
        &[
            "access",
            "break-glass",
            "--key",
            &officer_file,
            "--patient",
            &n.did,
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
    let history2 = n.path("history-officer.json");
    run_ok(
        &n.url,
        &[
            "audit",
            "history",
            "--key",
            &n.auditor_file,
            "--patient",
            &n.did,
            "--out",
            history2.to_str().unwrap(),
            "--genesis",
            &n.genesis,
        ],
    )
    .await;
    let o = run_exit(
        &n.url,
        &[
            "--json",
            "receipt",
            "verify",
            bg2.to_str().unwrap(),
            "--genesis",
            &n.genesis,
            "--history",
            history2.to_str().unwrap(),
        ],
        0,
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["consent"]["requester"]["role"], "privacy-officer", "{v}");
    assert_eq!(v["consent"]["requester_from"], "actor_record", "{v}");
    n.stop().await;
}
