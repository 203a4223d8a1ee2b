//! `twinctl twin`: anchor the hash of a twin version, and check a copy against the anchor;
//! seal a version into a store, open it with a key the custodian releases, erase it
//! ([`sealed`], protocol 2.4).

mod sealed;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use twinledger_core::event::integrity::TwinAnchor;
use twinledger_core::event::sealing::TwinSeal;
use twinledger_core::state::records::ActorRecord;
use twinledger_core::{
    BlockHeader, CommitCertificate, EventPayload, Genesis, Hash, LocalTwinId, Outcome, PublicKey,
    Receipt, StateProof, Table, TwinId, codec,
};
use twinledger_genesis::GenesisFile;

use crate::client::NodeClient;
use crate::key::{PassphraseArgs, open_key};
use crate::submit::submit_and_wait;
use crate::{CliError, Output};

/// `twinctl twin ...`
#[derive(Debug, Args)]
pub struct TwinArgs {
    /// The twin command.
    #[command(subcommand)]
    pub command: TwinCommand,
}

/// Where the custodian's secret twin salt comes from (PROTOCOL.md §5.6).
#[derive(Debug, Args)]
pub struct SaltArgs {
    /// The custodian organisation's twin salt file (written by `twinctl twin salt new`); else
    /// the file named by env TWINLEDGER_TWIN_SALT. Needed only for labels.
    #[arg(long)]
    pub twin_salt: Option<PathBuf>,
}

/// Twin commands (for the hosting organisation's actors and services).
#[derive(Debug, Subcommand)]
pub enum TwinCommand {
    /// Twin salt files (the custodian organisation's secret key for labels).
    Salt {
        /// The salt command.
        #[command(subcommand)]
        command: SaltCommand,
    },
    /// Record blake3 of a twin version's state on the ledger.
    #[command(disable_version_flag = true)]
    Anchor {
        /// The actor's key file.
        #[arg(long)]
        key: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The patient (did:key).
        #[arg(long)]
        patient: String,
        /// The hosting organisation (did:key) of the actor: the ledger binds the twin id to it
        /// (PROTOCOL.md §5.6), and the anchor is confirmed under that id.
        #[arg(long)]
        organisation: String,
        /// The custodian-local id: 64 hex digits, or a label keyed with the twin salt.
        #[arg(long)]
        twin_id: String,
        /// The twin salt (for labels).
        #[command(flatten)]
        salt: SaltArgs,
        /// The version (strictly increasing per twin).
        #[arg(long)]
        version: u64,
        /// The file holding the twin's state at that version.
        file: PathBuf,
    },
    /// Check whether a copy of a twin version matches what was anchored (exit 0 if it does,
    /// 6 if not). The anchor is not taken on the node's word: its receipt is verified offline
    /// against the genesis and the validator set in force at its block (PROTOCOL.md §9.2,
    /// §9.3), it must be the anchor of this version of this local id, and its author's
    /// organisation (an actor record proven at the certified tip) must be the one the twin id
    /// is bound to (§5.6).
    #[command(disable_version_flag = true)]
    Check {
        /// The reader's key file.
        #[arg(long)]
        key: PathBuf,
        /// The chain's genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// A chain of validator-set changes from a source you trust (e.g. written by `twinctl
        /// audit validator-sets --out`); merged with the node's answer.
        #[arg(long)]
        validator_sets: Option<PathBuf>,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
        /// The twin id the ledger records (64 hex digits, as `twin anchor` prints it); with
        /// `--organisation`, the custodian-local id or label given to `twin anchor` instead.
        #[arg(long)]
        twin_id: String,
        /// The hosting organisation (did:key), when `--twin-id` is a local id or label.
        #[arg(long)]
        organisation: Option<String>,
        /// The twin salt (for labels).
        #[command(flatten)]
        salt: SaltArgs,
        /// The version.
        #[arg(long)]
        version: u64,
        /// The copy to check.
        file: PathBuf,
    },
    /// Seal a twin version: encrypt FILE into a store under a fresh data key, record the
    /// TwinSeal (hashes, size, category, the node's custodian) and, once final, deposit the
    /// data key with the custodian, wrapped to its key (PROTOCOL.md §5.10).
    #[command(disable_version_flag = true)]
    Seal(sealed::SealArgs),
    /// Open a sealed twin version with an access receipt: the custodian releases the data key
    /// (wrapped to your key, recorded on the ledger as a KeyRelease); the ciphertext and the
    /// plaintext are checked against the sealed anchor, verified against the genesis, and the
    /// file written only if everything matches (exit 6 if not; exit 4 if the custodian refuses).
    #[command(disable_version_flag = true)]
    Open(sealed::OpenArgs),
    /// Erase a sealed twin version (TwinErase): once the erase is final the custodian destroys
    /// its data key, and no one can open that version again.
    #[command(disable_version_flag = true)]
    Erase(sealed::EraseArgs),
}

/// Twin salt commands.
#[derive(Debug, Subcommand)]
pub enum SaltCommand {
    /// Write a new random 32-byte twin salt (JSON, mode 0600); refuses to overwrite a file.
    New {
        /// The salt file to create.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Env naming the twin salt file when `--twin-salt` is not given.
pub const SALT_ENV: &str = "TWINLEDGER_TWIN_SALT";

/// Reads a twin salt file: `{"twin_salt": "<64 hex>"}`, or 64 hex digits alone.
pub fn read_salt(path: &Path) -> Result<[u8; 32], CliError> {
    let text = std::fs::read_to_string(path).map_err(CliError::io("read", path))?;
    let hex_text = match serde_json::from_str::<Value>(&text) {
        Ok(v) => v["twin_salt"].as_str().map(str::to_owned).ok_or_else(|| {
            CliError::Invalid(format!(
                "{}: no string field `twin_salt` in the twin salt file",
                path.display()
            ))
        })?,
        Err(_) => text.trim().to_owned(),
    };
    let mut salt = [0u8; 32];
    hex::decode_to_slice(&hex_text, &mut salt).map_err(|e| {
        CliError::Invalid(format!(
            "{}: the twin salt is not 64 hex digits: {e}",
            path.display()
        ))
    })?;
    Ok(salt)
}

/// Writes a new random twin salt to `out` (mode 0600), refusing an existing file.
pub fn write_salt(out: &Path) -> Result<(), CliError> {
    let mut salt = [0u8; 32];
    getrandom::fill(&mut salt).map_err(|e| CliError::Invalid(format!("OS RNG: {e}")))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(out).map_err(CliError::io("create", out))?;
    let body = json!({"twin_salt": hex::encode(salt)}).to_string() + "\n";
    std::io::Write::write_all(&mut f, body.as_bytes()).map_err(CliError::io("write", out))
}

/// The custodian-local id of `s`: 64 hex digits as they are, else a label keyed with the twin
/// salt (`--twin-salt`, else env `TWINLEDGER_TWIN_SALT`); a label without a salt is refused.
pub fn local_id(s: &str, salt: &SaltArgs) -> Result<LocalTwinId, CliError> {
    if let Ok(id) = LocalTwinId::from_hex(s) {
        return Ok(id);
    }
    let path = match (&salt.twin_salt, std::env::var_os(SALT_ENV)) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) if !p.is_empty() => PathBuf::from(p),
        _ => {
            return Err(CliError::Invalid(format!(
                "`{s}` is a label, not 64 hex digits: keying it needs the custodian's twin salt \
                 (--twin-salt FILE, or env {SALT_ENV}=FILE)"
            )));
        }
    };
    Ok(LocalTwinId::from_label(&read_salt(&path)?, s))
}

fn organisation(did: &str) -> Result<PublicKey, CliError> {
    PublicKey::from_did(did).map_err(|e| CliError::Invalid(format!("--organisation: {e}")))
}

fn file_hash(file: &PathBuf) -> Result<Hash, CliError> {
    let bytes = std::fs::read(file).map_err(CliError::io("read", file))?;
    Ok(Hash(*blake3::hash(&bytes).as_bytes()))
}

/// Runs a twin command.
pub fn run(args: &TwinArgs, node: &str) -> Result<Output, CliError> {
    match &args.command {
        TwinCommand::Salt {
            command: SaltCommand::New { out },
        } => {
            write_salt(out)?;
            Ok(Output {
                text: format!(
                    "wrote a new twin salt to {} (keep it secret: whoever holds it can test \
                     labels against twin ids)\n",
                    out.display()
                ),
                json: json!({"twin_salt_file": out}),
            })
        }
        TwinCommand::Anchor {
            key,
            pass,
            patient,
            organisation: org,
            twin_id: tid,
            salt,
            version,
            file,
        } => {
            let patient = PublicKey::from_did(patient)
                .map_err(|e| CliError::Invalid(format!("--patient: {e}")))?;
            let org = organisation(org)?;
            let local = local_id(tid, salt)?;
            let state_hash = file_hash(file)?;
            let twin = TwinId::bound(&org, &local);
            let key = open_key(key, pass, node)?;
            let payload = EventPayload::TwinAnchor(TwinAnchor {
                twin: local,
                patient,
                version: *version,
                state_hash,
            });
            let (id, height) = submit_and_wait(node, &key, payload)?;
            // Confirm the ledger recorded it under the id bound to --organisation.
            let v = NodeClient::connect(node)?
                .signed_get(&key, &format!("/v1/twins/{twin}/{version}"))
                .ok();
            if v.as_ref().and_then(|v| v["receipt"].get("event")).is_none()
                || v.as_ref().map(|v| v["receipt"].clone()).and_then(|r| {
                    serde_json::from_value::<Receipt>(r)
                        .ok()
                        .map(|r| r.event_id())
                }) != Some(id)
            {
                return Err(CliError::Mismatch(format!(
                    "event {id} anchored local id {local} in block {height}, but not as twin \
                     {twin}: is {} the organisation of the anchoring actor?",
                    org
                )));
            }
            Ok(Output {
                text: format!(
                    "anchored twin {twin} version {version}: {state_hash} (block {height}, local id \
                     {local})\n"
                ),
                json: json!({"id": id, "height": height, "twin": twin, "local": local, "organisation": org, "version": version, "state_hash": state_hash}),
            })
        }
        TwinCommand::Seal(a) => sealed::seal(a, node),
        TwinCommand::Open(a) => sealed::open(a, node),
        TwinCommand::Erase(a) => sealed::erase(a, node),
        TwinCommand::Check {
            key,
            pass,
            genesis,
            validator_sets,
            twin_id: tid,
            organisation: org,
            salt,
            version,
            file,
        } => {
            let twin = match org {
                Some(org) => TwinId::bound(&organisation(org)?, &local_id(tid, salt)?),
                None => TwinId::from_hex(tid).map_err(|e| {
                    CliError::Invalid(format!(
                        "--twin-id: {e} (a local id or label needs --organisation)"
                    ))
                })?,
            };
            let have = file_hash(file)?;
            let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
            let key = open_key(key, pass, node)?;
            let v = NodeClient::connect(node)?
                .signed_get(&key, &format!("/v1/twins/{twin}/{version}"))?;
            let anchor = verified_anchor(&ledger, &v, validator_sets.as_deref(), twin, *version)?;
            if anchor.state_hash != have {
                return Err(CliError::Mismatch(format!(
                    "{} does not match twin {twin} version {version}: blake3 {have}, anchored {}",
                    file.display(),
                    anchor.state_hash
                )));
            }
            Ok(Output {
                text: format!(
                    "{} matches twin {twin} version {version} ({have}); anchor verified against the genesis\n",
                    file.display()
                ),
                json: json!({"matches": true, "twin": twin, "version": version, "state_hash": have, "anchor_verified": true}),
            })
        }
    }
}

/// The anchor of `twin` at `version` from the node's answer `v`, proved by its receipt: the
/// receipt verifies against the validator set in force at its block (the genesis and the
/// certified chain of changes in the answer, merged with `trusted`), the event is that twin's
/// anchor at that version and was applied, and the answer's own fields agree with it.
fn verified_anchor(
    genesis: &Genesis,
    v: &Value,
    trusted: Option<&Path>,
    twin: TwinId,
    version: u64,
) -> Result<TwinAnchor, CliError> {
    verified_version(genesis, v, trusted, twin, version).map(|(anchor, _)| anchor)
}

/// As [`verified_anchor`], for a plain anchor or a sealed version (protocol 2.4, §5.10: a
/// `TwinSeal` is the anchor extended with the ciphertext's hash and size, the category and the
/// custodian); the `TwinSeal` itself when the version is sealed.
fn verified_version(
    genesis: &Genesis,
    v: &Value,
    trusted: Option<&Path>,
    twin: TwinId,
    version: u64,
) -> Result<(TwinAnchor, Option<TwinSeal>), CliError> {
    let receipt: Receipt = crate::receipt::canonical(&v["receipt"], "receipt")?;
    let changes = crate::receipt::changes_in(v)?;
    let sets = crate::receipt::sets_for(genesis, &changes, "the node's answer", trusted)?;
    let sets = &sets;
    let outcome = sets
        .verify_receipt(&receipt)
        .map_err(|e| CliError::Mismatch(format!("the anchor's receipt does not verify: {e}")))?;
    let (anchor, seal) = match receipt.event.event.payload.clone() {
        EventPayload::TwinAnchor(anchor) => (anchor, None),
        EventPayload::TwinSeal(seal) => (seal.anchor(), Some(seal)),
        other => {
            return Err(CliError::Mismatch(format!(
                "the node answered with a receipt for a {} event, not a twin anchor or seal",
                other.kind()
            )));
        }
    };
    if anchor.version != version {
        return Err(CliError::Mismatch(format!(
            "the node answered with the anchor of version {}, not twin {twin} version {version}",
            anchor.version
        )));
    }
    // The receipt proves the local id, not the organisation the twin id is bound to: that is
    // the author's actor record, proven against a certified tip (an actor never changes
    // organisation, §6.7).
    let org = proven_author_organisation(genesis, sets, v, &receipt)?;
    if TwinId::bound(&org, &anchor.twin) != twin {
        return Err(CliError::Mismatch(format!(
            "the node answered with an anchor of local id {} by an actor of organisation {org}, \
             which is twin {}, not twin {twin}",
            anchor.twin,
            TwinId::bound(&org, &anchor.twin)
        )));
    }
    if outcome != Outcome::Applied {
        return Err(CliError::Mismatch(format!(
            "the anchor's outcome is {outcome:?}, not applied"
        )));
    }
    if v.get("state_hash") != Some(&json!(anchor.state_hash)) {
        return Err(CliError::Mismatch(format!(
            "field `state_hash` is {}, but the receipt proves {}",
            v["state_hash"], anchor.state_hash
        )));
    }
    Ok((anchor, seal))
}

/// Largest state proof accepted in an answer.
const MAX_PROOF_BYTES: usize = 64 * 1024;

/// The organisation of the anchor's author: the answer's `tip` (header and certificate) must
/// verify against the validator set in force at its height and be at or after the anchor's
/// block, and `author` must hold the author's actor record with a state proof against the
/// tip's state hash.
fn proven_author_organisation(
    genesis: &Genesis,
    sets: &twinledger_core::ValidatorSets,
    v: &Value,
    receipt: &Receipt,
) -> Result<PublicKey, CliError> {
    let mismatch = |m: String| CliError::Mismatch(m);
    let header: BlockHeader = crate::receipt::canonical(&v["tip"]["header"], "tip.header")?;
    let cert: CommitCertificate =
        crate::receipt::canonical(&v["tip"]["certificate"], "tip.certificate")?;
    let tip = header.height;
    if header.chain_id != genesis.chain_id() {
        return Err(mismatch(format!(
            "the tip is a block of chain {}, not of this genesis's chain {}",
            header.chain_id,
            genesis.chain_id()
        )));
    }
    if tip < receipt.header.height {
        return Err(mismatch(format!(
            "the tip (block {tip}) is before the anchor's block {}",
            receipt.header.height
        )));
    }
    if header.validators_hash != sets.set_at(tip).hash() {
        return Err(mismatch(format!(
            "the tip (block {tip}) names validator set {}, not the set in force there",
            header.validators_hash
        )));
    }
    sets.verify_checkpoint(&header.checkpoint(), &cert)
        .map_err(|e| {
            mismatch(format!(
                "the tip's certificate (block {tip}) does not verify: {e}"
            ))
        })?;
    let author = receipt.event.event.author;
    if v["author"]["actor"] != json!(author) {
        return Err(mismatch(format!(
            "field `author.actor` is {}, but the anchor was signed by {author}",
            v["author"]["actor"]
        )));
    }
    let proof_hex = v["author"]["state_proof"].as_str().ok_or_else(|| {
        CliError::Invalid("field `author.state_proof` is not a hex string".into())
    })?;
    let bytes = hex::decode(proof_hex)
        .map_err(|e| CliError::Invalid(format!("field `author.state_proof` is not hex: {e}")))?;
    let proof = StateProof::from_bytes(&bytes, MAX_PROOF_BYTES).map_err(|e| {
        CliError::Invalid(format!("field `author.state_proof` does not decode: {e}"))
    })?;
    let proven = proof
        .verify_value(header.state_hash, Table::Actor, &codec::encode(&author))
        .map_err(|e| {
            mismatch(format!(
                "the state proof of the actor record of {author} does not verify against the \
                 tip's state hash (block {tip}): {e}"
            ))
        })?
        .ok_or_else(|| {
            mismatch(format!(
                "the state proves {author}, who signed the anchor, is no actor at block {tip}"
            ))
        })?;
    let record: ActorRecord = codec::decode("actor record", proven, 128)
        .map_err(|e| mismatch(format!("the proven actor record of {author}: {e}")))?;
    Ok(record.organisation)
}

#[cfg(test)]
mod tests {
    //! A node's twin answer is not taken on its word (PROTOCOL.md §5.6, §9.2, §9.3).
    use twinledger_core::devkit::{DevChain, dev_key};

    use super::*;

    /// Anchors `local` for alice by `who`, returns the node's answer for it (tip = its block).
    fn answer(dc: &mut DevChain, who: &twinledger_core::Keypair, local: LocalTwinId) -> Value {
        let state_hash = Hash(*blake3::hash(b"{\"heart_rate\": [61]}").as_bytes());
        let ev = dc.event(
            who,
            EventPayload::TwinAnchor(TwinAnchor {
                twin: local,
                patient: dev_key("twin-cli/alice").public(),
                version: 1,
                state_hash,
            }),
        );
        let c = dc.commit(vec![ev]);
        assert!(c.rejected.is_empty(), "{:?}", c.rejected);
        let receipt = Receipt {
            event: c.block.events[0].clone(),
            index: 0,
            leaf_index: 0,
            inclusion_proof: Vec::new(),
            header: c.block.header.clone(),
            results: c.results.clone(),
            certificate: c.certificate.clone(),
        };
        let author = who.public();
        json!({
            "state_hash": state_hash,
            "receipt": receipt,
            "tip": {"header": c.block.header, "certificate": c.certificate},
            "author": {
                "actor": author,
                "record": dc.state.actor(&author),
                "state_proof": hex::encode(dc.state.prove(Table::Actor, &author).to_bytes()),
            },
            "validator_set_changes": [],
        })
    }

    #[test]
    fn a_twin_answer_is_checked_against_its_receipt() {
        let mut dc = DevChain::new(1);
        let phys = dc.physician.clone();
        let local = LocalTwinId::from_label(&[1; 32], "alice-cardio");
        let twin = TwinId::bound(&dc.hospital.public(), &local);
        let answer = answer(&mut dc, &phys, local);
        let g = dc.genesis.clone();
        let got = verified_anchor(&g, &answer, None, twin, 1).expect("a genuine answer");
        assert_eq!(got.twin, local);
        // A node that changes the hash it reports, beside a genuine receipt.
        let mut lied = answer.clone();
        lied["state_hash"] = json!(Hash([9; 32]));
        let e = verified_anchor(&g, &lied, None, twin, 1).unwrap_err();
        assert!(e.to_string().contains("`state_hash`"), "{e}");
        // The genuine anchor of another version answered for this one.
        let e = verified_anchor(&g, &answer, None, twin, 2).unwrap_err();
        assert!(e.to_string().contains("not twin"), "{e}");
        // A forged receipt.
        let mut forged = answer.clone();
        forged["receipt"]["event"]["signature"] = json!("00".repeat(64));
        let e = verified_anchor(&g, &forged, None, twin, 1).unwrap_err();
        assert!(
            matches!(e, CliError::Mismatch(_) | CliError::Invalid(_)),
            "{e}"
        );
        // A forged author record (the researcher's organisation claimed for the physician).
        let mut forged = answer.clone();
        forged["author"]["record"]["organisation"] = json!(dc.institute.public());
        forged["author"]["state_proof"] = json!(hex::encode(
            dc.state
                .prove(Table::Actor, &dc.researcher.public())
                .to_bytes()
        ));
        let e = verified_anchor(&g, &forged, None, twin, 1).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::MISMATCH, "{e}");
    }

    #[test]
    fn another_organisations_anchor_of_the_same_local_id_is_refused_for_this_twin() {
        let mut dc = DevChain::new(1);
        let res = dc.researcher.clone();
        let local = LocalTwinId::from_label(&[1; 32], "alice-cardio");
        let twin = TwinId::bound(&dc.hospital.public(), &local);
        // Asked for the hospital's twin, the node answers the institute's genuine anchor of the
        // same local id and version (the only one in this chain: a receipt of leaf 0).
        let squatters = answer(&mut dc, &res, local);
        let g = dc.genesis.clone();
        let e = verified_anchor(&g, &squatters, None, twin, 1).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::MISMATCH, "{e}");
        assert!(e.to_string().contains("not twin"), "{e}");
        // …and it is the institute's own twin.
        let theirs = TwinId::bound(&dc.institute.public(), &local);
        verified_anchor(&g, &squatters, None, theirs, 1).expect("the institute's twin");
    }

    #[test]
    fn a_label_without_a_salt_is_refused_naming_the_flag() {
        let e = local_id("MRN-0001", &SaltArgs { twin_salt: None });
        // The env may name a salt file in a developer's shell; only check without it.
        if std::env::var_os(SALT_ENV).is_none() {
            let e = e.unwrap_err();
            assert_eq!(e.exit_code(), crate::exit::INVALID_INPUT);
            assert!(e.to_string().contains("--twin-salt"), "{e}");
        }
        let hex = "ab".repeat(32);
        let got = local_id(&hex, &SaltArgs { twin_salt: None }).unwrap();
        assert_eq!(got.to_hex(), hex);
    }

    #[test]
    fn a_new_salt_is_private_random_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
        write_salt(&a).unwrap();
        write_salt(&b).unwrap();
        assert_ne!(read_salt(&a).unwrap(), read_salt(&b).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&a).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = std::fs::read(&a).unwrap();
        let e = write_salt(&a).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::IO_ERROR, "{e}");
        assert_eq!(std::fs::read(&a).unwrap(), before);
        let salt = read_salt(&a).unwrap();
        let with = local_id(
            "MRN-0001",
            &SaltArgs {
                twin_salt: Some(a.clone()),
            },
        )
        .unwrap();
        assert_eq!(with, LocalTwinId::from_label(&salt, "MRN-0001"));
    }
}
