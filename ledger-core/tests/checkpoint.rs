//! Checkpoints and commit certificates (PROTOCOL.md §9): text round trip, every certificate
//! failure named, any change to a certified checkpoint refused, fork signers named.

mod common;

use proptest::prelude::*;
use twinledger_core::checkpoint::CertificateError;
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::*;

fn certified() -> (DevChain, Checkpoint, CommitCertificate) {
    let mut chain = DevChain::new(4);
    let c = chain.commit(vec![]);
    let cp = c.block.header.checkpoint();
    (chain, cp, c.certificate.clone())
}

#[test]
fn text_round_trips_and_verifies() {
    let (chain, cp, cert) = certified();
    let text = cp.to_text(&cert);
    let (cp2, cert2) = Checkpoint::from_text(&text).unwrap();
    assert_eq!((cp2, &cert2), (cp, &cert));
    assert_eq!(cert2.verify(&cp2, chain.validator_set()).unwrap(), 4);
}

#[test]
fn certificate_failures_are_named() {
    let (chain, cp, cert) = certified();
    let set = chain.validator_set();
    // Two of four signatures: no quorum.
    let two = CommitCertificate::new(cert.round, cert.signatures[..2].to_vec());
    assert_eq!(
        two.verify(&cp, set),
        Err(CertificateError::NoQuorum {
            signed: 2,
            total: 4
        })
    );
    // Three of four: quorum.
    let three = CommitCertificate::new(cert.round, cert.signatures[..3].to_vec());
    assert_eq!(three.verify(&cp, set), Ok(3));
    // A duplicated signer does not count twice.
    let mut dup = cert.signatures[..2].to_vec();
    dup.push(cert.signatures[1]);
    let dup = CommitCertificate {
        round: 0,
        signatures: dup,
    };
    assert!(matches!(
        dup.verify(&cp, set),
        Err(CertificateError::DuplicateOrUnsorted(_))
    ));
    // An outsider's signature.
    let outsider = dev_key("validator/outsider");
    let vote = CommitVote {
        checkpoint: cp,
        round: 0,
    };
    let mut sigs = cert.signatures.clone();
    sigs.push(vote.sign(&outsider));
    let bad = CommitCertificate::new(0, sigs);
    assert_eq!(
        bad.verify(&cp, set),
        Err(CertificateError::UnknownSigner(outsider.public()))
    );
    // A forged signature.
    let mut forged = cert.clone();
    forged.signatures[0].signature.0[5] ^= 1;
    assert_eq!(
        forged.verify(&cp, set),
        Err(CertificateError::BadSignature(
            forged.signatures[0].validator
        ))
    );
    // Another round is another vote.
    let mut other_round = cert.clone();
    other_round.round = 1;
    assert!(matches!(
        other_round.verify(&cp, set),
        Err(CertificateError::BadSignature(_))
    ));
    // Another checkpoint (log size, root, height, block or chain changed) does not verify.
    for change in 0..5 {
        let mut cp2 = cp;
        match change {
            0 => cp2.log_size += 1,
            1 => cp2.log_root.0[0] ^= 1,
            2 => cp2.height += 1,
            3 => cp2.block_hash.0[31] ^= 1,
            _ => cp2.chain_id.0[0] ^= 1,
        }
        assert!(
            matches!(
                cert.verify(&cp2, set),
                Err(CertificateError::BadSignature(_))
            ),
            "change {change}"
        );
    }
}

#[test]
fn malformed_text_is_named() {
    let (_, cp, cert) = certified();
    let text = cp.to_text(&cert);
    let cases = [
        (text.replacen("twinledger/", "tl/", 1), "line 1"),
        (text.replacen("height ", "h ", 1), "line 4"),
        (text.replace("\n\n", "\n"), "line 7"),
        (text.trim_end().to_string(), "newline"),
        (text.replacen("\u{2014} ", "- ", 1), "em dash"),
        (format!("{text}extra\n"), "em dash"),
    ];
    for (bad, want) in cases {
        let err = Checkpoint::from_text(&bad).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
}

#[test]
fn fork_names_the_double_signers() {
    // Two certified checkpoints at one height for different blocks: validators 0..3 signed
    // one, 1..4 the other; 1 and 2 signed both.
    let (chain, cp, _) = certified();
    let mut other = cp;
    other.block_hash.0[0] ^= 0xff;
    let sign = |c: &Checkpoint, idx: &[usize]| {
        let vote = CommitVote {
            checkpoint: *c,
            round: 0,
        };
        CommitCertificate::new(
            0,
            idx.iter()
                .map(|&i| vote.sign(&chain.validators[i]))
                .collect(),
        )
    };
    let a = sign(&cp, &[0, 1, 2]);
    let b = sign(&other, &[1, 2, 3]);
    a.verify(&cp, chain.validator_set()).unwrap();
    b.verify(&other, chain.validator_set()).unwrap();
    let mut both = a.double_signers(&b);
    both.sort();
    let mut want = vec![chain.validators[1].public(), chain.validators[2].public()];
    want.sort();
    assert_eq!(both, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any single-character change of a certified checkpoint's text is refused by the parser or
    /// by certificate verification.
    #[test]
    fn any_text_change_is_refused(pos in any::<prop::sample::Index>(), c in proptest::char::range('!', '~')) {
        let (chain, cp, cert) = certified();
        let text = cp.to_text(&cert);
        let chars: Vec<char> = text.chars().collect();
        let i = pos.index(chars.len());
        prop_assume!(chars[i] != c);
        let mut changed = chars.clone();
        changed[i] = c;
        let changed: String = changed.into_iter().collect();
        if let Ok((cp2, cert2)) = Checkpoint::from_text(&changed) {
            // It parsed, so it re-renders to the changed text: some field or signature differs,
            // and the certificate no longer verifies.
            prop_assert!(cert2.verify(&cp2, chain.validator_set()).is_err());
        }
    }
}

#[test]
fn conflicts_on_their_face() {
    use twinledger_core::checkpoint::Conflict;
    let (_, cp, _) = certified();
    let mut fork = cp;
    fork.block_hash.0[0] ^= 1;
    assert_eq!(cp.conflict_with(&fork), Some(Conflict::Fork));
    assert_eq!(cp.conflict_with(&cp), None);
    let mut base = cp;
    base.log_size = 10;
    let mut later = base;
    later.height += 5;
    later.log_size = 13;
    assert_eq!(
        base.conflict_with(&later),
        None,
        "a longer log later is fine"
    );
    let mut rollback = base;
    rollback.height += 5;
    rollback.log_size = 9;
    assert_eq!(base.conflict_with(&rollback), Some(Conflict::Rollback));
    assert_eq!(rollback.conflict_with(&base), Some(Conflict::Rollback));
    let mut other_chain = fork;
    other_chain.chain_id.0[0] ^= 1;
    assert_eq!(cp.conflict_with(&other_chain), None);
}

/// §9: a checkpoint of an unknown version is refused by certificates, cosignatures and votes,
/// even when every signature over it is genuine.
#[test]
fn unknown_checkpoint_version_is_refused_everywhere() {
    use twinledger_core::consensus::{Vote, VoteKind};
    let mut chain = twinledger_core::devkit::DevChain::new(4);
    let committed = chain.commit(vec![]);
    let mut cp = committed.block.header.checkpoint();
    cp.version = 2;
    let set = chain.validator_set().clone();
    let vote = CommitVote {
        checkpoint: cp,
        round: 0,
    };
    let cert = CommitCertificate::new(0, chain.validators.iter().map(|k| vote.sign(k)).collect());
    assert!(matches!(
        cert.verify(&cp, &set),
        Err(twinledger_core::checkpoint::CertificateError::UnknownVersion(2))
    ));
    let auditor = twinledger_core::devkit::dev_key("auditor/regulator");
    let cosig = cp.cosign(&auditor);
    assert!(!cp.verify_cosignature(&auditor.public(), &cosig));
    let v = Vote {
        chain_id: cp.chain_id,
        height: cp.height,
        round: 0,
        kind: VoteKind::Prevote,
        value: Some(cp),
    }
    .sign(&chain.validators[0]);
    assert!(v.verify(&cp.chain_id, &set).is_err());
}
