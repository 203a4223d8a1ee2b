//! `twinctl audit witness` / `audit watch`: a checkpoint witness. It keeps every checkpoint it
//! has accepted; each new one must carry a valid certificate and extend the last one (an RFC 9162
//! consistency proof when a node is at hand). Two valid checkpoints that cannot both be true (a
//! fork, a rollback, a split view served to different auditors) produce a fork report naming
//! the validators that signed both sides, and exit code 6.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use twinledger_core::merkle::{Blake3Tree, verify_consistency};
use twinledger_core::{Checkpoint, CommitCertificate, Genesis};

use crate::CliError;
use crate::client::NodeClient;

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
        Err(e) => return Err(CliError::Invalid(format!("{}: {e}", dir.display()))),
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "checkpoint") {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| CliError::Invalid(format!("{}: {e}", p.display())))?;
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

/// Takes in one checkpoint (text form): verifies its certificate against the genesis set,
/// compares it with every stored checkpoint, checks consistency with the latest through
/// `node` if given, and stores it if all is well.
pub fn ingest(
    dir: &PathBuf,
    genesis: &Genesis,
    text: &str,
    node: Option<&NodeClient>,
) -> Result<Verdict, CliError> {
    let (cp, cert) =
        Checkpoint::from_text(text).map_err(|e| CliError::Invalid(format!("checkpoint: {e}")))?;
    if cp.chain_id != genesis.chain_id() {
        return Err(CliError::Mismatch(format!(
            "checkpoint of chain {}, the genesis is {}",
            cp.chain_id,
            genesis.chain_id()
        )));
    }
    cert.verify(&cp, &genesis.validators).map_err(|e| {
        CliError::Mismatch(format!(
            "checkpoint at height {}: certificate does not verify: {e}",
            cp.height
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
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", dir.display())))?;
    let path = dir.join(format!(
        "{:020}-{}.checkpoint",
        cp.height,
        &cp.block_hash.to_hex()[..16]
    ));
    std::fs::write(&path, text)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(Verdict::Accepted(cp))
}
