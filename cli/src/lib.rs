//! `twinledger-cli` (binary `twinctl`): patient, hospital, auditor and genesis commands.
//!
//! The library holds the command line (clap derive) and the commands; `main.rs` only parses,
//! runs, prints and exits. A command returns an [`Output`] (text for people, JSON for
//! scripts, chosen by the global `--json`) or a [`CliError`], whose [`CliError::exit_code`]
//! is one of the codes in [`exit`].
//!
//! The commands, by who uses them: patients and delegates (`consent`, `delegate`, `access
//! report`), clinician systems (`access request`, `access break-glass`, `receipt`, `twin`),
//! organisations (`org`, `review`), auditors (`audit`, `fhir`), operators (`genesis`), and
//! everyone (`key`, `codes`, `completions`, `man`). Commands that talk to a node use
//! [`client::NodeClient`]; the offline ones (`receipt verify`, `audit verify`, `genesis`) trust
//! only the genesis file.

pub mod access;
pub mod audit;
pub mod client;
pub mod codes;
pub mod consent;
pub mod delegate;
pub mod exit;
pub mod fhir;
pub mod files;
pub mod genesis;
pub mod governance;
pub mod history;
pub mod ids;
pub mod key;
pub mod keystore;
pub mod org;
pub mod receipt;
pub mod review;
pub mod shell;
pub mod submit;
pub mod table;
pub mod time;
pub mod twin;
pub mod witness;

#[cfg(test)]
mod snapshots;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use twinledger_genesis::GenesisFileError;

/// `twinctl`: the command line of Twinledger.
#[derive(Debug, Parser)]
#[command(
    name = "twinctl",
    version,
    about = "Twinledger command line: consent, access with receipts, audit and genesis files",
    propagate_version = true
)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The node's API address.
    #[arg(long, global = true, env = "TWINCTL_NODE", default_value = client::DEFAULT_NODE)]
    pub node: String,
    /// A CA certificate file (PEM) to trust for an https:// node address, besides the
    /// system's roots (a hospital's own CA).
    #[arg(long, global = true, env = "TWINCTL_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// A client certificate (PEM) for a node that requires one (with --client-key).
    #[arg(long, global = true, env = "TWINCTL_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, global = true, env = "TWINCTL_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, show and verify a genesis file.
    Genesis(genesis::GenesisArgs),
    /// Create, show, import, rotate and export keys (encrypted key files; dev keys as they are).
    Key(key::KeyArgs),
    /// Grant, revoke and list consent (patients and delegates).
    Consent(consent::ConsentArgs),
    /// Ask for access to a twin and keep the receipt (clinician systems).
    Access(access::AccessArgs),
    /// Verify receipts offline.
    Receipt(receipt::ReceiptArgs),
    /// Name and end delegates (guardians) for a patient.
    Delegate(delegate::DelegateArgs),
    /// Enrol and revoke an organisation's actors.
    Org(org::OrgArgs),
    /// Membership changes on a running network: propose, approve (validators), submit, show.
    Governance(governance::GovernanceArgs),
    /// The break-glass review queue.
    Review(review::ReviewArgs),
    /// Anchor twin versions and check copies against their anchors; seal, open and erase
    /// sealed versions.
    Twin(twin::TwinArgs),
    /// Export consents and the access log as FHIR (R4 or R5).
    Fhir(fhir::FhirArgs),
    /// Export and verify whole chains offline (auditors).
    Audit(audit::AuditArgs),
    /// List the categories, purposes, actions and roles, with their standard code systems.
    Codes(codes::CodesArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(shell::CompletionsArgs),
    /// Write man pages (one per command and subcommand) into an existing directory.
    Man(shell::ManArgs),
}

/// What a command prints on success.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// For people (printed without `--json`); ends with a newline.
    pub text: String,
    /// For scripts (printed, pretty, with `--json`).
    pub json: serde_json::Value,
}

/// Why a command failed. The message names the problem and the offending value.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading, parsing, validating or writing a genesis file failed.
    #[error(transparent)]
    Genesis(#[from] GenesisFileError),
    /// A change to a genesis file was refused; the file is unchanged.
    #[error("cannot add {what} to {}: {source}", path.display())]
    Refused {
        /// What was being added.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: GenesisFileError,
    },
    /// A key file cannot be created or opened.
    #[error(transparent)]
    Key(#[from] keystore::KeyFileError),
    /// A file cannot be read or written (missing, no such directory, no permission, disk full).
    #[error("cannot {doing} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "create").
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The node refused the request.
    #[error("node refused ({status} {code}): {message}")]
    Node {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// The node's message.
        message: String,
    },
    /// The node cannot be reached.
    #[error("{0}")]
    Unreachable(String),
    /// Denied (an access decision, or a receipt that is not a permit).
    #[error("{0}")]
    Denied(String),
    /// Verification failed: a chain, a receipt, a bundle, a history or a checkpoint does not
    /// verify, or a twin copy does not match its anchor.
    #[error("{0}")]
    Mismatch(String),
    /// Any other invalid input.
    #[error("{0}")]
    Invalid(String),
}

/// The node's error codes (422) that refuse the requester rather than the request: the key may
/// not do this (a self-review, a patient it may not act for, a revoked or unknown author).
/// They exit [`exit::DENIED`], as 401 and 403 do.
pub const REQUESTER_REFUSALS: [&str; 6] = [
    "not_permitted",
    "not_authorised_for_patient",
    "outside_delegation",
    "revoked_author",
    "unknown_author",
    "retired_key",
];

impl CliError {
    /// An [`CliError::Io`] for `path`, to use as `.map_err(CliError::io("read", path))`.
    pub fn io(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            doing,
            path,
            source,
        }
    }

    /// The process exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Genesis(e) | Self::Refused { source: e, .. } if e.is_io() => exit::IO_ERROR,
            Self::Key(keystore::KeyFileError::Io { .. }) | Self::Io { .. } => exit::IO_ERROR,
            Self::Node {
                status: 401 | 403, ..
            }
            | Self::Denied(_) => exit::DENIED,
            Self::Node { code, .. } if REQUESTER_REFUSALS.contains(&code.as_str()) => exit::DENIED,
            Self::Node { status, .. } if *status >= 500 => exit::NODE_UNREACHABLE,
            Self::Unreachable(_) => exit::NODE_UNREACHABLE,
            Self::Mismatch(_) => exit::MISMATCH,
            Self::Node { .. } => exit::INVALID_INPUT,
            Self::Genesis(_) | Self::Refused { .. } | Self::Invalid(_) | Self::Key(_) => {
                exit::INVALID_INPUT
            }
        }
    }
}

/// The clap command, with the exit codes in the help of every (sub)command.
pub fn command() -> clap::Command {
    fn with_exit_codes(cmd: clap::Command) -> clap::Command {
        cmd.after_help(exit::help())
            .mut_subcommands(with_exit_codes)
    }
    with_exit_codes(Cli::command())
}

/// Parses the command line (the first item is the program name).
pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// Runs a parsed command.
pub fn run(cli: &Cli) -> Result<Output, CliError> {
    let _tls = client::use_tls(
        cli.ca_cert.as_deref(),
        cli.client_cert.as_deref(),
        cli.client_key.as_deref(),
    )?;
    match &cli.command {
        Command::Genesis(args) => genesis::run(args),
        Command::Key(args) => key::run(args, &cli.node),
        Command::Consent(args) => consent::run(args, &cli.node),
        Command::Access(args) => access::run(args, &cli.node),
        Command::Receipt(args) => receipt::run(args),
        Command::Delegate(args) => delegate::run(args, &cli.node),
        Command::Org(args) => org::run(args, &cli.node),
        Command::Governance(args) => governance::run(args, &cli.node),
        Command::Review(args) => review::run(args, &cli.node),
        Command::Twin(args) => twin::run(args, &cli.node),
        Command::Fhir(args) => fhir::run(args, &cli.node),
        Command::Audit(args) => audit::run(args, &cli.node, cli.json),
        Command::Codes(args) => Ok(codes::run(args)),
        Command::Completions(args) => Ok(shell::run_completions(args)),
        Command::Man(args) => shell::run_man(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn help_lists_the_exit_codes() {
        let help = command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        let sub = command()
            .find_subcommand_mut("genesis")
            .unwrap()
            .find_subcommand_mut("add-validator")
            .unwrap()
            .render_long_help()
            .to_string();
        for (code, _) in exit::ALL {
            assert!(sub.contains(&format!("  {code}  ")), "{sub}");
        }
    }
}
