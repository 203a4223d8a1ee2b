//! Where sealed versions (age files) live: a trait, [`SealedStore`], in front of the local
//! filesystem ([`LocalStore`], the default: zero setup) and any `object_store` backend
//! ([`ObjectStoreBackend`]: S3-compatible stores with the `s3` feature, in-memory for tests).
//!
//! Objects are named `<twin hex>/<version>` ([`VersionId::object_name`]), written once (never
//! replaced: a new version is a new object) and read back streaming. A store holds only
//! ciphertext; it needs no secret.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{SealError, VersionId};

/// Largest part buffered in memory by [`ObjectStoreBackend::put`] (S3's minimum part is 5 MiB).
pub const OBJECT_PART_SIZE: usize = 8 * 1024 * 1024;

/// A store of sealed versions. Implementations are blocking; from async code, call them in
/// `spawn_blocking`.
pub trait SealedStore: Send + Sync + std::fmt::Debug {
    /// Stores the ciphertext read from `reader` (to its end) as `id`, atomically: readers see
    /// the whole object or none. Refuses an existing object ([`SealError::ObjectExists`]).
    /// Returns the number of bytes stored.
    fn put(&self, id: &VersionId, reader: &mut dyn Read) -> Result<u64, SealError>;

    /// Writes the ciphertext of `id` to `writer`. With `expected_hash`, checks its BLAKE3 and
    /// fails with [`SealError::CiphertextMismatch`] (the bytes written are then not the
    /// anchored ones). Returns the number of bytes written.
    fn get(
        &self,
        id: &VersionId,
        writer: &mut dyn Write,
        expected_hash: Option<&[u8; 32]>,
    ) -> Result<u64, SealError>;

    /// Deletes `id`; [`SealError::ObjectNotFound`] if absent.
    fn delete(&self, id: &VersionId) -> Result<(), SealError>;

    /// Whether `id` is stored.
    fn exists(&self, id: &VersionId) -> Result<bool, SealError>;
}

fn check_hash(
    id: &VersionId,
    expected: Option<&[u8; 32]>,
    actual: blake3::Hash,
) -> Result<(), SealError> {
    match expected {
        Some(h) if h != actual.as_bytes() => Err(SealError::CiphertextMismatch {
            expected: hex::encode(h),
            actual: format!("{} (object {})", actual.to_hex(), id.object_name()),
        }),
        _ => Ok(()),
    }
}

/// Sealed versions as files `<root>/<twin hex>/<version>.age`. A write goes to a temporary file
/// in the same directory, is flushed to disk (`fsync`), then renamed into place without replacing
/// anything, and the directory is flushed: after a crash there is the whole object or none.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, SealError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| SealError::StoreIo {
            path: root.clone(),
            source,
        })?;
        Ok(Self { root })
    }

    /// The file of `id`.
    pub fn path_of(&self, id: &VersionId) -> PathBuf {
        self.root
            .join(id.twin_hex())
            .join(format!("{}.age", id.version()))
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), SealError> {
    let io = |source| SealError::StoreIo {
        path: dir.to_owned(),
        source,
    };
    File::open(dir).map_err(io)?.sync_all().map_err(io)
}

/// Writes `reader` to a fresh temporary file beside `dest`, fsyncs it and hard-links it into
/// place (failing if `dest` exists), then removes the temporary name and fsyncs the directory.
pub(crate) fn write_atomically(
    dest: &Path,
    reader: &mut dyn Read,
    exists: impl FnOnce() -> SealError,
) -> Result<u64, SealError> {
    let dir = dest.parent().expect("a file in a directory");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SealError::StoreIo { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if dest.exists() {
        return Err(exists());
    }
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| SealError::Rng(e.to_string()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        dest.file_name().expect("a file name").to_string_lossy(),
        hex::encode(rnd)
    ));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let result = (|| {
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        let n = io::copy(reader, &mut f).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        // A hard link refuses an existing destination (rename would replace it).
        std::fs::hard_link(&tmp, dest).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                exists()
            } else {
                SealError::StoreIo {
                    path: dest.to_owned(),
                    source: e,
                }
            }
        })?;
        Ok(n)
    })();
    let _ = std::fs::remove_file(&tmp);
    let n = result?;
    sync_dir(dir)?;
    Ok(n)
}

impl SealedStore for LocalStore {
    fn put(&self, id: &VersionId, reader: &mut dyn Read) -> Result<u64, SealError> {
        write_atomically(&self.path_of(id), reader, || SealError::ObjectExists {
            name: id.object_name(),
        })
    }

    fn get(
        &self,
        id: &VersionId,
        writer: &mut dyn Write,
        expected_hash: Option<&[u8; 32]>,
    ) -> Result<u64, SealError> {
        let path = self.path_of(id);
        let mut f = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SealError::ObjectNotFound {
                    name: id.object_name(),
                }
            } else {
                SealError::StoreIo {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            let k = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(SealError::StoreIo { path, source }),
            };
            hasher.update(&buf[..k]);
            writer
                .write_all(&buf[..k])
                .map_err(|source| SealError::Io {
                    stream: "ciphertext output",
                    source,
                })?;
            n += k as u64;
        }
        check_hash(id, expected_hash, hasher.finalize())?;
        Ok(n)
    }

    fn delete(&self, id: &VersionId) -> Result<(), SealError> {
        let path = self.path_of(id);
        std::fs::remove_file(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SealError::ObjectNotFound {
                    name: id.object_name(),
                }
            } else {
                SealError::StoreIo {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        sync_dir(path.parent().expect("in a directory"))
    }

    fn exists(&self, id: &VersionId) -> Result<bool, SealError> {
        let path = self.path_of(id);
        path.try_exists()
            .map_err(|source| SealError::StoreIo { path, source })
    }
}

/// Sealed versions in an `object_store` backend, as objects `<prefix>/<twin hex>/<version>.age`.
/// `put` is a multipart upload in parts of [`OBJECT_PART_SIZE`] (memory: about two parts),
/// made visible only when complete; a failed upload is aborted. It owns a small tokio runtime:
/// call it from blocking code (from async code, through `spawn_blocking`).
#[derive(Debug)]
pub struct ObjectStoreBackend {
    store: Arc<dyn object_store::ObjectStore>,
    prefix: String,
    rt: tokio::runtime::Runtime,
}

impl ObjectStoreBackend {
    /// Over `store`, objects under `prefix` (may be empty).
    pub fn new(store: Arc<dyn object_store::ObjectStore>, prefix: &str) -> Result<Self, SealError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| SealError::Io {
                stream: "object store runtime",
                source,
            })?;
        Ok(Self {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            rt,
        })
    }

    /// An in-memory store (tests, and a reference for the trait's behaviour).
    pub fn in_memory() -> Result<Self, SealError> {
        Self::new(Arc::new(object_store::memory::InMemory::new()), "")
    }

    /// An S3-compatible bucket. `endpoint` is for non-AWS servers (MinIO, Ceph, moto):
    /// `http://` is allowed only when given explicitly here. Credentials and region come from
    /// the arguments, else from the standard `AWS_*` environment variables.
    #[cfg(feature = "s3")]
    pub fn s3(
        bucket: &str,
        endpoint: Option<&str>,
        credentials: Option<(&str, &str)>,
        region: Option<&str>,
        prefix: &str,
    ) -> Result<Self, SealError> {
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = endpoint {
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some((id, secret)) = credentials {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        if let Some(r) = region {
            b = b.with_region(r);
        }
        let store = b.build().map_err(|source| SealError::ObjectStore {
            location: format!("s3://{bucket}"),
            source,
        })?;
        Self::new(Arc::new(store), prefix)
    }

    fn location(&self, id: &VersionId) -> object_store::path::Path {
        let name = format!("{}.age", id.object_name());
        if self.prefix.is_empty() {
            object_store::path::Path::from(name)
        } else {
            object_store::path::Path::from(format!("{}/{name}", self.prefix))
        }
    }

    fn err(
        location: &object_store::path::Path,
        id: &VersionId,
        e: object_store::Error,
    ) -> SealError {
        match e {
            object_store::Error::NotFound { .. } => SealError::ObjectNotFound {
                name: id.object_name(),
            },
            object_store::Error::AlreadyExists { .. } => SealError::ObjectExists {
                name: id.object_name(),
            },
            source => SealError::ObjectStore {
                location: location.to_string(),
                source,
            },
        }
    }
}

impl SealedStore for ObjectStoreBackend {
    fn put(&self, id: &VersionId, reader: &mut dyn Read) -> Result<u64, SealError> {
        use object_store::ObjectStoreExt as _;
        let loc = self.location(id);
        // Never replace: object stores have no create-only multipart upload everywhere, so check
        // first (a race between two writers of one version is excluded by the ledger: a version
        // is anchored once).
        if self.exists(id)? {
            return Err(SealError::ObjectExists {
                name: id.object_name(),
            });
        }
        self.rt.block_on(async {
            let upload = self
                .store
                .put_multipart(&loc)
                .await
                .map_err(|e| Self::err(&loc, id, e))?;
            let mut w = object_store::WriteMultipart::new_with_chunk_size(upload, OBJECT_PART_SIZE);
            let mut buf = vec![0u8; 64 * 1024];
            let mut n = 0u64;
            loop {
                let k = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        let _ = w.abort().await;
                        return Err(SealError::Io {
                            stream: "ciphertext input",
                            source,
                        });
                    }
                };
                if let Err(e) = w.wait_for_capacity(2).await {
                    return Err(Self::err(&loc, id, e));
                }
                w.write(&buf[..k]);
                n += k as u64;
            }
            w.finish().await.map_err(|e| Self::err(&loc, id, e))?;
            Ok(n)
        })
    }

    fn get(
        &self,
        id: &VersionId,
        writer: &mut dyn Write,
        expected_hash: Option<&[u8; 32]>,
    ) -> Result<u64, SealError> {
        use futures::StreamExt as _;
        use object_store::ObjectStoreExt as _;
        let loc = self.location(id);
        self.rt.block_on(async {
            let got = self
                .store
                .get(&loc)
                .await
                .map_err(|e| Self::err(&loc, id, e))?;
            let mut stream = got.into_stream();
            let mut hasher = blake3::Hasher::new();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| Self::err(&loc, id, e))?;
                hasher.update(&chunk);
                writer.write_all(&chunk).map_err(|source| SealError::Io {
                    stream: "ciphertext output",
                    source,
                })?;
                n += chunk.len() as u64;
            }
            check_hash(id, expected_hash, hasher.finalize())?;
            Ok(n)
        })
    }

    fn delete(&self, id: &VersionId) -> Result<(), SealError> {
        use object_store::ObjectStoreExt as _;
        // S3 deletes succeed on absent keys: look first, so that absence is reported.
        if !self.exists(id)? {
            return Err(SealError::ObjectNotFound {
                name: id.object_name(),
            });
        }
        let loc = self.location(id);
        self.rt
            .block_on(self.store.delete(&loc))
            .map_err(|e| Self::err(&loc, id, e))
    }

    fn exists(&self, id: &VersionId) -> Result<bool, SealError> {
        use object_store::ObjectStoreExt as _;
        let loc = self.location(id);
        match self.rt.block_on(self.store.head(&loc)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Self::err(&loc, id, e)),
        }
    }
}
