//! `twinctl audit`: export a chain and verify it offline, trusting only the genesis file;
//! evidence bundles, checkpoints and their witness, and reports over a verified export.
//!
//! One module per subcommand, each a clap `Args` struct with a `run` method (as in tokio's
//! mini-redis `src/cmd/`); [`run`] only dispatches. The verification pipeline is in
//! [`pipeline`], the access log that the reports read in `log`.

mod anomalies;
mod break_glass;
mod checkpoint;
mod consistency;
mod denied;
mod export;
mod history;
mod log;
pub mod pipeline;
mod prove;
mod validator_sets;
mod verify;
mod verify_bundle;
mod watch;
mod witness;

use clap::{Args, Subcommand};

pub use pipeline::verify;

use crate::{CliError, Output};

/// `twinctl audit ...`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The audit command.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Download the chain (or a range of heights) as one file.
    Export(export::Export),
    /// Verify a whole exported chain offline against its genesis: every certificate, hash link,
    /// event signature, Merkle root and re-derived decision. Exit 0 if it verifies, 6 naming
    /// the first bad height, event and reason if not.
    Verify(verify::Verify),
    /// Save a patient's certified history (`GET /v1/patients/{did}/history`, PROTOCOL.md §11.3)
    /// to a file, for `receipt verify --history` and `audit verify-bundle --history` (§11.4);
    /// with `--genesis` it is verified first (exit 6 if it does not verify, nothing written).
    History(history::History),
    /// Write a single-file evidence bundle for one event (PROTOCOL.md §9.3, version 2): the
    /// event, its decision, its inclusion proof, its block's header, results and certificate,
    /// and the certified chain of validator-set changes in force at its height.
    Prove(prove::Prove),
    /// Verify an evidence bundle offline against the genesis and the bundle's chain of
    /// validator-set changes: the receipt against the set in force at its height, and every
    /// other field against what the receipt proves (exit 0 valid; 6 not, naming the field).
    VerifyBundle(verify_bundle::VerifyBundle),
    /// Verify that a newer checkpoint extends an older one: both certificates against the
    /// validator set in force at their heights (the node's certified chain of validator-set
    /// changes, verified from the genesis), and the RFC 9162 consistency proof fetched from the
    /// node (exit 0 if consistent, 6 if not).
    Consistency(consistency::Consistency),
    /// Fetch the node's certified chain of validator-set changes, verify it from the genesis
    /// (merged with `--validator-sets` if given), print the set in force from each height, and
    /// write it with `--out` for offline use (`--validator-sets FILE` of the other commands).
    /// Exit 6 if it does not verify or conflicts with the given chain.
    ValidatorSets(validator_sets::ValidatorSets),
    /// Checkpoint witness: take in the node's latest checkpoint (or a checkpoint file, e.g.
    /// one another auditor received), check its certificate against the validator set in force
    /// at its height, compare it with every checkpoint kept in `--state`, and keep it. Exit 6
    /// with a fork report naming the validators that signed both sides if two valid checkpoints
    /// cannot both be true. The witness also keeps the longest verified chain of validator-set
    /// changes (`validator-sets.json`; from the node, or `--validator-sets`).
    Witness(witness::Witness),
    /// Run the witness against the node every `--interval-secs` (default forever; `--rounds`
    /// stops after that many).
    Watch(watch::Watch),
    /// Break-glass accesses in a verified export, with their review (or only the unreviewed).
    BreakGlass(break_glass::BreakGlass),
    /// Denied access attempts in a verified export.
    Denied(denied::Denied),
    /// Irregular access for review, from rules over a verified export; each finding names its
    /// events. Exit 0 whether or not there are findings.
    Anomalies(anomalies::Anomalies),
    /// Save the node's latest checkpoint (text form) to a file.
    Checkpoint(checkpoint::Checkpoint),
}

/// Runs an audit command.
pub fn run(args: &AuditArgs, node: &str, json_out: bool) -> Result<Output, CliError> {
    match &args.command {
        AuditCommand::Export(c) => c.run(node),
        AuditCommand::Verify(c) => c.run(json_out),
        AuditCommand::History(c) => c.run(node),
        AuditCommand::Prove(c) => c.run(node),
        AuditCommand::VerifyBundle(c) => c.run(),
        AuditCommand::Consistency(c) => c.run(node),
        AuditCommand::ValidatorSets(c) => c.run(node),
        AuditCommand::Witness(c) => c.run(node),
        AuditCommand::Watch(c) => c.run(node),
        AuditCommand::BreakGlass(c) => c.run(),
        AuditCommand::Denied(c) => c.run(),
        AuditCommand::Anomalies(c) => c.run(),
        AuditCommand::Checkpoint(c) => c.run(node),
    }
}

fn mismatch(what: impl std::fmt::Display) -> CliError {
    CliError::Mismatch(what.to_string())
}
