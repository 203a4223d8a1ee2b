//! `twinctl audit witness` / `audit watch`: a checkpoint witness. It keeps every checkpoint it
//! has accepted; each new one must carry a valid certificate (against the validator set in force
//! at its height) and extend the last one (an RFC 9162 consistency proof when a node is at hand).
//! Two valid checkpoints that cannot both be true (a fork, a rollback, a split view served to
//! different auditors) produce a fork report naming the validators that signed both sides, and
//! exit code 6.
//!
//! The witness also keeps the longest certified chain of validator-set changes it has verified
//! (PROTOCOL.md §9.3) in `validator-sets.json`: every chain it is given later (by the node, or
//! with `--validator-sets`) must agree with it change for change, so a node cannot make it
//! forget a change and accept checkpoints of a retired set.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use twinledger_core::merkle::{Blake3Tree, verify_consistency};
use twinledger_core::{Checkpoint, CommitCertificate, Genesis, Receipt, ValidatorSets};

use crate::CliError;
use crate::client::NodeClient;
use crate::receipt::{CHANGES, changes_in, sets_file, verify_changes};

/// The file in the witness's state directory that keeps the chain of validator-set changes.
pub const SETS_FILE: &str = "validator-sets.json";

/// The chain of validator-set changes from the node (`GET /v1/validator-sets`), verified from
/// the genesis; returns the receipts too.
pub fn node_sets(
    genesis: &Genesis,
    client: &NodeClient,
) -> Result<(ValidatorSets, Vec<Receipt>), CliError> {
    let v = client.get_json("/v1/validator-sets")?;
    let changes = changes_in(&v)?;
    let sets = verify_changes(genesis, &changes, "the node's answer")?;
    Ok((sets, changes))
}

/// The validator sets the witness knows: the chain it kept in `dir`, merged with the one in
/// `file` and the node's, each verified from the genesis. A chain that conflicts with another
/// is refused (exit 6); a longer one is kept in `dir` for next time.
pub fn known_sets(
    dir: &Path,
    genesis: &Genesis,
    file: Option<&Path>,
    node: Option<&NodeClient>,
) -> Result<ValidatorSets, CliError> {
    let kept_path = dir.join(SETS_FILE);
    let mut sources: Vec<(String, ValidatorSets, Vec<Receipt>)> = Vec::new();
    if kept_path.exists() {
        let text = std::fs::read_to_string(&kept_path).map_err(CliError::io("read", &kept_path))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| CliError::Invalid(format!("{}: {e}", kept_path.display())))?;
        let changes = changes_in(&v)?;
        let sets = verify_changes(genesis, &changes, &kept_path.display().to_string())?;
        sources.push(("the chain the witness kept".into(), sets, changes));
    }
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(CliError::io("read", f))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| CliError::Invalid(format!("{}: {e}", f.display())))?;
        let sets = sets_file(genesis, f)?;
        sources.push((f.display().to_string(), sets, changes_in(&v)?));
    }
    if let Some(c) = node {
        let (sets, changes) = node_sets(genesis, c)?;
        sources.push(("the node's chain".into(), sets, changes));
    }
    let kept = if kept_path.exists() {
        sources.first().map_or(0, |(_, _, c)| c.len())
    } else {
        0
    };
    let mut best = ValidatorSets::from_genesis(genesis);
    let mut best_changes: Vec<Receipt> = Vec::new();
    let mut best_name = "the genesis".to_string();
    for (name, sets, changes) in sources {
        best = best.merge(sets).map_err(|e| {
            CliError::Mismatch(format!(
                "{name} of validator-set changes conflicts with {best_name}: {e}"
            ))
        })?;
        if changes.len() > best_changes.len() {
            best_changes = changes;
            best_name = name;
        }
    }
    if best_changes.len() > kept {
        std::fs::create_dir_all(dir).map_err(CliError::io("create the folder", dir))?;
        let v = json!({ CHANGES: best_changes });
        std::fs::write(&kept_path, serde_json::to_string_pretty(&v).expect("json"))
            .map_err(CliError::io("write", &kept_path))?;
    }
    Ok(best)
}

/// What the witness concluded about a new checkpoint.
#[derive(Debug)]
pub enum Verdict {
    /// Accepted and stored.
    Accepted(Checkpoint),
    /// Already known.
    Known(Checkpoint),
    /// Proof of misbehaviour.
    Fork(Value),
}

fn stored(dir: &Path) -> Result<Vec<(Checkpoint, CommitCertificate, String)>, CliError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(CliError::io("list the folder", dir)(e)),
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "checkpoint") {
            let text = std::fs::read_to_string(&p).map_err(CliError::io("read", &p))?;
            let (cp, cert) = Checkpoint::from_text(&text)
                .map_err(|e| CliError::Invalid(format!("{}: {e}", p.display())))?;
            out.push((cp, cert, text));
        }
    }
    out.sort_by_key(|(cp, _, _)| cp.height);
    Ok(out)
}

fn report(
    kind: &str,
    a: &(Checkpoint, CommitCertificate),
    b: &(Checkpoint, CommitCertificate),
    detail: String,
) -> Value {
    let signers: Vec<String> =
        a.1.double_signers(&b.1)
            .iter()
            .map(|k| k.to_did())
            .collect();
    json!({
        "fork": true,
        "kind": kind,
        "detail": detail,
        "chain_id": a.0.chain_id,
        "a": {"height": a.0.height, "log_size": a.0.log_size, "block": a.0.block_hash, "text": a.0.to_text(&a.1)},
        "b": {"height": b.0.height, "log_size": b.0.log_size, "block": b.0.block_hash, "text": b.0.to_text(&b.1)},
        "signed_both": signers,
    })
}

/// Takes in one checkpoint (text form): verifies its certificate against the validator set in
/// force at its height (`sets`: the genesis and the known changes, [`known_sets`]), compares it
/// with every stored checkpoint, checks consistency with the latest through `node` if given,
/// and stores it if all is well.
pub fn ingest(
    dir: &PathBuf,
    sets: &ValidatorSets,
    text: &str,
    node: Option<&NodeClient>,
) -> Result<Verdict, CliError> {
    let (cp, cert) =
        Checkpoint::from_text(text).map_err(|e| CliError::Invalid(format!("checkpoint: {e}")))?;
    if cp.chain_id != sets.chain_id() {
        return Err(CliError::Mismatch(format!(
            "checkpoint of chain {}, the genesis is {}",
            cp.chain_id,
            sets.chain_id()
        )));
    }
    sets.verify_checkpoint(&cp, &cert).map_err(|e| {
        CliError::Mismatch(format!(
            "checkpoint at height {}: certificate does not verify against the {}: {e}",
            cp.height,
            crate::receipt::set_line(sets, cp.height)
        ))
    })?;
    let seen = stored(dir)?;
    for (old, old_cert, _) in &seen {
        if old.height == cp.height && old.block_hash == cp.block_hash {
            return Ok(Verdict::Known(cp));
        }
        if let Some(conflict) = old.conflict_with(&cp) {
            return Ok(Verdict::Fork(report(
                conflict.describe(),
                &(*old, old_cert.clone()),
                &(cp, cert),
                format!(
                    "height {} (block {}, {} events) and height {} (block {}, {} events)",
                    old.height, old.block_hash, old.log_size, cp.height, cp.block_hash, cp.log_size
                ),
            )));
        }
    }
    if let (Some(client), Some((last, last_cert, _))) =
        (node, seen.iter().rfind(|(o, _, _)| o.height < cp.height))
        && last.log_size > 0
        && last.log_size < cp.log_size
    {
        let v = client.get_json(&format!(
            "/v1/consistency?from={}&to={}",
            last.log_size, cp.log_size
        ))?;
        let proof: Vec<Vec<u8>> = v["proof"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().and_then(|h| hex::decode(h).ok()))
            .collect();
        if let Err(e) = verify_consistency::<Blake3Tree>(
            last.log_size,
            cp.log_size,
            &proof,
            last.log_root.as_bytes(),
            cp.log_root.as_bytes(),
        ) {
            return Ok(Verdict::Fork(report(
                "inconsistent logs",
                &(*last, last_cert.clone()),
                &(cp, cert),
                format!(
                    "no valid consistency proof from {} to {} events: {e}",
                    last.log_size, cp.log_size
                ),
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(CliError::io("create the folder", dir))?;
    let path = dir.join(format!(
        "{:020}-{}.checkpoint",
        cp.height,
        &cp.block_hash.to_hex()[..16]
    ));
    std::fs::write(&path, text).map_err(CliError::io("write", &path))?;
    Ok(Verdict::Accepted(cp))
}
