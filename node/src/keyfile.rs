//! Node key files (validator keys, dev keys): JSON with the did and the secret, file mode 0600.
//! The encrypted key files patients use come with twinctl (issue #5); a node's validator key
//! sits on the hospital's server like a TLS private key, readable by the node's user only.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use twinledger_core::{Keypair, PublicKey};

/// The file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    did: String,
    secret_hex: String,
    note: String,
}

/// A fresh key from the operating system's RNG.
pub fn generate() -> anyhow::Result<Keypair> {
    loop {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
        let k = Keypair::from_secret(&seed);
        // A random seed giving a weak key is astronomically unlikely; retry rather than assume.
        if PublicKey::from_ed25519_bytes(k.public().as_bytes()).is_ok() {
            return Ok(k);
        }
    }
}

/// Writes `key` to `path` (mode 0600, created new: an existing file is never overwritten).
pub fn write(path: &Path, key: &Keypair, note: &str) -> anyhow::Result<()> {
    let kf = KeyFile {
        did: key.public().to_did(),
        secret_hex: hex::encode(key.secret_bytes()),
        note: note.into(),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating key file {}", path.display()))?;
    f.write_all(serde_json::to_string_pretty(&kf)?.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Reads a key file, refusing one that others can read, a malformed one, or one whose did
/// does not match its secret.
pub fn read(path: &Path) -> anyhow::Result<Keypair> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading key file {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "key file {} is readable by others (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let kf: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("key file {} is malformed", path.display()))?;
    let mut secret = [0u8; 32];
    hex::decode_to_slice(&kf.secret_hex, &mut secret).with_context(|| {
        format!(
            "key file {}: secret_hex is not 64 hex digits",
            path.display()
        )
    })?;
    let key = Keypair::from_secret(&secret);
    if key.public().to_did() != kf.did {
        bail!(
            "key file {}: the did does not match the secret",
            path.display()
        );
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.key");
        let key = generate().unwrap();
        write(&path, &key, "test").unwrap();
        assert_eq!(read(&path).unwrap().public(), key.public());
        // Never overwritten.
        assert!(write(&path, &key, "test").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = read(&path).unwrap_err().to_string();
            assert!(err.contains("readable by others"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        // A did that does not match the secret.
        let other = generate().unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(&key.public().to_did(), &other.public().to_did());
        std::fs::write(&path, text).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        std::fs::write(&path, "{").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("malformed"));
    }
}
