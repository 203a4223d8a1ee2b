//! `twinctl key`: create, show and export keys kept in encrypted key files.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;
use zeroize::Zeroizing;

use crate::keystore::{self, KeyFileError};
use crate::{CliError, Output};

/// Environment variable holding a passphrase for automation (a prompt is used otherwise).
pub const PASSPHRASE_ENV: &str = "TWINCTL_PASSPHRASE";

/// `twinctl key ...`
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The key command.
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// Where the passphrase comes from: a file, the `TWINCTL_PASSPHRASE` variable, or a prompt.
#[derive(Debug, Args)]
pub struct PassphraseArgs {
    /// Read the passphrase from this file (first line) instead of the environment or a prompt.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a new key in an encrypted key file (mode 0600) and print its did:key.
    New {
        /// The key file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Open a key file with its passphrase and show its did:key.
    Show {
        /// The key file.
        file: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Move a patient to a new key: the old key signs the rotation, the new key proves
    /// possession; consents and history follow the patient. Writes the new key file.
    Rotate {
        /// The patient's current key file.
        #[arg(long)]
        key: PathBuf,
        /// The new key file to create (same passphrase).
        #[arg(long)]
        out: PathBuf,
        /// The patient id (the first did:key), if the current key is already a rotated one.
        #[arg(long)]
        patient: Option<String>,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Print the public did:key of a key file (no passphrase needed).
    ExportPublic {
        /// The key file.
        file: PathBuf,
    },
}

/// Reads the passphrase: `--passphrase-file`, else `TWINCTL_PASSPHRASE`, else a prompt on the
/// terminal (asked twice when `confirm`).
pub fn passphrase(args: &PassphraseArgs, confirm: bool) -> Result<Zeroizing<String>, CliError> {
    if let Some(p) = &args.passphrase_file {
        let text = Zeroizing::new(std::fs::read_to_string(p).map_err(|source| {
            CliError::Key(KeyFileError::Io {
                path: p.display().to_string(),
                source,
            })
        })?);
        return Ok(Zeroizing::new(
            text.lines().next().unwrap_or_default().to_string(),
        ));
    }
    if let Ok(v) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(v));
    }
    let first = Zeroizing::new(rpassword::prompt_password("Passphrase: ").map_err(|e| {
        CliError::Invalid(format!(
            "cannot read a passphrase: {e} (use --passphrase-file or {PASSPHRASE_ENV})"
        ))
    })?);
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Passphrase again: ")
                .map_err(|e| CliError::Invalid(format!("cannot read a passphrase: {e}")))?,
        );
        if *first != *again {
            return Err(CliError::Invalid("the two passphrases differ".into()));
        }
    }
    Ok(first)
}

/// The patient a command acts for: `--patient` if given, else the signer itself.
pub fn patient_or_self(
    patient: Option<&str>,
    key: &twinledger_core::Keypair,
) -> Result<twinledger_core::PublicKey, CliError> {
    match patient {
        Some(d) => twinledger_core::PublicKey::from_did(d)
            .map_err(|e| CliError::Invalid(format!("--patient: {e}"))),
        None => Ok(key.public()),
    }
}

/// Opens a key file, asking for its passphrase.
pub fn open_key(file: &Path, pass: &PassphraseArgs) -> Result<twinledger_core::Keypair, CliError> {
    // Check the file (permissions, format) before asking for anything.
    keystore::public(file)?;
    let p = passphrase(pass, false)?;
    Ok(keystore::open(file, p.as_bytes())?)
}

/// Runs a key command.
pub fn run(args: &KeyArgs, node: &str) -> Result<Output, CliError> {
    match &args.command {
        KeyCommand::New { out, pass } => {
            if out.exists() {
                return Err(KeyFileError::Exists(out.display().to_string()).into());
            }
            let p = passphrase(pass, true)?;
            let key = keystore::generate()?;
            keystore::write(out, &key, p.as_bytes())?;
            let did = key.public().to_did();
            Ok(Output {
                text: format!(
                    "{did}\nwritten to {} (encrypted, mode 0600)\n",
                    out.display()
                ),
                json: json!({"did": did, "file": out}),
            })
        }
        KeyCommand::Show { file, pass } => {
            let key = open_key(file, pass)?;
            let did = key.public().to_did();
            Ok(Output {
                text: format!("{did}\n{}: opens with this passphrase\n", file.display()),
                json: json!({"did": did, "file": file, "opens": true}),
            })
        }
        KeyCommand::Rotate {
            key,
            out,
            patient,
            pass,
        } => {
            if out.exists() {
                return Err(KeyFileError::Exists(out.display().to_string()).into());
            }
            keystore::public(key)?;
            let p = passphrase(pass, false)?;
            let old = keystore::open(key, p.as_bytes())?;
            let patient = patient_or_self(patient.as_deref(), &old)?;
            let new = keystore::generate()?;
            let client = crate::client::NodeClient::connect(node)?;
            let proof = new.sign(
                twinledger_core::keys::sig_domain::KEY_ROTATION,
                &client.chain_id,
                &twinledger_core::event::rotation::KeyRotation::proof_body(&patient, &new.public()),
            );
            // Write the new key first: a rotation whose new key was lost would lock the patient out.
            keystore::write(out, &new, p.as_bytes())?;
            let payload = twinledger_core::EventPayload::KeyRotation(
                twinledger_core::event::rotation::KeyRotation {
                    patient,
                    new_key: new.public(),
                    new_key_proof: proof,
                },
            );
            let (id, height) = crate::submit::submit_and_wait(node, &old, payload)?;
            let did = new.public().to_did();
            Ok(Output {
                text: format!(
                    "rotated in block {height}: the patient {patient} now signs with {did} ({})\n",
                    out.display()
                ),
                json: json!({"id": id, "height": height, "patient": patient, "new_did": did, "file": out}),
            })
        }
        KeyCommand::ExportPublic { file } => {
            let did = keystore::public(file)?.to_did();
            Ok(Output {
                text: format!("{did}\n"),
                json: json!({"did": did}),
            })
        }
    }
}
