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

#[cfg(test)]
mod tests {
    use twinledger_core::devkit::{DevChain, dev_key};
    use twinledger_core::event::governance::{Governance, GovernanceAction};
    use twinledger_core::{EventPayload, ValidatorSet};

    use super::*;

    /// One governance event by validator 0, approved by validators 0..3 (3 of 4).
    fn govern(chain: &mut DevChain, action: GovernanceAction) {
        let seq = chain.state.governance_seq();
        let id = chain.state.chain_id();
        let mut approvals: Vec<_> = chain.validators[..3]
            .iter()
            .map(|k| Governance::approve(&id, seq, &action, k))
            .collect();
        approvals.sort_by_key(|a| a.validator);
        let by = chain.validators[0].clone();
        let ev = chain.event(
            &by,
            EventPayload::Governance(Governance {
                seq,
                action,
                approvals,
            }),
        );
        let c = chain.commit(vec![ev]);
        assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    }

    fn peer(k: &twinledger_core::Keypair) -> PeerId {
        net::peer_id(&k.public())
    }

    /// PROTOCOL §7.1, each rule: validators of the sets around the tip (a removed one stays for
    /// the block it still follows, then goes), observers added by governance while their
    /// organisation is live, genesis observers until removed; never this node itself.
    #[test]
    fn the_allow_list_follows_validator_sets_observers_and_organisations() {
        let mut chain = DevChain::new(4);
        let me = peer(&chain.validators[0]);
        let from_genesis_file = dev_key("membership/genesis-observer");
        let genesis_observers = vec![peer(&from_genesis_file)];
        let allowed = |c: &DevChain| allowed_peers(&c.state, &genesis_observers, &me);

        let a = allowed(&chain);
        assert!(!a.contains(&me), "a node does not list itself");
        for v in &chain.validators[1..] {
            assert!(a.contains(&peer(v)));
        }
        assert!(a.contains(&peer(&from_genesis_file)));
        assert_eq!(a.len(), 4);

        // An observer added by governance, run by the institute: listed; when the institute is
        // revoked, its observer goes with it.
        let obs = dev_key("membership/observer");
        let inst = chain.institute.public();
        govern(
            &mut chain,
            GovernanceAction::ObserverAdd {
                observer: obs.public(),
                organisation: inst,
            },
        );
        assert!(allowed(&chain).contains(&peer(&obs)));
        govern(&mut chain, GovernanceAction::OrgRevoke { org: inst });
        assert!(!allowed(&chain).contains(&peer(&obs)));

        // A genesis-file observer removed by governance: no longer listed.
        govern(
            &mut chain,
            GovernanceAction::ObserverRemove {
                observer: from_genesis_file.public(),
            },
        );
        assert!(!allowed(&chain).contains(&peer(&from_genesis_file)));

        // Validator 3 removed at h (in force at h + 2): listed through h + 1, gone after h + 2.
        let gone = chain.validators[3].clone();
        let kept: Vec<_> = chain
            .state
            .validators_for(chain.state.height() + 1)
            .validators()
            .iter()
            .filter(|v| v.key != gone.public())
            .cloned()
            .collect();
        govern(
            &mut chain,
            GovernanceAction::ValidatorSetChange {
                validators: ValidatorSet::new(kept).unwrap(),
            },
        );
        let h = chain.state.height();
        assert!(
            allowed(&chain).contains(&peer(&gone)),
            "scheduled away at {h}"
        );
        assert!(signs_at(&chain.state, &gone.public(), h + 1));
        assert!(!signs_at(&chain.state, &gone.public(), h + 2));
        chain.commit(vec![]);
        assert!(
            allowed(&chain).contains(&peer(&gone)),
            "it signed block {}",
            h + 1
        );
        chain.commit(vec![]);
        assert!(
            !allowed(&chain).contains(&peer(&gone)),
            "out of the set from {}",
            h + 2
        );
        assert!(!is_validator(&chain.state, &gone.public()));
    }
}
