//! What `twinctl` prints, from the real binary against a node: decisions as sentences with
//! short ids, organisations by name, one JSON shape per command, RFC 3339 times with offsets,
//! and a node address given as `host:port`.

mod common;

use common::solo::{HOSPITAL, Solo};
use common::{err, run, run_exit, run_ok};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", err(o)))
}

/// The patient grants the physician vital signs for research; returns the grant id.
async fn grant(s: &Solo) -> String {
    let o = run_ok(
        &s.node,
        &[
            "--json",
            "consent",
            "grant",
            "--key",
            &s.patient_file,
            "--to",
            &s.physician,
            "--category",
            "vital-signs",
            "--purpose",
            "HRESCH",
        ],
    )
    .await;
    json(&o)["id"].as_str().unwrap().to_string()
}

fn request<'a>(s: &'a Solo, category: &'a str, purpose: &'a str, out: &'a str) -> Vec<&'a str> {
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
        purpose,
        "--resource",
        "twin://alice/x",
        "--receipt-out",
        out,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_is_a_sentence_naming_the_short_grant_category_and_purpose() {
    let s = Solo::start("out-permit").await;
    let grant = grant(&s).await;
    let out = s.path("r.json");
    let o = run_ok(&s.node, &request(&s, "vital-signs", "HRESCH", &out)).await;
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!(
            "permitted under grant {} (vital-signs, research)\n",
            &grant[..16]
        )),
        "{text}"
    );
    assert!(!text.contains('{') && !text.contains("Permit"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_report_format_json_is_the_json_output_and_the_table_names_the_organisation() {
    let s = Solo::start("out-report").await;
    grant(&s).await;
    run_ok(
        &s.node,
        &request(&s, "vital-signs", "HRESCH", &s.path("a.json")),
    )
    .await;
    run_exit(&s.node, &request(&s, "GDIS", "TREAT", &s.path("b.json")), 4).await;
    let base = ["access", "report", "--key", &s.patient_file];
    let format = run_ok(&s.node, &[&base[..], &["--format", "json"]].concat()).await;
    let flag = run_ok(&s.node, &[&["--json"][..], &base[..]].concat()).await;
    assert_eq!(json(&format), json(&flag));
    assert_eq!(json(&flag)["accesses"].as_array().unwrap().len(), 2);
    let genesis = s.genesis();
    let o = run_ok(&s.node, &[&base[..], &["--genesis", &genesis]].concat()).await;
    let table = stdout(&o);
    assert!(table.contains(HOSPITAL), "{table}");
    assert!(table.contains("denied: no consent covers GDIS"), "{table}");
    let verified_format = run_ok(
        &s.node,
        &[&base[..], &["--format", "json", "--genesis", &genesis]].concat(),
    )
    .await;
    let verified_flag = run_ok(
        &s.node,
        &[&["--json"][..], &base[..], &["--genesis", &genesis]].concat(),
    )
    .await;
    assert_eq!(json(&verified_format), json(&verified_flag));
    assert_eq!(
        json(&verified_flag)["accesses"],
        json(&flag)["accesses"],
        "verified or not, the same rows"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_name_the_organisation_and_why_access_was_denied() {
    let s = Solo::start("out-audit").await;
    run_exit(&s.node, &request(&s, "GDIS", "TREAT", &s.path("b.json")), 4).await;
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
    let o = run_ok(
        &s.node,
        &["audit", "denied", &export, "--genesis", &s.genesis()],
    )
    .await;
    let text = stdout(&o);
    assert!(
        text.contains(&format!("({HOSPITAL}): no consent covers GDIS")),
        "{text}"
    );
    // The list shows event ids whole, and the id as printed is what `audit prove` takes.
    let o = run_ok(
        &s.node,
        &[
            "--json",
            "audit",
            "denied",
            &export,
            "--genesis",
            &s.genesis(),
        ],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["denied"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert!(text.contains(&id), "the whole id is printed: {text}");
    run_ok(
        &s.node,
        &[
            "audit",
            "prove",
            &id,
            "--key",
            &s.auditor_file,
            "--out",
            &s.path("denied.evidence.json"),
        ],
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_with_offsets_and_a_node_given_as_host_port_are_accepted() {
    let s = Solo::start("out-times").await;
    grant(&s).await;
    run_ok(
        &s.node,
        &request(&s, "vital-signs", "HRESCH", &s.path("a.json")),
    )
    .await;
    let host_port = s.node.strip_prefix("http://").unwrap().to_string();
    // Far in the past with an offset: the access is after it.
    let o = run(
        &host_port,
        &[
            "--json",
            "access",
            "report",
            "--key",
            &s.patient_file,
            "--since",
            "2000-01-01T01:00:00+01:00",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(json(&o)["accesses"].as_array().unwrap().len(), 1);
    // Far in the future with a negative offset: nothing after it.
    let o = run_ok(
        &host_port,
        &[
            "--json",
            "access",
            "report",
            "--key",
            &s.patient_file,
            "--since",
            "2100-12-31T00:00:00-05:00",
        ],
    )
    .await;
    assert_eq!(json(&o)["accesses"], serde_json::json!([]));
    s.stop().await;
}
