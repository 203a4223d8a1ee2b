//! Who may connect and who signs, from the committed state (PROTOCOL.md §7.1, 2.5): the
//! allow-list follows governance (validator-set changes and observer records) block by block,
//! so a network grows, shrinks and rotates keys without any node restarting.

use std::collections::BTreeSet;

use libp2p::PeerId;
use twinledger_core::{PublicKey, State};

use crate::net;

/// The peers this node admits after its committed tip (PROTOCOL.md §7.1), minus itself:
/// 1. the validators of the set that signed the tip, of the set in force at tip + 1, and of a
///    set scheduled for tip + 2;
/// 2. the observers recorded live whose organisation is live;
/// 3. the genesis file's observers (`genesis_observers`, by peer id) not recorded as removed.
pub fn allowed_peers(state: &State, genesis_observers: &[PeerId], me: &PeerId) -> BTreeSet<PeerId> {
    let tip = state.height();
    let mut keys: BTreeSet<PublicKey> = BTreeSet::new();
    for h in [tip + 1, tip + 2] {
        keys.extend(state.validators_for(h).validators().iter().map(|v| v.key));
    }
    keys.extend(
        state
            .validators_in_force()
            .validators()
            .iter()
            .map(|v| v.key),
    );
    let mut out: BTreeSet<PeerId> = keys.iter().map(net::peer_id).collect();
    let mut removed = BTreeSet::new();
    for (key, rec) in state.observers() {
        let peer = net::peer_id(key);
        let org_live = rec
            .organisation
            .is_none_or(|o| state.organisation(&o).is_some_and(|o| o.live));
        if rec.live && org_live {
            out.insert(peer);
        } else if !rec.live {
            removed.insert(peer);
        }
    }
    out.extend(
        genesis_observers
            .iter()
            .filter(|p| !removed.contains(p))
            .copied(),
    );
    out.remove(me);
    out
}

/// Whether `key` signs at `height` (the set in force there names it).
pub fn signs_at(state: &State, key: &PublicKey, height: u64) -> bool {
    height > state.height() && state.validators_for(height).get(key).is_some()
}

/// Whether `key` is, as far as this state knows, a validator: in the set in force or in a
/// scheduled one.
pub fn is_validator(state: &State, key: &PublicKey) -> bool {
    let tip = state.height();
    [tip + 1, tip + 2]
        .iter()
        .any(|h| state.validators_for(*h).get(key).is_some())
}
