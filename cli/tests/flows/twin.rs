//! Twin anchors: a copy matches its anchored version; a changed copy does not.

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
    run_ok(
        &n.url,
        &[
            "twin",
            "anchor",
            "--key",
            &n.phys_file,
            "--patient",
            &n.did,
            "--twin-id",
            "alice-cardio",
            "--version",
            "1",
            v1.to_str().unwrap(),
        ],
    )
    .await;
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
            "alice-cardio",
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
            "alice-cardio",
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
            "alice-cardio",
            "--version",
            "2",
            v1.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "never anchored: {}", err(&o));

    n.stop().await;
}
