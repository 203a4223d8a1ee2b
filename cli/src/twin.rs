//! `twinctl twin`: anchor the hash of a twin version, and check a copy against the anchor.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use twinledger_core::event::integrity::TwinAnchor;
use twinledger_core::{EventPayload, Genesis, Hash, Outcome, PublicKey, Receipt, TwinId};
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

/// Twin commands (for the hosting organisation's actors and services).
#[derive(Debug, Subcommand)]
pub enum TwinCommand {
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
        /// The twin id: 64 hex digits, or a label hashed into a pseudonymous id.
        #[arg(long)]
        twin_id: String,
        /// The version (strictly increasing per twin).
        #[arg(long)]
        version: u64,
        /// The file holding the twin's state at that version.
        file: PathBuf,
    },
    /// Check whether a copy of a twin version matches what was anchored (exit 0 if it does,
    /// 6 if not). The anchor is not taken on the node's word: its receipt is verified offline
    /// against the genesis and the validator set in force at its block (PROTOCOL.md §9.2,
    /// §9.3), and it must be the anchor of this twin and version.
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
        /// The twin id.
        #[arg(long)]
        twin_id: String,
        /// The version.
        #[arg(long)]
        version: u64,
        /// The copy to check.
        file: PathBuf,
    },
}

/// A twin id from 64 hex digits, or from a label (blake3 key derivation, so labels such as a
/// hospital's internal record number never reach the ledger).
pub fn twin_id(s: &str) -> TwinId {
    TwinId::from_hex(s)
        .unwrap_or_else(|_| TwinId(blake3::derive_key("twinledger twin-id v1", s.as_bytes())))
}

fn file_hash(file: &PathBuf) -> Result<Hash, CliError> {
    let bytes = std::fs::read(file).map_err(CliError::io("read", file))?;
    Ok(Hash(*blake3::hash(&bytes).as_bytes()))
}

/// Runs a twin command.
pub fn run(args: &TwinArgs, node: &str) -> Result<Output, CliError> {
    match &args.command {
        TwinCommand::Anchor {
            key,
            pass,
            patient,
            twin_id: tid,
            version,
            file,
        } => {
            let patient = PublicKey::from_did(patient)
                .map_err(|e| CliError::Invalid(format!("--patient: {e}")))?;
            let state_hash = file_hash(file)?;
            let twin = twin_id(tid);
            let key = open_key(key, pass, node)?;
            let payload = EventPayload::TwinAnchor(TwinAnchor {
                twin,
                patient,
                version: *version,
                state_hash,
            });
            let (id, height) = submit_and_wait(node, &key, payload)?;
            Ok(Output {
                text: format!(
                    "anchored twin {twin} version {version}: {state_hash} (block {height})\n"
                ),
                json: json!({"id": id, "height": height, "twin": twin, "version": version, "state_hash": state_hash}),
            })
        }
        TwinCommand::Check {
            key,
            pass,
            genesis,
            validator_sets,
            twin_id: tid,
            version,
            file,
        } => {
            let have = file_hash(file)?;
            let twin = twin_id(tid);
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
    let receipt: Receipt = crate::receipt::canonical(&v["receipt"], "receipt")?;
    let changes = crate::receipt::changes_in(v)?;
    let sets = crate::receipt::sets_for(genesis, &changes, "the node's answer", trusted)?;
    let outcome = sets
        .verify_receipt(&receipt)
        .map_err(|e| CliError::Mismatch(format!("the anchor's receipt does not verify: {e}")))?;
    let EventPayload::TwinAnchor(anchor) = receipt.event.event.payload else {
        return Err(CliError::Mismatch(format!(
            "the node answered with a receipt for a {} event, not a twin anchor",
            receipt.event.event.payload.kind()
        )));
    };
    if anchor.twin != twin || anchor.version != version {
        return Err(CliError::Mismatch(format!(
            "the node answered with the anchor of twin {} version {}, not twin {twin} version {version}",
            anchor.twin, anchor.version
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
    Ok(anchor)
}

#[cfg(test)]
mod tests {
    //! A node's twin answer is not taken on its word (PROTOCOL.md §9.2, §9.3).
    use twinledger_core::devkit::{DevChain, dev_key};

    use super::*;

    #[test]
    fn a_twin_answer_is_checked_against_its_receipt() {
        let mut dc = DevChain::new(1);
        let phys = dc.physician.clone();
        let twin = twin_id("alice-cardio");
        let state_hash = Hash(*blake3::hash(b"{\"heart_rate\": [61]}").as_bytes());
        let ev = dc.event(
            &phys,
            EventPayload::TwinAnchor(TwinAnchor {
                twin,
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
        let answer = json!({
            "state_hash": state_hash,
            "receipt": receipt,
            "validator_set_changes": [],
        });
        let g = dc.genesis.clone();
        let got = verified_anchor(&g, &answer, None, twin, 1).expect("a genuine answer");
        assert_eq!(got.state_hash, state_hash);
        // A node that changes the hash it reports, beside a genuine receipt.
        let mut lied = answer.clone();
        lied["state_hash"] = json!(Hash([9; 32]));
        let e = verified_anchor(&g, &lied, None, twin, 1).unwrap_err();
        assert!(e.to_string().contains("`state_hash`"), "{e}");
        // The genuine anchor of another version (or twin) answered for this one.
        let e = verified_anchor(&g, &answer, None, twin, 2).unwrap_err();
        assert!(e.to_string().contains("not twin"), "{e}");
        // A forged receipt.
        let mut forged = answer.clone();
        let mut r = receipt.clone();
        r.event.signature.0[0] ^= 1;
        forged["receipt"] = json!(r);
        let e = verified_anchor(&g, &forged, None, twin, 1).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
    }
}
