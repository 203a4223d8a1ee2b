//! Shared by the load generators (`load.rs`, `bft.rs`): settings from the environment and the
//! events they submit.
#![allow(dead_code)] // each bench uses what it needs

use twinledger_core::codes::{Action, DataCategory, Purpose};
use twinledger_core::devkit::dev_key;
use twinledger_core::event::consent::{ConsentGrant, Grantee};
use twinledger_core::event::delegation::Scope;
use twinledger_core::{ChainId, Event, EventPayload, Keypair, SignedEvent, Timestamp};
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
    let p = dev_key(&format!("{label}/patient/{i}"));
    Event::new(
        chain,
        p.public(),
        0,
        now().plus_ms(3_600_000),
        EventPayload::ConsentGrant(ConsentGrant {
            patient: p.public(),
            grantee: Grantee::Organisation(org.public()),
            scope: Scope {
                categories: [DataCategory::VitalSigns].into_iter().collect(),
                purposes: [Purpose::Treat].into_iter().collect(),
                actions: [Action::Read].into_iter().collect(),
            },
            valid_from: Timestamp(0),
            valid_until: None,
        }),
    )
    .sign(&p)
}
