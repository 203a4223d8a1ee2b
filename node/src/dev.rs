//! `twinledger-node --dev`: a local dev chain with no other setup.
//!
//! On first start it creates, in the data dir, fresh keys (a validator, a hospital, an auditor,
//! a physician enrolled by the hospital, and a demo patient) and a genesis with them; on later
//! starts it reuses them, so restarting continues the same chain. Keys are written unencrypted
//! with mode 0600 and are for development only.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use twinledger_core::{Keypair, Role};
use twinledger_genesis::{ActorEntry, GenesisFile, ValidatorEntry, peer_id_from_ed25519};

use crate::chain::now;
use crate::keyfile;

/// The dev chain's files.
#[derive(Debug)]
pub struct DevSetup {
    /// The genesis file.
    pub genesis_path: PathBuf,
    /// The genesis.
    pub genesis: GenesisFile,
    /// The validator key.
    pub validator: Keypair,
    /// Where the keys are.
    pub keys_dir: PathBuf,
    /// Whether this start created the chain.
    pub created: bool,
}

const NOTE: &str = "DEV ONLY: unencrypted key of a local dev chain";

/// Names of the dev key files.
pub const DEV_KEYS: [&str; 5] = ["validator", "hospital", "auditor", "physician", "patient"];

/// A genesis in which one organisation runs the one validator (dev chains, tests, benchmarks).
/// Its peer-to-peer address is a placeholder until the transport of issue #4 uses it.
pub fn solo_genesis(
    chain_name: &str,
    genesis_time_ms: u64,
    org_name: &str,
    org: &Keypair,
    validator: &Keypair,
) -> anyhow::Result<GenesisFile> {
    let mut g = GenesisFile::new(chain_name, genesis_time_ms);
    g.add_org(org_name, org.public())?;
    g.add_validator(ValidatorEntry {
        organisation: org.public(),
        consensus_key: validator.public(),
        power: 1,
        peer_id: peer_id_from_ed25519(&validator.public()),
        listen_addr: "/ip4/127.0.0.1/tcp/7700".into(),
    })?;
    Ok(g)
}

/// Creates (first start) or loads (later starts) the dev chain in `data_dir`.
pub fn setup(data_dir: &Path) -> anyhow::Result<DevSetup> {
    let genesis_path = data_dir.join("genesis.json");
    let keys_dir = data_dir.join("keys");
    if genesis_path.exists() {
        let genesis = GenesisFile::load(&genesis_path)?;
        let validator = keyfile::read(&keys_dir.join("validator.key"))?;
        return Ok(DevSetup {
            genesis_path,
            genesis,
            validator,
            keys_dir,
            created: false,
        });
    }
    std::fs::create_dir_all(&keys_dir)
        .with_context(|| format!("creating {}", keys_dir.display()))?;
    let keys: Vec<Keypair> = DEV_KEYS
        .iter()
        .map(|_| keyfile::generate())
        .collect::<anyhow::Result<_>>()?;
    let [validator, hospital, auditor, physician, _patient] = &keys[..] else {
        unreachable!("five keys");
    };
    let mut g = solo_genesis(
        "twinledger-dev",
        now().0,
        "Dev Hospital",
        hospital,
        validator,
    )?;
    g.limits.block_interval_ms = 200;
    g.add_auditor("Dev Auditor", auditor.public())?;
    g.add_actor(ActorEntry {
        key: physician.public(),
        organisation: hospital.public(),
        role: Role::Physician,
    })?;
    // Check everything before writing anything.
    g.validate()?;
    for (name, key) in DEV_KEYS.iter().zip(&keys) {
        keyfile::write(&keys_dir.join(format!("{name}.key")), key, NOTE)?;
    }
    // The genesis last: its presence marks a complete setup.
    g.save(&genesis_path)?;
    Ok(DevSetup {
        genesis_path,
        genesis: g,
        validator: validator.clone(),
        keys_dir,
        created: true,
    })
}
