//! `twinctl twin seal | open | erase`: sealed twin versions (issue #14, ADR 0013, PROTOCOL.md
//! §5.10, §6.12, §11.6).
//!
//! - `seal` streams a file through age into a store ([`twinledger_sealed::seal`]), records a
//!   `TwinSeal` naming the node's custodian, waits until it is final, then deposits the data key
//!   wrapped to the custodian's ed25519 key (`POST /v1/custodian/keys`, signed per §11.1).
//! - `open` verifies the sealed anchor offline (as `twin check` does), asks the custodian for the
//!   key with an access receipt (`POST /v1/custodian/release`, signed), unwraps it with the
//!   requester's own secret and opens the ciphertext, checking its hash and size and the
//!   plaintext's hash; the output file appears only when everything matches.
//! - `erase` records a `TwinErase`; the custodian destroys the key once it is final.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};
use twinledger_core::codes::DataCategory;
use twinledger_core::event::sealing::{TwinErase, TwinSeal};
use twinledger_core::{EventPayload, Hash, Keypair, PublicKey, Receipt, TwinId};
use twinledger_genesis::GenesisFile;
use twinledger_sealed::store::{LocalStore, SealedStore as _};
use twinledger_sealed::{Expected, SealError, VersionId};

use super::{SaltArgs, local_id, verified_version};
use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::submit::submit_and_wait;
use crate::{CliError, Output};

/// `twinctl twin seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The sealing actor's key file (a live actor of the custodian's organisation).
    #[arg(long)]
    pub key: PathBuf,
    /// Passphrase source.
    #[command(flatten)]
    pub pass: PassphraseArgs,
    /// The patient (did:key).
    #[arg(long)]
    pub patient: String,
    /// The custodian-local id: 64 hex digits, or a label keyed with the twin salt.
    #[arg(long)]
    pub twin_id: String,
    /// The twin salt (for labels).
    #[command(flatten)]
    pub salt: SaltArgs,
    /// The version (strictly increasing per twin).
    #[arg(long)]
    pub version: u64,
    /// What the version holds (a data category code: vital-signs, GDIS, ...; see `twinctl
    /// codes`): access receipts for this category release its key.
    #[arg(long)]
    pub category: String,
    /// The sealed store: a directory (the version is written to `<DIR>/<twin>/<version>.age`).
    #[arg(long)]
    pub store: PathBuf,
    /// The file holding the twin's state at that version (read streaming).
    pub file: PathBuf,
}

/// `twinctl twin open`.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The requester's key file: the author of the access request the receipt proves.
    #[arg(long)]
    pub key: PathBuf,
    /// Passphrase source.
    #[command(flatten)]
    pub pass: PassphraseArgs,
    /// The access (or break-glass) receipt, as `twinctl access request --receipt-out` wrote it.
    #[arg(long)]
    pub receipt: PathBuf,
    /// The twin id the ledger records (64 hex digits, as `twin seal` prints it).
    #[arg(long)]
    pub twin_id: String,
    /// The version.
    #[arg(long)]
    pub version: u64,
    /// The sealed store (directory) holding the version.
    #[arg(long)]
    pub store: PathBuf,
    /// The chain's genesis file (the sealed anchor is verified against it).
    #[arg(long)]
    pub genesis: PathBuf,
    /// A chain of validator-set changes from a source you trust; merged with the node's answer.
    #[arg(long)]
    pub validator_sets: Option<PathBuf>,
    /// Where to write the opened version (must not exist; written only if everything matches).
    #[arg(long)]
    pub out: PathBuf,
}

/// `twinctl twin erase`.
#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The patient's key, a guardian's (a live delegate of the whole scope), or a live actor of
    /// the hosting organisation.
    #[arg(long)]
    pub key: PathBuf,
    /// Passphrase source.
    #[command(flatten)]
    pub pass: PassphraseArgs,
    /// The patient (did:key); by default the patient of the sealed version, as the node reports it
    /// (the ledger refuses an erase naming another patient).
    #[arg(long)]
    pub patient: Option<String>,
    /// The twin id the ledger records (64 hex digits).
    #[arg(long)]
    pub twin_id: String,
    /// The version.
    #[arg(long)]
    pub version: u64,
}

fn bound_twin(s: &str) -> Result<TwinId, CliError> {
    TwinId::from_hex(s).map_err(|e| {
        CliError::Invalid(format!(
            "--twin-id: {e} (the 64-hex twin id the ledger records, as `twin seal` prints it)"
        ))
    })
}

fn version_id(twin: &TwinId, version: u64) -> Result<VersionId, CliError> {
    VersionId::new(&twin.to_hex(), version).map_err(|e| CliError::Invalid(e.to_string()))
}

/// The node's custodian and its organisation (`GET /v1/custodian`).
fn custodian(client: &NodeClient) -> Result<(PublicKey, PublicKey), CliError> {
    let v = client.get_json("/v1/custodian").map_err(|e| match e {
        CliError::Node {
            status: 404,
            code,
            message,
        } => CliError::Invalid(format!(
            "the node runs no key custodian ({code}: {message}); sealing needs one \
             (twinledger-node --custodian-key, or --dev)"
        )),
        e => e,
    })?;
    let key = |field: &str| {
        v[field]
            .as_str()
            .and_then(|d| PublicKey::from_did(d).ok())
            .ok_or_else(|| {
                CliError::Invalid(format!(
                    "GET /v1/custodian: field `{field}` is not a did:key ({})",
                    v[field]
                ))
            })
    };
    Ok((key("custodian")?, key("organisation")?))
}

/// A temporary name beside `path` (same directory, so a rename is atomic).
fn temp_beside(path: &Path) -> Result<PathBuf, CliError> {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| CliError::Invalid(format!("OS RNG: {e}")))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "twin".into());
    Ok(path.with_file_name(format!(".{name}.{}.tmp", hex::encode(rnd))))
}

fn new_private_file(path: &Path) -> Result<std::fs::File, CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path).map_err(CliError::io("create", path))
}

fn seal_error(e: SealError) -> CliError {
    match e {
        SealError::Io { .. } | SealError::StoreIo { .. } => CliError::Invalid(e.to_string()),
        SealError::ObjectExists { .. } | SealError::InvalidTwinId { .. } => {
            CliError::Invalid(e.to_string())
        }
        other => CliError::Mismatch(other.to_string()),
    }
}

/// `twinctl twin seal`.
pub fn seal(a: &SealArgs, node: &str) -> Result<Output, CliError> {
    let patient = PublicKey::from_did(&a.patient)
        .map_err(|e| CliError::Invalid(format!("--patient: {e}")))?;
    let category: DataCategory = a
        .category
        .parse()
        .map_err(|e| CliError::Invalid(format!("--category: {e}")))?;
    let local = local_id(&a.twin_id, &a.salt)?;
    let input = std::fs::File::open(&a.file).map_err(CliError::io("read", &a.file))?;
    let key = open_key(&a.key, &a.pass, node)?;
    let client = NodeClient::connect(node)?;
    let (custodian, organisation) = custodian(&client)?;
    let twin = TwinId::bound(&organisation, &local);
    let id = version_id(&twin, a.version)?;
    let store = LocalStore::new(&a.store).map_err(seal_error)?;
    if store.exists(&id).map_err(seal_error)? {
        return Err(CliError::Invalid(format!(
            "{id} is already in the store {} (a sealed version is never replaced)",
            a.store.display()
        )));
    }
    // Seal to a private temporary file in the store's directory, then store it atomically.
    let tmp = temp_beside(&a.store.join("seal"))?;
    let sealed = (|| {
        let out = new_private_file(&tmp)?;
        let mut w = std::io::BufWriter::new(out);
        let sealed =
            twinledger_sealed::seal(std::io::BufReader::new(input), &mut w).map_err(seal_error)?;
        w.flush().map_err(CliError::io("write", &tmp))?;
        let mut f = std::fs::File::open(&tmp).map_err(CliError::io("read", &tmp))?;
        store.put(&id, &mut f).map_err(seal_error)?;
        Ok::<_, CliError>(sealed)
    })();
    let _ = std::fs::remove_file(&tmp);
    let sealed = sealed?;
    let payload = EventPayload::TwinSeal(TwinSeal {
        twin: local,
        patient,
        version: a.version,
        state_hash: Hash(sealed.plaintext_hash),
        category,
        ciphertext_hash: Hash(sealed.ciphertext_hash),
        ciphertext_size: sealed.ciphertext_size,
        custodian,
    });
    let (event, height) = match submit_and_wait(node, &key, payload) {
        Ok(r) => r,
        Err(e) => {
            // Nothing on the ledger names this ciphertext: take it out of the store again.
            let _ = store.delete(&id);
            return Err(e);
        }
    };
    let wrapped = twinledger_sealed::wrap_for(&sealed.data_key, &id, custodian.as_bytes())
        .map_err(seal_error)?;
    let body =
        json!({"twin": twin.to_hex(), "version": a.version, "wrapped_hex": hex::encode(wrapped)});
    client
        .signed_post(&key, "/v1/custodian/keys", &body)
        .map_err(|e| {
            CliError::Invalid(format!(
                "{id} is sealed on the ledger (event {event}, block {height}) but the custodian \
                 did not take its data key: {e}; without the key no one can open this version: \
                 seal the state again as a new version"
            ))
        })?;
    let (ct, pt) = (Hash(sealed.ciphertext_hash), Hash(sealed.plaintext_hash));
    Ok(Output {
        text: format!(
            "sealed twin {twin} version {} ({category}): {} bytes, state {pt}, ciphertext {ct} \
             ({} bytes); event {event} in block {height}; data key deposited with custodian {}\n",
            a.version,
            sealed.size,
            sealed.ciphertext_size,
            custodian.to_did()
        ),
        json: json!({
            "twin": twin, "local": local, "organisation": organisation, "version": a.version,
            "category": category, "state_hash": pt, "ciphertext_hash": ct,
            "size": sealed.size, "ciphertext_size": sealed.ciphertext_size,
            "custodian": custodian, "id": event, "height": height, "deposited": true,
        }),
    })
}

/// `twinctl twin open`.
pub fn open(a: &OpenArgs, node: &str) -> Result<Output, CliError> {
    let twin = bound_twin(&a.twin_id)?;
    let id = version_id(&twin, a.version)?;
    let receipt_text = crate::files::read_to_string(&a.receipt)?;
    let receipt: Value = serde_json::from_str(&receipt_text).map_err(|e| {
        CliError::Invalid(format!("{}: not a receipt file: {e}", a.receipt.display()))
    })?;
    crate::files::check_output(&a.out)?;
    let store = LocalStore::new(&a.store).map_err(seal_error)?;
    let ledger = GenesisFile::load(&a.genesis)?.ledger_genesis()?;
    let key = open_key(&a.key, &a.pass, node)?;
    let client = NodeClient::connect(node)?;
    // The sealed anchor, proven by its receipt (not taken on the node's word).
    let v = client.signed_get(&key, &format!("/v1/twins/{twin}/{}", a.version))?;
    let (_, seal) = verified_version(&ledger, &v, a.validator_sets.as_deref(), twin, a.version)?;
    let seal = seal.ok_or_else(|| {
        CliError::Invalid(format!(
            "twin {twin} version {} is anchored, not sealed: there is nothing to open \
             (check a copy with `twinctl twin check`)",
            a.version
        ))
    })?;
    // The ciphertext must be at hand before a release is spent on it.
    let object = store.path_of(&id);
    if !object.is_file() {
        return Err(CliError::Io {
            doing: "read",
            path: object,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{id} is not in the store {}", a.store.display()),
            ),
        });
    }
    // ... and be the sealed file the ledger anchored: a changed or cut file is refused before
    // the release, so it does not spend the permit (each permit releases a key once).
    let size = store
        .get(&id, &mut std::io::sink(), Some(&seal.ciphertext_hash.0))
        .map_err(|e| {
            CliError::Mismatch(format!(
                "tampered ciphertext: {} is not the sealed file the ledger anchored for {id} \
                 ({e}); no key was requested, nothing written",
                object.display()
            ))
        })?;
    if size != seal.ciphertext_size {
        return Err(CliError::Mismatch(format!(
            "tampered ciphertext: {} holds {size} bytes, the ledger anchored {}; no key was \
             requested, nothing written",
            object.display(),
            seal.ciphertext_size
        )));
    }
    let body = json!({"twin": twin.to_hex(), "version": a.version, "receipt": receipt});
    let (ans, _) = client
        .signed_post(&key, "/v1/custodian/release", &body)
        .map_err(|e| match e {
            CliError::Node {
                status,
                code,
                message,
            } if status < 500 => CliError::Denied(format!(
                "the custodian refused to release the key of {id} ({code}): {message}"
            )),
            e => e,
        })?;
    let wrapped = ans["wrapped_hex"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| {
            CliError::Mismatch("the custodian's answer has no hex field `wrapped_hex`".into())
        })?;
    let break_glass = ans["break_glass"].as_bool().unwrap_or(false);
    let release = ans["release"].as_str().unwrap_or("").to_string();
    let secret = zeroize::Zeroizing::new(key.secret_bytes());
    let data_key = twinledger_sealed::unwrap_with(&wrapped, &id, &secret).map_err(|e| {
        CliError::Mismatch(format!(
            "the released key does not open for {}: {e}",
            key.public().to_did()
        ))
    })?;
    let expected = Expected {
        ciphertext_hash: Some(seal.ciphertext_hash.0),
        ciphertext_size: Some(seal.ciphertext_size),
        plaintext_hash: Some(seal.state_hash.0),
    };
    let tmp = temp_beside(&a.out)?;
    let opened = (|| {
        let input = std::fs::File::open(&object).map_err(CliError::io("read", &object))?;
        let out = new_private_file(&tmp)?;
        let mut w = std::io::BufWriter::new(out);
        let opened = twinledger_sealed::open(input, &mut w, &data_key, &expected).map_err(|e| {
            CliError::Mismatch(format!(
                "{id} ({}) does not open as sealed: {e}; nothing written",
                object.display()
            ))
        })?;
        let f = w
            .into_inner()
            .map_err(|e| CliError::io("write", &tmp)(e.into_error()))?;
        f.sync_all().map_err(CliError::io("write", &tmp))?;
        crate::files::refuse_existing(&a.out)?;
        std::fs::rename(&tmp, &a.out).map_err(CliError::io("write", &a.out))?;
        Ok::<_, CliError>(opened)
    })();
    if opened.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let opened = opened?;
    let flag = if break_glass {
        "; released under break-glass: flagged for review"
    } else {
        ""
    };
    Ok(Output {
        text: format!(
            "opened twin {twin} version {} ({}) to {}: {} bytes, state {} and ciphertext {} \
             match the sealed anchor; key release {release}{flag}\n",
            a.version,
            seal.category,
            a.out.display(),
            opened.size,
            seal.state_hash,
            seal.ciphertext_hash
        ),
        json: json!({
            "twin": twin, "version": a.version, "category": seal.category,
            "out": a.out, "size": opened.size, "state_hash": seal.state_hash,
            "ciphertext_hash": seal.ciphertext_hash, "ciphertext_size": seal.ciphertext_size,
            "release": release, "break_glass": break_glass, "anchor_verified": true,
        }),
    })
}

/// The patient of a sealed version as the node's answer names it (only to fill the event's
/// field: the ledger checks it).
fn patient_of(
    client: &NodeClient,
    key: &Keypair,
    twin: &TwinId,
    version: u64,
) -> Result<PublicKey, CliError> {
    let v = client.signed_get(key, &format!("/v1/twins/{twin}/{version}"))?;
    let receipt: Receipt = crate::receipt::canonical(&v["receipt"], "receipt")?;
    match receipt.event.event.payload {
        EventPayload::TwinSeal(s) => Ok(s.patient),
        other => Err(CliError::Invalid(format!(
            "twin {twin} version {version} is recorded by a {} event, not sealed: nothing to erase",
            other.kind()
        ))),
    }
}

/// `twinctl twin erase`.
pub fn erase(a: &EraseArgs, node: &str) -> Result<Output, CliError> {
    let twin = bound_twin(&a.twin_id)?;
    let given = a
        .patient
        .as_deref()
        .map(|p| PublicKey::from_did(p).map_err(|e| CliError::Invalid(format!("--patient: {e}"))))
        .transpose()?;
    let key = open_key(&a.key, &a.pass, node)?;
    let patient = match given {
        Some(p) => p,
        None => patient_of(&NodeClient::connect(node)?, &key, &twin, a.version)?,
    };
    let payload = EventPayload::TwinErase(TwinErase {
        patient,
        twin,
        version: a.version,
    });
    let (event, height) = submit_and_wait(node, &key, payload)?;
    Ok(Output {
        text: format!(
            "erased twin {twin} version {} (event {event}, block {height}): the erase is final, \
             so the custodian destroys its data key and no one can open this version again\n",
            a.version
        ),
        json: json!({"twin": twin, "version": a.version, "id": event, "height": height, "erased": true}),
    })
}
