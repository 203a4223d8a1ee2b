//! A node in this process for the end-to-end `twinctl` tests: [`TestNode::start`] runs a
//! single-validator chain on 127.0.0.1 (an OS-chosen port, a temp dir, 50 ms blocks) whose
//! genesis lists a hospital, a physician and an auditor, and writes their key files and a
//! patient's. The steps that build a patient's history ([`TestNode::story`] and its parts) are
//! here too, so that each test builds the state it needs and stands alone.

use std::path::{Path, PathBuf};

use twinledger_core::devkit::dev_key;
use twinledger_core::{Keypair, Role};
use twinledger_genesis::{ActorEntry, GenesisFile};

use super::{err, run, run_exit, run_ok, write_key};

/// A running node and the parties of its genesis, with their key files.
#[derive(Debug)]
pub struct TestNode {
    /// Temp dir of the node's store and of every file a test writes.
    pub dir: tempfile::TempDir,
    /// The API's base URL (`http://127.0.0.1:<port>`).
    pub url: String,
    /// The genesis file the node runs.
    pub g: GenesisFile,
    /// Its path.
    pub genesis: String,
    /// The organisation (the hospital) and its key file.
    pub hospital: Keypair,
    /// `hospital`'s key file.
    pub hospital_file: String,
    /// An auditor listed in the genesis.
    pub auditor: Keypair,
    /// `auditor`'s key file.
    pub auditor_file: String,
    /// A patient (not in the genesis: patients need no enrolment).
    pub patient: Keypair,
    /// `patient`'s key file.
    pub patient_file: String,
    /// The patient's did.
    pub did: String,
    /// A physician of the hospital, enrolled in the genesis.
    pub physician: Keypair,
    /// `physician`'s key file.
    pub phys_file: String,
    /// The physician's did.
    pub phys_did: String,
    served: super::serve::Served,
}

/// A new key written to `<dir>/<name>.key` (see [`write_key`]).
pub fn key_file(dir: &Path, name: &str) -> (String, Keypair) {
    let key = twinledger_cli::keystore::generate().unwrap();
    (write_key(dir, name, &key), key)
}

/// The id of a receipt or evidence file (`"id"`).
pub fn id_of(path: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// What [`TestNode::heart_not_genome`] leaves: the patient's grant to the physician and the
/// two receipts.
#[derive(Debug)]
pub struct Consented {
    /// The grant (vital-signs and activity, for treatment and research).
    pub grant_id: String,
    /// The receipt of the permitted vital-signs access.
    pub heart: PathBuf,
    /// The receipt of the denied genome access.
    pub genome: PathBuf,
}

/// What [`TestNode::story`] leaves: five accesses in this order (the rows of the patient's
/// access report): vitals permitted under `grant_id`, genome denied, vitals denied after the
/// revoke, imaging permitted under the guardian's grant, break-glass reviewed as justified.
#[derive(Debug)]
pub struct Story {
    /// The first grant and the first two receipts.
    pub consented: Consented,
    /// The receipt of the access denied after the revoke.
    pub again: PathBuf,
    /// The privacy officer (enrolled by the hospital after the genesis) and its key file.
    pub officer: Keypair,
    /// `officer`'s key file.
    pub officer_file: String,
    /// The break-glass access's id.
    pub bg_id: String,
    /// The file holding the break-glass reason.
    pub reason: PathBuf,
}

impl TestNode {
    /// Starts the node: a one-validator chain with 50 ms blocks, the hospital, its physician
    /// and an auditor in the genesis, every key file written with a cheap key-derivation cost.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (patient_file, patient) = key_file(dir.path(), "patient");
        let (phys_file, physician) = key_file(dir.path(), "physician");
        let hospital = dev_key("cli-test/hospital");
        let validator = dev_key("cli-test/validator");
        let mut g = twinledger_node::dev::solo_genesis(
            "cli-test",
            1_767_225_600_000,
            "Hospital",
            &hospital,
            &validator,
        )
        .unwrap();
        g.limits.block_interval_ms = 50;
        g.add_actor(ActorEntry {
            key: physician.public(),
            organisation: hospital.public(),
            role: Role::Physician,
        })
        .unwrap();
        let auditor = dev_key("cli-test/auditor");
        g.add_auditor("Regulator", auditor.public()).unwrap();
        let served = super::serve::serve(dir.path(), &g, &validator).await;
        let url = served.url.clone();
        let genesis_path = served.genesis.clone();
        let hospital_file = write_key(dir.path(), "hospital", &hospital);
        let auditor_file = write_key(dir.path(), "auditor", &auditor);
        Self {
            did: patient.public().to_did(),
            phys_did: physician.public().to_did(),
            genesis: genesis_path.to_str().unwrap().to_string(),
            dir,
            url,
            g,
            hospital,
            hospital_file,
            auditor,
            auditor_file,
            patient,
            patient_file,
            physician,
            phys_file,
            served,
        }
    }

    /// `<temp dir>/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stops the node and checks that it shut down cleanly.
    pub async fn stop(mut self) {
        self.served.stop().await;
    }

    /// `access request` by the physician for the patient, its receipt written to
    /// `<dir>/<receipt>`; returns what twinctl printed.
    pub async fn request(
        &self,
        category: &str,
        purpose: &str,
        resource: &str,
        receipt: &str,
    ) -> std::process::Output {
        let out = self.path(receipt);
        run(
            &self.url,
            &[
                "access",
                "request",
                "--key",
                &self.phys_file,
                "--patient",
                &self.did,
                "--category",
                category,
                "--purpose",
                purpose,
                "--resource",
                resource,
                "--receipt-out",
                out.to_str().unwrap(),
            ],
        )
        .await
    }

    /// Heart, not genome, in one command: the patient grants the physician vital signs and
    /// activity for treatment and research; a vital-signs access is permitted, a genome access
    /// denied (exit 4). Both receipts are written.
    pub async fn heart_not_genome(&self) -> Consented {
        let o = run_ok(
            &self.url,
            &[
                "--json",
                "consent",
                "grant",
                "--key",
                &self.patient_file,
                "--to",
                &self.phys_did,
                "--category",
                "vital-signs,activity",
                "--purpose",
                "TREAT,HRESCH",
            ],
        )
        .await;
        let grant: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let grant_id = grant["id"].as_str().unwrap().to_string();
        let o = self
            .request("vital-signs", "TREAT", "twin://alice/vitals", "heart.json")
            .await;
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        let o = self
            .request("GDIS", "TREAT", "twin://alice/genome", "genome.json")
            .await;
        assert_eq!(o.status.code(), Some(4), "genome denied: {}", err(&o));
        Consented {
            grant_id,
            heart: self.path("heart.json"),
            genome: self.path("genome.json"),
        }
    }

    /// The patient revokes `grant_id`.
    pub async fn revoke(&self, grant_id: &str) {
        run_ok(
            &self.url,
            &["consent", "revoke", "--key", &self.patient_file, grant_id],
        )
        .await;
    }

    /// The physician asks for vital signs again after the revoke: denied (exit 4); returns the
    /// receipt.
    pub async fn vitals_after_revoke(&self) -> PathBuf {
        let o = self
            .request("vital-signs", "TREAT", "twin://alice/vitals", "again.json")
            .await;
        assert_eq!(o.status.code(), Some(4), "{}", err(&o));
        self.path("again.json")
    }

    /// The patient delegates imaging for treatment to a guardian, who grants it to the
    /// physician; returns the guardian's key file and key.
    pub async fn guardian_grants_imaging(&self) -> (String, Keypair) {
        let (guardian_file, guardian) = key_file(self.dir.path(), "guardian");
        run_ok(
            &self.url,
            &[
                "--json",
                "delegate",
                "grant",
                "--key",
                &self.patient_file,
                "--to",
                &guardian.public().to_did(),
                "--category",
                "imaging",
                "--purpose",
                "TREAT",
            ],
        )
        .await;
        run_ok(
            &self.url,
            &[
                "consent",
                "grant",
                "--key",
                &guardian_file,
                "--patient",
                &self.did,
                "--to",
                &self.phys_did,
                "--category",
                "imaging",
                "--purpose",
                "TREAT",
            ],
        )
        .await;
        (guardian_file, guardian)
    }

    /// An imaging access for treatment by the physician, permitted (exit 0); returns the
    /// receipt `<dir>/<receipt>`.
    pub async fn imaging(&self, receipt: &str) -> PathBuf {
        let o = self
            .request("imaging", "TREAT", "twin://alice/mri", receipt)
            .await;
        assert_eq!(
            o.status.code(),
            Some(0),
            "delegate's grant permits: {}",
            err(&o)
        );
        self.path(receipt)
    }

    /// The hospital enrols a privacy officer (after the genesis); returns its key file and key.
    pub async fn enrol_officer(&self) -> (String, Keypair) {
        let (officer_file, officer) = key_file(self.dir.path(), "officer");
        run_ok(
            &self.url,
            &[
                "org",
                "enrol-actor",
                "--key",
                &self.hospital_file,
                "--actor",
                &officer.public().to_did(),
                "--role",
                "privacy-officer",
            ],
        )
        .await;
        (officer_file, officer)
    }

    /// The break-glass reason, in `<dir>/reason.txt`.
    pub fn reason(&self) -> PathBuf {
        let reason = self.path("reason.txt");
        std::fs::write(&reason, "unconscious on arrival, suspected stroke").unwrap();
        reason
    }

    /// `access break-glass` (GDIS, the genome) for the patient with `key_file`, the receipt in
    /// `<dir>/<receipt>`; asserts exit `code`.
    pub async fn break_glass(
        &self,
        key_file: &str,
        receipt: &str,
        code: i32,
    ) -> std::process::Output {
        let reason = self.reason();
        let out = self.path(receipt);
        run_exit(
            &self.url,
            &[
                "--json",
                "access",
                "break-glass",
                "--key",
                key_file,
                "--patient",
                &self.did,
                "--category",
                "GDIS",
                "--resource",
                "twin://alice/genome",
                "--reason-file",
                reason.to_str().unwrap(),
                "--receipt-out",
                out.to_str().unwrap(),
            ],
            code,
        )
        .await
    }

    /// The reviewer signs off break-glass access `bg_id` as justified.
    pub async fn sign_off(&self, reviewer_file: &str, bg_id: &str) {
        run_ok(
            &self.url,
            &[
                "review",
                "sign-off",
                "--key",
                reviewer_file,
                bg_id,
                "--finding",
                "justified",
            ],
        )
        .await;
    }

    /// The patient's access report as `access report --format json` prints it.
    pub async fn report_json(&self) -> serde_json::Value {
        let o = run_ok(
            &self.url,
            &[
                "access",
                "report",
                "--key",
                &self.patient_file,
                "--format",
                "json",
            ],
        )
        .await;
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// The whole patient story the report, FHIR and audit tests read (see [`Story`]).
    pub async fn story(&self) -> Story {
        let consented = self.heart_not_genome().await;
        self.revoke(&consented.grant_id).await;
        let again = self.vitals_after_revoke().await;
        self.guardian_grants_imaging().await;
        self.imaging("imaging.json").await;
        let (officer_file, officer) = self.enrol_officer().await;
        let o = self.break_glass(&self.phys_file, "bg.json", 0).await;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let bg_id = v["id"].as_str().unwrap().to_string();
        self.sign_off(&officer_file, &bg_id).await;
        Story {
            consented,
            again,
            officer,
            officer_file,
            bg_id,
            reason: self.path("reason.txt"),
        }
    }

    /// The auditor's export of the whole chain, in `<dir>/chain.twl`.
    pub async fn export_chain(&self) -> PathBuf {
        let chain_file = self.path("chain.twl");
        run_ok(
            &self.url,
            &[
                "audit",
                "export",
                "--key",
                &self.auditor_file,
                "--out",
                chain_file.to_str().unwrap(),
            ],
        )
        .await;
        chain_file
    }
}

/// A copy of `file` with one bit of its middle byte flipped, in `<dir of file>/<name>`.
pub fn flipped_copy(file: &Path, name: &str) -> PathBuf {
    let mut bytes = std::fs::read(file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    let out = file.with_file_name(name);
    std::fs::write(&out, &bytes).unwrap();
    out
}
