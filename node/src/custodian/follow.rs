//! Erasure follows the chain: a committed TwinErase of a held key erases it.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use twinledger_core::{EventPayload, State, TwinId};
use twinledger_sealed::custodian::KeyState;

use super::{Custodian, version_id};
use crate::chain::Chain;

/// Erases the held keys of every version the committed `state` says is erased (on start, and
/// after a missed notification). Returns how many it erased.
pub fn catch_up(cust: &Custodian, state: &State) -> usize {
    let mut n = 0;
    let Ok(twins) = std::fs::read_dir(cust.keys_dir()) else {
        return 0;
    };
    for t in twins.flatten() {
        let Some(twin) = t
            .file_name()
            .to_str()
            .and_then(|s| TwinId::from_hex(s).ok())
        else {
            continue;
        };
        let Ok(files) = std::fs::read_dir(t.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            let Some(version) = name
                .to_str()
                .and_then(|s| s.strip_suffix(".key"))
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            if state
                .sealed(&twin, version)
                .is_some_and(|s| s.erased_at.is_some())
                && erase(cust, &twin, version)
            {
                n += 1;
            }
        }
    }
    n
}

/// Erases the key of `twin` `version` if held; logs (never key material) and counts it.
fn erase(cust: &Custodian, twin: &TwinId, version: u64) -> bool {
    let Ok(vid) = version_id(twin, version) else {
        return false;
    };
    match cust.keys().state(&vid) {
        Ok(KeyState::Held) | Ok(KeyState::Erased) => match cust.keys().erase(&vid) {
            Ok(()) => {
                tracing::info!(%twin, version, "data key erased (TwinErase committed)");
                true
            }
            Err(twinledger_sealed::SealError::Erased { .. }) => false,
            Err(e) => {
                tracing::error!(%twin, version, error = %e, "erasing a data key failed; retried on the next block");
                false
            }
        },
        Ok(KeyState::Unknown) => false,
        Err(e) => {
            tracing::error!(%twin, version, error = %e, "reading the key store failed");
            false
        }
    }
}

/// Follows the committed chain until it closes: the TwinErase events of each new block erase
/// their keys. Starts with [`catch_up`].
pub async fn follow(chain: Arc<Chain>, cust: Arc<Custodian>) {
    let mut rx = chain.subscribe();
    let state = chain.state();
    let mut seen = state.height();
    let n = catch_up(&cust, &state);
    chain.metrics().custodian_erasures.inc_by(n as u64);
    drop(state);
    loop {
        match rx.recv().await {
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
        let height = chain.height();
        let mut n = 0u64;
        for h in seen + 1..=height {
            let Ok(Some(sb)) = chain.store().block(h) else {
                // Not readable (pruned or an error): the committed state tells what is erased.
                n += catch_up(&cust, &chain.state()) as u64;
                break;
            };
            for ev in &sb.block.events {
                if let EventPayload::TwinErase(e) = &ev.event.payload
                    && erase(&cust, &e.twin, e.version)
                {
                    n += 1;
                }
            }
        }
        chain.metrics().custodian_erasures.inc_by(n);
        seen = seen.max(height);
    }
}
