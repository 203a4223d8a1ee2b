//! The auditor's replay (PROTOCOL.md §11.2) passes on an honest chain and, for every kind of
//! tampering, fails naming the right height and reason.

mod common;

use common::*;
use twinledger_core::audit::{
    AuditFailure, Auditor, CommittedBlock, EXPORT_MAGIC, ExportError, export_frame, read_export,
};
use twinledger_core::devkit::DevChain;
use twinledger_core::state::{BlockError, SignatureCheck};
use twinledger_core::*;

/// Five blocks: grants, accesses (permit and deny), a break-glass.
fn chain() -> (DevChain, Vec<CommittedBlock>) {
    let mut chain = DevChain::new(4);
    let phys = chain.physician.clone();
    for p in 0..3 {
        let alice = patient(&format!("p{p}"));
        let g = chain.event(&alice, vitals_grant(&alice.public(), &phys.public()));
        let a = chain.event(
            &phys,
            access_payload(
                &alice.public(),
                DataCategory::VitalSigns,
                Purpose::Treat,
                Action::Read,
            ),
        );
        let d = chain.event(
            &phys,
            access_payload(
                &alice.public(),
                DataCategory::Genetic,
                Purpose::Treat,
                Action::Read,
            ),
        );
        chain.commit(vec![g]);
        chain.commit(vec![a, d]);
    }
    let bg = chain.event(
        &phys,
        break_glass_payload(&patient("p0").public(), DataCategory::Imaging),
    );
    chain.commit(vec![bg]);
    let blocks = chain.blocks.iter().map(|c| c.committed.clone()).collect();
    (chain, blocks)
}

fn export(blocks: &[CommittedBlock]) -> Vec<u8> {
    let mut out = EXPORT_MAGIC.to_vec();
    for b in blocks {
        out.extend(export_frame(b));
    }
    out
}

fn verify(genesis: &Genesis, bytes: &[u8]) -> Result<audit::AuditSummary, AuditFailure> {
    let mut auditor = Auditor::new(genesis)?;
    for cb in read_export(bytes)? {
        auditor.check(&cb?, SignatureCheck::Verify)?;
    }
    Ok(auditor.summary())
}

#[test]
fn an_honest_chain_verifies() {
    let (chain, blocks) = chain();
    let s = verify(&chain.genesis, &export(&blocks)).unwrap();
    assert_eq!(
        (s.blocks, s.events, s.permitted, s.denied, s.break_glass),
        (7, 10, 3, 3, 1)
    );
    assert_eq!(s.unreviewed_break_glass, 1);
    assert_eq!(s.log_root, chain.state.log_root().to_hex());
}

/// The tamper matrix: each change is caught at the height it was made, for the right reason.
#[test]
fn every_tampering_is_named() {
    let (chain, blocks) = chain();
    type Tamper = fn(&mut Vec<CommittedBlock>);
    type Reason = fn(&AuditFailure) -> bool;
    let cases: Vec<(&str, Tamper, u64, Reason)> = vec![
        (
            "event byte",
            |b| b[3].block.events[0].event.not_after.0 ^= 1,
            4,
            |f| {
                matches!(
                    f,
                    AuditFailure::Block(BlockError::InvalidEvent {
                        reason: RejectReason::BadSignature(_),
                        ..
                    })
                )
            },
        ),
        (
            "event signature",
            |b| b[3].block.events[1].signature.0[7] ^= 1,
            4,
            |f| {
                matches!(
                    f,
                    AuditFailure::Block(BlockError::InvalidEvent {
                        index: 1,
                        reason: RejectReason::BadSignature(_),
                        ..
                    })
                )
            },
        ),
        (
            "certificate signature",
            |b| b[2].certificate.signatures[0].signature.0[0] ^= 1,
            3,
            |f| matches!(f, AuditFailure::Certificate { .. }),
        ),
        (
            "header hash link",
            |b| b[4].block.header.prev_hash.0[0] ^= 1,
            5,
            |f| matches!(f, AuditFailure::Block(BlockError::BrokenLink { .. })),
        ),
        (
            "Merkle root",
            |b| b[1].block.header.log_root.0[0] ^= 1,
            2,
            |f| {
                matches!(
                    f,
                    AuditFailure::Block(BlockError::HeaderMismatch {
                        field: "log_root",
                        ..
                    })
                )
            },
        ),
        (
            "recorded decision",
            |b| b[1].results.outcomes[1] = Outcome::Access(Decision::BreakGlass),
            2,
            |f| matches!(f, AuditFailure::Decision { index: 1, .. }),
        ),
        (
            "extra recorded outcome",
            |b| b[1].results.outcomes.push(Outcome::Applied),
            2,
            |f| {
                matches!(
                    f,
                    AuditFailure::ResultsCount {
                        recorded: 3,
                        derived: 2,
                        ..
                    }
                )
            },
        ),
        (
            "removed event",
            |b| {
                b[5].block.events.pop();
            },
            6,
            |f| {
                matches!(
                    f,
                    AuditFailure::Block(BlockError::HeaderMismatch {
                        field: "event_count",
                        ..
                    })
                )
            },
        ),
        (
            "reordered events",
            |b| b[5].block.events.swap(0, 1),
            6,
            |f| {
                matches!(
                    f,
                    AuditFailure::Block(BlockError::InvalidEvent {
                        reason: RejectReason::WrongSequence { .. },
                        ..
                    }) | AuditFailure::Block(BlockError::HeaderMismatch { .. })
                )
            },
        ),
    ];
    for (name, tamper, height, reason) in cases {
        let mut b = blocks.clone();
        tamper(&mut b);
        let err = verify(&chain.genesis, &export(&b)).expect_err(name);
        assert_eq!(err.height(), Some(height), "{name}: {err}");
        assert!(reason(&err), "{name}: {err}");
        assert!(
            err.to_string().contains(&format!("block {height}")),
            "{name}: {err}"
        );
    }
    // A truncated file.
    let bytes = export(&blocks);
    let err = verify(&chain.genesis, &bytes[..bytes.len() - 10]).unwrap_err();
    assert!(
        matches!(
            err,
            AuditFailure::Export(ExportError::Truncated { blocks: 6, .. })
        ),
        "{err}"
    );
    // Not an export at all; another chain's genesis.
    assert!(matches!(
        verify(&chain.genesis, b"hello"),
        Err(AuditFailure::Export(ExportError::Magic))
    ));
    let other = DevChain::new(3);
    let err = verify(&other.genesis, &bytes).unwrap_err();
    assert_eq!(err.height(), None, "{err}");
    assert!(err.to_string().contains("block is for chain"), "{err}");
}

/// The batch path names the same event as the strict one.
#[test]
fn batch_verification_names_the_bad_event() {
    let (_, mut blocks) = chain();
    assert!(audit::first_bad_signature(&blocks[3]).is_none());
    blocks[3].block.events[1].signature.0[9] ^= 1;
    match audit::first_bad_signature(&blocks[3]) {
        Some(AuditFailure::EventSignature {
            height: 4,
            index: 1,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
