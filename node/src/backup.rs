//! Online backup and restore (ADR 0015).
//!
//! sled allows one process per store, so a backup is not a copy of a running node's files: it
//! is the committed chain as the running node serves it on `/v1/export` (every block with its
//! results and certificate: the source of truth, the state being derived by re-execution),
//! wrapped in a self-checking file. [`backup`] asks the node for its checkpoint (tip height
//! `H`), then exports blocks `1..=H`, which are immutable once committed, so the backup is
//! consistent while the node keeps committing.
//!
//! The file (a node format, not a protocol format; version [`FORMAT_VERSION`]):
//!
//! ```text
//! "TWLBAK01"  u32 BE header length  header (JSON: format, chain id, tip height, checkpoint, ...)
//! body: the export stream of blocks 1..=tip ("TWLEXP01", then per block a u32 BE length and
//!       the canonical encoding of (block, results, certificate))
//! "TWLBAKND"  u64 BE body length  blake3 (derive_key HASH_CONTEXT) of every byte before it
//! ```
//!
//! [`restore`] checks the file (magic, version, end record, length, content hash, chain) before
//! it creates anything, then builds a new store by committing every block through
//! `Chain::commit`, the path a node catching up from peers takes (the certificate against the
//! set in force, every event signature, re-execution), checks that the tip and checkpoint are
//! the header's, re-opens the store as `--verify-all` does, and writes the signing guard: a
//! restored validator does not sign until its chain holds a block made after the restore
//! ([`SIGNING_GUARD`]). A file for another chain, a cut or altered file and a non-empty data
//! directory are refused with a message naming the problem, and leave nothing behind.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use twinledger_core::audit::{CommittedBlock, EXPORT_MAGIC};
use twinledger_core::request::RequestAuth;
use twinledger_core::{ChainId, Checkpoint, Keypair, codec};
use twinledger_genesis::GenesisFile;

use crate::chain::{Chain, MAX_CLOCK_SKEW_MS, NodePolicy, now};
use crate::metrics::Metrics;
use crate::store::Store;

/// Magic bytes at the start of a backup file.
pub const MAGIC: &[u8; 8] = b"TWLBAK01";
/// Magic bytes of the end record.
pub const END_MAGIC: &[u8; 8] = b"TWLBAKND";
/// The backup format version this node writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The blake3 key-derivation context of the content hash.
pub const HASH_CONTEXT: &str = "twinledger node backup v1 content hash";
/// Largest header accepted.
const MAX_HEADER_BYTES: u32 = 64 * 1024;
/// End record: magic, body length, hash.
const END_LEN: usize = 8 + 8 + 32;
const END_BYTES: u64 = END_LEN as u64;
/// The signing-record key of the restore guard. Slot keys are 13 bytes (height, round, kind),
/// so this 16-byte key is never a slot's.
pub const SIGNING_GUARD: &[u8] = b"restore-guard/v1";

/// What a backup file says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupHeader {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The chain, hex.
    pub chain_id: String,
    /// The last block in the file.
    pub tip_height: u64,
    /// That block's checkpoint.
    pub checkpoint: Checkpoint,
    /// When the backup was taken (ms since the Unix epoch, the backing-up machine's clock).
    pub created_ms: u64,
    /// The node it was taken from (its API address).
    pub source: String,
}

/// Why a backup cannot be taken or restored. Each names the file or node and the problem.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file or directory cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The backup file already exists.
    #[error("{} already exists; a backup is never overwritten", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Not a backup file.
    #[error("{} is not a Twinledger backup (it does not start with TWLBAK01)", path.display())]
    NotBackup {
        /// The file.
        path: PathBuf,
    },
    /// A backup of another format version.
    #[error(
        "{} is a backup of format {found}; this node reads format {FORMAT_VERSION}",
        path.display()
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u32,
    },
    /// The header is malformed.
    #[error("{}: malformed backup header: {why}", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The file was cut short.
    #[error("{} is truncated: {why}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// The content hash does not match.
    #[error(
        "{}: the content hash does not match (the file was altered or damaged after it was \
         written)",
        path.display()
    )]
    Tampered {
        /// The file.
        path: PathBuf,
    },
    /// The content does not say what the header says, or a block does not decode.
    #[error("{}: {why}", path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A backup of another chain.
    #[error(
        "{} is a backup of chain {file}, but the genesis is chain {genesis}",
        path.display()
    )]
    WrongChain {
        /// The file.
        path: PathBuf,
        /// The backup's chain.
        file: String,
        /// The genesis's chain.
        genesis: ChainId,
    },
    /// A block does not verify against the genesis.
    #[error("{}: block {height} does not verify: {why}", path.display())]
    Block {
        /// The file.
        path: PathBuf,
        /// The block's height.
        height: u64,
        /// Why.
        why: String,
    },
    /// The data directory is not empty.
    #[error(
        "the data directory {} is not empty: restore only into a new or empty directory (it \
         never overwrites a store)",
        path.display()
    )]
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// The genesis does not verify.
    #[error("genesis: {0}")]
    Genesis(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// Talking to the node failed.
    #[error("node {url}: {why}")]
    Node {
        /// The node's address.
        url: String,
        /// What went wrong.
        why: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A checked backup file: its header, and where its blocks are.
#[derive(Debug)]
pub struct BackupFile {
    /// The file.
    pub path: PathBuf,
    /// Its header.
    pub header: BackupHeader,
    body_start: u64,
    body_len: u64,
}

impl BackupFile {
    /// Opens and checks a backup file: magic, header, format, end record, length and content
    /// hash. Blocks are not decoded yet ([`BackupFile::blocks`]).
    pub fn open(path: &Path) -> Result<Self, BackupError> {
        let mut f = File::open(path).map_err(io(path))?;
        let len = f.metadata().map_err(io(path))?.len();
        let truncated = |why: String| BackupError::Truncated {
            path: path.to_owned(),
            why,
        };
        let mut magic = [0u8; 8];
        if len < 8 || f.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(BackupError::NotBackup {
                path: path.to_owned(),
            });
        }
        let mut hl = [0u8; 4];
        f.read_exact(&mut hl)
            .map_err(|_| truncated("it ends before its header".into()))?;
        let hl = u32::from_be_bytes(hl);
        if hl > MAX_HEADER_BYTES {
            return Err(BackupError::Header {
                path: path.to_owned(),
                why: format!("{hl} bytes, more than {MAX_HEADER_BYTES}"),
            });
        }
        let mut hb = vec![0u8; hl as usize];
        f.read_exact(&mut hb)
            .map_err(|_| truncated("it ends inside its header".into()))?;
        // The format first, so that a newer format is named as such, not as a malformed header.
        let raw: serde_json::Value =
            serde_json::from_slice(&hb).map_err(|e| BackupError::Header {
                path: path.to_owned(),
                why: e.to_string(),
            })?;
        match raw.get("format").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(BackupError::Version {
                    path: path.to_owned(),
                    found: u32::try_from(v).unwrap_or(u32::MAX),
                });
            }
            None => {
                return Err(BackupError::Header {
                    path: path.to_owned(),
                    why: "no format version".into(),
                });
            }
        }
        let header: BackupHeader =
            serde_json::from_value(raw).map_err(|e| BackupError::Header {
                path: path.to_owned(),
                why: e.to_string(),
            })?;
        let body_start = 8 + 4 + u64::from(hl);
        if len < body_start + END_BYTES {
            return Err(truncated(format!(
                "{len} bytes, too short to hold its end record"
            )));
        }
        let mut end = [0u8; END_LEN];
        f.seek(SeekFrom::Start(len - END_BYTES)).map_err(io(path))?;
        f.read_exact(&mut end).map_err(io(path))?;
        if &end[..8] != END_MAGIC {
            return Err(truncated(
                "it has no end record (it was cut short, or the backup did not finish)".into(),
            ));
        }
        let body_len = u64::from_be_bytes(end[8..16].try_into().expect("8 bytes"));
        if body_start + body_len + END_BYTES != len {
            return Err(truncated(format!(
                "its end record announces {body_len} bytes of blocks, the file holds {}",
                len.saturating_sub(body_start + END_BYTES)
            )));
        }
        // The content hash over every byte before it.
        f.seek(SeekFrom::Start(0)).map_err(io(path))?;
        let mut hasher = blake3::Hasher::new_derive_key(HASH_CONTEXT);
        let mut limited = BufReader::new(f).take(len - 32);
        std::io::copy(&mut limited, &mut hasher).map_err(io(path))?;
        if hasher.finalize().as_bytes() != &end[16..] {
            return Err(BackupError::Tampered {
                path: path.to_owned(),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            header,
            body_start,
            body_len,
        })
    }

    /// The blocks, in order, decoded one at a time.
    pub fn blocks(
        &self,
    ) -> Result<impl Iterator<Item = Result<CommittedBlock, BackupError>> + '_, BackupError> {
        let path = &self.path;
        let mut f = File::open(path).map_err(io(path))?;
        f.seek(SeekFrom::Start(self.body_start)).map_err(io(path))?;
        let mut r = BufReader::new(f).take(self.body_len);
        let content = |why: String| BackupError::Content {
            path: path.clone(),
            why,
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)
            .map_err(|_| content("the blocks do not start with TWLEXP01".into()))?;
        if &magic != EXPORT_MAGIC {
            return Err(content("the blocks do not start with TWLEXP01".into()));
        }
        let mut index = 0u64;
        let mut failed = false;
        Ok(std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let mut lb = [0u8; 4];
            match r.read(&mut lb[..1]) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    failed = true;
                    return Some(Err(io(path)(e)));
                }
            }
            let item = (|| {
                r.read_exact(&mut lb[1..])
                    .map_err(|_| content(format!("block frame {index} is cut")))?;
                let n = u32::from_be_bytes(lb) as usize;
                if n > twinledger_core::block::MAX_BLOCK_BYTES + 64 * 1024 {
                    return Err(content(format!("block frame {index} is {n} bytes")));
                }
                let mut buf = vec![0u8; n];
                r.read_exact(&mut buf)
                    .map_err(|_| content(format!("block frame {index} is cut")))?;
                let cb: CommittedBlock = codec::decode("committed block", &buf, n)
                    .map_err(|e| content(format!("block frame {index} does not decode: {e}")))?;
                Ok(cb)
            })();
            index += 1;
            failed = item.is_err();
            Some(item)
        }))
    }

    /// Decodes every block and checks what the header says: heights `1..=tip` in order, the
    /// last block's checkpoint. Does not verify signatures or re-execute ([`restore`] does).
    pub fn check_content(&self) -> Result<(), BackupError> {
        let mut last = None;
        let mut expected = 1u64;
        for cb in self.blocks()? {
            let cb = cb?;
            let h = cb.block.header.height;
            if h != expected {
                return Err(BackupError::Content {
                    path: self.path.clone(),
                    why: format!("block {expected} expected, found block {h}"),
                });
            }
            expected += 1;
            last = Some(cb.block.header.checkpoint());
        }
        let found = expected - 1;
        if found != self.header.tip_height {
            return Err(BackupError::Content {
                path: self.path.clone(),
                why: format!(
                    "the header says the tip is {}, the file holds {found} blocks",
                    self.header.tip_height
                ),
            });
        }
        if last.as_ref() != Some(&self.header.checkpoint) {
            return Err(BackupError::Content {
                path: self.path.clone(),
                why: "the last block's checkpoint is not the header's".into(),
            });
        }
        Ok(())
    }
}

/// What [`backup`] needs.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The node's API address (`http://...` or `https://...`).
    pub url: String,
    /// A key that may read the export: the validator's node key, or an auditor's.
    pub key: Keypair,
    /// Extra CA certificates (PEM file) to trust for `https://`.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate and its key (PEM files), for a node that requires one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The file to write (never overwritten).
    pub out: PathBuf,
}

/// What a backup or restore did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The header.
    pub header: BackupHeader,
    /// Bytes written or read.
    pub bytes: u64,
}

fn node_err(url: &str) -> impl Fn(String) -> BackupError + '_ {
    move |why| BackupError::Node {
        url: url.to_owned(),
        why,
    }
}

/// An HTTP client for the node (rustls; extra roots from `ca_cert`; a client certificate and
/// key if given).
pub fn http_client(
    ca_cert: Option<&Path>,
    client_cert: Option<&(PathBuf, PathBuf)>,
) -> Result<reqwest::Client, BackupError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120));
    if let Some(p) = ca_cert {
        let pem = std::fs::read(p).map_err(io(p))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| BackupError::Content {
                path: p.to_owned(),
                why: "not a PEM file of CA certificates".into(),
            })?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let Some((cert, key)) = client_cert {
        let mut pem = std::fs::read(cert).map_err(io(cert))?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key).map_err(io(key))?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| BackupError::Content {
            path: cert.clone(),
            why: format!(
                "with {}: not a PEM client certificate and private key: {e}",
                key.display()
            ),
        })?;
        b = b.identity(identity);
    }
    b.build().map_err(|e| BackupError::Node {
        url: String::new(),
        why: e.to_string(),
    })
}

fn cause(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s = format!("{s}: {c}");
        src = c.source();
    }
    s
}

/// Takes a backup of a running node into `options.out` (via `OUT.partial`, renamed when the
/// file is complete and checked): the node's tip `H` and checkpoint, then blocks `1..=H` from
/// `/v1/export`, signed by `options.key`.
pub async fn backup(options: &BackupOptions) -> Result<Summary, BackupError> {
    let url = options.url.trim_end_matches('/').to_string();
    let nerr = node_err(&url);
    if options.out.exists() {
        return Err(BackupError::Exists {
            path: options.out.clone(),
        });
    }
    let http = http_client(options.ca_cert.as_deref(), options.client_cert.as_ref())?;
    let health: serde_json::Value = http
        .get(format!("{url}/health"))
        .send()
        .await
        .map_err(|e| nerr(cause(&e)))?
        .json()
        .await
        .map_err(|e| nerr(format!("/health is not JSON: {}", cause(&e))))?;
    let chain_id = health["chain_id"]
        .as_str()
        .and_then(|c| ChainId::from_hex(c).ok())
        .ok_or_else(|| nerr("/health gives no chain id: is this a Twinledger node?".into()))?;
    let r = http
        .get(format!("{url}/v1/checkpoint"))
        .send()
        .await
        .map_err(|e| nerr(cause(&e)))?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(nerr(
            "the chain has no block yet: nothing to back up".into(),
        ));
    }
    let cp: serde_json::Value = r
        .error_for_status()
        .map_err(|e| nerr(cause(&e)))?
        .json()
        .await
        .map_err(|e| nerr(format!("/v1/checkpoint is not JSON: {}", cause(&e))))?;
    let checkpoint: Checkpoint = serde_json::from_value(cp["checkpoint"].clone())
        .map_err(|e| nerr(format!("/v1/checkpoint: {e}")))?;
    let tip = checkpoint.height;
    let path = format!("/v1/export?from=1&to={tip}");
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| nerr(format!("OS RNG: {e}")))?;
    let auth = RequestAuth::sign(&options.key, &chain_id, "GET", &path, b"", now(), nonce);
    let mut req = http.get(format!("{url}{path}"));
    for (h, v) in auth.headers() {
        req = req.header(h, v);
    }
    let mut resp = req.send().await.map_err(|e| nerr(cause(&e)))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(nerr(format!("the export was refused ({status}): {body}")));
    }
    let header = BackupHeader {
        format: FORMAT_VERSION,
        chain_id: chain_id.to_string(),
        tip_height: tip,
        checkpoint,
        created_ms: now().0,
        source: url.clone(),
    };
    let partial = partial_path(&options.out);
    let written = async {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(io(&partial))?;
        let mut w = HashingWriter {
            inner: BufWriter::new(file),
            hasher: blake3::Hasher::new_derive_key(HASH_CONTEXT),
            bytes: 0,
        };
        let hb = serde_json::to_vec(&header).expect("a header encodes");
        w.write_all(MAGIC).map_err(io(&partial))?;
        w.write_all(&u32::try_from(hb.len()).expect("small header").to_be_bytes())
            .map_err(io(&partial))?;
        w.write_all(&hb).map_err(io(&partial))?;
        let start = w.bytes;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| nerr(format!("the export stream broke: {}", cause(&e))))?
        {
            w.write_all(&chunk).map_err(io(&partial))?;
        }
        let body_len = w.bytes - start;
        w.write_all(END_MAGIC).map_err(io(&partial))?;
        w.write_all(&body_len.to_be_bytes()).map_err(io(&partial))?;
        let hash = *w.hasher.finalize().as_bytes();
        let mut inner = w.inner;
        inner.write_all(&hash).map_err(io(&partial))?;
        let file = inner
            .into_inner()
            .map_err(|e| io(&partial)(e.into_error()))?;
        file.sync_all().map_err(io(&partial))?;
        let checked = BackupFile::open(&partial)?;
        checked.check_content()?;
        Ok::<u64, BackupError>(w.bytes + 32)
    }
    .await;
    match written {
        Ok(bytes) => {
            // Never over a file that appeared meanwhile.
            std::fs::hard_link(&partial, &options.out).map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                match e.kind() {
                    std::io::ErrorKind::AlreadyExists => BackupError::Exists {
                        path: options.out.clone(),
                    },
                    _ => io(&options.out)(e),
                }
            })?;
            let _ = std::fs::remove_file(&partial);
            Ok(Summary { header, bytes })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Restores a backup into a new store in `data_dir` (which must be empty or absent), verifying
/// every block against `genesis` (certificates, signatures, re-execution) and re-opening the
/// store as `--verify-all` does; writes the signing guard. On any failure nothing is left in
/// `data_dir`.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    genesis: &GenesisFile,
) -> Result<Summary, BackupError> {
    let file = BackupFile::open(from)?;
    let ledger = genesis
        .ledger_genesis()
        .map_err(|e| BackupError::Genesis(e.to_string()))?;
    if file.header.chain_id != ledger.chain_id().to_string() {
        return Err(BackupError::WrongChain {
            path: from.to_owned(),
            file: file.header.chain_id.clone(),
            genesis: ledger.chain_id(),
        });
    }
    let created_dir = match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty {
                    path: data_dir.to_owned(),
                });
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
            true
        }
        Err(e) => return Err(io(data_dir)(e)),
    };
    let db = data_dir.join("db");
    let result = restore_into(&file, &db, genesis);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&db);
        if created_dir {
            let _ = std::fs::remove_dir(data_dir);
        }
    }
    result.map(|()| Summary {
        bytes: file.body_start + file.body_len + END_BYTES,
        header: file.header.clone(),
    })
}

fn restore_into(file: &BackupFile, db: &Path, genesis: &GenesisFile) -> Result<(), BackupError> {
    let ledger = genesis
        .ledger_genesis()
        .map_err(|e| BackupError::Genesis(e.to_string()))?;
    let limits = genesis.node_limits();
    let policy = NodePolicy {
        block_interval: Duration::from_millis(limits.block_interval_ms),
        mempool_size: limits.mempool_size as usize,
    };
    std::fs::create_dir_all(db).map_err(io(db))?;
    let store = Store::open_sled(db).map_err(|e| BackupError::Store(e.to_string()))?;
    let chain = Chain::open(ledger.clone(), store, policy, false, Metrics::new())
        .map_err(|e| BackupError::Store(e.to_string()))?;
    let path = &file.path;
    for (expected, cb) in (1u64..).zip(file.blocks()?) {
        let cb = cb?;
        let height = cb.block.header.height;
        if height != expected {
            return Err(BackupError::Content {
                path: path.clone(),
                why: format!("block {expected} expected, found block {height}"),
            });
        }
        let results = cb.results.clone();
        chain
            .commit(cb.block, cb.certificate)
            .map_err(|e| BackupError::Block {
                path: path.clone(),
                height,
                why: e.to_string(),
            })?;
        // Results are derived by re-execution; the file's must be what was derived.
        let stored = chain
            .store()
            .block(height)
            .map_err(|e| BackupError::Store(e.to_string()))?;
        if stored.map(|s| s.results) != Some(results) {
            return Err(BackupError::Block {
                path: path.clone(),
                height,
                why: "its results are not what re-executing it derives".into(),
            });
        }
    }
    let tip = chain.height();
    if tip != file.header.tip_height {
        return Err(BackupError::Content {
            path: path.clone(),
            why: format!(
                "the header says the tip is {}, the file holds {tip} blocks",
                file.header.tip_height
            ),
        });
    }
    let cp = chain
        .store()
        .block(tip)
        .map_err(|e| BackupError::Store(e.to_string()))?
        .map(|s| s.block.header.checkpoint());
    if cp.as_ref() != Some(&file.header.checkpoint) {
        return Err(BackupError::Content {
            path: path.clone(),
            why: "the last block's checkpoint is not the header's".into(),
        });
    }
    // The guard: a restored validator signs nothing until its chain holds a block whose time
    // is past the restore (plus the allowed clock skew), i.e. one the network decided after the
    // old instance (dead before the restore) could have signed anything.
    let after = now().0 + MAX_CLOCK_SKEW_MS;
    chain
        .store()
        .record_signed(SIGNING_GUARD, &after.to_be_bytes())
        .map_err(|e| BackupError::Store(e.to_string()))?;
    let store = chain.store().clone();
    drop(chain);
    // The check a node makes with --verify-all: every signature and certificate, replayed.
    let chain = Chain::open(ledger, store, policy, true, Metrics::new()).map_err(|e| {
        BackupError::Block {
            path: path.clone(),
            height: 0,
            why: format!("the restored store does not verify: {e}"),
        }
    })?;
    drop(chain);
    Ok(())
}

/// The signing guard of a restored store, if it has one: the block time (ms) the committed
/// chain must pass before this validator signs again.
pub fn signing_guard(store: &Store) -> Option<u64> {
    match store.signed(SIGNING_GUARD) {
        Ok(Some(v)) => v.try_into().ok().map(u64::from_be_bytes),
        Ok(None) => None,
        // Unreadable: guard (not signing is the safe side), and say so.
        Err(e) => {
            tracing::error!(error = %e, "cannot read the restore guard: not signing");
            Some(u64::MAX)
        }
    }
}

/// Whether a validator whose store has the signing guard `guard` may sign for the height after
/// `chain`'s committed tip.
pub fn guard_allows(chain: &Chain, guard: u64) -> bool {
    chain.state().last_time().0 > guard
}
