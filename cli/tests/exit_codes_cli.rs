//! Every exit code of `twinctl`, from the real binary, as the guides list them (0 ok, 2 invalid
//! input, 3 file error, 4 denied, 5 node unreachable, 6 verification failed), each with the
//! message that says what is wrong.

mod common;

use common::solo::Solo;
use common::{err, run, run_exit, run_ok, twinctl};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A physician's access request for `category` under TREAT, receipt to `out`.
fn request<'a>(s: &'a Solo, category: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "access",
        "request",
        "--key",
        &s.phys_file,
        "--patient",
        &s.patient,
        "--category",
        category,
        "--purpose",
        "TREAT",
        "--resource",
        "twin://alice/x",
        "--receipt-out",
        out,
    ]
}

#[test]
fn exit_0_codes_lists_the_standard_code_systems() {
    let o = twinctl("http://127.0.0.1:9", &["codes"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "GDIS",
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "HRESCH",
        "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "privacy-officer",
        "http://terminology.hl7.org/CodeSystem/consentaction",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    let o = twinctl(
        "http://127.0.0.1:9",
        &["--json", "codes", "--only", "roles"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.get("categories").is_none());
    assert_eq!(v["roles"][0]["code"], "physician");
}

#[test]
fn exit_2_a_node_address_that_is_not_http_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cp");
    let o = twinctl(
        "ftp://127.0.0.1:7600",
        &["audit", "checkpoint", "--out", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = stderr(&o);
    assert!(
        e.contains("\"ftp://127.0.0.1:7600\"") && e.contains("TWINCTL_NODE"),
        "{e}"
    );
}

#[test]
fn exit_2_a_malformed_time_offset_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    let o = twinctl(
        "http://127.0.0.1:9",
        &[
            "audit",
            "anomalies",
            f.to_str().unwrap(),
            "--genesis",
            f.to_str().unwrap(),
            "--since",
            "2026-12-31T00:00:00+1:000",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        stderr(&o).contains("2026-12-31T00:00:00+1:000"),
        "{}",
        err(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_a_missing_file_is_an_io_error_naming_it() {
    let s = Solo::start("exit-3").await;
    let missing = s.path("missing.twl");
    let o = run_exit(
        &s.node,
        &["audit", "verify", &missing, "--genesis", &s.genesis()],
        3,
    )
    .await;
    assert!(
        stderr(&o).contains(&format!("cannot read {missing}")),
        "{}",
        err(&o)
    );
    let o = run_exit(
        &s.node,
        &["receipt", "verify", &missing, "--genesis", &s.genesis()],
        3,
    )
    .await;
    assert!(stderr(&o).contains(&missing), "{}", err(&o));
    s.stop().await;
}

/// `access request --receipt-out nodir/r.json`: the path is checked before anything is
/// submitted, so no access is recorded without its receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_3_a_receipt_path_in_a_missing_folder_is_refused_before_anything_is_submitted() {
    let s = Solo::start("exit-3-receipt").await;
    run_ok(
        &s.node,
        &[
            "consent",
            "grant",
            "--key",
            &s.patient_file,
            "--to",
            &s.physician,
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
        ],
    )
    .await;
    let out = s.path("nodir/r.json");
    let o = run_exit(&s.node, &request(&s, "vital-signs", &out), 3).await;
    assert!(
        stderr(&o).contains("nodir") && stderr(&o).contains("does not exist"),
        "{}",
        err(&o)
    );
    let o = run_ok(
        &s.node,
        &["--json", "access", "report", "--key", &s.patient_file],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["accesses"],
        serde_json::json!([]),
        "nothing was submitted"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_4_a_denied_access_says_what_no_consent_covers() {
    let s = Solo::start("exit-4").await;
    let out = s.path("genome.json");
    let o = run_exit(&s.node, &request(&s, "GDIS", &out), 4).await;
    assert!(
        stderr(&o).contains("denied: no consent covers GDIS"),
        "{}",
        err(&o)
    );
    assert!(
        std::path::Path::new(&out).exists(),
        "the deny's receipt is kept"
    );
    s.stop().await;
}

/// The node refuses a self-review with a rule error (422 not_permitted): a refusal of the
/// requester, exit 4 like every other refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_4_a_refused_self_review_is_denied() {
    let s = Solo::start("exit-4-review").await;
    let reason = s.path("reason.txt");
    std::fs::write(&reason, "unconscious, suspected arrhythmia").unwrap();
    let out = s.path("bg.json");
    let o = run_ok(
        &s.node,
        &[
            "--json",
            "access",
            "break-glass",
            "--key",
            &s.phys_file,
            "--patient",
            &s.patient,
            "--category",
            "vital-signs",
            "--resource",
            "twin://alice/vitals",
            "--receipt-out",
            &out,
            "--reason-file",
            &reason,
        ],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let o = run_exit(
        &s.node,
        &[
            "review",
            "sign-off",
            "--key",
            &s.phys_file,
            &id,
            "--finding",
            "justified",
        ],
        4,
    )
    .await;
    assert!(stderr(&o).contains("own break-glass"), "{}", err(&o));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_2_an_existing_output_file_or_a_request_the_node_finds_invalid() {
    let s = Solo::start("exit-2").await;
    let existing = s.path("chain.twl");
    std::fs::write(&existing, b"keep me").unwrap();
    let o = run_exit(
        &s.node,
        &[
            "audit",
            "export",
            "--key",
            &s.auditor_file,
            "--out",
            &existing,
        ],
        2,
    )
    .await;
    assert!(stderr(&o).contains("already exists"), "{}", err(&o));
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    // Every command that writes `--out` refuses an existing file, FHIR exports and
    // checkpoints included, and leaves it as it was.
    for args in [
        vec![
            "fhir",
            "export",
            "--key",
            &s.patient_file,
            "--out",
            &existing,
        ],
        vec!["audit", "checkpoint", "--out", &existing],
    ] {
        let o = run_exit(&s.node, &args, 2).await;
        assert!(
            stderr(&o).contains("already exists"),
            "{args:?}: {}",
            err(&o)
        );
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep me", "{args:?}");
    }
    // A review of a break-glass access that does not exist: the node refuses the request
    // (422 unknown_reference), not the requester.
    let o = run_exit(
        &s.node,
        &[
            "review",
            "sign-off",
            "--key",
            &s.phys_file,
            &"ab".repeat(32),
            "--finding",
            "justified",
        ],
        2,
    )
    .await;
    assert!(stderr(&o).contains("unknown_reference"), "{}", err(&o));
    s.stop().await;
}

#[test]
fn exit_5_a_node_that_is_down_is_named_with_what_to_try() {
    // A port nothing listens on: bound by the OS, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cp");
    // Without `http://`: taken as http.
    let o = twinctl(
        &format!("127.0.0.1:{port}"),
        &["audit", "checkpoint", "--out", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("cannot reach the node at http://127.0.0.1:{port}"))
            && e.contains("cargo run -p twinledger-node -- --dev")
            && e.contains("TWINCTL_NODE"),
        "{e}"
    );
    assert!(
        !e.contains("builder error") && !e.contains("error sending request"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_6_a_changed_export_does_not_verify() {
    let s = Solo::start("exit-6").await;
    run_ok(
        &s.node,
        &[
            "consent",
            "grant",
            "--key",
            &s.patient_file,
            "--to",
            &s.physician,
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
        ],
    )
    .await;
    let export = s.path("chain.twl");
    run_ok(
        &s.node,
        &[
            "audit",
            "export",
            "--key",
            &s.auditor_file,
            "--out",
            &export,
        ],
    )
    .await;
    run_ok(
        &s.node,
        &[
            "audit",
            "verify",
            &export,
            "--genesis",
            &s.genesis(),
            "--quiet",
        ],
    )
    .await;
    let mut bytes = std::fs::read(&export).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&export, bytes).unwrap();
    let o = run(
        &s.node,
        &[
            "audit",
            "verify",
            &export,
            "--genesis",
            &s.genesis(),
            "--quiet",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
    assert!(stderr(&o).contains("does not verify"), "{}", err(&o));
    s.stop().await;
}

#[test]
fn the_help_lists_exactly_the_exit_codes_of_exit_rs() {
    let o = twinctl("http://127.0.0.1:9", &["--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    // Compared with whitespace runs made one space: the help is wrapped.
    let flat = twinledger_cli::exit::one_line(&help);
    for (code, meaning) in twinledger_cli::exit::ALL {
        let want = format!("{code} {}", twinledger_cli::exit::one_line(meaning));
        assert!(flat.contains(&want), "{want:?} not in {help}");
    }
    assert!(flat.contains("6 verification failed"), "{help}");
}
