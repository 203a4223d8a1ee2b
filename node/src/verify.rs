//! Event signatures checked in batches (ZIP-215, PROTOCOL.md §3; ADR 0009): one batch equation
//! for many events, which decides exactly as checking each alone. Every place where the node
//! verifies more than one event at once (a batch submission, a gossiped batch, the events of a
//! proposed block this node has not admitted itself) goes through here.

use std::convert::Infallible;

use ed25519_zebra::{VerificationKeyBytes, batch};
use twinledger_core::SignedEvent;
use twinledger_core::keys::{Signature, zip215};

/// The BLAKE3 key-derivation context of the batch coefficients. Not a protocol domain: any
/// coefficients give the same verdict except with negligible probability (ADR 0009).
const BATCH_COEFFICIENTS: &str = "twinledger 2026-11 zip215 batch-verify coefficients";

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
        .map(|ev| {
            (
                *ev.event.author.as_bytes(),
                ev.signing_message(),
                ev.signature,
            )
        })
        .collect();
    let refs: Vec<_> = items
        .iter()
        .map(|(k, m, s)| (*k, m.as_slice(), *s))
        .collect();
    batch_check(&refs).err()
}

/// The ZIP-215 batch check (ed25519-zebra's cofactored equation): `Ok` iff
/// [`zip215::verify`] accepts every `(A, message, signature)`, else the index of the first it
/// refuses (found by checking each alone, only when the batch fails).
pub fn batch_check(items: &[([u8; 32], &[u8], Signature)]) -> Result<(), usize> {
    if items.len() < 2 {
        return zip215::verify_batch(items);
    }
    // The coefficients are drawn from a BLAKE3 stream keyed by every byte of the batch, so
    // they are fixed only once the batch is (ADR 0009); no OS randomness.
    let mut seed = blake3::Hasher::new_derive_key(BATCH_COEFFICIENTS);
    seed.update(&(items.len() as u64).to_le_bytes());
    let mut verifier = batch::Verifier::new();
    for (key, msg, sig) in items {
        seed.update(key);
        seed.update(&sig.0);
        seed.update(&(msg.len() as u64).to_le_bytes());
        seed.update(msg);
        verifier.queue((
            VerificationKeyBytes::from(*key),
            ed25519_zebra::Signature::from_bytes(&sig.0),
            *msg,
        ));
    }
    match verifier.verify(Coefficients(seed.finalize_xof())) {
        Ok(()) => Ok(()),
        // The batch equation is cofactored: it fails only if some signature does, and the
        // single rule names the first.
        Err(_) => zip215::verify_batch(items),
    }
}

/// The batch coefficients' source: the BLAKE3 output stream of the batch's hash.
struct Coefficients(blake3::OutputReader);

impl rand_core::TryRng for Coefficients {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

/// A cryptographic source for the batch equation: its output is unpredictable until every
/// key, message and signature of the batch is fixed.
impl rand_core::TryCryptoRng for Coefficients {}

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
