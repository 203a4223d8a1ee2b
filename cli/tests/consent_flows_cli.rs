//! `twinctl` consent, delegation, review and rotation flows against a real node (in-process,
//! 127.0.0.1:0), run the way the patient and hospital guides say: ids pasted back as the tables
//! show them, a rotated key used alone, grants of a revoked delegation shown as ended, the
//! privacy officer's review queue, a revoked physician's attempt on the record.

use std::sync::Arc;

use serde_json::Value;
use twinledger_core::devkit::dev_key;
use twinledger_core::{Keypair, Role};
use twinledger_genesis::ActorEntry;

mod common;

use common::{err, run, run_exit, run_ok, write_key};

/// A node with a hospital (a physician, a nurse, a privacy officer), a clinic (a privacy
/// officer) and an auditor; every key in a key file under `dir`.
struct Fixture {
    dir: tempfile::TempDir,
    node: String,
    chain: Arc<twinledger_node::chain::Chain>,
    served: common::serve::Served,
}

impl Fixture {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hospital = dev_key("flows/hospital");
        let clinic = dev_key("flows/clinic");
        let validator = dev_key("flows/validator");
        let mut g = twinledger_node::dev::solo_genesis(
            "flows",
            1_767_225_600_000,
            "Hospital",
            &hospital,
            &validator,
        )
        .unwrap();
        g.limits.block_interval_ms = 50;
        g.add_org("Clinic", clinic.public()).unwrap();
        for (label, org, role) in [
            ("physician", &hospital, Role::Physician),
            ("nurse", &hospital, Role::Nurse),
            ("officer", &hospital, Role::PrivacyOfficer),
            ("clinic-officer", &clinic, Role::PrivacyOfficer),
        ] {
            g.add_actor(ActorEntry {
                key: dev_key(&format!("flows/{label}")).public(),
                organisation: org.public(),
                role,
            })
            .unwrap();
        }
        g.add_auditor("Regulator", dev_key("flows/auditor").public())
            .unwrap();
        for label in [
            "hospital",
            "clinic",
            "physician",
            "nurse",
            "officer",
            "clinic-officer",
            "auditor",
        ] {
            write_key(dir.path(), label, &dev_key(&format!("flows/{label}")));
        }
        let served = common::serve::serve(dir.path(), &g, &validator).await;
        let node = served.url.clone();
        let chain = served.chain.clone();
        Self {
            dir,
            node,
            chain,
            served,
        }
    }

    /// The key file of a fixture party.
    fn key(&self, label: &str) -> String {
        self.dir
            .path()
            .join(format!("{label}.key"))
            .to_str()
            .unwrap()
            .to_string()
    }

    /// A new patient (or other) key, written to a key file.
    fn new_key(&self, label: &str) -> (String, Keypair) {
        let key = twinledger_cli::keystore::generate().unwrap();
        (write_key(self.dir.path(), label, &key), key)
    }

    fn did(label: &str) -> String {
        dev_key(&format!("flows/{label}")).public().to_did()
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    async fn ok(&self, args: &[&str]) -> std::process::Output {
        run_ok(&self.node, args).await
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = run_ok(&self.node, &a).await;
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", err(&o)))
    }

    async fn text(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok(args).await.stdout).unwrap()
    }

    /// `consent grant` by `key` to `to` of `category` for `purpose`; the grant id.
    async fn grant(
        &self,
        key: &str,
        extra: &[&str],
        to: &str,
        category: &str,
        purpose: &str,
    ) -> String {
        let mut a = vec!["consent", "grant", "--key", key, "--to", to];
        a.extend_from_slice(&["--category", category, "--purpose", purpose]);
        a.extend_from_slice(extra);
        let v = self.json(&a).await;
        v["id"].as_str().unwrap().to_string()
    }

    /// `delegate grant` by `key` to `delegate` of vital-signs for TREAT; the delegation id.
    async fn delegate_vitals(&self, key: &str, delegate: &str) -> String {
        let v = self
            .json(&[
                "delegate",
                "grant",
                "--key",
                key,
                "--to",
                delegate,
                "--category",
                "vital-signs",
                "--purpose",
                "TREAT",
            ])
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    async fn stop(mut self) {
        self.served.stop().await;
    }
}

/// The first column of the rows of a text table whose second column is `status`.
fn ids_with_status(table: &str, status: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let id = cols.next()?;
            (cols.next()? == status).then(|| id.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_shown_by_the_tables_are_accepted_back_by_revoke() {
    let f = Fixture::start().await;
    let (patient, _) = f.new_key("patient");
    let (_, guardian) = f.new_key("guardian");
    let phys = Fixture::did("physician");
    let g1 = f.grant(&patient, &[], &phys, "vital-signs", "TREAT").await;
    let g2 = f.grant(&patient, &[], &phys, "laboratory", "TREAT").await;
    f.delegate_vitals(&patient, &guardian.public().to_did())
        .await;
    let table = f.text(&["consent", "list", "--key", &patient]).await;
    let active = ids_with_status(&table, "active");
    assert_eq!(active.len(), 3, "two grants and a delegation:\n{table}");
    assert!(
        table.contains("DELEGATION"),
        "the table shows delegations:\n{table}"
    );
    for id in &active {
        assert_eq!(id.len(), 16, "ids are shown with 16 hex digits:\n{table}");
    }
    let shown_g1 = active.iter().find(|i| g1.starts_with(*i)).unwrap().clone();
    let shown_del = active
        .iter()
        .find(|i| !g1.starts_with(*i) && !g2.starts_with(*i))
        .unwrap()
        .clone();

    // The grant id as shown revokes the grant; a shorter unique prefix revokes the other.
    let v = f
        .json(&["consent", "revoke", "--key", &patient, &shown_g1])
        .await;
    assert_eq!(v["revoked"], g1.as_str());
    let v = f
        .json(&["consent", "revoke", "--key", &patient, &g2[..6]])
        .await;
    assert_eq!(v["revoked"], g2.as_str());
    // The delegation id as shown ends the delegation.
    let v = f
        .json(&["delegate", "revoke", "--key", &patient, &shown_del])
        .await;
    assert!(v["revoked"].as_str().unwrap().starts_with(&shown_del));
    let table = f.text(&["consent", "list", "--key", &patient]).await;
    assert_eq!(ids_with_status(&table, "revoked").len(), 3, "{table}");

    // A prefix that names nothing is refused with a message saying so (exit 2).
    let o = run_exit(
        &f.node,
        &["consent", "revoke", "--key", &patient, "ffffffff"],
        2,
    )
    .await;
    assert!(
        err(&o).contains("no grant id starts with ffffffff"),
        "{}",
        err(&o)
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_alone_acts_as_the_patient() {
    let f = Fixture::start().await;
    let (old, patient) = f.new_key("patient");
    let id = patient.public().to_did();
    let phys = Fixture::did("physician");
    let g1 = f.grant(&old, &[], &phys, "vital-signs", "TREAT").await;
    let new = f.path("patient-new.key");
    f.ok(&["key", "rotate", "--key", &old, "--out", &new]).await;

    // No --patient anywhere: the new key names the patient.
    let v = f.json(&["consent", "list", "--key", &new]).await;
    assert_eq!(
        v["patient"],
        id.as_str(),
        "the listing is the patient's: {v}"
    );
    assert_eq!(v["grants"][0]["id"], g1.as_str());
    // Verified against the genesis too (the certified history of the patient id).
    let genesis = f.path("genesis.json");
    let text = f
        .text(&["consent", "list", "--key", &new, "--genesis", &genesis])
        .await;
    assert!(text.contains(&g1[..16]), "{text}");
    assert!(text.contains("verified against the genesis"), "{text}");
    let v = f
        .json(&[
            "consent",
            "grant",
            "--key",
            &new,
            "--to",
            &phys,
            "--category",
            "laboratory",
            "--purpose",
            "TREAT",
        ])
        .await;
    assert_eq!(
        v["patient"],
        id.as_str(),
        "the grant names the patient id: {v}"
    );
    let receipt = f.path("r.json");
    f.ok(&[
        "access",
        "request",
        "--key",
        &f.key("physician"),
        "--patient",
        &id,
        "--category",
        "laboratory",
        "--purpose",
        "TREAT",
        "--resource",
        "twin://p/lab",
        "--receipt-out",
        &receipt,
    ])
    .await;
    let v = f.json(&["access", "report", "--key", &new]).await;
    assert_eq!(v["accesses"].as_array().unwrap().len(), 1, "{v}");
    let (_, guardian) = f.new_key("guardian");
    let id = f.delegate_vitals(&new, &guardian.public().to_did()).await;
    assert!(twinledger_cli::ids::is_whole(&id), "{id}");
    // The retired key is refused.
    let o = run(&f.node, &["consent", "list", "--key", &old]).await;
    assert!(
        !o.status.success(),
        "the retired key may not read: {}",
        err(&o)
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_of_a_revoked_delegation_are_listed_as_ended_with_the_reason() {
    let f = Fixture::start().await;
    let (patient, p) = f.new_key("patient");
    let (guardian_file, guardian) = f.new_key("guardian");
    let delegation = f
        .delegate_vitals(&patient, &guardian.public().to_did())
        .await;
    let by_guardian = f
        .grant(
            &guardian_file,
            &["--patient", &p.public().to_did()],
            &Fixture::did("nurse"),
            "vital-signs",
            "TREAT",
        )
        .await;
    let own = f
        .grant(
            &patient,
            &[],
            &Fixture::did("physician"),
            "vital-signs",
            "TREAT",
        )
        .await;
    let before = twinledger_cli::time::now_ms().unwrap();
    f.ok(&["delegate", "revoke", "--key", &patient, &delegation[..16]])
        .await;
    let after = twinledger_cli::time::now_ms().unwrap();

    let v = f.json(&["consent", "list", "--key", &patient]).await;
    let grants = v["grants"].as_array().unwrap();
    let g = grants
        .iter()
        .find(|g| g["id"] == by_guardian.as_str())
        .unwrap();
    assert_eq!(g["status"], "ended", "{g}");
    assert_eq!(g["ended"]["reason"], "delegation_revoked");
    assert_eq!(g["ended"]["delegation"], delegation.as_str());
    let at = g["ended"]["at_ms"].as_u64().unwrap();
    assert!(
        (before.saturating_sub(5_000)..=after + 5_000).contains(&at),
        "the delegation's revocation time {at} is the block's, between {before} and {after}"
    );
    let mine = grants.iter().find(|g| g["id"] == own.as_str()).unwrap();
    assert_eq!(
        mine["status"], "active",
        "the patient's own grant is untouched"
    );
    assert!(mine.get("ended").is_none());
    let d = &v["delegations"][0];
    assert_eq!(d["status"], "revoked");
    // The listing verified against the genesis (built from the certified history alone) says
    // the same: the delegation is found by the ledger's rule, the end time is the revoke's block.
    let genesis = f.path("genesis.json");
    let verified = f
        .json(&["consent", "list", "--key", &patient, "--genesis", &genesis])
        .await;
    let vg = verified["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == by_guardian.as_str())
        .unwrap();
    assert_eq!(vg["status"], "ended", "{vg}");
    assert_eq!(
        vg["ended"], g["ended"],
        "verified and served listings agree"
    );
    let vmine = verified["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == own.as_str())
        .unwrap();
    assert_eq!(vmine["status"], "active", "{vmine}");

    let table = f.text(&["consent", "list", "--key", &patient]).await;
    let row = table
        .lines()
        .find(|l| l.starts_with(&by_guardian[..16]))
        .unwrap();
    assert!(row.contains("ended"), "{table}");
    assert!(
        row.contains(&format!("ended: delegation {} revoked", &delegation[..16])),
        "the reason is shown: {table}"
    );
    // And access under it is denied, as the listing says.
    let o = run(
        &f.node,
        &[
            "access",
            "request",
            "--key",
            &f.key("nurse"),
            "--patient",
            &p.public().to_did(),
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
            "--resource",
            "twin://p/v",
            "--receipt-out",
            &f.path("r.json"),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privacy_officer_reads_its_organisations_review_queue() {
    let f = Fixture::start().await;
    let (_, p) = f.new_key("patient");
    let reason = f.path("reason.txt");
    std::fs::write(&reason, "unconscious on arrival").unwrap();
    let v = f
        .json(&[
            "access",
            "break-glass",
            "--key",
            &f.key("physician"),
            "--patient",
            &p.public().to_did(),
            "--category",
            "GDIS",
            "--resource",
            "twin://p/g",
            "--reason-file",
            &reason,
            "--receipt-out",
            &f.path("bg.json"),
        ])
        .await;
    let bg = v["id"].as_str().unwrap().to_string();

    let officer = f.key("officer");
    let v = f.json(&["review", "list", "--key", &officer]).await;
    let queue = v["unreviewed"].as_array().unwrap();
    assert_eq!(queue.len(), 1, "{v}");
    assert_eq!(queue[0]["id"], bg.as_str());
    let table = f.text(&["review", "list", "--key", &officer]).await;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("{} ", &bg[..16]))),
        "{table}"
    );
    // Another organisation's privacy officer sees none of it; a nurse may not read the queue.
    let v = f
        .json(&["review", "list", "--key", &f.key("clinic-officer")])
        .await;
    assert_eq!(v["unreviewed"].as_array().unwrap().len(), 0, "{v}");
    let o = run(&f.node, &["review", "list", "--key", &f.key("nurse")]).await;
    assert!(!o.status.success());
    assert!(
        err(&o).contains("may not read the break-glass review queue"),
        "{}",
        err(&o)
    );

    // The officer signs off with the id as the table shows it.
    f.ok(&[
        "review",
        "sign-off",
        "--key",
        &officer,
        &bg[..16],
        "--finding",
        "justified",
    ])
    .await;
    let v = f.json(&["review", "list", "--key", &officer]).await;
    assert_eq!(v["unreviewed"].as_array().unwrap().len(), 0, "{v}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_physicians_attempt_is_on_record_and_unknown_keys_are_counted() {
    let f = Fixture::start().await;
    let (patient, p) = f.new_key("patient");
    let id = p.public().to_did();
    let phys = Fixture::did("physician");
    f.grant(&patient, &[], &phys, "vital-signs", "TREAT").await;
    f.ok(&[
        "org",
        "revoke-actor",
        "--key",
        &f.key("hospital"),
        "--actor",
        &phys,
    ])
    .await;

    let receipt = f.path("revoked.json");
    let o = run(
        &f.node,
        &[
            "--json",
            "access",
            "request",
            "--key",
            &f.key("physician"),
            "--patient",
            &id,
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
            "--resource",
            "twin://p/v",
            "--receipt-out",
            &receipt,
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(4), "denied, not refused: {}", err(&o));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(
        r["outcome"]["access"]["deny"]["reason"], "actor_revoked",
        "{r}"
    );
    run_exit(
        &f.node,
        &[
            "receipt",
            "verify",
            &receipt,
            "--genesis",
            &f.path("genesis.json"),
        ],
        0,
    )
    .await;
    // The patient's report shows the attempt.
    let v = f.json(&["access", "report", "--key", &patient]).await;
    let rows = v["accesses"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");

    // A key never enrolled is refused at admission, and counted.
    let count = |chain: &twinledger_node::chain::Chain| {
        chain
            .metrics()
            .render()
            .lines()
            .find(|l| l.starts_with("twinledger_unknown_author_refusals_total "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap()
    };
    assert_eq!(count(&f.chain), 0);
    let (stranger, _) = f.new_key("stranger");
    let o = run(
        &f.node,
        &[
            "access",
            "request",
            "--key",
            &stranger,
            "--patient",
            &id,
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
            "--resource",
            "twin://p/v",
            "--receipt-out",
            &f.path("stranger.json"),
        ],
    )
    .await;
    assert!(!o.status.success());
    assert!(err(&o).contains("unknown author"), "{}", err(&o));
    assert_eq!(count(&f.chain), 1);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_grant_from_defaults_to_now() {
    let f = Fixture::start().await;
    let (patient, _) = f.new_key("patient");
    let before = twinledger_cli::time::now_ms().unwrap();
    f.grant(
        &patient,
        &[],
        &Fixture::did("physician"),
        "vital-signs",
        "TREAT",
    )
    .await;
    let after = twinledger_cli::time::now_ms().unwrap();
    let v = f.json(&["consent", "list", "--key", &patient]).await;
    let from = v["grants"][0]["grant"]["valid_from"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&from),
        "valid_from {from} is the time of the command"
    );
    // Given explicitly, it is kept.
    f.grant(
        &patient,
        &["--from", "2026-01-02"],
        &Fixture::did("nurse"),
        "vital-signs",
        "TREAT",
    )
    .await;
    let v = f.json(&["consent", "list", "--key", &patient]).await;
    let froms: Vec<u64> = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grant"]["valid_from"].as_u64().unwrap())
        .collect();
    assert!(froms.contains(&1_767_312_000_000), "{froms:?}");
    f.stop().await;
}
