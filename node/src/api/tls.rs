//! Native TLS on the HTTP API (rustls with the ring provider) and the one listener the API is
//! served from, plain or TLS.
//!
//! - [`server_config`] loads the certificate chain and key (PEM files), and optionally a CA
//!   whose client certificates are required, into a `rustls::ServerConfig`. Each problem names
//!   the file and what is wrong with it (missing, not PEM, no certificate, no key, a key that
//!   others can read, a key that is not the certificate's).
//! - [`ApiListener`] accepts TCP connections and, with a TLS configuration, completes each
//!   handshake on its own task (bounded in number and time, so a client that never finishes
//!   its handshake holds nothing but its own slot) before handing the stream to the HTTP
//!   server. The peer address goes with each stream, so the per-client rate limit and
//!   `ConnectInfo<SocketAddr>` see the real peer under TLS too.
//! - [`check_plain_listen`]: plain HTTP only on a loopback address, or when the operator says
//!   so explicitly (`--insecure-http`).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes in progress at once; a connection beyond that is closed at once.
pub const MAX_HANDSHAKES: usize = 1024;
/// Largest PEM file read (a certificate chain or a key).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The files of the API's TLS configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM (the server's certificate first, then intermediates).
    pub cert: PathBuf,
    /// The private key of the first certificate, PEM (PKCS#8, PKCS#1 or SEC1), mode 0600.
    pub key: PathBuf,
    /// If set: require a client certificate that chains to one of the CA certificates in
    /// this PEM file.
    pub client_ca: Option<PathBuf>,
}

/// Why the API's TLS configuration cannot be loaded. Each names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read (missing, no permission, a directory).
    #[error("TLS {what} {}: cannot read it: {source}", path.display())]
    Read {
        /// Which file ("certificate", "key", "client CA").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not PEM text, or holds no block of the expected kind.
    #[error("TLS {what} {}: {why}", path.display())]
    NotPem {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Others can read the key file.
    #[error(
        "TLS key {} is readable by others (mode {mode:o}); run chmod 600 on it (the node's \
         user must be its only reader)",
        path.display()
    )]
    KeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The key is not the certificate's.
    #[error(
        "TLS key {} does not match the certificate {} (the first certificate of the chain must \
         be the one the key belongs to)",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate, key or client CA.
    #[error("TLS {what} {}: {why}", path.display())]
    Refused {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        why: String,
    },
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if !meta.is_file() {
        return Err(read(io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
            why: format!("{} bytes, larger than any PEM file expected", meta.len()),
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
            why: "not a PEM file (no -----BEGIN line)".into(),
        });
    }
    Ok(bytes)
}

/// The certificates in a PEM file (at least one).
pub fn load_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(what, path)?;
    let not_pem = |why: String| TlsError::NotPem {
        what,
        path: path.to_owned(),
        why,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(not_pem("holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file, refused if others can read the file (ADR 0011's rule for
/// key files).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
            what: "key",
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TlsError::KeyPermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let bytes = read_pem("key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::NotPem {
        what: "key",
        path: path.to_owned(),
        why: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)".into()
            }
            e => format!("malformed PEM: {e}"),
        },
    })
}

/// The ring provider, named explicitly (no process-wide default is installed or needed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the API's TLS configuration: certificate chain and key, and with a client CA, a
/// verifier that requires a client certificate chained to it. HTTP/1.1 over ALPN.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certificates("certificate", &files.cert)?;
    let key = load_key(&files.key)?;
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Refused {
            what: "certificate",
            path: files.cert.clone(),
            why: e.to_string(),
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let refused = |why: String| TlsError::Refused {
                what: "client CA",
                path: ca.clone(),
                why,
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certificates("client CA", ca)? {
                roots
                    .add(c)
                    .map_err(|e| refused(format!("not a usable CA certificate: {e}")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| refused(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        e => TlsError::Refused {
            what: "certificate or key",
            path: files.cert.clone(),
            why: e.to_string(),
        },
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Refuses plain HTTP on a non-loopback address unless `insecure_http` is set: an API that
/// carries signed requests and patients' access decisions is not served in clear text over a
/// network by accident. The message names both fixes.
pub fn check_plain_listen(
    listen: SocketAddr,
    tls: bool,
    insecure_http: bool,
) -> Result<(), String> {
    if tls || insecure_http || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "refusing to serve the API over plain HTTP on {listen}, which is not a loopback \
         address: give --tls-cert FILE --tls-key FILE to serve HTTPS, or --insecure-http if a \
         TLS-terminating proxy or a private network protects this address"
    ))
}

/// The API's listener: plain TCP, or TLS with each handshake completed on its own task.
#[derive(Debug)]
pub struct ApiListener {
    addr: SocketAddr,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Plain(TcpListener),
    Tls {
        ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        acceptor: tokio::task::JoinHandle<()>,
    },
}

impl Drop for ApiListener {
    fn drop(&mut self) {
        if let Inner::Tls { acceptor, .. } = &self.inner {
            acceptor.abort();
        }
    }
}

impl ApiListener {
    /// Serves `listener` plain, or with TLS under `tls`.
    pub fn new(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let inner = match tls {
            None => Inner::Plain(listener),
            Some(config) => {
                let (tx, ready) = mpsc::channel(64);
                let acceptor = tokio::spawn(accept_tls(listener, TlsAcceptor::from(config), tx));
                Inner::Tls { ready, acceptor }
            }
        };
        Ok(Self { addr, inner })
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls { .. })
    }
}

/// Accepts TCP connections and completes their handshakes, each on its own task.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many TLS handshakes in progress: connection closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// As axum does: a connection error is the client's; anything else (out of file descriptors)
/// is logged and accepting pauses for a second.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl axum::serve::Listener for ApiListener {
    type Io = ApiStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.inner {
            Inner::Plain(l) => loop {
                match TcpListener::accept(l).await {
                    Ok((s, peer)) => {
                        let _ = s.set_nodelay(true);
                        return (ApiStream::Plain(s), peer);
                    }
                    Err(e) => accept_failed(e).await,
                }
            },
            Inner::Tls { ready, .. } => match ready.recv().await {
                Some((s, peer)) => (ApiStream::Tls(Box::new(s)), peer),
                // The acceptor ended (it does not, but if it did): accept nothing more.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A connection to the API: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum ApiStream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ApiStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ApiStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_off_loopback_unless_asked_for() {
        let lo: SocketAddr = "127.0.0.1:7600".parse().unwrap();
        let lo6: SocketAddr = "[::1]:7600".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7600".parse().unwrap();
        let lan: SocketAddr = "10.1.2.3:7600".parse().unwrap();
        assert!(check_plain_listen(lo, false, false).is_ok());
        assert!(check_plain_listen(lo6, false, false).is_ok());
        for a in [any, lan] {
            let e = check_plain_listen(a, false, false).unwrap_err();
            assert!(
                e.contains("--tls-cert") && e.contains("--insecure-http"),
                "{e}"
            );
            assert!(check_plain_listen(a, true, false).is_ok());
            assert!(check_plain_listen(a, false, true).is_ok());
        }
    }
}
