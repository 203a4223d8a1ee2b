//! The sealed stores: the same behaviour from the filesystem, object_store's in-memory backend
//! and (feature `s3`, when `moto_server` is installed) a real S3-compatible server.

use std::io::{self, Read};

use twinledger_sealed::store::{LocalStore, ObjectStoreBackend, SealedStore};
use twinledger_sealed::{Expected, SealError, VersionId, open, seal};

fn id(v: u64) -> VersionId {
    VersionId::new(&"c3".repeat(32), v).unwrap()
}

/// What every store must do: write once, read back verified, refuse replacing, delete, report
/// absence; and a sealed version read back opens.
fn behaves_as_a_sealed_store(store: &dyn SealedStore) {
    let plain: Vec<u8> = (0..300_000u32)
        .map(|i| u8::try_from(i % 253).unwrap())
        .collect();
    let mut ct = Vec::new();
    let sealed = seal(plain.as_slice(), &mut ct).unwrap();
    let a = id(1);
    assert!(!store.exists(&a).unwrap());
    assert_eq!(store.put(&a, &mut ct.as_slice()).unwrap(), ct.len() as u64);
    assert!(store.exists(&a).unwrap());

    let mut back = Vec::new();
    let n = store
        .get(&a, &mut back, Some(&sealed.ciphertext_hash))
        .unwrap();
    assert_eq!(n, ct.len() as u64);
    assert_eq!(back, ct);
    let mut out = Vec::new();
    open(
        back.as_slice(),
        &mut out,
        &sealed.data_key,
        &Expected::default(),
    )
    .unwrap();
    assert_eq!(out, plain);

    // Another anchor: the bytes are not the anchored ciphertext.
    let err = store.get(&a, &mut io::sink(), Some(&[9; 32])).unwrap_err();
    assert!(matches!(err, SealError::CiphertextMismatch { .. }), "{err}");

    // Never replaced.
    let err = store.put(&a, &mut &b"other bytes"[..]).unwrap_err();
    assert!(matches!(err, SealError::ObjectExists { .. }), "{err}");
    let mut again = Vec::new();
    store.get(&a, &mut again, None).unwrap();
    assert_eq!(again, ct);

    // Absent versions.
    let b = id(2);
    let err = store.get(&b, &mut io::sink(), None).unwrap_err();
    assert!(matches!(err, SealError::ObjectNotFound { .. }), "{err}");
    let err = store.delete(&b).unwrap_err();
    assert!(matches!(err, SealError::ObjectNotFound { .. }), "{err}");

    store.delete(&a).unwrap();
    assert!(!store.exists(&a).unwrap());
    let err = store.get(&a, &mut io::sink(), None).unwrap_err();
    assert!(matches!(err, SealError::ObjectNotFound { .. }), "{err}");
}

struct FailsAfter(usize);
impl Read for FailsAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("upload source gone"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(0xAA);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn the_local_store_behaves_as_a_sealed_store() {
    let dir = tempfile::tempdir().unwrap();
    behaves_as_a_sealed_store(&LocalStore::new(dir.path().join("sealed")).unwrap());
}

#[test]
fn the_object_store_backend_behaves_as_a_sealed_store_in_memory() {
    behaves_as_a_sealed_store(&ObjectStoreBackend::in_memory().unwrap());
}

#[test]
fn a_failed_write_leaves_no_object_and_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let err = store.put(&id(1), &mut FailsAfter(100_000)).unwrap_err();
    assert!(matches!(err, SealError::StoreIo { .. }), "{err}");
    assert!(
        err.to_string().contains(dir.path().to_str().unwrap()),
        "{err}"
    );
    assert!(!store.exists(&id(1)).unwrap());
    let twin_dir = dir.path().join("c3".repeat(32));
    assert_eq!(std::fs::read_dir(&twin_dir).unwrap().count(), 0);

    let mem = ObjectStoreBackend::in_memory().unwrap();
    let err = mem.put(&id(1), &mut FailsAfter(100_000)).unwrap_err();
    assert!(matches!(err, SealError::Io { .. }), "{err}");
    assert!(!mem.exists(&id(1)).unwrap());
}

#[test]
fn a_sealed_file_changed_on_disk_is_refused_against_its_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let mut ct = Vec::new();
    let sealed = seal(&b"vitals"[..], &mut ct).unwrap();
    store.put(&id(1), &mut ct.as_slice()).unwrap();
    let path = store.path_of(&id(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap();
    let err = store
        .get(&id(1), &mut io::sink(), Some(&sealed.ciphertext_hash))
        .unwrap_err();
    assert!(matches!(err, SealError::CiphertextMismatch { .. }), "{err}");
}

#[cfg(feature = "s3")]
mod s3 {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use twinledger_sealed::store::SealedStore as _;

    struct Moto(Child);
    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn request(port: u16, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "{line} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Starts `moto_server` on 127.0.0.1 (a port the OS chose), or None when not installed.
    fn start_moto() -> Option<(Moto, u16)> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "SKIPPED: moto_server not runnable ({e}); install it with pip install 'moto[server]'"
                );
                return None;
            }
        };
        let moto = Moto(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some((moto, port))
    }

    #[test]
    fn the_object_store_backend_behaves_as_a_sealed_store_on_an_s3_compatible_server() {
        let Some((_moto, port)) = start_moto() else {
            return;
        };
        let created = request(port, "PUT /twins");
        assert!(created.starts_with("HTTP/1.1 200"), "{created}");
        let endpoint = format!("http://127.0.0.1:{port}");
        let store = twinledger_sealed::store::ObjectStoreBackend::s3(
            "twins",
            Some(&endpoint),
            Some(("test", "test")),
            Some("us-east-1"),
            "sealed",
        )
        .unwrap();
        super::behaves_as_a_sealed_store(&store);

        // A multipart upload of several parts (over 8 MiB parts), read back whole.
        let big: Vec<u8> = (0..20 * 1024 * 1024u32)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let mut ct = Vec::new();
        let s = twinledger_sealed::seal(big.as_slice(), &mut ct).unwrap();
        store.put(&super::id(7), &mut ct.as_slice()).unwrap();
        let mut back = Vec::new();
        store
            .get(&super::id(7), &mut back, Some(&s.ciphertext_hash))
            .unwrap();
        assert_eq!(back.len(), ct.len());
        // The object sits under the prefix, named by twin and version.
        let listing = request(port, "GET /twins?list-type=2");
        assert!(
            listing.contains(&format!("sealed/{}/7.age", "c3".repeat(32))),
            "{listing}"
        );
    }
}
