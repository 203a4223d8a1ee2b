//! Twin anchors: a copy matches its anchored version; a changed copy does not. Labels are keyed
//! with the custodian's twin salt and never go out without one (PROTOCOL.md §5.6).

use crate::common::node::TestNode;
use crate::common::{err, run, run_exit, run_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_copy_matches_its_anchored_version_and_a_changed_copy_does_not() {
    let n = TestNode::start().await;
    // The patient is known to the chain once it has signed an event (its first grant); until
    // then no key may read its records, twins included.
    n.heart_not_genome().await;
    // Twin anchors: a copy matches its version, a changed copy does not (exit 6).
    let v1 = n.path("twin-v1.json");
    std::fs::write(&v1, b"{\"heart_rate\": [61, 63, 60]}").unwrap();
    let hospital = n.hospital.public().to_string();
    let salt = n.path("twin-salt.json");
    let salt_s = salt.to_str().unwrap().to_string();
    run_ok(&n.url, &["twin", "salt", "new", "--out", &salt_s]).await;
    // A second salt is never written over the first (their twins' ids depend on it).
    let before = std::fs::read(&salt).unwrap();
    run_exit(&n.url, &["twin", "salt", "new", "--out", &salt_s], 3).await;
    assert_eq!(std::fs::read(&salt).unwrap(), before);
    let anchor = |salt: Option<&str>| {
        let mut a = vec![
            "--json",
            "twin",
            "anchor",
            "--key",
            &n.phys_file,
            "--patient",
            &n.did,
            "--organisation",
            &hospital,
            "--twin-id",
            "alice-cardio",
            "--version",
            "1",
            v1.to_str().unwrap(),
        ];
        if let Some(s) = salt {
            a.extend(["--twin-salt", s]);
        }
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    // A label without a salt is refused (exit 2), naming the flag, and nothing is anchored.
    let args = anchor(None);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run_exit(&n.url, &args, 2).await;
    assert!(err(&o).contains("--twin-salt"), "{}", err(&o));
    let args = anchor(Some(&salt_s));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run_ok(&n.url, &args).await;
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let twin = out["twin"].as_str().unwrap().to_string();
    // Neither the label nor its unkeyed hash is what the ledger records.
    assert_ne!(out["local"], out["twin"]);
    assert!(!err(&o).contains("alice-cardio"), "{}", err(&o));
    run_exit(
        &n.url,
        &[
            "twin",
            "check",
            "--genesis",
            &n.genesis,
            "--key",
            &n.patient_file,
            "--twin-id",
            &twin,
            "--version",
            "1",
            v1.to_str().unwrap(),
        ],
        0,
    )
    .await;
    let altered = n.path("twin-v1-altered.json");
    std::fs::write(&altered, b"{\"heart_rate\": [61, 63, 99]}").unwrap();
    run_exit(
        &n.url,
        &[
            "twin",
            "check",
            "--genesis",
            &n.genesis,
            "--key",
            &n.patient_file,
            "--twin-id",
            &twin,
            "--version",
            "1",
            altered.to_str().unwrap(),
        ],
        6,
    )
    .await;
    let o = run(
        &n.url,
        &[
            "twin",
            "check",
            "--genesis",
            &n.genesis,
            "--key",
            &n.patient_file,
            "--twin-id",
            &twin,
            "--version",
            "2",
            v1.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "never anchored: {}", err(&o));
    // The hospital checks by label, with its salt and organisation: the same twin.
    run_exit(
        &n.url,
        &[
            "twin",
            "check",
            "--genesis",
            &n.genesis,
            "--key",
            &n.phys_file,
            "--organisation",
            &hospital,
            "--twin-salt",
            &salt_s,
            "--twin-id",
            "alice-cardio",
            "--version",
            "1",
            v1.to_str().unwrap(),
        ],
        0,
    )
    .await;

    n.stop().await;
}
