//! Sealed twins end to end (issue #14 phase 2), with the real binaries: a `twinledger-node
//! --dev` process (which runs the key custodian) and `twinctl twin seal | open | erase`.
//!
//! The dev physician seals a patient's twin as two versions (heart data, vital-signs; genome,
//! GDIS). A researcher the patient permitted opens the heart data; the same researcher is
//! refused the genome; after the patient revokes, the next open is refused though the old
//! receipt still verifies; break-glass opens with the review flag; after the patient erases,
//! no one opens; the auditor's export of the whole chain still verifies (every key release
//! checked against its request). The abusers are refused each with their own message: a
//! tampered ciphertext (exit 6, nothing written), a receipt for another twin, a replayed key
//! request (the same permit twice, and the same signed request twice), a request signed by
//! another key than the receipt's requester.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use twinledger_core::request::RequestAuth;
use twinledger_core::{ChainId, Keypair, Timestamp};

mod common;

use common::node_process::DevNode;
use common::{PASS, err, write_key};

/// Runs `twinctl args` against `node` (the passphrase of the keys this test writes in the
/// environment; the dev keys need none).
fn twinctl(node: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twinctl"))
        .args(args)
        .env("TWINCTL_NODE", node)
        .env("TWINCTL_PASSPHRASE", PASS)
        .env_remove("TWINLEDGER_TWIN_SALT")
        .output()
        .unwrap()
}

/// [`twinctl`], asserting exit `code`.
fn exit(node: &str, args: &[&str], code: i32) -> Output {
    let o = twinctl(node, args);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {}", err(&o));
    o
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", err(o)))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Dev {
    node: DevNode,
    dir: tempfile::TempDir,
    data: PathBuf,
    store: PathBuf,
    patient_did: String,
    researcher: Keypair,
    researcher_file: String,
}

impl Dev {
    fn api(&self) -> &str {
        &self.node.api
    }
    fn key(&self, name: &str) -> String {
        self.data
            .join("keys")
            .join(format!("{name}.key"))
            .display()
            .to_string()
    }
    fn genesis(&self) -> String {
        self.data.join("genesis.json").display().to_string()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn did_of(&self, name: &str) -> String {
        let o = exit(self.api(), &["key", "export-public", &self.key(name)], 0);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The dev physician seals `file` as `version` of the twin `label` of `patient`.
    fn seal(&self, patient: &str, label: &str, version: u64, category: &str, file: &Path) -> Value {
        let salt = self.data.join("keys").join("twin-salt.json");
        json_of(&exit(
            self.api(),
            &[
                "--json",
                "twin",
                "seal",
                "--key",
                &self.key("physician"),
                "--patient",
                patient,
                "--twin-id",
                label,
                "--twin-salt",
                salt.to_str().unwrap(),
                "--version",
                &version.to_string(),
                "--category",
                category,
                "--store",
                self.store.to_str().unwrap(),
                file.to_str().unwrap(),
            ],
            0,
        ))
    }

    /// `access request` by `key` for the patient; the receipt in `<dir>/<name>`.
    fn request(&self, key: &str, category: &str, name: &str, code: i32) -> PathBuf {
        let out = self.path(name);
        exit(
            self.api(),
            &[
                "access",
                "request",
                "--key",
                key,
                "--patient",
                &self.patient_did,
                "--category",
                category,
                "--purpose",
                "HRESCH",
                "--resource",
                "twin://alice",
                "--receipt-out",
                out.to_str().unwrap(),
            ],
            code,
        );
        out
    }

    /// `twin open` of (twin, version) as `key` with `receipt`, output `<dir>/<out>`; asserts exit `code`.
    fn open(
        &self,
        key: &str,
        receipt: &Path,
        (twin, version): (&str, u64),
        store: &Path,
        out: &str,
        code: i32,
    ) -> Output {
        exit(
            self.api(),
            &[
                "--json",
                "twin",
                "open",
                "--key",
                key,
                "--receipt",
                receipt.to_str().unwrap(),
                "--twin-id",
                twin,
                "--version",
                &version.to_string(),
                "--store",
                store.to_str().unwrap(),
                "--genesis",
                &self.genesis(),
                "--out",
                self.path(out).to_str().unwrap(),
            ],
            code,
        )
    }
}

/// The dev node, a researcher enrolled by the dev hospital, the patient's research grant of
/// vital signs to it.
fn start() -> (Dev, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let node = DevNode::start(&data);
    let researcher = twinledger_cli::keystore::generate().unwrap();
    let researcher_file = write_key(dir.path(), "researcher", &researcher);
    let store = dir.path().join("store");
    let mut dev = Dev {
        node,
        data,
        store,
        patient_did: String::new(),
        researcher,
        researcher_file,
        dir,
    };
    dev.patient_did = dev.did_of("patient");
    let api = dev.api().to_string();
    exit(
        &api,
        &[
            "org",
            "enrol-actor",
            "--key",
            &dev.key("hospital"),
            "--actor",
            &dev.researcher.public().to_did(),
            "--role",
            "researcher",
        ],
        0,
    );
    let grant = json_of(&exit(
        &api,
        &[
            "--json",
            "consent",
            "grant",
            "--key",
            &dev.key("patient"),
            "--to",
            &dev.researcher.public().to_did(),
            "--category",
            "vital-signs",
            "--purpose",
            "HRESCH",
        ],
        0,
    ));
    let grant_id = grant["id"].as_str().unwrap().to_string();
    (dev, grant_id)
}

/// The chain id the node reports.
fn chain_id(api: &str) -> ChainId {
    let v: Value = reqwest::blocking::get(format!("{api}/health"))
        .unwrap()
        .json()
        .unwrap();
    ChainId::from_hex(v["chain_id"].as_str().unwrap()).unwrap()
}

/// A release request signed by `key` with a fixed nonce, sent as is: returns (status, answer).
fn raw_release(api: &str, key: &Keypair, body: &[u8], nonce: [u8; 16]) -> (u16, Value) {
    let path = "/v1/custodian/release";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let auth = RequestAuth::sign(
        key,
        &chain_id(api),
        "POST",
        path,
        body,
        Timestamp(u64::try_from(now).unwrap()),
        nonce,
    );
    let mut req = reqwest::blocking::Client::new()
        .post(format!("{api}{path}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (h, v) in auth.headers() {
        req = req.header(h, v);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn sealed_twin_opens_for_the_permitted_researcher_only_until_revoke_and_erase_and_the_chain_still_audits()
 {
    let (dev, grant_id) = start();
    let api = dev.api().to_string();
    let patient = dev.patient_did.clone();

    // The physician seals the heart data (vital-signs) and the genome (GDIS) as two versions.
    let heart = dev.path("heart.csv");
    let heart_bytes: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i},{}\n", 60 + i % 40).into_bytes())
        .collect();
    std::fs::write(&heart, &heart_bytes).unwrap();
    let genome = dev.path("genome.txt");
    std::fs::write(&genome, b"ACGT".repeat(50_000)).unwrap();
    let v1 = dev.seal(&patient, "alice-twin", 1, "vital-signs", &heart);
    let twin = v1["twin"].as_str().unwrap().to_string();
    assert_eq!(v1["deposited"], json!(true));
    assert_eq!(v1["size"], json!(heart_bytes.len()));
    let v2 = dev.seal(&patient, "alice-twin", 2, "GDIS", &genome);
    assert_eq!(v2["twin"].as_str().unwrap(), twin);
    // The store holds only ciphertext.
    let object = dev.store.join(&twin).join("1.age");
    let stored = std::fs::read(&object).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1"));
    assert!(!stored.windows(8).any(|w| w == &heart_bytes[..8]));

    // Sealing a version the store already holds is refused before anything is recorded.
    let salt = dev.data.join("keys").join("twin-salt.json");
    let again = exit(
        &api,
        &[
            "twin",
            "seal",
            "--key",
            &dev.key("physician"),
            "--patient",
            &patient,
            "--twin-id",
            "alice-twin",
            "--twin-salt",
            salt.to_str().unwrap(),
            "--version",
            "1",
            "--category",
            "vital-signs",
            "--store",
            dev.store.to_str().unwrap(),
            genome.to_str().unwrap(),
        ],
        2,
    );
    assert!(stderr(&again).contains("never replaced"), "{}", err(&again));
    assert_eq!(std::fs::read(&object).unwrap(), stored);

    // A version anchored but not sealed has nothing to open (refused before any release).
    exit(
        &api,
        &[
            "twin",
            "anchor",
            "--key",
            &dev.key("physician"),
            "--organisation",
            v1["organisation"].as_str().unwrap(),
            "--patient",
            &patient,
            "--twin-id",
            "alice-twin",
            "--twin-salt",
            salt.to_str().unwrap(),
            "--version",
            "3",
            genome.to_str().unwrap(),
        ],
        0,
    );

    // Another patient's twin, sealed too (for the receipt-for-another-twin check).
    let other = twinledger_cli::keystore::generate().unwrap();
    let other_twin = dev.seal(
        &other.public().to_did(),
        "bob-twin",
        1,
        "vital-signs",
        &heart,
    )["twin"]
        .as_str()
        .unwrap()
        .to_string();

    // Permits for the researcher (one release per permit).
    let res = dev.researcher_file.clone();
    let permits: Vec<PathBuf> = (1..=6)
        .map(|i| dev.request(&res, "vital-signs", &format!("r{i}.json"), 0))
        .collect();

    let o = dev.open(&res, &permits[0], (&twin, 3), &dev.store, "plain.out", 2);
    assert!(stderr(&o).contains("anchored, not sealed"), "{}", err(&o));

    // 1. The permitted researcher opens the heart data.
    let o = dev.open(&res, &permits[0], (&twin, 1), &dev.store, "heart.out", 0);
    let opened = json_of(&o);
    assert_eq!(opened["break_glass"], json!(false));
    assert_eq!(opened["anchor_verified"], json!(true));
    assert_eq!(std::fs::read(dev.path("heart.out")).unwrap(), heart_bytes);

    // 2. The same permit again (a replayed key request): refused, its own code.
    let o = dev.open(&res, &permits[0], (&twin, 1), &dev.store, "again.out", 4);
    assert!(stderr(&o).contains("already_released"), "{}", err(&o));
    assert!(!dev.path("again.out").exists());

    // 3. The same signed request sent twice: the second is refused by its nonce.
    let body = serde_json::to_vec(&json!({
        "twin": twin, "version": 1,
        "receipt": serde_json::from_str::<Value>(&std::fs::read_to_string(&permits[5]).unwrap()).unwrap(),
    }))
    .unwrap();
    let (first, _) = raw_release(&api, &dev.researcher, &body, [7; 16]);
    assert_eq!(first, 200, "the first request is served");
    let (second, answer) = raw_release(&api, &dev.researcher, &body, [7; 16]);
    assert_ne!(second, 200);
    assert_eq!(
        answer["error"]["code"],
        json!("replayed_request"),
        "{answer}"
    );

    // 4. A tampered ciphertext: refused before any key is requested (the permit is not spent),
    //    naming it; nothing written.
    let tampered = dev.path("tampered-store");
    std::fs::create_dir_all(tampered.join(&twin)).unwrap();
    let mut bytes = stored.clone();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    std::fs::write(tampered.join(&twin).join("1.age"), &bytes).unwrap();
    let o = dev.open(&res, &permits[1], (&twin, 1), &tampered, "tampered.out", 6);
    assert!(stderr(&o).contains("tampered ciphertext"), "{}", err(&o));
    assert!(!dev.path("tampered.out").exists());

    // 5. A receipt for another twin (another patient's).
    let o = dev.open(
        &res,
        &permits[2],
        (&other_twin, 1),
        &dev.store,
        "other.out",
        4,
    );
    assert!(stderr(&o).contains("wrong_twin"), "{}", err(&o));

    // 6. A request signed by another key than the receipt's requester (a stolen receipt).
    let o = dev.open(
        &dev.key("physician"),
        &permits[3],
        (&twin, 1),
        &dev.store,
        "stolen.out",
        4,
    );
    assert!(stderr(&o).contains("not_the_requester"), "{}", err(&o));

    // 7. The same researcher is refused the genome: its access is denied, and the custodian
    // refuses the deny receipt; a vital-signs permit does not open the genetic version.
    let denied = dev.request(&res, "GDIS", "genome.json", 4);
    let o = dev.open(&res, &denied, (&twin, 2), &dev.store, "genome.out", 4);
    assert!(stderr(&o).contains("(denied)"), "{}", err(&o));
    let o = dev.open(&res, &permits[4], (&twin, 2), &dev.store, "genome.out", 4);
    assert!(stderr(&o).contains("wrong_category"), "{}", err(&o));
    assert!(!dev.path("genome.out").exists());

    // 8. The patient revokes: the next open is refused though the old receipt still verifies.
    let last = dev.request(&res, "vital-signs", "r7.json", 0);
    exit(
        &api,
        &["consent", "revoke", "--key", &dev.key("patient"), &grant_id],
        0,
    );
    let o = dev.open(&res, &last, (&twin, 1), &dev.store, "revoked.out", 4);
    assert!(stderr(&o).contains("grant_revoked"), "{}", err(&o));
    exit(
        &api,
        &[
            "receipt",
            "verify",
            last.to_str().unwrap(),
            "--genesis",
            &dev.genesis(),
        ],
        0,
    );

    // 9. Break-glass opens the genome, flagged for review.
    let reason = dev.path("reason.txt");
    std::fs::write(&reason, "unconscious on arrival, suspected stroke").unwrap();
    let break_glass = |name: &str| {
        let out = dev.path(name);
        exit(
            &api,
            &[
                "access",
                "break-glass",
                "--key",
                &dev.key("physician"),
                "--patient",
                &patient,
                "--category",
                "GDIS",
                "--resource",
                "twin://alice/genome",
                "--reason-file",
                reason.to_str().unwrap(),
                "--receipt-out",
                out.to_str().unwrap(),
            ],
            0,
        );
        out
    };
    let bg = break_glass("bg.json");
    let o = dev.open(
        &dev.key("physician"),
        &bg,
        (&twin, 2),
        &dev.store,
        "genome.out",
        0,
    );
    assert_eq!(json_of(&o)["break_glass"], json!(true));
    assert_eq!(
        std::fs::read(dev.path("genome.out")).unwrap(),
        b"ACGT".repeat(50_000)
    );

    // 10. The patient erases both versions: then no one opens.
    for v in ["1", "2"] {
        let o = exit(
            &api,
            &[
                "twin",
                "erase",
                "--key",
                &dev.key("patient"),
                "--twin-id",
                &twin,
                "--version",
                v,
            ],
            0,
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("destroys its data key"),
            "{}",
            err(&o)
        );
    }
    let bg2 = break_glass("bg2.json");
    // The custodian follows the chain: wait (deadline) until it answers `erased`.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut i = 0;
    loop {
        i += 1;
        let receipt = if i == 1 {
            bg2.clone()
        } else {
            break_glass(&format!("bg2-{i}.json"))
        };
        let o = twinctl(
            &api,
            &[
                "twin",
                "open",
                "--key",
                &dev.key("physician"),
                "--receipt",
                receipt.to_str().unwrap(),
                "--twin-id",
                &twin,
                "--version",
                "2",
                "--store",
                dev.store.to_str().unwrap(),
                "--genesis",
                &dev.genesis(),
                "--out",
                dev.path("erased.out").to_str().unwrap(),
            ],
        );
        assert_ne!(o.status.code(), Some(0), "opened after erase: {}", err(&o));
        if stderr(&o).contains("erased") {
            assert_eq!(o.status.code(), Some(4), "{}", err(&o));
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "never `erased`: {}",
            err(&o)
        );
    }
    assert!(!dev.path("erased.out").exists());

    // 11. The auditor's export of the whole chain verifies, every key release included.
    let chain = dev.path("chain.twl");
    exit(
        &api,
        &[
            "audit",
            "export",
            "--key",
            &dev.key("auditor"),
            "--out",
            chain.to_str().unwrap(),
        ],
        0,
    );
    let o = exit(
        &api,
        &[
            "--json",
            "audit",
            "verify",
            chain.to_str().unwrap(),
            "--genesis",
            &dev.genesis(),
        ],
        0,
    );
    // Three releases: the permitted open, the first of the twice-sent request, the break-glass
    // open. The tampered ciphertext was refused before any key was requested.
    let summary = json_of(&o);
    assert_eq!(summary["summary"]["key_releases"], json!(3), "{summary}");

    // The patient's verified access report shows who actually decrypted: each released request
    // names its key release (json), says "key released" (table), and carries it in the CSV.
    let o = exit(
        &api,
        &[
            "--json",
            "access",
            "report",
            "--key",
            &dev.key("patient"),
            "--genesis",
            &dev.genesis(),
        ],
        0,
    );
    let report = json_of(&o);
    let released: Vec<&Value> = report["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["key_release"].as_str().unwrap_or("").is_empty())
        .collect();
    assert_eq!(released.len(), 3, "{report}");
    let o = exit(&api, &["access", "report", "--key", &dev.key("patient")], 0);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .matches("key released")
            .count(),
        3,
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
