//! `twinctl key`: create, import, show and export keys kept in encrypted key files; and
//! [`open_key`], which every signing command uses, for encrypted keys and the plain development
//! keys of dev chains (ADR 0011).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;
use zeroize::Zeroizing;

use crate::keystore::{self, KeyFileError, KeyFileKind};
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
    /// Make an encrypted key file from an existing raw key: a plain key file of
    /// `twinledger-node` (a node key, or a dev chain's key) or a file holding the ed25519
    /// secret as 64 hex digits. Prints its did:key.
    Import {
        /// The raw key file (left as it is).
        raw: PathBuf,
        /// The encrypted key file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Passphrase source.
        #[command(flatten)]
        pass: PassphraseArgs,
    },
    /// Open a key file with its passphrase and show its did:key (a dev chain's plain
    /// development key needs no passphrase).
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
        /// The new key file to create (same passphrase; a new one when rotating away from a
        /// development key).
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

/// The patient a command acts for: `--patient` if given, else the patient whose current key
/// signs (the node names it after a rotation), else the signer itself.
pub fn patient_or_self(
    client: &crate::client::NodeClient,
    patient: Option<&str>,
    key: &twinledger_core::Keypair,
) -> Result<twinledger_core::PublicKey, CliError> {
    crate::consent::signer_patient(client, key, patient)
}

/// Opens a key file to sign with: an encrypted key file, asking for its passphrase; or a plain
/// development key of `twinledger-node --dev` or `twinledger-devnet`, with a warning on stderr,
/// refused unless the node this command talks to serves the dev chain the key was made for.
/// Refuses a plain node key and an unmarked plain file, saying to import them.
pub fn open_key(
    file: &Path,
    pass: &PassphraseArgs,
    node: &str,
) -> Result<twinledger_core::Keypair, CliError> {
    // Check the file (permissions, format) before asking for anything.
    let path = file.display().to_string();
    match keystore::inspect(file)?.1 {
        KeyFileKind::Encrypted => {
            let p = passphrase(pass, false)?;
            Ok(keystore::open(file, p.as_bytes())?)
        }
        KeyFileKind::Dev { chain_id } => {
            let (key, _) = keystore::open_plain(file)?;
            let node_chain = crate::client::NodeClient::connect(node)?.chain_id;
            if node_chain != chain_id {
                return Err(KeyFileError::DevKeyOtherChain {
                    path,
                    key_chain: chain_id,
                    node_chain,
                }
                .into());
            }
            warn_dev_key(file, chain_id);
            Ok(key)
        }
        KeyFileKind::Node => Err(KeyFileError::NodeKey(path).into()),
        KeyFileKind::Unmarked => Err(KeyFileError::UnmarkedPlain(path).into()),
    }
}

/// The one-line warning printed whenever a development key is used.
fn warn_dev_key(file: &Path, chain_id: twinledger_core::ChainId) {
    eprintln!(
        "warning: {} is an unencrypted development key (dev chain {}); never use it on a real \
         chain",
        file.display(),
        &chain_id.to_hex()[..16]
    );
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
        KeyCommand::Import { raw, out, pass } => {
            if out.exists() {
                return Err(KeyFileError::Exists(out.display().to_string()).into());
            }
            let key = keystore::read_raw(raw)?;
            let p = passphrase(pass, true)?;
            keystore::write(out, &key, p.as_bytes())?;
            let did = key.public().to_did();
            Ok(Output {
                text: format!(
                    "{did}\nwritten to {} (encrypted, mode 0600); {} is unchanged: delete it if \
                     nothing else needs it\n",
                    out.display(),
                    raw.display()
                ),
                json: json!({"did": did, "file": out, "from": raw}),
            })
        }
        KeyCommand::Show { file, pass } => match keystore::inspect(file)?.1 {
            KeyFileKind::Encrypted => {
                let key = open_key(file, pass, node)?;
                let did = key.public().to_did();
                Ok(Output {
                    text: format!("{did}\n{}: opens with this passphrase\n", file.display()),
                    json: json!({"did": did, "file": file, "opens": true, "kind": "encrypted"}),
                })
            }
            kind => {
                // A plain file: show what it is without contacting a node.
                let (key, _) = keystore::open_plain(file)?;
                if let KeyFileKind::Dev { chain_id } = kind {
                    warn_dev_key(file, chain_id);
                }
                let did = key.public().to_did();
                let (name, chain, use_) = match kind {
                    KeyFileKind::Dev { chain_id } => (
                        "dev",
                        Some(chain_id),
                        "twinctl signs with it, without a passphrase, against that dev chain only",
                    ),
                    KeyFileKind::Node => (
                        "node",
                        None,
                        "twinctl signs with it only through an encrypted copy (twinctl key import)",
                    ),
                    _ => (
                        "unmarked",
                        None,
                        "start its dev chain once to mark it, or make an encrypted copy (twinctl key import)",
                    ),
                };
                Ok(Output {
                    text: format!("{did}\n{}: an {kind}; {use_}\n", file.display()),
                    json: json!({"did": did, "file": file, "opens": true, "kind": name, "chain_id": chain}),
                })
            }
        },
        KeyCommand::Rotate {
            key,
            out,
            patient,
            pass,
        } => {
            if out.exists() {
                return Err(KeyFileError::Exists(out.display().to_string()).into());
            }
            // The new file takes the old file's passphrase; a development key has none, so the
            // new (encrypted) file asks for one.
            let (old, p) = match keystore::inspect(key)?.1 {
                KeyFileKind::Encrypted => {
                    let p = passphrase(pass, false)?;
                    (keystore::open(key, p.as_bytes())?, p)
                }
                _ => {
                    let old = open_key(key, pass, node)?;
                    (old, passphrase(pass, true)?)
                }
            };
            let client = crate::client::NodeClient::connect(node)?;
            let patient = patient_or_self(&client, patient.as_deref(), &old)?;
            let new = keystore::generate()?;
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
