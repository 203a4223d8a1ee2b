//! `twinledger-node --dev`: a local dev chain with no other setup.
//!
//! On first start it creates, in the data dir, fresh keys (a validator, a hospital, an auditor,
//! a physician enrolled by the hospital, and a demo patient) and a genesis with them; on later
//! starts it reuses them, so restarting continues the same chain. Keys are plain development
//! key files (mode 0600) naming the dev chain's id, which `twinctl` opens without a passphrase
//! against this chain only (ADR 0011); key files of earlier dev chains, written without that
//! marker, are marked in place on the next start. Beside the keys it keeps the hospital's twin
//! salt, `keys/twin-salt.json` (PROTOCOL.md §5.6), written on the first start that lacks it, so
//! that `twinctl twin anchor --twin-salt` works with labels with no setup.
//!
//! Custodian mode (ADR 0013): the dev genesis enrols `custodian`, a service actor of the dev
//! hospital, whose key is `keys/custodian.key`; its master key is `keys/custodian-master.key`
//! (age X25519, mode 0600, written on the first start that lacks it). `--dev` runs the node as
//! the hospital's key custodian. A dev chain made before custodian mode has no custodian actor
//! and runs without one.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use twinledger_core::{Keypair, PublicKey, Role};
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
    /// Every key of [`DEV_KEYS`], in that order.
    pub keys: Vec<DevKey>,
    /// The dev hospital's twin salt file (`keys/twin-salt.json`, mode 0600).
    pub twin_salt_path: PathBuf,
    /// Whether this start created the chain.
    pub created: bool,
    /// The custodian's key and master key files, if this dev chain has a custodian.
    pub custodian: Option<DevCustodian>,
}

/// The dev chain's key custodian.
#[derive(Debug)]
pub struct DevCustodian {
    /// Its key (a service actor of the dev hospital).
    pub key: Keypair,
    /// `keys/custodian.key`.
    pub key_path: PathBuf,
    /// `keys/custodian-master.key` (age X25519, mode 0600).
    pub master_path: PathBuf,
}

/// Name of the dev custodian's key file in the keys directory.
pub const CUSTODIAN_KEY_FILE: &str = "custodian.key";
/// Name of the dev custodian's master key file in the keys directory.
pub const CUSTODIAN_MASTER_FILE: &str = "custodian-master.key";

/// The dev custodian of `keys_dir` if its key exists, writing its master key if missing.
fn dev_custodian(keys_dir: &Path) -> anyhow::Result<Option<DevCustodian>> {
    let key_path = keys_dir.join(CUSTODIAN_KEY_FILE);
    if !key_path.exists() {
        return Ok(None);
    }
    let key = keyfile::read(&key_path)?;
    let master_path = keys_dir.join(CUSTODIAN_MASTER_FILE);
    if !master_path.exists() {
        twinledger_sealed::custodian::MasterKey::generate_file(&master_path)
            .with_context(|| format!("creating {}", master_path.display()))?;
    }
    Ok(Some(DevCustodian {
        key,
        key_path,
        master_path,
    }))
}

/// Name of the dev twin salt file in the keys directory.
pub const TWIN_SALT_FILE: &str = "twin-salt.json";

/// Writes a random twin salt (`{"twin_salt": "<64 hex>"}`, mode 0600) at `path` unless a file
/// is there already (an existing salt is kept: the dev twins' ids depend on it).
fn ensure_twin_salt(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let body = serde_json::json!({ "twin_salt": hex::encode(salt) }).to_string() + "\n";
    std::io::Write::write_all(&mut f, body.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

const NOTE: &str = "DEV ONLY: unencrypted key of a local dev chain";

/// One key of the dev chain, for the start-up banner.
#[derive(Clone, Debug)]
pub struct DevKey {
    /// Its name in [`DEV_KEYS`].
    pub name: &'static str,
    /// Its role on the dev chain.
    pub role: &'static str,
    /// Its file.
    pub path: PathBuf,
    /// Its public key.
    pub public: PublicKey,
}

/// Names of the dev key files.
pub const DEV_KEYS: [&str; 5] = ["validator", "hospital", "auditor", "physician", "patient"];

/// What each key of [`DEV_KEYS`] is on the dev chain.
const ROLES: [&str; 5] = [
    "signs blocks",
    "organisation Dev Hospital",
    "auditor Dev Auditor",
    "physician of Dev Hospital",
    "demo patient",
];

/// A genesis in which one organisation runs the one validator (dev chains, tests, benchmarks).
/// A single validator runs alone, with no peer-to-peer network, so nobody dials its
/// `listen_addr`: it is a loopback address only because every validator entry needs one.
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
        let chain_id = genesis.chain_id()?;
        let mut keys = Vec::new();
        for name in DEV_KEYS {
            let path = keys_dir.join(format!("{name}.key"));
            keyfile::mark_dev(&path, chain_id)?;
            keys.push(keyfile::read(&path)?);
        }
        let twin_salt_path = keys_dir.join(TWIN_SALT_FILE);
        ensure_twin_salt(&twin_salt_path)?;
        let custodian_key = keys_dir.join(CUSTODIAN_KEY_FILE);
        if custodian_key.exists() {
            keyfile::mark_dev(&custodian_key, chain_id)?;
        }
        let custodian = dev_custodian(&keys_dir)?;
        return Ok(DevSetup {
            genesis_path,
            genesis,
            validator: keys[0].clone(),
            keys: dev_keys(&keys_dir, &keys),
            keys_dir,
            twin_salt_path,
            created: false,
            custodian,
        });
    }
    std::fs::create_dir_all(&keys_dir)
        .with_context(|| format!("creating {}", keys_dir.display()))?;
    let keys: Vec<Keypair> = DEV_KEYS
        .iter()
        .map(|_| keyfile::generate())
        .collect::<Result<_, _>>()?;
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
    let custodian = keyfile::generate()?;
    g.add_actor(ActorEntry {
        key: custodian.public(),
        organisation: hospital.public(),
        role: Role::Service,
    })?;
    // Check everything before writing anything.
    g.validate()?;
    let chain_id = g.chain_id()?;
    for (name, key) in DEV_KEYS.iter().zip(&keys) {
        keyfile::write_dev(&keys_dir.join(format!("{name}.key")), key, chain_id, NOTE)?;
    }
    let twin_salt_path = keys_dir.join(TWIN_SALT_FILE);
    ensure_twin_salt(&twin_salt_path)?;
    keyfile::write_dev(
        &keys_dir.join(CUSTODIAN_KEY_FILE),
        &custodian,
        chain_id,
        NOTE,
    )?;
    let custodian = dev_custodian(&keys_dir)?;
    // The genesis last: its presence marks a complete setup.
    g.save(&genesis_path)?;
    Ok(DevSetup {
        genesis_path,
        genesis: g,
        validator: validator.clone(),
        keys: dev_keys(&keys_dir, &keys),
        keys_dir,
        twin_salt_path,
        created: true,
        custodian,
    })
}

fn dev_keys(keys_dir: &Path, keys: &[Keypair]) -> Vec<DevKey> {
    DEV_KEYS
        .iter()
        .zip(ROLES)
        .zip(keys)
        .map(|((name, role), key)| DevKey {
            name,
            role,
            path: keys_dir.join(format!("{name}.key")),
            public: key.public(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_keys_name_the_dev_chain_and_unmarked_ones_are_marked_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let first = setup(dir.path()).unwrap();
        assert!(first.created);
        let chain_id = first.genesis.chain_id().unwrap();
        for k in &first.keys {
            let read = keyfile::read_file(&k.path).unwrap();
            assert_eq!(read.kind, keyfile::KeyKind::Dev { chain_id }, "{}", k.name);
            assert_eq!(read.key.public(), k.public);
        }
        // A dev chain made before the format field: its patient key has no marker.
        let patient = &first.keys[4];
        let key = keyfile::read(&patient.path).unwrap();
        std::fs::remove_file(&patient.path).unwrap();
        let legacy = serde_json::json!({
            "did": key.public().to_did(),
            "secret_hex": hex::encode(key.secret_bytes()),
            "note": NOTE,
        });
        std::fs::write(&patient.path, legacy.to_string()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&patient.path, std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        let again = setup(dir.path()).unwrap();
        assert!(!again.created);
        assert_eq!(again.validator.public(), first.validator.public());
        assert_eq!(
            keyfile::read_file(&patient.path).unwrap().kind,
            keyfile::KeyKind::Dev { chain_id }
        );
        assert_eq!(again.keys[4].public, key.public());
    }

    #[test]
    fn the_dev_chain_enrols_a_custodian_service_actor_with_a_private_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = setup(dir.path()).unwrap();
        let c = first.custodian.as_ref().expect("a dev custodian");
        let hospital = first.keys[1].public;
        let actor = first
            .genesis
            .actors
            .iter()
            .find(|a| a.key == c.key.public())
            .expect("enrolled in the genesis");
        assert_eq!((actor.organisation, actor.role), (hospital, Role::Service));
        let chain_id = first.genesis.chain_id().unwrap();
        assert_eq!(
            keyfile::read_file(&c.key_path).unwrap().kind,
            keyfile::KeyKind::Dev { chain_id }
        );
        let master = twinledger_sealed::custodian::MasterKey::from_file(&c.master_path).unwrap();
        let again = setup(dir.path()).unwrap();
        let c2 = again.custodian.unwrap();
        assert_eq!(c2.key.public(), c.key.public());
        assert_eq!(
            twinledger_sealed::custodian::MasterKey::from_file(&c2.master_path)
                .unwrap()
                .recipient(),
            master.recipient(),
            "the master key is kept across starts"
        );
        // A dev chain made before custodian mode runs without one.
        std::fs::remove_file(&c.key_path).unwrap();
        assert!(setup(dir.path()).unwrap().custodian.is_none());
    }

    #[test]
    fn the_dev_chain_keeps_one_private_twin_salt_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let first = setup(dir.path()).unwrap();
        let salt = std::fs::read(&first.twin_salt_path).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&salt).unwrap();
        assert_eq!(v["twin_salt"].as_str().unwrap().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&first.twin_salt_path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = setup(dir.path()).unwrap();
        assert_eq!(std::fs::read(&again.twin_salt_path).unwrap(), salt);
        // A dev chain made before the salt gets one on its next start.
        std::fs::remove_file(&first.twin_salt_path).unwrap();
        let later = setup(dir.path()).unwrap();
        assert!(later.twin_salt_path.exists());
    }
}
