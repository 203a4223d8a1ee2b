//! twinctl against a node whose governance replaces the validator set (PROTOCOL.md §9.3): four
//! genesis validators V0..V3 hand over to V0 and three new keys, so the retired V1..V3 still
//! hold a quorum of the genesis set. Genuine receipts, bundles and checkpoints after the change
//! verify with the certified chain of changes; the same certified by the retired validators are
//! refused, naming why; a tampered chain of changes, a bundle or receipt file whose fields
//! disagree with the proof, and every `--expect-*` mismatch exit 6.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use twinledger_core::devkit::dev_key;
use twinledger_core::event::governance::{Governance, GovernanceAction};
use twinledger_core::{
    Checkpoint, CommitCertificate, CommitVote, Event, EventPayload, Keypair, Receipt, Role,
    Timestamp, Validator, ValidatorSet,
};
use twinledger_genesis::{ActorEntry, GenesisFile, ValidatorEntry, peer_id_from_ed25519};
use twinledger_node::chain::{Chain, NodePolicy, now};

mod common;

use common::{err, run, run_exit, run_ok};

fn key_file(dir: &Path, name: &str, key: &Keypair) -> String {
    common::write_key(dir, name, key)
}

/// Every validator of the set in force signs each block: the committee of a test node whose
/// set changes, through the node's own propose, validate and commit steps (the node checks
/// every certificate against the set in force).
struct Committee {
    chain: Arc<Chain>,
    proposer: Keypair,
    keys: Vec<Keypair>,
}

impl Committee {
    fn step(&self) {
        let Some(block) = self.chain.propose(self.proposer.public(), now(), false) else {
            return;
        };
        self.chain.validate(&block, Some(now())).unwrap();
        let set = self
            .chain
            .state()
            .validators_for(block.header.height)
            .clone();
        let vote = CommitVote {
            checkpoint: block.header.checkpoint(),
            round: 0,
        };
        let sigs = self
            .keys
            .iter()
            .filter(|k| set.get(&k.public()).is_some())
            .map(|k| vote.sign(k))
            .collect();
        self.chain
            .commit(block, CommitCertificate::new(0, sigs))
            .unwrap();
    }
}

fn hospital() -> Keypair {
    dev_key("sets-cli/hospital")
}

fn set_of(keys: &[Keypair]) -> ValidatorSet {
    ValidatorSet::new(
        keys.iter()
            .map(|k| Validator {
                key: k.public(),
                organisation: hospital().public(),
                power: 1,
            })
            .collect(),
    )
    .unwrap()
}

/// Re-certifies a checkpoint or a receipt's header with `signers` (the retired validators).
fn certify(cp: &Checkpoint, signers: &[Keypair]) -> CommitCertificate {
    let vote = CommitVote {
        checkpoint: *cp,
        round: 0,
    };
    CommitCertificate::new(0, signers.iter().map(|k| vote.sign(k)).collect())
}

fn write(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A receipt file's receipt re-certified by `signers`, optionally with its header first
/// rewritten to name `names` as its validator set.
fn forged(file: &Value, signers: &[Keypair], names: Option<&ValidatorSet>) -> Value {
    let mut r: Receipt = serde_json::from_value(file["receipt"].clone()).unwrap();
    if let Some(set) = names {
        r.header.validators_hash = set.hash();
    }
    r.certificate = certify(&r.header.checkpoint(), signers);
    let mut f = file.clone();
    f["receipt"] = serde_json::to_value(&r).unwrap();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_bundles_and_checkpoints_follow_validator_set_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vals: Vec<Keypair> = (0..4)
        .map(|i| dev_key(&format!("sets-cli/validator/{i}")))
        .collect();
    let newcomers: Vec<Keypair> = (0..3)
        .map(|i| dev_key(&format!("sets-cli/newcomer/{i}")))
        .collect();
    let patient = dev_key("sets-cli/patient");
    let physician = dev_key("sets-cli/physician");
    let auditor = dev_key("sets-cli/auditor");
    let (patient_file, phys_file, auditor_file) = (
        key_file(d, "patient", &patient),
        key_file(d, "physician", &physician),
        key_file(d, "auditor", &auditor),
    );
    let mut g = GenesisFile::new("sets-cli", 1_767_225_600_000);
    g.add_org("Hospital", hospital().public()).unwrap();
    for (i, v) in vals.iter().enumerate() {
        g.add_validator(ValidatorEntry {
            organisation: hospital().public(),
            consensus_key: v.public(),
            power: 1,
            peer_id: peer_id_from_ed25519(&v.public()),
            listen_addr: format!("/ip4/127.0.0.1/tcp/{}", 7101 + i),
        })
        .unwrap();
    }
    g.add_actor(ActorEntry {
        key: physician.public(),
        organisation: hospital().public(),
        role: Role::Physician,
    })
    .unwrap();
    g.add_auditor("Regulator", auditor.public()).unwrap();
    g.limits.block_interval_ms = 50;
    let gpath = d.join("genesis.json");
    g.save(&gpath).unwrap();
    let genesis = gpath.to_str().unwrap();
    let ledger = g.ledger_genesis().unwrap();

    let store = twinledger_node::open_store(&d.join("data")).unwrap();
    let policy = NodePolicy {
        block_interval: Duration::from_millis(50),
        mempool_size: 1000,
    };
    let chain = Arc::new(
        Chain::open(
            ledger.clone(),
            store,
            policy,
            false,
            twinledger_node::metrics::Metrics::new(),
        )
        .unwrap(),
    );
    let committee = Committee {
        chain: chain.clone(),
        proposer: vals[0].clone(),
        keys: vals.iter().chain(&newcomers).cloned().collect(),
    };
    let (stop_committee, committee_stopped) = tokio::sync::watch::channel(false);
    let committee = std::thread::spawn(move || {
        while !*committee_stopped.borrow() {
            committee.step();
            std::thread::sleep(Duration::from_millis(50));
        }
        committee.step();
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(twinledger_node::serve(
        listener,
        chain.clone(),
        twinledger_node::ApiOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let did = patient.public().to_did();
    let phys_did = physician.public().to_did();
    let http = reqwest::Client::new();

    run_ok(
        &node,
        &[
            "consent",
            "grant",
            "--key",
            &patient_file,
            "--to",
            &phys_did,
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
        ],
    )
    .await;
    let access = |out: &Path| {
        let out = out.to_str().unwrap().to_string();
        let (node, phys_file, did) = (node.clone(), phys_file.clone(), did.clone());
        async move {
            run(
                &node,
                &[
                    "access",
                    "request",
                    "--key",
                    &phys_file,
                    "--patient",
                    &did,
                    "--category",
                    "vital-signs",
                    "--purpose",
                    "TREAT",
                    "--resource",
                    "twin://alice/vitals",
                    "--receipt-out",
                    &out,
                ],
            )
            .await
        }
    };
    let before = d.join("before.json");
    let o = access(&before).await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let cp_before = d.join("before.checkpoint");
    run_ok(
        &node,
        &["audit", "checkpoint", "--out", cp_before.to_str().unwrap()],
    )
    .await;

    // Governance: V0 stays, V1..V3 retire, three newcomers join; in force two blocks later.
    let new_set = set_of(&[&vals[..1], &newcomers[..]].concat());
    let action = GovernanceAction::ValidatorSetChange {
        validators: new_set.clone(),
    };
    let mut approvals: Vec<_> = vals
        .iter()
        .map(|k| Governance::approve(&ledger.chain_id(), 0, &action, k))
        .collect();
    approvals.sort_by_key(|a| a.validator);
    let ev = Event::new(
        ledger.chain_id(),
        vals[0].public(),
        0,
        Timestamp(now().0 + 3_600_000),
        EventPayload::Governance(Governance {
            seq: 0,
            action,
            approvals,
        }),
    )
    .sign(&vals[0]);
    let r = http
        .post(format!("{node}/v1/events"))
        .json(&json!({"event": hex::encode(ev.to_bytes())}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let changed_at = loop {
        let v: Value = http
            .get(format!("{node}/v1/validator-sets"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(c) = v["validator_set_changes"]
            .as_array()
            .and_then(|a| a.first())
        {
            break c["header"]["height"].as_u64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Accesses until one is decided in a block the new set signs.
    let after = d.join("after.json");
    for i in 0.. {
        let out = d.join(format!("access-{i}.json"));
        let o = access(&out).await;
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        if read(&out)["receipt"]["header"]["height"].as_u64().unwrap() >= changed_at + 2 {
            std::fs::rename(&out, &after).unwrap();
            break;
        }
    }
    let after_v = read(&after);
    assert_eq!(
        after_v["validator_set_changes"].as_array().unwrap().len(),
        1
    );
    assert_eq!(read(&before)["validator_set_changes"], json!([]));
    let (before_s, after_s) = (before.to_str().unwrap(), after.to_str().unwrap());

    // A genuine receipt after the change verifies with its chain of changes, and covers the
    // request in front of the twin store.
    let expect_ok = [
        "--expect-patient",
        &did,
        "--expect-requester",
        &phys_did,
        "--expect-category",
        "vital-signs",
        "--expect-purpose",
        "TREAT",
        "--expect-action",
        "read",
        "--expect-twin",
        "twin://alice/vitals",
        "--max-age",
        "1h",
    ];
    for file in [before_s, after_s] {
        let mut args = vec![
            "receipt",
            "verify",
            file,
            "--genesis",
            genesis,
            "--require-permit",
        ];
        args.extend(expect_ok);
        let o = run(&node, &args).await;
        assert_eq!(o.status.code(), Some(0), "{file}: {}", err(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        for want in [
            did.as_str(),
            phys_did.as_str(),
            "access vital-signs for TREAT",
            "\"twin://alice/vitals\"",
            "checked:   time, patient, requester, category, purpose, action, resource",
        ] {
            assert!(out.contains(want), "{want}: {out}");
        }
    }
    let o = run(&node, &["receipt", "verify", after_s, "--genesis", genesis]).await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("set by the change in block"),
        "{}",
        err(&o)
    );

    // The patient's verified history spans the change: events signed by the genesis set and by
    // the new one, the tip by the new one, all proven with the chain of changes (issue #11).
    let o = run_exit(
        &node,
        &[
            "--json",
            "access",
            "report",
            "--key",
            &patient_file,
            "--verify",
            "--genesis",
            genesis,
        ],
        0,
    )
    .await;
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = report["accesses"].as_array().unwrap();
    assert!(rows.len() >= 2, "{report}");
    assert!(
        report["verified"]["height"].as_u64().unwrap() >= changed_at + 2,
        "{report}"
    );
    assert_eq!(
        report["verified"]["events"].as_u64(),
        Some(rows.len() as u64 + 1),
        "the grant and every access: {report}"
    );

    // Each --expect-* flag that is not what the receipt permits: exit 6, naming the field.
    let other = dev_key("sets-cli/other").public().to_did();
    let mismatches: [(&[&str], &str); 7] = [
        (&["--expect-patient", &other], "patient"),
        (&["--expect-requester", &did], "requester"),
        (&["--expect-category", "GDIS"], "category"),
        (&["--expect-purpose", "HRESCH"], "purpose"),
        (&["--expect-action", "update"], "action"),
        (&["--expect-twin", "twin://alice/genome"], "resource"),
        (
            &[
                "--expect-resource",
                "twin://alice/vitals",
                "--resource-salt",
                &"00".repeat(32),
            ],
            "resource",
        ),
    ];
    for (flags, field) in mismatches {
        let mut args = vec!["receipt", "verify", after_s, "--genesis", genesis];
        args.extend(flags);
        let o = run(&node, &args).await;
        assert_eq!(o.status.code(), Some(6), "{flags:?}: {}", err(&o));
        assert!(
            err(&o).contains(&format!("{field}:")),
            "{flags:?}: {}",
            err(&o)
        );
    }

    // Retired validators: refused with the chain of changes, naming why.
    let retired = &vals[1..];
    let cases = [
        (
            forged(&after_v, retired, None),
            "is not a validator at this height",
        ),
        (
            forged(&after_v, retired, Some(&ledger.validators)),
            "names validator set",
        ),
    ];
    for (i, (f, why)) in cases.iter().enumerate() {
        let p = write(d, &format!("retired-{i}.json"), f);
        let o = run_exit(&node, &["receipt", "verify", &p, "--genesis", genesis], 6).await;
        assert!(err(&o).contains(why), "{why}: {}", err(&o));
    }
    // A genuine receipt stripped of its chain is refused (its header names the new set).
    let mut stripped = after_v.clone();
    stripped["validator_set_changes"] = json!([]);
    let p = write(d, "stripped.json", &stripped);
    let o = run_exit(&node, &["receipt", "verify", &p, "--genesis", genesis], 6).await;
    assert!(err(&o).contains("names validator set"), "{}", err(&o));
    // The forgery that names the retired set and drops the chain passes on the genesis alone:
    // a chain from a trusted source (the auditor's own node) refuses it.
    let mut sneaky = forged(&after_v, retired, Some(&ledger.validators));
    sneaky["validator_set_changes"] = json!([]);
    let sneaky = write(d, "sneaky.json", &sneaky);
    let o = run(&node, &["receipt", "verify", &sneaky, "--genesis", genesis]).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "the limit §9.3 states: {}",
        err(&o)
    );
    let sets = d.join("sets.json");
    let o = run_exit(
        &node,
        &[
            "audit",
            "validator-sets",
            "--genesis",
            genesis,
            "--out",
            sets.to_str().unwrap(),
        ],
        0,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("from block {}", changed_at + 2)),
        "{}",
        err(&o)
    );
    let sets_s = sets.to_str().unwrap();
    let o = run_exit(
        &node,
        &[
            "receipt",
            "verify",
            &sneaky,
            "--genesis",
            genesis,
            "--validator-sets",
            sets_s,
        ],
        6,
    )
    .await;
    assert!(err(&o).contains("names validator set"), "{}", err(&o));

    // A tampered chain of changes is refused, naming the change.
    let mut bad_chain = after_v.clone();
    let sig = bad_chain["validator_set_changes"][0]["certificate"]["signatures"][0]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped = format!("{}{}", if &sig[..1] == "0" { "1" } else { "0" }, &sig[1..]);
    bad_chain["validator_set_changes"][0]["certificate"]["signatures"][0]["signature"] =
        json!(flipped);
    let p = write(d, "bad-chain.json", &bad_chain);
    let o = run_exit(&node, &["receipt", "verify", &p, "--genesis", genesis], 6).await;
    assert!(err(&o).contains("validator-set change #0"), "{}", err(&o));
    let mut bad_sets = read(&sets);
    bad_sets["validator_set_changes"][0] = bad_chain["validator_set_changes"][0].clone();
    let bad_sets = write(d, "bad-sets.json", &bad_sets);

    // A receipt file whose fields disagree with the proof is refused, naming the field.
    let cases: [(&str, Value); 3] = [
        (
            "outcome",
            json!({"access": {"deny": {"reason": "no_covering_grant"}}}),
        ),
        ("id", json!("00".repeat(32))),
        ("note", json!("permitted by the patient")),
    ];
    for (field, value) in cases {
        let mut f = after_v.clone();
        f[field] = value;
        let p = write(d, &format!("field-{field}.json"), &f);
        let o = run(&node, &["receipt", "verify", &p, "--genesis", genesis]).await;
        assert_eq!(o.status.code(), Some(6), "{field}: {}", err(&o));
        assert!(err(&o).contains(&format!("field `{field}`")), "{}", err(&o));
    }

    // Evidence bundle (version 2) of the access after the change.
    let id = after_v["id"].as_str().unwrap().to_string();
    let bundle = d.join("bundle.json");
    run_ok(
        &node,
        &[
            "audit",
            "prove",
            "--key",
            &auditor_file,
            &id,
            "--out",
            bundle.to_str().unwrap(),
        ],
    )
    .await;
    let bv = read(&bundle);
    // The patient proves an access to their twin with their own key, as the patient guide shows,
    // and checks what it permitted.
    let mine = d.join("mine.json");
    run_ok(
        &node,
        &[
            "audit",
            "prove",
            "--key",
            &patient_file,
            &id,
            "--out",
            mine.to_str().unwrap(),
        ],
    )
    .await;
    let o = run_exit(
        &node,
        &[
            "receipt",
            "verify",
            mine.to_str().unwrap(),
            "--genesis",
            genesis,
            "--expect-patient",
            &did,
        ],
        0,
    )
    .await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("requester: {phys_did}")),
        "{}",
        err(&o)
    );
    assert_eq!(bv["version"], 2);
    assert_eq!(
        bv["validator_set_changes"],
        after_v["validator_set_changes"]
    );
    run_exit(
        &node,
        &[
            "audit",
            "verify-bundle",
            bundle.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
        0,
    )
    .await;
    let mut v1 = bv.clone();
    v1["version"] = json!(1);
    v1.as_object_mut().unwrap().remove("validator_set_changes");
    let mut no_chain = bv.clone();
    no_chain
        .as_object_mut()
        .unwrap()
        .remove("validator_set_changes");
    let mut extra = bv.clone();
    extra["decided_by"] = json!("the patient");
    let by_retired = forged(&bv, retired, None);
    let mut receipt_extra = bv.clone();
    receipt_extra["receipt"]["note"] = json!("x");
    let mut kind = bv.clone();
    kind["kind"] = json!("twinledger-receipt");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "outcome",
            {
                let mut b = bv.clone();
                b["outcome"] = json!({"access": {"deny": {"reason": "no_covering_grant"}}});
                b
            },
            "field `outcome`",
        ),
        (
            "id",
            {
                let mut b = bv.clone();
                b["id"] = read(&before)["id"].clone();
                b
            },
            "field `id`",
        ),
        ("extra key", extra, "field `decided_by`"),
        ("key inside the receipt", receipt_extra, "field `receipt`"),
        ("kind", kind, "field `kind`"),
        (
            "missing chain",
            no_chain,
            "field `validator_set_changes` is missing",
        ),
        ("version 1 after a change", v1, "names validator set"),
        (
            "retired signers",
            by_retired,
            "is not a validator at this height",
        ),
        (
            "tampered chain",
            {
                let mut b = bv.clone();
                b["validator_set_changes"] = bad_chain["validator_set_changes"].clone();
                b
            },
            "validator-set change #0",
        ),
    ];
    for (name, b, why) in cases {
        let p = write(d, &format!("bundle-{}.json", name.replace(' ', "-")), &b);
        let o = run(&node, &["audit", "verify-bundle", &p, "--genesis", genesis]).await;
        assert_eq!(o.status.code(), Some(6), "{name}: {}", err(&o));
        assert!(err(&o).contains(why), "{name}: {why}: {}", err(&o));
    }

    // Checkpoints after the change: the witness and consistency check them against the set
    // in force; one certified by the retired validators is refused, not taken for a fork.
    let cp_after = d.join("after.checkpoint");
    run_ok(
        &node,
        &["audit", "checkpoint", "--out", cp_after.to_str().unwrap()],
    )
    .await;
    run_exit(
        &node,
        &[
            "audit",
            "consistency",
            "--old",
            cp_before.to_str().unwrap(),
            "--new",
            cp_after.to_str().unwrap(),
            "--genesis",
            genesis,
        ],
        0,
    )
    .await;
    let wdir = d.join("witness");
    let w = wdir.to_str().unwrap();
    run_exit(
        &node,
        &["audit", "witness", "--state", w, "--genesis", genesis],
        0,
    )
    .await;
    assert!(wdir.join("validator-sets.json").exists());
    let (cp, _) = Checkpoint::from_text(&std::fs::read_to_string(&cp_after).unwrap()).unwrap();
    let mut fake = cp;
    fake.block_hash.0[0] ^= 1;
    let fake_text = fake.to_text(&certify(&fake, retired));
    let fake_path = d.join("retired.checkpoint");
    std::fs::write(&fake_path, &fake_text).unwrap();
    let fp = fake_path.to_str().unwrap();
    for args in [
        vec![
            "audit",
            "witness",
            "--state",
            w,
            "--genesis",
            genesis,
            "--checkpoint",
            fp,
        ],
        vec![
            "audit",
            "consistency",
            "--old",
            cp_before.to_str().unwrap(),
            "--new",
            fp,
            "--genesis",
            genesis,
        ],
    ] {
        let o = run(&node, &args).await;
        assert_eq!(o.status.code(), Some(6), "{args:?}: {}", err(&o));
        assert!(
            err(&o).contains("is not a validator at this height"),
            "{args:?}: {}",
            err(&o)
        );
        assert!(!err(&o).contains("FORK"), "{}", err(&o));
    }
    // A witness given a tampered chain refuses it.
    let o = run_exit(
        &node,
        &[
            "audit",
            "witness",
            "--state",
            w,
            "--genesis",
            genesis,
            "--validator-sets",
            &bad_sets,
        ],
        6,
    )
    .await;
    assert!(err(&o).contains("validator-set change #0"), "{}", err(&o));
    // An offline witness (no node) knows the change from its state.
    let o = run(
        "http://127.0.0.1:9",
        &[
            "audit",
            "witness",
            "--state",
            d.join("w-offline").to_str().unwrap(),
            "--genesis",
            genesis,
            "--checkpoint",
            cp_after.to_str().unwrap(),
            "--validator-sets",
            sets_s,
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    stop_committee.send(true).unwrap();
    committee.join().unwrap();
}
