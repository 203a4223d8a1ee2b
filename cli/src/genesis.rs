//! `twinctl genesis`: build a genesis file step by step, show it, verify it.
//!
//! Every change loads the file, applies the change, validates the result and replaces the
//! file atomically: on any error the file is left byte for byte as it was. Between steps the
//! file is a draft, which may not list an organisation or a validator yet; `verify` (and every
//! node) requires both.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use twinledger_core::{PublicKey, Role};
use twinledger_genesis::{
    ActorEntry, GenesisFile, GenesisFileError, ValidatorEntry, peer_id_from_ed25519,
};

use crate::time::{now_ms, time_text};
use crate::{CliError, Output};

/// `twinctl genesis [--file PATH] <command>`.
#[derive(Debug, Args)]
pub struct GenesisArgs {
    /// The genesis file.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "genesis.json"
    )]
    pub file: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: GenesisCommand,
}

/// The genesis commands.
#[derive(Debug, Subcommand)]
pub enum GenesisCommand {
    /// Start a genesis file: a chain name, a genesis time and default limits, no parties yet.
    Init {
        /// Human name of the chain (1..=64 bytes, no control characters).
        #[arg(long, value_name = "NAME")]
        chain_name: String,
        /// Genesis time, ms since the Unix epoch (default: now). Block 1 must be later.
        #[arg(long, value_name = "MS", allow_negative_numbers = true)]
        genesis_time_ms: Option<u64>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Add a member organisation.
    AddOrg {
        /// Its name (1..=128 bytes, no control characters, distinct).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Its key.
        #[arg(long, value_name = "DID")]
        key: PublicKey,
    },
    /// Add a validator run by a listed organisation.
    AddValidator {
        /// The organisation that runs it (a listed organisation's key).
        #[arg(long, value_name = "DID")]
        organisation: PublicKey,
        /// The key that signs its commit votes.
        #[arg(long, value_name = "DID")]
        consensus_key: PublicKey,
        /// Voting power, 1..=2^48.
        #[arg(
            long,
            value_name = "N",
            default_value_t = 1,
            allow_negative_numbers = true
        )]
        power: u64,
        /// Its libp2p peer id (default: derived from the consensus key).
        #[arg(long, value_name = "ID")]
        peer_id: Option<String>,
        /// Where other validators reach it, e.g. /ip4/10.0.0.1/tcp/7001 or
        /// /dns4/node1.example/tcp/7001 (nodes resolve the name when they dial; the validator
        /// itself listens on what the name resolves to on its host).
        #[arg(long, value_name = "MULTIADDR")]
        listen_addr: String,
    },
    /// Add an observer node (a hospital's read replica, an auditor's follower) allowed to
    /// connect from block 1. On a running network, use `twinctl governance propose
    /// add-observer` instead.
    AddObserver {
        /// Who runs it: free text for people.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The observer node's key (its peer id is derived from it).
        #[arg(
            long,
            value_name = "DID",
            conflicts_with = "peer_id",
            required_unless_present = "peer_id"
        )]
        key: Option<PublicKey>,
        /// Or its libp2p peer id.
        #[arg(long, value_name = "ID")]
        peer_id: Option<String>,
    },
    /// Add an auditor.
    AddAuditor {
        /// Its name (1..=128 bytes, no control characters, distinct).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Its key.
        #[arg(long, value_name = "DID")]
        key: PublicKey,
    },
    /// Enrol an actor (clinician, researcher, device, service) of a listed organisation.
    AddActor {
        /// Its key.
        #[arg(long, value_name = "DID")]
        key: PublicKey,
        /// Its organisation (a listed organisation's key).
        #[arg(long, value_name = "DID")]
        organisation: PublicKey,
        /// Its role: physician, nurse, paramedic, pharmacist, researcher, lab-technician,
        /// care-coordinator, device, service or privacy-officer.
        #[arg(long, value_name = "ROLE")]
        role: Role,
    },
    /// Summarise the file: name, chain id, time, every party with its did:key.
    Show,
    /// Check the file is a complete, valid genesis and print its chain id.
    Verify,
}

/// Runs a genesis command.
pub fn run(args: &GenesisArgs) -> Result<Output, CliError> {
    let path = args.file.as_path();
    match &args.command {
        GenesisCommand::Init {
            chain_name,
            genesis_time_ms,
            force,
        } => init(path, chain_name, *genesis_time_ms, *force),
        GenesisCommand::AddOrg { name, key } => change(path, "organisation", |f| {
            f.add_org(name, *key)?;
            Ok((
                json!({ "name": name, "key": key }),
                format!("{name:?} {key}"),
            ))
        }),
        GenesisCommand::AddValidator {
            organisation,
            consensus_key,
            power,
            peer_id,
            listen_addr,
        } => change(path, "validator", |f| {
            let entry = ValidatorEntry {
                organisation: *organisation,
                consensus_key: *consensus_key,
                power: *power,
                peer_id: peer_id
                    .clone()
                    .unwrap_or_else(|| peer_id_from_ed25519(consensus_key)),
                listen_addr: listen_addr.clone(),
            };
            let shown = (
                json!(entry),
                format!(
                    "{} (power {}, peer {}, {})",
                    entry.consensus_key, entry.power, entry.peer_id, entry.listen_addr
                ),
            );
            f.add_validator(entry)?;
            Ok(shown)
        }),
        GenesisCommand::AddObserver { name, key, peer_id } => change(path, "observer", |f| {
            let peer = match (key, peer_id) {
                (Some(k), _) => twinledger_genesis::peer_id_from_ed25519(k),
                (None, Some(p)) => p.clone(),
                (None, None) => unreachable!("clap requires --key or --peer-id"),
            };
            f.add_observer(name, &peer)?;
            Ok((
                json!({ "name": name, "peer_id": peer }),
                format!("{name:?} peer {peer}"),
            ))
        }),
        GenesisCommand::AddAuditor { name, key } => change(path, "auditor", |f| {
            f.add_auditor(name, *key)?;
            Ok((
                json!({ "name": name, "key": key }),
                format!("{name:?} {key}"),
            ))
        }),
        GenesisCommand::AddActor {
            key,
            organisation,
            role,
        } => change(path, "actor", |f| {
            let entry = ActorEntry {
                key: *key,
                organisation: *organisation,
                role: *role,
            };
            let shown = (json!(entry), format!("{key} ({role})"));
            f.add_actor(entry)?;
            Ok(shown)
        }),
        GenesisCommand::Show => show(path),
        GenesisCommand::Verify => verify(path),
    }
}

fn init(
    path: &Path,
    chain_name: &str,
    genesis_time_ms: Option<u64>,
    force: bool,
) -> Result<Output, CliError> {
    let exists = path.try_exists().map_err(|source| GenesisFileError::Io {
        action: "check for",
        path: path.to_owned(),
        source,
    })?;
    if exists && !force {
        return Err(CliError::Invalid(format!(
            "{} already exists; pass --force to replace it",
            path.display()
        )));
    }
    let time = match genesis_time_ms {
        Some(t) => t,
        None => now_ms()?,
    };
    let file = GenesisFile::new(chain_name, time);
    file.save_draft(path)?;
    let text = format!(
        "{} {}: chain {:?}, genesis time {}\n\
         next: add organisations (add-org), then validators (add-validator)\n",
        if exists { "replaced" } else { "created" },
        path.display(),
        file.chain_name,
        time_text(time),
    );
    Ok(Output {
        text,
        json: json!({
            "file": path.display().to_string(),
            "chain_name": file.chain_name,
            "genesis_time_ms": time,
        }),
    })
}

/// Loads the draft at `path`, applies `add` (which returns the added entry as JSON and as
/// text, for the output), validates and saves atomically. Nothing is written on any error.
fn change(
    path: &Path,
    what: &'static str,
    add: impl FnOnce(&mut GenesisFile) -> Result<(Value, String), GenesisFileError>,
) -> Result<Output, CliError> {
    let mut file = GenesisFile::load_draft(path)?;
    let (entry, entry_text) = add(&mut file).map_err(|source| CliError::Refused {
        what,
        path: path.to_owned(),
        source,
    })?;
    file.save_draft(path)?;
    let chain_id = chain_id_or_reason(&file);
    let status = match &chain_id {
        Ok(id) => format!("chain id: {id}"),
        Err(why) => format!("no chain id yet: {why}"),
    };
    let chain_id = chain_id.ok();
    Ok(Output {
        text: format!(
            "added {what} {entry_text} to {}\n{status}\n",
            path.display()
        ),
        json: json!({
            "file": path.display().to_string(),
            "added": what,
            "entry": entry,
            "chain_id": chain_id,
        }),
    })
}

/// The chain id if the file is a complete genesis, else why it is not one yet.
fn chain_id_or_reason(file: &GenesisFile) -> Result<String, String> {
    file.chain_id()
        .map(|id| id.to_string())
        .map_err(|e| e.to_string())
}

fn show(path: &Path) -> Result<Output, CliError> {
    let file = GenesisFile::load_draft(path)?;
    let chain_id = chain_id_or_reason(&file);
    let org_names: BTreeMap<PublicKey, &str> = file
        .organisations
        .iter()
        .map(|o| (o.key, o.name.as_str()))
        .collect();
    let org = |k: &PublicKey| org_names.get(k).copied().unwrap_or("?");

    let mut t = String::new();
    let _ = writeln!(t, "file:          {}", path.display());
    let _ = writeln!(t, "chain name:    {}", file.chain_name);
    let _ = match &chain_id {
        Ok(id) => writeln!(t, "chain id:      {id}"),
        Err(why) => writeln!(t, "chain id:      none yet ({why})"),
    };
    let _ = writeln!(t, "genesis time:  {}", time_text(file.genesis_time_ms));
    let _ = writeln!(t, "organisations: {}", file.organisations.len());
    for o in &file.organisations {
        let _ = writeln!(t, "  {}  {}", o.key, o.name);
    }
    let total: u128 = file.validators.iter().map(|v| u128::from(v.power)).sum();
    let _ = writeln!(
        t,
        "validators:    {} (total power {total})",
        file.validators.len()
    );
    for v in &file.validators {
        let _ = writeln!(
            t,
            "  {}  power {}, organisation {}\n      peer {}  {}",
            v.consensus_key,
            v.power,
            org(&v.organisation),
            v.peer_id,
            v.listen_addr
        );
    }
    let _ = writeln!(t, "auditors:      {}", file.auditors.len());
    for a in &file.auditors {
        let _ = writeln!(t, "  {}  {}", a.key, a.name);
    }
    let _ = writeln!(t, "actors:        {}", file.actors.len());
    for a in &file.actors {
        let _ = writeln!(t, "  {}  {}, {}", a.key, a.role, org(&a.organisation));
    }
    let l = &file.limits;
    let _ = writeln!(
        t,
        "limits:        max_event_bytes {}, max_events_per_block {}, max_grants_per_patient {}, \
         max_event_ttl_ms {}",
        l.max_event_bytes, l.max_events_per_block, l.max_grants_per_patient, l.max_event_ttl_ms
    );
    let _ = writeln!(
        t,
        "node policy:   block_interval_ms {}, mempool_size {} (not covered by the chain id)",
        l.block_interval_ms, l.mempool_size
    );

    let mut json = serde_json::to_value(&file).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut json {
        m.insert("chain_id".into(), json!(chain_id.ok()));
    }
    Ok(Output { text: t, json })
}

fn verify(path: &Path) -> Result<Output, CliError> {
    let file = GenesisFile::load(path)?;
    let id = file.chain_id()?;
    Ok(Output {
        text: format!(
            "valid: {}\nchain name: {}\nchain id: {id}\n",
            path.display(),
            file.chain_name
        ),
        json: json!({
            "file": path.display().to_string(),
            "valid": true,
            "chain_name": file.chain_name,
            "chain_id": id.to_string(),
        }),
    })
}
