//! Property tests of the canonical encoding (PROTOCOL.md §1): decoding arbitrary bytes never
//! panics, trailing garbage and oversized input are refused, and any change to a signed event's
//! bytes is either refused by the decoder or breaks the signature.

mod common;

use common::*;
use proptest::prelude::*;
use twinledger_core::checkpoint::Checkpoint;
use twinledger_core::devkit::DevChain;
use twinledger_core::event::MAX_EVENT_BYTES;
use twinledger_core::event::consent::Grantee;
use twinledger_core::*;

fn sample_event() -> SignedEvent {
    let mut chain = DevChain::new(1);
    let alice = patient("alice");
    let phys = chain.physician.public();
    chain.event(
        &alice,
        grant_payload(
            &alice.public(),
            Grantee::Actor(phys),
            &[DataCategory::VitalSigns],
            &[Purpose::Treat],
            &[Action::Read],
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SignedEvent::from_bytes(&bytes, MAX_EVENT_BYTES);
        let _ = Block::from_bytes(&bytes);
        let _ = Checkpoint::from_text(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn trailing_garbage_is_refused(extra in proptest::collection::vec(any::<u8>(), 1..64)) {
        let ev = sample_event();
        let mut bytes = ev.to_bytes();
        prop_assert_eq!(SignedEvent::from_bytes(&bytes, MAX_EVENT_BYTES).unwrap(), ev);
        bytes.extend(extra);
        prop_assert!(SignedEvent::from_bytes(&bytes, MAX_EVENT_BYTES).is_err());
    }

    #[test]
    fn any_byte_change_is_refused_or_unsigned(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let ev = sample_event();
        let mut bytes = ev.to_bytes();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(changed) = SignedEvent::from_bytes(&bytes, MAX_EVENT_BYTES) {
            prop_assert!(changed.verify_signature().is_err(), "mutated event still verifies");
        }
    }

    #[test]
    fn oversized_input_is_refused_before_decoding(size in (MAX_EVENT_BYTES + 1)..(MAX_EVENT_BYTES + 4096), limit in 256usize..4096) {
        let bytes = vec![0u8; size];
        let refused = matches!(
            SignedEvent::from_bytes(&bytes, MAX_EVENT_BYTES),
            Err(codec::CodecError::TooLarge { .. })
        );
        prop_assert!(refused);
        let ev = sample_event();
        let real = ev.to_bytes();
        if real.len() > limit {
            let refused = matches!(SignedEvent::from_bytes(&real, limit), Err(codec::CodecError::TooLarge { .. }));
            prop_assert!(refused);
        }
    }
}
