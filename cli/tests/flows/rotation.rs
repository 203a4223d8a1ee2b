//! Key rotation: the new key acts for the patient; the old one is retired.

use crate::common::node::TestNode;
use crate::common::{err, run, run_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_rotation_the_new_key_acts_for_the_patient_and_the_old_one_is_retired() {
    let n = TestNode::start().await;
    n.heart_not_genome().await;
    n.guardian_grants_imaging().await;
    // Key rotation: the new key acts for the patient, the old one is retired.
    let new_file = n.path("patient-2.key");
    run_ok(
        &n.url,
        &[
            "key",
            "rotate",
            "--key",
            &n.patient_file,
            "--out",
            new_file.to_str().unwrap(),
        ],
    )
    .await;
    let o = run(
        &n.url,
        &[
            "--json",
            "consent",
            "list",
            "--key",
            new_file.to_str().unwrap(),
            "--patient",
            &n.did,
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
        &n.url,
        &[
            "consent",
            "grant",
            "--key",
            &n.patient_file,
            "--to",
            &n.phys_did,
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

    n.stop().await;
}
