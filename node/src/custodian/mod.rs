//! Custodian mode (issue #14 phase 2, ADR 0013, PROTOCOL.md §11.6): the node as the key-release
//! service of its organisation's sealed twin versions.
//!
//! - [`deposit`]: `POST /v1/custodian/keys`, a live actor of the custodian's organisation hands
//!   in the data key of a version whose committed TwinSeal names this custodian, wrapped to the
//!   custodian's ed25519 key; it is kept wrapped at rest under the master key
//!   ([`twinledger_sealed::custodian::KeyStore`]).
//! - [`release`]: `POST /v1/custodian/release`, a requester presents the receipt of its
//!   permitted access request (or flagged break-glass request); every check passes, the
//!   custodian commits a KeyRelease and only once it is final answers the data key wrapped to
//!   the requester's key.
//! - [`follow`]: a committed TwinErase of a held key erases it (crypto-shredding); a restart
//!   catches up from the committed state.
//!
//! Key material is never logged: a [`twinledger_sealed::DataKey`] has no accessor and a redacted
//! `Debug`; what leaves the node is always wrapped.

mod deposit;
mod follow;
mod release;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use twinledger_core::{EventId, Keypair, PublicKey, Role, State};
use twinledger_sealed::SealError;
use twinledger_sealed::custodian::{KeyStore, MasterKey};

pub use deposit::deposit;
pub use follow::{catch_up, follow};
pub use release::{info, release};

/// How old (by its block's time) an access receipt may be for a release, by default.
pub const DEFAULT_RELEASE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How long a release waits for its KeyRelease to be final before answering 504.
pub const RELEASE_WAIT: Duration = Duration::from_secs(30);

/// What custodian mode needs.
#[derive(Debug)]
pub struct CustodianConfig {
    /// The custodian's key: a live actor with role `service` of its organisation.
    pub key: Keypair,
    /// The master key the data keys are wrapped under at rest.
    pub master: MasterKey,
    /// The key store's directory.
    pub dir: PathBuf,
    /// How old an access receipt may be ([`DEFAULT_RELEASE_WINDOW`]).
    pub release_window: Duration,
}

/// Why custodian mode does not start.
#[derive(Debug, thiserror::Error)]
pub enum CustodianError {
    /// The key is not a live service actor on this chain.
    #[error(
        "the custodian key {0} is not a live actor with role service on this chain (enrol it in \
         the genesis or with an actor enrolment by its organisation)"
    )]
    NotAService(PublicKey),
    /// The key store.
    #[error("custodian key store: {0}")]
    Store(#[from] SealError),
}

/// The key-release service.
pub struct Custodian {
    key: Keypair,
    organisation: PublicKey,
    keys: KeyStore,
    dir: PathBuf,
    window: Duration,
    /// Serialises releases: one KeyRelease in flight at a time, so the custodian's sequence
    /// numbers and the "released before" check cannot race.
    lock: tokio::sync::Mutex<()>,
    /// Accesses whose KeyRelease was admitted but not seen final in time (a retry is told
    /// `already_released` until it is final or dropped).
    pending: Mutex<HashSet<EventId>>,
}

impl std::fmt::Debug for Custodian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custodian")
            .field("key", &self.key.public())
            .field("organisation", &self.organisation)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Custodian {
    /// Opens custodian mode against the committed `state`: the key must be a live service
    /// actor; its organisation is the one whose sealed versions it serves.
    pub fn open(cfg: CustodianConfig, state: &State) -> Result<Self, CustodianError> {
        let public = cfg.key.public();
        let organisation = match state.actor(&public) {
            Some(a) if a.live && a.role == Role::Service => a.organisation,
            _ => return Err(CustodianError::NotAService(public)),
        };
        let keys = KeyStore::open(cfg.dir.clone(), cfg.master)?;
        Ok(Self {
            key: cfg.key,
            organisation,
            keys,
            dir: cfg.dir,
            window: cfg.release_window,
            lock: tokio::sync::Mutex::new(()),
            pending: Mutex::default(),
        })
    }

    /// The custodian's public key.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// Its organisation.
    pub fn organisation(&self) -> PublicKey {
        self.organisation
    }

    /// The key store.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The key store's directory (`<twin hex>/<version>.key`, `.erased`).
    pub fn keys_dir(&self) -> &std::path::Path {
        &self.dir
    }
}

/// The version id of the key store for a bound twin id and version.
fn version_id(
    twin: &twinledger_core::TwinId,
    version: u64,
) -> Result<twinledger_sealed::VersionId, SealError> {
    twinledger_sealed::VersionId::new(&twin.to_hex(), version)
}
