//! Event signatures checked in batches (ZIP-215, PROTOCOL.md §3; ADR 0009): one batch equation
//! for many events, which decides exactly as checking each alone. Every place where the node
//! verifies more than one event at once (a batch submission, a gossiped batch, the events of a
//! proposed block this node has not admitted itself) goes through here.

use twinledger_core::SignedEvent;
use twinledger_core::keys::verify_batch;

/// Whether each event's signature verifies. One batch check when they all do (the honest
/// case); when it fails, each is checked alone, so a batch of bad signatures costs at most
/// twice what a clean one does (never a search that an attacker could make quadratic).
pub fn check_each(events: &[&SignedEvent]) -> Vec<bool> {
    match first_bad(events) {
        None => vec![true; events.len()],
        Some(_) => events
            .iter()
            .map(|ev| ev.verify_signature().is_ok())
            .collect(),
    }
}

/// The index of the first event whose signature does not verify, if any.
pub fn first_bad(events: &[&SignedEvent]) -> Option<usize> {
    let items: Vec<_> = events
        .iter()
        .map(|ev| (ev.event.author, ev.signing_message(), ev.signature))
        .collect();
    verify_batch(&items).err()
}

#[cfg(test)]
mod tests {
    use twinledger_core::devkit::dev_key;
    use twinledger_core::event::consent::ConsentRevoke;
    use twinledger_core::event::{Event, EventPayload};
    use twinledger_core::{ChainId, EventId, Timestamp};

    use super::*;

    fn events(n: u64) -> Vec<SignedEvent> {
        let k = dev_key("verify-test/author");
        (0..n)
            .map(|seq| {
                Event::new(
                    ChainId([7; 32]),
                    k.public(),
                    seq,
                    Timestamp(1_000 + seq),
                    EventPayload::ConsentRevoke(ConsentRevoke {
                        patient: k.public(),
                        grant: EventId([u8::try_from(seq).unwrap_or(0); 32]),
                    }),
                )
                .sign(&k)
            })
            .collect()
    }

    #[test]
    fn a_batch_names_exactly_the_forged_signatures() {
        let mut evs = events(40);
        for i in [3, 17, 39] {
            evs[i].signature.0[5] ^= 1;
        }
        let refs: Vec<&SignedEvent> = evs.iter().collect();
        let ok = check_each(&refs);
        let bad: Vec<usize> = (0..ok.len()).filter(|&i| !ok[i]).collect();
        assert_eq!(bad, vec![3, 17, 39]);
        assert_eq!(first_bad(&refs), Some(3));
        let clean: Vec<&SignedEvent> = evs[4..17].iter().collect();
        assert_eq!(first_bad(&clean), None);
        assert!(check_each(&clean).iter().all(|b| *b));
        assert!(check_each(&[]).is_empty());
    }
}
