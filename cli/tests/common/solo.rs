//! A one-validator node in this process (127.0.0.1, an OS-chosen port, a temp dir) with a
//! hospital, an enrolled physician, an auditor and a patient, each with a twinctl key file.

use std::path::PathBuf;

use twinledger_core::devkit::dev_key;
use twinledger_core::{Keypair, Role};
use twinledger_genesis::ActorEntry;

use super::write_key;

/// A running node and the key files of its people.
pub struct Solo {
    /// The node's API address (`http://127.0.0.1:PORT`).
    pub node: String,
    /// The temp dir holding the genesis, the keys and the node's data.
    pub dir: tempfile::TempDir,
    /// The genesis file.
    pub genesis: PathBuf,
    /// The patient's key file and did.
    pub patient_file: String,
    /// The patient's did:key.
    pub patient: String,
    /// The physician's key file.
    pub phys_file: String,
    /// The physician's did:key.
    pub physician: String,
    /// The auditor's key file.
    pub auditor_file: String,
    served: super::serve::Served,
}

/// The organisation's name in the genesis.
pub const HOSPITAL: &str = "St. Example Hospital";

impl Solo {
    /// Starts the node (blocks every 50 ms).
    pub async fn start(label: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let patient: Keypair = twinledger_cli::keystore::generate().unwrap();
        let physician: Keypair = twinledger_cli::keystore::generate().unwrap();
        let hospital = dev_key(&format!("{label}/hospital"));
        let validator = dev_key(&format!("{label}/validator"));
        let auditor = dev_key(&format!("{label}/auditor"));
        let mut g = twinledger_node::dev::solo_genesis(
            label,
            1_767_225_600_000,
            HOSPITAL,
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
        g.add_auditor("Regulator", auditor.public()).unwrap();
        let served = super::serve::serve(dir.path(), &g, &validator).await;
        let node = served.url.clone();
        let genesis = served.genesis.clone();
        Self {
            node,
            patient_file: write_key(dir.path(), "patient", &patient),
            patient: patient.public().to_did(),
            phys_file: write_key(dir.path(), "physician", &physician),
            physician: physician.public().to_did(),
            auditor_file: write_key(dir.path(), "auditor", &auditor),
            genesis,
            dir,
            served,
        }
    }

    /// A path in the temp dir.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// The genesis file's path.
    pub fn genesis(&self) -> String {
        self.genesis.to_str().unwrap().to_string()
    }

    /// Stops the node and waits for it.
    pub async fn stop(mut self) {
        self.served.stop().await;
    }
}
