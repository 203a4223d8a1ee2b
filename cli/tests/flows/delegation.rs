//! Delegation: a guardian grants for the patient within the delegated scope, and only there.

use crate::common::node::TestNode;
use crate::common::{err, run_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guardian_grants_within_the_delegated_scope_and_is_refused_outside_it() {
    let n = TestNode::start().await;
    // Delegation: a guardian grants within scope (imaging), is refused outside it (GDIS).
    let (guardian_file, _) = n.guardian_grants_imaging().await;
    let o = run_exit(
        &n.url,
        &[
            "consent",
            "grant",
            "--key",
            &guardian_file,
            "--patient",
            &n.did,
            "--to",
            &n.phys_did,
            "--category",
            "GDIS",
            "--purpose",
            "TREAT",
        ],
        4,
    )
    .await;
    assert!(err(&o).contains("outside_delegation"), "{}", err(&o));
    // The physician's access under the guardian's grant is permitted.
    n.imaging("imaging.json").await;
    n.stop().await;
}
