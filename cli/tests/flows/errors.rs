//! Refusals: bad input names the problem (exit 2) and nothing is sent; an unreachable node
//! is exit 5; another patient's consents are exit 4.

use crate::common::node::TestNode;
use crate::common::{err, run, run_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_exit_2_an_unreachable_node_exit_5_and_another_patients_consents_exit_4() {
    let n = TestNode::start().await;
    // A patient the chain knows (it has signed a grant), with a physician it consented to.
    n.heart_not_genome().await;
    // Bad input: names the problem, exit 2; an unreachable node: exit 5; someone else's
    // consents: exit 4.
    let o = run_exit(
        &n.url,
        &[
            "consent",
            "grant",
            "--key",
            &n.patient_file,
            "--to",
            &n.phys_did,
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
        &["consent", "list", "--key", &n.patient_file],
    )
    .await;
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    run_exit(
        &n.url,
        &[
            "consent",
            "list",
            "--key",
            &n.phys_file,
            "--patient",
            &n.did,
        ],
        4,
    )
    .await;

    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_argument_is_named_exit_2_and_nothing_is_sent() {
    let n = TestNode::start().await;
    // A patient the chain knows (it has signed a grant), with a physician it consented to.
    n.heart_not_genome().await;
    // Every bad argument is named, exit 2, nothing sent.
    let never = n.path("never.json");
    let never = never.to_str().unwrap();
    for (args, want) in [
        (
            vec![
                "consent",
                "grant",
                "--key",
                &n.patient_file,
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
                &n.patient_file,
                "--to",
                &n.phys_did,
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
                &n.patient_file,
                "--to",
                &n.phys_did,
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
            vec!["consent", "revoke", "--key", &n.patient_file, "not-an-id"],
            "is not hex",
        ),
        (
            vec![
                "access",
                "request",
                "--key",
                &n.phys_file,
                "--patient",
                &n.did,
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
                &n.hospital_file,
                "--actor",
                &n.phys_did,
                "--role",
                "wizard",
            ],
            "unknown Role code",
        ),
    ] {
        let o = run(&n.url, &args).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(want), "{args:?}: {}", err(&o));
    }
    assert!(!std::path::Path::new(never).exists());

    n.stop().await;
}
