//! A local multi-validator network on loopback: the files behind `twinledger-devnet up` and the
//! multi-process tests. One organisation (hospital) per validator, a fresh key each, a genesis
//! listing them with loopback p2p addresses on ports the OS picked, plus an auditor, a
//! physician and a demo patient key. Keys are plain development key files (mode 0600) naming
//! the devnet's chain id, which `twinctl` opens without a passphrase against this chain only
//! (ADR 0011).

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use twinledger_core::{ChainId, Keypair, Role};
use twinledger_genesis::{
    ActorEntry, GenesisFile, ObserverEntry, ValidatorEntry, peer_id_from_ed25519,
};

use crate::chain::now;
use crate::keyfile;

/// Most validators a devnet may have (one machine).
pub const MAX_DEVNET_VALIDATORS: usize = 16;

const NOTE: &str = "DEV ONLY: unencrypted key of a local devnet";

/// One node of a devnet.
#[derive(Clone, Debug)]
pub struct DevnetNode {
    /// `validator-0`, ..., or `observer-0`.
    pub name: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its key file.
    pub key_path: PathBuf,
    /// Whether it is an observer (not a validator).
    pub observer: bool,
}

/// The files of a devnet.
#[derive(Clone, Debug)]
pub struct Devnet {
    /// Its directory.
    pub dir: PathBuf,
    /// The genesis file.
    pub genesis_path: PathBuf,
    /// Validators first, then observers.
    pub nodes: Vec<DevnetNode>,
    /// The keys a user signs with (hospitals, auditor, physician, patient).
    pub user_keys: Vec<DevnetKey>,
}

/// A key of a devnet that a user signs with.
#[derive(Clone, Debug)]
pub struct DevnetKey {
    /// What it is on the devnet.
    pub role: String,
    /// Its file.
    pub path: PathBuf,
}

fn user_keys(dir: &Path, g: &GenesisFile) -> Vec<DevnetKey> {
    let keys = dir.join("keys");
    let mut v: Vec<DevnetKey> = g
        .organisations
        .iter()
        .enumerate()
        .map(|(i, o)| DevnetKey {
            role: format!("organisation {}", o.name),
            path: keys.join(format!("hospital-{i}.key")),
        })
        .collect();
    for (name, role) in [
        ("auditor", "auditor Devnet Auditor"),
        ("physician", "physician of Hospital 0"),
        ("patient", "demo patient"),
    ] {
        v.push(DevnetKey {
            role: role.into(),
            path: keys.join(format!("{name}.key")),
        });
    }
    v
}

/// A loopback TCP port the OS considers free now. (It is released before the node binds it;
/// another process could take it in between, which a devnet on one machine accepts.)
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Creates a devnet of `validators` validators and `observers` observers in `dir` (which must
/// not hold one already).
pub fn create(dir: &Path, validators: usize, observers: usize) -> anyhow::Result<Devnet> {
    create_with(dir, validators, observers, |_| {
        Ok(format!("/ip4/127.0.0.1/tcp/{}", free_port()?))
    })
}

/// [`create`], with validator `i`'s genesis p2p address given by `p2p_addr(i)` instead of a
/// free loopback port: e.g. `/dns4/hospital-{i}/tcp/7700` for a network of containers, each
/// reached by its name (`twinledger-devnet init --p2p-addr`).
pub fn create_with(
    dir: &Path,
    validators: usize,
    observers: usize,
    p2p_addr: impl Fn(usize) -> anyhow::Result<String>,
) -> anyhow::Result<Devnet> {
    anyhow::ensure!(
        (1..=MAX_DEVNET_VALIDATORS).contains(&validators),
        "a devnet has 1 to {MAX_DEVNET_VALIDATORS} validators, not {validators}"
    );
    anyhow::ensure!(observers <= 4, "a devnet has at most 4 observers");
    let genesis_path = dir.join("genesis.json");
    anyhow::ensure!(
        !genesis_path.exists(),
        "{} already holds a devnet (remove it, or `devnet down` and reuse it)",
        dir.display()
    );
    let mut g = GenesisFile::new("twinledger-devnet", now().0);
    g.limits.block_interval_ms = 1000;
    let mut nodes = Vec::new();
    let mut keys = Vec::new();
    for i in 0..validators {
        let org = keyfile::generate()?;
        let val = keyfile::generate()?;
        g.add_org(&format!("Hospital {i}"), org.public())?;
        g.add_validator(ValidatorEntry {
            organisation: org.public(),
            consensus_key: val.public(),
            power: 1,
            peer_id: peer_id_from_ed25519(&val.public()),
            listen_addr: p2p_addr(i)?,
        })?;
        let name = format!("validator-{i}");
        keys.push((dir.join("keys").join(format!("hospital-{i}.key")), org));
        nodes.push(DevnetNode {
            data_dir: dir.join(&name),
            key_path: dir.join(&name).join("node.key"),
            name,
            observer: false,
        });
        keys.push((nodes[i].key_path.clone(), val));
    }
    for i in 0..observers {
        let key = keyfile::generate()?;
        g.observers.push(ObserverEntry {
            name: format!("Observer {i}"),
            peer_id: peer_id_from_ed25519(&key.public()),
        });
        let name = format!("observer-{i}");
        nodes.push(DevnetNode {
            data_dir: dir.join(&name),
            key_path: dir.join(&name).join("node.key"),
            name,
            observer: true,
        });
        keys.push((dir.join(format!("observer-{i}")).join("node.key"), key));
    }
    let auditor = keyfile::generate()?;
    let physician = keyfile::generate()?;
    let patient = keyfile::generate()?;
    g.add_auditor("Devnet Auditor", auditor.public())?;
    let hospital0 = g.organisations[0].key;
    g.add_actor(ActorEntry {
        key: physician.public(),
        organisation: hospital0,
        role: Role::Physician,
    })?;
    g.validate()?;
    let chain_id = g.chain_id()?;
    keys.push((dir.join("keys").join("auditor.key"), auditor));
    keys.push((dir.join("keys").join("physician.key"), physician));
    keys.push((dir.join("keys").join("patient.key"), patient));
    for (path, key) in &keys {
        write_key(path, key, chain_id)?;
    }
    g.save(&genesis_path)?;
    Ok(Devnet {
        dir: dir.to_owned(),
        genesis_path,
        nodes,
        user_keys: user_keys(dir, &g),
    })
}

/// Loads the layout of an existing devnet in `dir`. Key files of devnets made before the
/// development-key marker are marked in place with the devnet's chain id.
pub fn load(dir: &Path) -> anyhow::Result<Devnet> {
    let genesis_path = dir.join("genesis.json");
    let g = GenesisFile::load(&genesis_path)
        .with_context(|| format!("no devnet in {}", dir.display()))?;
    let mut nodes = Vec::new();
    for (i, _) in g.validators.iter().enumerate() {
        let name = format!("validator-{i}");
        nodes.push(DevnetNode {
            data_dir: dir.join(&name),
            key_path: dir.join(&name).join("node.key"),
            name,
            observer: false,
        });
    }
    for (i, _) in g.observers.iter().enumerate() {
        let name = format!("observer-{i}");
        nodes.push(DevnetNode {
            data_dir: dir.join(&name),
            key_path: dir.join(&name).join("node.key"),
            name,
            observer: true,
        });
    }
    let user_keys = user_keys(dir, &g);
    let chain_id = g.chain_id()?;
    for path in nodes
        .iter()
        .map(|n| &n.key_path)
        .chain(user_keys.iter().map(|k| &k.path))
    {
        if path.exists() {
            keyfile::mark_dev(path, chain_id)?;
        }
    }
    Ok(Devnet {
        dir: dir.to_owned(),
        genesis_path,
        nodes,
        user_keys,
    })
}

fn write_key(path: &Path, key: &Keypair, chain_id: ChainId) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(keyfile::write_dev(path, key, chain_id, NOTE)?)
}

impl DevnetNode {
    /// The `twinledger-node` arguments that run this node (API on an OS-chosen port).
    pub fn args(&self, genesis: &Path) -> Vec<String> {
        let mut a = vec![
            "--genesis".to_owned(),
            genesis.display().to_string(),
            "--validator-key".to_owned(),
            self.key_path.display().to_string(),
            "--data-dir".to_owned(),
            self.data_dir.display().to_string(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        if self.observer {
            a.push("--observer".to_owned());
        }
        a
    }
}
