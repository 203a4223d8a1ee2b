//! Sealing and opening: round trips, and each way a ciphertext or a key can be wrong.

use std::io::{self, Read};

use twinledger_sealed::{
    CHUNK_SIZE, DataKey, Expected, SealError, VersionId, open, seal, unwrap_with, wrap_for,
};

/// The chunk size, as a length.
const C: usize = 64 * 1024;

fn data(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| u8::try_from(i * 31 % 251).unwrap())
        .collect()
}

fn seal_vec(plain: &[u8]) -> (twinledger_sealed::Sealed, Vec<u8>) {
    let mut ct = Vec::new();
    let s = seal(plain, &mut ct).unwrap();
    (s, ct)
}

/// Offset in the age file of the first byte of payload chunk `k` (header, 16-byte nonce, then
/// chunks of 64 KiB + 16-byte tag).
fn chunk_offset(ct_len: usize, plain_len: usize, k: usize) -> usize {
    // The payload is the 32-byte commitment salt, then the data.
    let plain_len = plain_len + twinledger_sealed::SALT_LEN;
    let chunks = plain_len.div_ceil(C).max(1);
    let header = ct_len - (16 + plain_len + 16 * chunks);
    header + 16 + k * (C + 16)
}

#[test]
fn sealed_versions_open_to_the_same_bytes_across_chunk_boundaries() {
    assert_eq!(C as u64, CHUNK_SIZE);
    let c = C;
    for n in [0, 1, c - 1, c, c + 1, 3 * c, 200_001] {
        let plain = data(n);
        let (s, ct) = seal_vec(&plain);
        assert_eq!(s.size, n as u64);
        assert_eq!(s.ciphertext_size, ct.len() as u64);
        // A salted commitment (the salt is sealed inside), never the plain hash of the data.
        assert_ne!(s.plaintext_hash, *blake3::hash(&plain).as_bytes());
        assert_eq!(s.ciphertext_hash, *blake3::hash(&ct).as_bytes());
        assert!(
            !ct.windows(16.min(n.max(1)))
                .any(|w| n >= 16 && w == &plain[..16])
        );
        let mut out = Vec::new();
        let expected = Expected {
            ciphertext_hash: Some(s.ciphertext_hash),
            ciphertext_size: Some(s.ciphertext_size),
            plaintext_hash: Some(s.plaintext_hash),
        };
        let o = open(ct.as_slice(), &mut out, &s.data_key, &expected).unwrap();
        assert_eq!(out, plain, "size {n}");
        assert_eq!(o.plaintext_hash, s.plaintext_hash);
        assert_eq!(o.size, n as u64);
    }
}

#[test]
fn each_seal_uses_a_fresh_data_key() {
    let (a, ct_a) = seal_vec(b"same plaintext");
    let (b, ct_b) = seal_vec(b"same plaintext");
    assert_ne!(a.data_key.recipient(), b.data_key.recipient());
    assert_ne!(ct_a, ct_b);
    assert_eq!(format!("{:?}", a.data_key), "DataKey(<redacted>)");
}

#[test]
fn opening_with_another_versions_key_is_a_wrong_key_error() {
    let (_, ct) = seal_vec(&data(1000));
    let other = DataKey::generate().unwrap();
    let mut out = Vec::new();
    let err = open(ct.as_slice(), &mut out, &other, &Expected::default()).unwrap_err();
    assert!(matches!(err, SealError::WrongKey), "{err}");
    assert!(out.is_empty());
    assert!(err.to_string().contains("wrong key"), "{err}");
}

#[test]
fn a_changed_byte_in_a_chunk_is_reported_as_tampered_at_that_chunk() {
    let n = 3 * C + 100;
    let plain = data(n);
    let (s, ct) = seal_vec(&plain);
    for k in [0usize, 2, 3] {
        let mut bad = ct.clone();
        bad[chunk_offset(ct.len(), n, k) + 7] ^= 1;
        let mut out = Vec::new();
        let err = open(bad.as_slice(), &mut out, &s.data_key, &Expected::default()).unwrap_err();
        match err {
            SealError::TamperedChunk {
                chunk,
                plaintext_offset,
            } => {
                assert_eq!(chunk, k as u64);
                assert_eq!(plaintext_offset, (k as u64 * CHUNK_SIZE).saturating_sub(32));
            }
            other => panic!("chunk {k}: {other}"),
        }
        // Only the data of the chunks before the tampered one was written (not the salt).
        assert_eq!(out.len(), (k * C).saturating_sub(32));
        assert!(
            format!(
                "{}",
                open(
                    bad.as_slice(),
                    io::sink(),
                    &s.data_key,
                    &Expected::default()
                )
                .unwrap_err()
            )
            .contains(&format!(
                "chunk {k} (plaintext offset {})",
                (k as u64 * CHUNK_SIZE).saturating_sub(32)
            ))
        );
    }
}

#[test]
fn a_changed_header_mac_is_reported_as_a_tampered_header() {
    let (s, ct) = seal_vec(&data(5000));
    let mac_at = ct.windows(4).position(|w| w == b"--- ").unwrap() + 4;
    let mut bad = ct.clone();
    bad[mac_at] = if bad[mac_at] == b'A' { b'B' } else { b'A' };
    let err = open(
        bad.as_slice(),
        io::sink(),
        &s.data_key,
        &Expected::default(),
    )
    .unwrap_err();
    assert!(matches!(err, SealError::TamperedHeader), "{err}");
}

#[test]
fn a_file_cut_at_a_chunk_boundary_is_truncated_and_one_cut_inside_a_chunk_too_with_its_anchor() {
    let n = 2 * C + 10;
    let (s, ct) = seal_vec(&data(n));
    // Without its last chunk: age itself sees the missing last chunk.
    let cut = chunk_offset(ct.len(), n, 2);
    let err = open(&ct[..cut], io::sink(), &s.data_key, &Expected::default()).unwrap_err();
    assert!(matches!(err, SealError::Truncated { .. }), "{err}");
    // Cut inside a chunk: without the anchored length it cannot be told from tampering...
    let mid = chunk_offset(ct.len(), n, 1) + 500;
    let err = open(&ct[..mid], io::sink(), &s.data_key, &Expected::default()).unwrap_err();
    assert!(
        matches!(err, SealError::TamperedChunk { chunk: 1, .. }),
        "{err}"
    );
    // ...with it, it is reported as truncated, with both lengths.
    let anchored = Expected {
        ciphertext_size: Some(s.ciphertext_size),
        ..Expected::default()
    };
    let err = open(&ct[..mid], io::sink(), &s.data_key, &anchored).unwrap_err();
    match &err {
        SealError::Truncated { read, expected } => {
            assert_eq!(*read, mid as u64);
            assert_eq!(*expected, Some(ct.len() as u64));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("truncated"), "{err}");
    // Cut inside the header.
    let err = open(&ct[..20], io::sink(), &s.data_key, &Expected::default()).unwrap_err();
    assert!(
        matches!(err, SealError::Truncated { .. } | SealError::NotSealed(_)),
        "{err}"
    );
}

#[test]
fn a_valid_sealed_file_that_is_not_the_anchored_one_is_refused() {
    let plain = data(3000);
    let (s, ct) = seal_vec(&plain);
    let mut wrong = Expected {
        plaintext_hash: Some([7; 32]),
        ..Expected::default()
    };
    let err = open(ct.as_slice(), io::sink(), &s.data_key, &wrong).unwrap_err();
    assert!(matches!(err, SealError::PlaintextMismatch { .. }), "{err}");
    wrong = Expected {
        ciphertext_hash: Some([7; 32]),
        ..Expected::default()
    };
    let err = open(ct.as_slice(), io::sink(), &s.data_key, &wrong).unwrap_err();
    assert!(matches!(err, SealError::CiphertextMismatch { .. }), "{err}");
}

#[test]
fn a_file_that_is_not_age_is_not_sealed() {
    let key = DataKey::generate().unwrap();
    let err = open(
        &b"{\"resourceType\": \"Patient\"}\n"[..],
        io::sink(),
        &key,
        &Expected::default(),
    )
    .unwrap_err();
    assert!(matches!(err, SealError::NotSealed(_)), "{err}");
}

struct FailingReader(usize);
impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("disk gone"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(1);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn a_failing_input_is_an_io_error_naming_the_stream_not_tampering() {
    let err = seal(FailingReader(100_000), io::sink()).unwrap_err();
    assert!(
        matches!(
            err,
            SealError::Io {
                stream: "plaintext input",
                ..
            }
        ),
        "{err}"
    );
    let (s, ct) = seal_vec(&data(200_000));
    let cut = &ct[..100_000];
    let err = open(
        cut.chain(FailingReader(0)),
        io::sink(),
        &s.data_key,
        &Expected::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SealError::Io {
                stream: "ciphertext input",
                ..
            }
        ),
        "{err}"
    );
}

fn requester(seed: u8) -> ([u8; 32], [u8; 32]) {
    let secret = [seed; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&secret)
        .verifying_key()
        .to_bytes();
    (secret, public)
}

#[test]
fn a_data_key_wrapped_for_a_requester_opens_only_with_that_requesters_ed25519_secret() {
    let plain = data(70_000);
    let (s, ct) = seal_vec(&plain);
    let id = VersionId::new(&"ab".repeat(32), 3).unwrap();
    let (alice_secret, alice_public) = requester(1);
    let (mallory_secret, _) = requester(2);
    let wrapped = wrap_for(&s.data_key, &id, &alice_public).unwrap();
    assert!(wrapped.starts_with(b"age-encryption.org/v1\n-> ssh-ed25519 "));

    let key = unwrap_with(&wrapped, &id, &alice_secret).unwrap();
    let mut out = Vec::new();
    open(ct.as_slice(), &mut out, &key, &Expected::default()).unwrap();
    assert_eq!(out, plain);

    // Another requester's key: wrong key.
    let err = unwrap_with(&wrapped, &id, &mallory_secret).unwrap_err();
    assert!(matches!(err, SealError::WrongKey), "{err}");
    // The key of version 3 presented as version 4's: refused, naming both.
    let other = VersionId::new(&"ab".repeat(32), 4).unwrap();
    let err = unwrap_with(&wrapped, &other, &alice_secret).unwrap_err();
    assert!(matches!(err, SealError::WrappedKeyInvalid(_)), "{err}");
    assert!(err.to_string().contains("another version"), "{err}");
    // A changed wrapped key: refused.
    let mut bad = wrapped.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(unwrap_with(&bad, &id, &alice_secret).is_err());
}

#[test]
fn a_requester_key_that_is_not_an_ed25519_point_is_refused() {
    let key = DataKey::generate().unwrap();
    let id = VersionId::new("00ff", 1).unwrap();
    // y = 2 is not the y coordinate of a point of edwards25519.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    let err = wrap_for(&key, &id, &not_a_point).unwrap_err();
    assert!(matches!(err, SealError::InvalidRecipient { .. }), "{err}");
}

#[test]
fn twin_ids_that_could_name_other_files_are_refused() {
    for bad in ["", "../etc", "AB", "abc", "ab/cd", &"a".repeat(130)] {
        let err = VersionId::new(bad, 1).unwrap_err();
        assert!(
            matches!(err, SealError::InvalidTwinId { .. }),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(VersionId::new("0a1b", 9).unwrap().object_name(), "0a1b/9");
}

/// PROTOCOL §5.10 (2.4): the plaintext commitment is salted with 32 fresh bytes sealed inside the
/// file. Sealing the same data twice gives two commitments, neither the data's plain hash, so a
/// guess of an erased version's data cannot be confirmed from the ledger; the holder of the key
/// opens it (the salt is the payload's first 32 bytes) and gets the anchored commitment back.
#[test]
fn the_plaintext_commitment_is_salted_inside_the_sealed_file() {
    let data = b"blood group A+".to_vec();
    let mut c1 = Vec::new();
    let s1 = seal(&data[..], &mut c1).unwrap();
    let mut c2 = Vec::new();
    let s2 = seal(&data[..], &mut c2).unwrap();
    assert_ne!(s1.plaintext_hash, s2.plaintext_hash);
    assert_ne!(s1.plaintext_hash, *blake3::hash(&data).as_bytes());
    assert_eq!(s1.size, data.len() as u64);
    let mut out = Vec::new();
    let o = open(
        &c1[..],
        &mut out,
        &s1.data_key,
        &Expected {
            plaintext_hash: Some(s1.plaintext_hash),
            ..Expected::default()
        },
    )
    .unwrap();
    assert_eq!(out, data, "the salt is not part of the opened data");
    assert_eq!(o.plaintext_hash, s1.plaintext_hash);
    // Another plaintext commitment anchored: refused as a plaintext mismatch.
    let e = open(
        &c1[..],
        &mut Vec::new(),
        &s1.data_key,
        &Expected {
            plaintext_hash: Some(s2.plaintext_hash),
            ..Expected::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("plaintext"), "{e}");
}
