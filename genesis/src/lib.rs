//! `twinledger-genesis`: the genesis file, its validation and the chain id.
//!
//! The genesis *file* is JSON, human-editable, built by a network's founders (with
//! `twinctl genesis`) and loaded by every node. It holds the ledger content that the state
//! machine starts from (organisations, validators, auditors, actors, chain limits) and the
//! network and node settings that go with it (validators' peer ids and listen addresses, block
//! interval, mempool size).
//!
//! The chain id is the hash of the ledger content only, [`GenesisFile::ledger_genesis`] as a
//! `twinledger_core::Genesis`: changing an address, a peer id, the block interval or the mempool
//! size keeps the chain (see `docs/adr/0004-genesis-file-and-chain-id.md`).
//!
//! Every loaded file is validated: each rule has its own [`GenesisFileError`] variant, naming
//! the field (`validators[2].power`) and the offending value.
//!
//! The file format, its rules and its mapping to the binary genesis are normative in
//! `docs/PROTOCOL.md` §10.2; `docs/protocol-vectors.json` holds a file and its chain id
//! (`genesis_file`, checked by `tests/protocol_vector.rs`).

mod error;
mod json;
mod net;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read as _, Write as _};
use std::ops::RangeInclusive;
use std::path::Path;

use serde::{Deserialize, Serialize};
use twinledger_core::state::{GENESIS_VERSION, GenesisActor, GenesisOrg};
use twinledger_core::validator::{MAX_POWER, MAX_VALIDATORS};
use twinledger_core::{ChainId, Genesis, Limits, PublicKey, Role, Timestamp};
use twinledger_core::{Validator, ValidatorSet};

pub use error::GenesisFileError;
pub use net::peer_id_from_ed25519;

/// The genesis file format version.
pub const GENESIS_FILE_VERSION: u8 = 1;

/// Largest genesis file accepted, bytes; larger input is refused before it is parsed.
pub const MAX_GENESIS_FILE_BYTES: u64 = 4 << 20;

/// Longest chain name, bytes (the core's rule).
pub const MAX_CHAIN_NAME_BYTES: usize = 64;
/// Longest organisation or auditor name, bytes (the core's rule for organisation names).
pub const MAX_PARTY_NAME_BYTES: usize = 128;

/// Accepted block interval, ms.
pub const BLOCK_INTERVAL_MS_RANGE: RangeInclusive<u64> = 50..=60_000;
/// Accepted mempool size, events.
pub const MEMPOOL_SIZE_RANGE: RangeInclusive<u32> = 1..=1_000_000;

/// The genesis file. Field order is the order of the JSON written by [`Self::to_json_pretty`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// [`GENESIS_FILE_VERSION`].
    pub version: u8,
    /// Human name of the chain (1..=64 bytes, no control characters).
    pub chain_name: String,
    /// Genesis time, ms since the Unix epoch; block 1 must be later.
    pub genesis_time_ms: u64,
    /// Member organisations (hospitals, institutes).
    pub organisations: Vec<OrgEntry>,
    /// The initial validators, with how to reach them.
    pub validators: Vec<ValidatorEntry>,
    /// Auditors.
    pub auditors: Vec<AuditorEntry>,
    /// Actors enrolled at genesis.
    pub actors: Vec<ActorEntry>,
    /// Chain limits and node policy.
    pub limits: GenesisLimits,
    /// Non-validator nodes (an auditor's follower, a hospital's read replica) allowed to
    /// connect, by libp2p peer id. Network policy: not covered by the chain id (ADR 0004).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<ObserverEntry>,
}

/// An observer node: follows and verifies the chain, serves the read API, never votes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserverEntry {
    /// Who runs it: free text for people. Not checked (any string is accepted) and not covered
    /// by the chain id (PROTOCOL.md §10.2).
    pub name: String,
    /// Its libp2p peer id (see [`peer_id_from_ed25519`]).
    pub peer_id: String,
}

/// A member organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgEntry {
    /// Its name (1..=128 bytes, no control characters, distinct).
    pub name: String,
    /// Its key (`did:key`).
    pub key: PublicKey,
}

/// A validator: ledger identity (organisation, consensus key, power) and network identity
/// (peer id, listen address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorEntry {
    /// The organisation that runs it (listed in `organisations`).
    pub organisation: PublicKey,
    /// The key that signs its commit votes.
    pub consensus_key: PublicKey,
    /// Voting power, 1..=2^48.
    pub power: u64,
    /// Its libp2p peer id (see [`peer_id_from_ed25519`]).
    pub peer_id: String,
    /// Where other validators reach it: a multiaddr.
    pub listen_addr: String,
}

/// An auditor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorEntry {
    /// Its name (1..=128 bytes, no control characters, distinct). Not part of the ledger
    /// genesis, so not covered by the chain id.
    pub name: String,
    /// Its key (`did:key`).
    pub key: PublicKey,
}

/// An actor (a clinician, a researcher, a device, a service) enrolled at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorEntry {
    /// Its key.
    pub key: PublicKey,
    /// Its organisation (listed in `organisations`).
    pub organisation: PublicKey,
    /// Its role.
    pub role: Role,
}

/// The chain's limits (the first four, covered by the chain id) and the node policy (the last
/// two, local to each node and not covered by the chain id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisLimits {
    /// Largest signed event, bytes (256..=65536).
    pub max_event_bytes: u32,
    /// Most events in a block (1..=10000).
    pub max_events_per_block: u32,
    /// Most grants one patient may hold (1..=65536).
    pub max_grants_per_patient: u32,
    /// Latest deadline an event may carry, relative to block time, ms (1000..=604800000).
    pub max_event_ttl_ms: u64,
    /// Target time between blocks, ms (50..=60000). Node policy.
    pub block_interval_ms: u64,
    /// Most events a node's mempool holds (1..=1000000). Node policy.
    pub mempool_size: u32,
}

impl Default for GenesisLimits {
    fn default() -> Self {
        let core = Limits::default();
        Self {
            max_event_bytes: core.max_event_bytes,
            max_events_per_block: core.max_block_events,
            max_grants_per_patient: core.max_grants_per_patient,
            max_event_ttl_ms: core.max_event_ttl_ms,
            block_interval_ms: 1000,
            mempool_size: 100_000,
        }
    }
}

/// A node's local policy from the genesis file: not part of the chain id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLimits {
    /// Target time between blocks, ms.
    pub block_interval_ms: u64,
    /// Most events the mempool holds.
    pub mempool_size: u32,
}

impl GenesisLimits {
    /// The ledger limits (PROTOCOL.md §10.1).
    pub fn ledger(&self) -> Limits {
        Limits {
            max_event_bytes: self.max_event_bytes,
            max_block_events: self.max_events_per_block,
            max_grants_per_patient: self.max_grants_per_patient,
            max_event_ttl_ms: self.max_event_ttl_ms,
        }
    }

    /// The node policy.
    pub fn node(&self) -> NodeLimits {
        NodeLimits {
            block_interval_ms: self.block_interval_ms,
            mempool_size: self.mempool_size,
        }
    }

    /// Checks every limit against its range (the ledger ranges are the core's, PROTOCOL.md
    /// §10), naming the file's field.
    pub fn validate(&self) -> Result<(), GenesisFileError> {
        let checks: [(&'static str, u64, u64, u64); 6] = [
            ("max_event_bytes", self.max_event_bytes.into(), 256, 65_536),
            (
                "max_events_per_block",
                self.max_events_per_block.into(),
                1,
                10_000,
            ),
            (
                "max_grants_per_patient",
                self.max_grants_per_patient.into(),
                1,
                65_536,
            ),
            (
                "max_event_ttl_ms",
                self.max_event_ttl_ms,
                1000,
                7 * 24 * 3600 * 1000,
            ),
            (
                "block_interval_ms",
                self.block_interval_ms,
                *BLOCK_INTERVAL_MS_RANGE.start(),
                *BLOCK_INTERVAL_MS_RANGE.end(),
            ),
            (
                "mempool_size",
                self.mempool_size.into(),
                (*MEMPOOL_SIZE_RANGE.start()).into(),
                (*MEMPOOL_SIZE_RANGE.end()).into(),
            ),
        ];
        for (name, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(GenesisFileError::LimitOutOfRange {
                    name,
                    value,
                    min,
                    max,
                });
            }
        }
        // The core is the authority on the ledger ranges; the table above only names the
        // file's fields (and a unit test keeps the two in step).
        self.ledger().validate()?;
        Ok(())
    }
}

impl GenesisFile {
    /// An empty genesis (no parties yet) with default limits: a draft to add parties to.
    pub fn new(chain_name: &str, genesis_time_ms: u64) -> Self {
        Self {
            version: GENESIS_FILE_VERSION,
            chain_name: chain_name.to_owned(),
            genesis_time_ms,
            organisations: Vec::new(),
            validators: Vec::new(),
            auditors: Vec::new(),
            actors: Vec::new(),
            limits: GenesisLimits::default(),
            observers: Vec::new(),
        }
    }

    /// Parses and validates a genesis file's JSON. Input over [`MAX_GENESIS_FILE_BYTES`] is
    /// refused before parsing.
    pub fn from_json(json: &str) -> Result<Self, GenesisFileError> {
        let file = json::parse(json)?;
        file.validate()?;
        Ok(file)
    }

    /// Parses and validates a genesis file under construction: as [`Self::from_json`], except
    /// that it may list no organisation or no validator yet (see [`Self::validate_draft`]).
    pub fn from_json_draft(json: &str) -> Result<Self, GenesisFileError> {
        let file = json::parse(json)?;
        file.validate_draft()?;
        Ok(file)
    }

    /// Reads and validates a genesis file. Errors name the path.
    pub fn load(path: &Path) -> Result<Self, GenesisFileError> {
        Self::from_json(&read(path)?).map_err(|e| e.in_file(path))
    }

    /// Reads and validates a genesis file under construction (see [`Self::validate_draft`]).
    pub fn load_draft(path: &Path) -> Result<Self, GenesisFileError> {
        Self::from_json_draft(&read(path)?).map_err(|e| e.in_file(path))
    }

    /// Pretty-printed JSON, two-space indent, ending with a newline: the form of the files
    /// [`Self::save`] writes.
    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self)
            .expect("a genesis file serialises: strings, integers, lists and keys only");
        s.push('\n');
        s
    }

    /// Validates, then writes atomically: a temporary file in the same directory, fsync,
    /// rename over `path`, fsync of the directory. On any error `path` is unchanged.
    pub fn save(&self, path: &Path) -> Result<(), GenesisFileError> {
        self.validate()?;
        write_atomic(path, self.to_json_pretty().as_bytes())
    }

    /// As [`Self::save`] for a genesis file under construction (see [`Self::validate_draft`]).
    pub fn save_draft(&self, path: &Path) -> Result<(), GenesisFileError> {
        self.validate_draft()?;
        write_atomic(path, self.to_json_pretty().as_bytes())
    }

    /// Checks every rule; the first broken one is the error. A valid file converts to a core
    /// genesis that the core's own validation accepts.
    pub fn validate(&self) -> Result<(), GenesisFileError> {
        self.ledger_genesis().map(drop)
    }

    /// Checks every rule except that at least one organisation and one validator are listed:
    /// what a file being built with `twinctl genesis` must satisfy between steps.
    pub fn validate_draft(&self) -> Result<(), GenesisFileError> {
        self.check(false)
    }

    /// The ledger content as the state machine's genesis, validated by the core too.
    pub fn ledger_genesis(&self) -> Result<Genesis, GenesisFileError> {
        self.check(true)?;
        let validators = ValidatorSet::new(
            self.validators
                .iter()
                .map(|v| Validator {
                    key: v.consensus_key,
                    organisation: v.organisation,
                    power: v.power,
                })
                .collect(),
        )
        .map_err(twinledger_core::state::GenesisError::from)?;
        let genesis = Genesis {
            version: GENESIS_VERSION,
            chain_name: self.chain_name.clone(),
            genesis_time: Timestamp(self.genesis_time_ms),
            organisations: self
                .organisations
                .iter()
                .map(|o| GenesisOrg {
                    key: o.key,
                    name: o.name.clone(),
                })
                .collect(),
            validators,
            auditors: self.auditors.iter().map(|a| a.key).collect(),
            actors: self
                .actors
                .iter()
                .map(|a| GenesisActor {
                    key: a.key,
                    organisation: a.organisation,
                    role: a.role,
                })
                .collect(),
            limits: self.limits.ledger(),
        };
        genesis.validate()?;
        Ok(genesis)
    }

    /// The chain id: the hash of [`Self::ledger_genesis`]. Network addresses, peer ids,
    /// auditor names and node policy are not covered.
    pub fn chain_id(&self) -> Result<ChainId, GenesisFileError> {
        Ok(self.ledger_genesis()?.chain_id())
    }

    /// The node's local policy.
    pub fn node_limits(&self) -> NodeLimits {
        self.limits.node()
    }

    /// Adds an organisation; refused (and nothing changed) if the result breaks a rule.
    pub fn add_org(&mut self, name: &str, key: PublicKey) -> Result<(), GenesisFileError> {
        self.organisations.push(OrgEntry {
            name: name.to_owned(),
            key,
        });
        self.keep_if_valid(|f| {
            f.organisations.pop();
        })
    }

    /// Adds a validator; refused (and nothing changed) if the result breaks a rule.
    pub fn add_validator(&mut self, v: ValidatorEntry) -> Result<(), GenesisFileError> {
        self.validators.push(v);
        self.keep_if_valid(|f| {
            f.validators.pop();
        })
    }

    /// Adds an observer node by peer id; refused (and nothing changed) if the result breaks a
    /// rule (a malformed peer id, one already listed).
    pub fn add_observer(&mut self, name: &str, peer_id: &str) -> Result<(), GenesisFileError> {
        self.observers.push(ObserverEntry {
            name: name.to_owned(),
            peer_id: peer_id.to_owned(),
        });
        self.keep_if_valid(|f| {
            f.observers.pop();
        })
    }

    /// Adds an auditor; refused (and nothing changed) if the result breaks a rule.
    pub fn add_auditor(&mut self, name: &str, key: PublicKey) -> Result<(), GenesisFileError> {
        self.auditors.push(AuditorEntry {
            name: name.to_owned(),
            key,
        });
        self.keep_if_valid(|f| {
            f.auditors.pop();
        })
    }

    /// Adds an actor; refused (and nothing changed) if the result breaks a rule.
    pub fn add_actor(&mut self, a: ActorEntry) -> Result<(), GenesisFileError> {
        self.actors.push(a);
        self.keep_if_valid(|f| {
            f.actors.pop();
        })
    }

    /// Validates as a draft; on error undoes the last change.
    fn keep_if_valid(&mut self, undo: impl FnOnce(&mut Self)) -> Result<(), GenesisFileError> {
        let result = self.validate_draft();
        if result.is_err() {
            undo(self);
        }
        result
    }

    /// The file's own rules, in a fixed order; `complete` also requires at least one
    /// organisation and one validator.
    fn check(&self, complete: bool) -> Result<(), GenesisFileError> {
        if self.version != GENESIS_FILE_VERSION {
            return Err(GenesisFileError::Version {
                found: self.version,
                expected: GENESIS_FILE_VERSION,
            });
        }
        check_name("chain_name", &self.chain_name, MAX_CHAIN_NAME_BYTES)?;
        if complete && self.organisations.is_empty() {
            return Err(GenesisFileError::Empty {
                what: "organisation",
            });
        }
        if complete && self.validators.is_empty() {
            return Err(GenesisFileError::Empty { what: "validator" });
        }
        if self.validators.len() > MAX_VALIDATORS {
            return Err(GenesisFileError::TooManyValidators {
                count: self.validators.len(),
                max: MAX_VALIDATORS,
            });
        }

        let mut keys = Unique::default();
        let mut names = Unique::default();
        for (i, o) in self.organisations.iter().enumerate() {
            let field = format!("organisations[{i}].name");
            check_name(&field, &o.name, MAX_PARTY_NAME_BYTES)?;
            names.claim(o.name.clone(), field, name_error)?;
            keys.claim(o.key, format!("organisations[{i}].key"), key_error)?;
        }
        for (i, a) in self.auditors.iter().enumerate() {
            let field = format!("auditors[{i}].name");
            check_name(&field, &a.name, MAX_PARTY_NAME_BYTES)?;
            names.claim(a.name.clone(), field, name_error)?;
            keys.claim(a.key, format!("auditors[{i}].key"), key_error)?;
        }
        let orgs: BTreeSet<PublicKey> = self.organisations.iter().map(|o| o.key).collect();
        let known_org = |org: &PublicKey, field: String| {
            if orgs.contains(org) {
                Ok(())
            } else {
                Err(GenesisFileError::UnknownOrganisation { field, org: *org })
            }
        };
        for (i, a) in self.actors.iter().enumerate() {
            keys.claim(a.key, format!("actors[{i}].key"), key_error)?;
            known_org(&a.organisation, format!("actors[{i}].organisation"))?;
        }
        let mut peer_ids = Unique::default();
        let mut addrs = Unique::default();
        for (i, v) in self.validators.iter().enumerate() {
            keys.claim(
                v.consensus_key,
                format!("validators[{i}].consensus_key"),
                key_error,
            )?;
            known_org(&v.organisation, format!("validators[{i}].organisation"))?;
            if v.power == 0 || v.power > MAX_POWER {
                return Err(GenesisFileError::BadPower {
                    field: format!("validators[{i}].power"),
                    power: v.power,
                    max: MAX_POWER,
                });
            }
            let field = format!("validators[{i}].peer_id");
            net::check_peer_id(&v.peer_id).map_err(|problem| GenesisFileError::BadPeerId {
                field: field.clone(),
                value: error::shown(&v.peer_id),
                problem,
            })?;
            peer_ids.claim(v.peer_id.clone(), field, |peer_id, first, second| {
                GenesisFileError::DuplicatePeerId {
                    peer_id,
                    first,
                    second,
                }
            })?;
            let field = format!("validators[{i}].listen_addr");
            let addr = net::check_listen_addr(&v.listen_addr, &v.peer_id).map_err(|problem| {
                GenesisFileError::BadListenAddr {
                    field: field.clone(),
                    value: error::shown(&v.listen_addr),
                    problem,
                }
            })?;
            addrs.claim(addr.transport.to_owned(), field, |addr, first, second| {
                GenesisFileError::DuplicateListenAddr {
                    addr,
                    first,
                    second,
                }
            })?;
        }
        for (i, o) in self.observers.iter().enumerate() {
            let field = format!("observers[{i}].peer_id");
            net::check_peer_id(&o.peer_id).map_err(|problem| GenesisFileError::BadPeerId {
                field: field.clone(),
                value: error::shown(&o.peer_id),
                problem,
            })?;
            peer_ids.claim(o.peer_id.clone(), field, |peer_id, first, second| {
                GenesisFileError::DuplicatePeerId {
                    peer_id,
                    first,
                    second,
                }
            })?;
        }
        self.limits.validate()
    }
}

/// Values that must be distinct, each remembered with the field that first used it.
#[derive(Debug)]
struct Unique<T> {
    seen: BTreeMap<T, String>,
}

impl<T> Default for Unique<T> {
    fn default() -> Self {
        Self {
            seen: BTreeMap::new(),
        }
    }
}

impl<T: Ord> Unique<T> {
    /// Records `value` as used by `field`, or builds the duplicate error `(value, first, field)`.
    fn claim(
        &mut self,
        value: T,
        field: String,
        err: impl FnOnce(T, String, String) -> GenesisFileError,
    ) -> Result<(), GenesisFileError> {
        use std::collections::btree_map::Entry;
        match self.seen.entry(value) {
            Entry::Vacant(e) => {
                e.insert(field);
                Ok(())
            }
            Entry::Occupied(e) => {
                let first = e.get().clone();
                Err(err(e.remove_entry().0, first, field))
            }
        }
    }
}

fn key_error(key: PublicKey, first: String, second: String) -> GenesisFileError {
    GenesisFileError::DuplicateKey { key, first, second }
}

fn name_error(name: String, first: String, second: String) -> GenesisFileError {
    GenesisFileError::DuplicateName {
        name: error::shown(&name),
        first,
        second,
    }
}

/// The core's naming rule (`twinledger_core::state`, PROTOCOL.md §10): 1..=max bytes, no
/// control characters.
fn check_name(field: &str, name: &str, max: usize) -> Result<(), GenesisFileError> {
    let problem = if name.is_empty() || name.len() > max {
        format!("is {} bytes; names must be 1..={max} bytes", name.len())
    } else if name.chars().any(char::is_control) {
        "contains a control character".to_owned()
    } else {
        return Ok(());
    };
    Err(GenesisFileError::InvalidName {
        field: field.to_owned(),
        value: error::shown(name),
        problem,
    })
}

/// Reads a file of at most [`MAX_GENESIS_FILE_BYTES`] as UTF-8.
fn read(path: &Path) -> Result<String, GenesisFileError> {
    let io = |source| GenesisFileError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_GENESIS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let size = bytes.len() as u64;
    if size > MAX_GENESIS_FILE_BYTES {
        let size = fs::metadata(path).map_or(size, |m| m.len().max(size));
        return Err(GenesisFileError::TooLarge {
            size,
            max: MAX_GENESIS_FILE_BYTES,
        }
        .in_file(path));
    }
    String::from_utf8(bytes).map_err(|e| {
        GenesisFileError::Syntax(format!(
            "not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
        .in_file(path)
    })
}

/// Replaces `path` with `contents` atomically: a temporary file in the same directory, written
/// and fsynced, renamed over `path`, then the directory fsynced so the rename is durable.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), GenesisFileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let io = |action, p: &Path| {
        let p = p.to_owned();
        move |source| GenesisFileError::Io {
            action,
            path: p,
            source,
        }
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".genesis-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io("create a temporary file in", dir))?;
    // Keep the permissions of the file being replaced; a new genesis is public: 0644.
    let permissions = match fs::metadata(path) {
        Ok(m) => Some(m.permissions()),
        Err(_) => default_permissions(),
    };
    if let Some(p) = permissions {
        tmp.as_file()
            .set_permissions(p)
            .map_err(io("set permissions on", tmp.path()))?;
    }
    tmp.write_all(contents).map_err(io("write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(io("sync", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io("replace", path)(e.error))?;
    sync_dir(dir).map_err(io("sync directory", dir))
}

#[cfg(unix)]
fn default_permissions() -> Option<fs::Permissions> {
    use std::os::unix::fs::PermissionsExt as _;
    Some(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn default_permissions() -> Option<fs::Permissions> {
    None
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file's limit table agrees with the core's ranges at every boundary.
    #[test]
    fn ledger_limit_ranges_match_the_core() {
        type Set = fn(&mut GenesisLimits, u64);
        let fields: [(Set, u64, u64); 4] = [
            (
                |l, v| l.max_event_bytes = u32::try_from(v).unwrap(),
                256,
                65_536,
            ),
            (
                |l, v| l.max_events_per_block = u32::try_from(v).unwrap(),
                1,
                10_000,
            ),
            (
                |l, v| l.max_grants_per_patient = u32::try_from(v).unwrap(),
                1,
                65_536,
            ),
            (|l, v| l.max_event_ttl_ms = v, 1000, 7 * 24 * 3600 * 1000),
        ];
        for (set, min, max) in fields {
            for value in [min - 1, min, max, max + 1] {
                let mut l = GenesisLimits::default();
                set(&mut l, value);
                let core_ok = l.ledger().validate().is_ok();
                let ours = l.validate();
                assert_eq!(ours.is_ok(), core_ok, "{value}: {ours:?}");
                if let Err(e) = ours {
                    assert!(
                        matches!(e, GenesisFileError::LimitOutOfRange { .. }),
                        "our table, not the core, should name the field: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn default_limits_are_the_core_defaults() {
        let l = GenesisLimits::default();
        assert_eq!(l.ledger(), Limits::default());
        assert_eq!(
            l.node(),
            NodeLimits {
                block_interval_ms: 1000,
                mempool_size: 100_000
            }
        );
        l.validate().unwrap();
    }

    #[test]
    fn names_follow_the_core_rule() {
        assert!(check_name("f", "", 64).is_err());
        assert!(check_name("f", &"a".repeat(64), 64).is_ok());
        assert!(check_name("f", &"a".repeat(65), 64).is_err());
        assert!(check_name("f", "tab\there", 64).is_err());
        assert!(check_name("f", "Hôpital Saint-Éloi", 64).is_ok());
        let e = check_name("organisations[3].name", "a\u{7}b", 128).unwrap_err();
        assert_eq!(
            e.to_string(),
            "organisations[3].name \"a\\u{7}b\" contains a control character"
        );
    }
}
