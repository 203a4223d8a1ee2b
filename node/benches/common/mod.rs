//! Shared by the load generators (`load.rs`, `bft.rs`): settings from the environment and the
//! events they submit.
#![allow(dead_code)] // each bench uses what it needs

use twinledger_core::{ChainId, Keypair, SignedEvent};
use twinledger_node::chain::now;

/// A numeric setting from the environment, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Patient `i`'s first event (keys from `label`): a consent grant to `org`, signed.
pub fn grant(chain: ChainId, label: &str, i: u64, org: &Keypair) -> SignedEvent {
    twinledger_core::devkit::patient_grant(chain, label, i, &org.public(), now().plus_ms(3_600_000))
}
