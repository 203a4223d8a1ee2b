//! Native TLS on the HTTP API (issue #16): HTTPS with a CA the test makes (rcgen), optional
//! client certificates, and the attackers: a client that does not trust the CA, a client without
//! a certificate or with one from another CA, plain HTTP to the TLS port, and a plain listen off
//! loopback without the explicit flag (refused at start by the real binary).

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tempfile::TempDir;
use twinledger_node::ApiOptions;
use twinledger_node::api::tls::{TlsError, TlsFiles, server_config};
use twinledger_node::chain::now;

/// A CA and what it signs, as PEM files in a temp dir.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: PathBuf,
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = mode;
}

fn ca(dir: &Path, name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{name} test CA"));
    p.distinguished_name = dn;
    let cert = p.self_signed(&key).unwrap();
    let pem = dir.join(format!("{name}-ca.pem"));
    write(&pem, &cert.pem(), 0o644);
    Ca { cert, key, pem }
}

/// A leaf certificate signed by `ca`: (cert file, key file), the key mode 0600.
fn leaf(dir: &Path, ca: &Ca, name: &str, client: bool) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    write(&c, &cert.pem(), 0o644);
    write(&k, &key.serialize_pem(), 0o600);
    (c, k)
}

struct Pki {
    dir: TempDir,
    ca: Ca,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    rogue_client: (PathBuf, PathBuf),
}

fn pki() -> Pki {
    let dir = TempDir::new().unwrap();
    let ca = ca(dir.path(), "hospital");
    let rogue = self::ca(dir.path(), "rogue");
    let server = leaf(dir.path(), &ca, "server", false);
    let client = leaf(dir.path(), &ca, "client", true);
    let rogue_client = leaf(dir.path(), &rogue, "rogue-client", true);
    Pki {
        dir,
        ca,
        server,
        client,
        rogue_client,
    }
}

fn files(p: &Pki, client_ca: bool) -> TlsFiles {
    TlsFiles {
        cert: p.server.0.clone(),
        key: p.server.1.clone(),
        client_ca: client_ca.then(|| p.ca.pem.clone()),
    }
}

async fn tls_node(dir: &Path, p: &Pki, client_ca: bool, rate: u32) -> TestNode {
    let options = ApiOptions {
        tls: Some(server_config(&files(p, client_ca)).unwrap()),
        rate_limit_per_client: rate,
        ..ApiOptions::default()
    };
    TestNode::start_with(dir, options).await.unwrap()
}

fn https(node: &TestNode, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", node.addr.port())
}

/// A client trusting the test CA (or not), with a client identity (cert, key) if given.
fn client(p: Option<&Pki>, identity: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10));
    if let Some(p) = p {
        let pem = std::fs::read(&p.ca.pem).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    if let Some((c, k)) = identity {
        let mut pem = std::fs::read(c).unwrap();
        pem.extend(std::fs::read(k).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// The error chain of a failed request, for messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s = format!("{s}: {c}");
        src = c.source();
    }
    s
}

#[tokio::test]
async fn https_serves_health_and_signed_reads_to_a_client_that_trusts_the_ca() {
    let p = pki();
    let dir = TempDir::new().unwrap();
    let node = tls_node(dir.path(), &p, false, 5000).await;
    let c = client(Some(&p), None);
    let r = c.get(https(&node, "/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["chain_id"], node.chain_id().to_string());
    // A signed read over TLS: the signature covers method, path and body, not the transport.
    let k = keys();
    let path = format!("/v1/keys/{}/sequence", k.physician.public());
    let auth = node.sign(&k.physician, &path, now(), fresh_nonce());
    let mut req = c.get(https(&node, &path));
    for (h, v) in auth.headers() {
        req = req.header(h, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["next_seq"], 0, "{v}");
    node.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused_at_the_handshake() {
    let p = pki();
    let dir = TempDir::new().unwrap();
    let node = tls_node(dir.path(), &p, false, 5000).await;
    let e = client(None, None)
        .get(https(&node, "/health"))
        .send()
        .await
        .expect_err("a server certificate from an unknown CA is refused");
    let why = chain(&e);
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    node.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_certificate_from_it_are_served() {
    let p = pki();
    let dir = TempDir::new().unwrap();
    let node = tls_node(dir.path(), &p, true, 5000).await;
    // No client certificate: refused at the handshake, no HTTP answer.
    let e = client(Some(&p), None)
        .get(https(&node, "/health"))
        .send()
        .await
        .expect_err("a client without a certificate is refused");
    assert!(e.status().is_none(), "no HTTP answer: {}", chain(&e));
    // A certificate from another CA: refused too.
    let e = client(Some(&p), Some(&p.rogue_client))
        .get(https(&node, "/health"))
        .send()
        .await
        .expect_err("a client certificate from another CA is refused");
    assert!(e.status().is_none(), "no HTTP answer: {}", chain(&e));
    // The hospital's client: served.
    let r = client(Some(&p), Some(&p.client))
        .get(https(&node, "/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    node.stop().await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let p = pki();
    let dir = TempDir::new().unwrap();
    let node = tls_node(dir.path(), &p, false, 5000).await;
    let addr = node.addr;
    let got = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        // The server closes the connection (after at most a TLS alert).
        let _ = s.read_to_end(&mut got);
        got
    })
    .await
    .unwrap();
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(!String::from_utf8_lossy(&got).contains("chain_id"));
    // The node still serves HTTPS afterwards.
    let r = client(Some(&p), None)
        .get(https(&node, "/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    node.stop().await;
}

#[tokio::test]
async fn the_per_client_rate_limit_sees_the_peer_address_under_tls() {
    let p = pki();
    let dir = TempDir::new().unwrap();
    // One request a second, bursts of two: a quick run of ten must hit the limit, which only
    // happens if the limiter sees the peer address (ConnectInfo) on TLS connections.
    let node = tls_node(dir.path(), &p, false, 1).await;
    let c = client(Some(&p), None);
    let mut limited = 0;
    for _ in 0..10 {
        let r = c.get(https(&node, "/health")).send().await.unwrap();
        if r.status() == 429 {
            let v: serde_json::Value = r.json().await.unwrap();
            let msg = v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(msg.contains("127.0.0.1"), "names the peer: {msg}");
            limited += 1;
        }
    }
    assert!(limited > 0, "no request was limited");
    node.stop().await;
}

#[test]
fn bad_tls_files_are_refused_naming_the_file_and_the_problem() {
    let p = pki();
    let d = p.dir.path();
    let ok = files(&p, false);
    let msg = |f: &TlsFiles| match server_config(f) {
        Ok(_) => panic!("{f:?} was accepted"),
        Err(e) => (e.to_string(), e),
    };
    // Missing certificate file.
    let missing = d.join("nope.pem");
    let (m, e) = msg(&TlsFiles {
        cert: missing.clone(),
        ..ok.clone()
    });
    assert!(matches!(e, TlsError::Read { .. }), "{m}");
    assert!(m.contains("nope.pem") && m.contains("certificate"), "{m}");
    // Not PEM.
    let garbage = d.join("garbage.pem");
    write(&garbage, "hello, not a certificate\n", 0o600);
    let (m, _) = msg(&TlsFiles {
        cert: garbage.clone(),
        ..ok.clone()
    });
    assert!(
        m.contains("garbage.pem") && m.contains("not a PEM file"),
        "{m}"
    );
    let (m, _) = msg(&TlsFiles {
        key: garbage.clone(),
        ..ok.clone()
    });
    assert!(
        m.contains("garbage.pem") && m.contains("not a PEM file"),
        "{m}"
    );
    // PEM, but a key where the certificate should be.
    let (m, _) = msg(&TlsFiles {
        cert: ok.key.clone(),
        ..ok.clone()
    });
    assert!(
        m.contains("server.key") && m.contains("no CERTIFICATE"),
        "{m}"
    );
    // A certificate where the key should be.
    let cert_copy = d.join("cert-as-key.pem");
    write(
        &cert_copy,
        &std::fs::read_to_string(&ok.cert).unwrap(),
        0o600,
    );
    let (m, _) = msg(&TlsFiles {
        key: cert_copy,
        ..ok.clone()
    });
    assert!(
        m.contains("cert-as-key.pem") && m.contains("no private key"),
        "{m}"
    );
    // The key of another certificate.
    let (m, e) = msg(&TlsFiles {
        key: p.client.1.clone(),
        ..ok.clone()
    });
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{m}");
    assert!(
        m.contains("client.key") && m.contains("does not match"),
        "{m}"
    );
    // A key others can read.
    #[cfg(unix)]
    {
        let open_key = d.join("open.key");
        write(&open_key, &std::fs::read_to_string(&ok.key).unwrap(), 0o644);
        let (m, e) = msg(&TlsFiles {
            key: open_key,
            ..ok.clone()
        });
        assert!(matches!(e, TlsError::KeyPermissions { .. }), "{m}");
        assert!(m.contains("open.key") && m.contains("chmod 600"), "{m}");
    }
    // A client CA file that is not PEM.
    let (m, _) = msg(&TlsFiles {
        client_ca: Some(garbage),
        ..ok.clone()
    });
    assert!(m.contains("client CA") && m.contains("garbage.pem"), "{m}");
    // And the good files load.
    server_config(&ok).unwrap();
    server_config(&files(&p, true)).unwrap();
}

fn node_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_twinledger-node"))
}

#[test]
fn plain_http_off_loopback_is_refused_at_start_naming_both_fixes() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let out = node_bin()
        .args(["--dev", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .env_remove("TWINLEDGER_INSECURE_HTTP")
        .env_remove("TWINLEDGER_TLS_CERT")
        .env_remove("TWINLEDGER_TLS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a plain listen on 0.0.0.0 started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0:0")
            && err.contains("--tls-cert FILE --tls-key FILE")
            && err.contains("--insecure-http"),
        "{err}"
    );
    assert!(!data.exists(), "nothing was created before the refusal");
    // A half TLS configuration is refused too, naming the missing flag.
    let p = pki();
    let out = node_bin()
        .args(["--dev", "--data-dir"])
        .arg(&data)
        .arg("--tls-cert")
        .arg(&p.server.0)
        .env_remove("TWINLEDGER_TLS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert given without --tls-key"), "{err}");
}

/// The real binary serves HTTPS with the certificate from the environment
/// (TWINLEDGER_TLS_CERT) and the key from the config file (tls_key), and says so in its banner.
#[test]
fn the_binary_serves_https_with_cert_and_key_files() {
    let p = pki();
    let tmp = TempDir::new().unwrap();
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        format!("tls_key = {:?}\n", p.server.1.to_str().unwrap()),
    )
    .unwrap();
    let mut child = node_bin()
        .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .arg("--config")
        .arg(&config)
        .env("TWINLEDGER_TLS_CERT", &p.server.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("API") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the banner names the API address");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let c = client(Some(&p), None);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.get(format!("{url}/health")).send().await {
                Ok(r) => return r.status().as_u16(),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{}", chain(&e)),
            }
        }
    });
    assert_eq!(status, 200);
    // The health subcommand (the container HEALTHCHECK) asks over https with the CA, and fails
    // without it, naming the URL.
    let health = |ca: Option<&Path>| {
        let mut c = node_bin();
        c.args(["health", "--url", &format!("{url}/health")]);
        if let Some(ca) = ca {
            c.arg("--ca-cert").arg(ca);
        }
        c.env_remove("TWINLEDGER_CA_CERT").output().unwrap()
    };
    let ok = health(Some(&p.ca.pem));
    let untrusted = health(None);
    let _ = (child.kill(), child.wait());
    assert!(ok.status.success(), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).starts_with("200 "),
        "{ok:?}"
    );
    assert_eq!(untrusted.status.code(), Some(1), "{untrusted:?}");
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains(&url),
        "{untrusted:?}"
    );
}

/// A client that opens connections and never starts its handshake holds nothing but its own
/// slot: others are served meanwhile, and the node closes the silent connection after
/// HANDSHAKE_TIMEOUT.
#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_blocks_no_one_and_is_dropped() {
    use tokio::io::AsyncReadExt as _;
    let p = pki();
    let dir = TempDir::new().unwrap();
    let node = tls_node(dir.path(), &p, false, 5000).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tokio::net::TcpStream::connect(node.addr).await.unwrap());
    }
    let t = Instant::now();
    let r = client(Some(&p), None)
        .get(https(&node, "/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "served while 20 handshakes stall"
    );
    // The node closes a silent connection once the handshake timeout passes.
    let limit = twinledger_node::api::tls::HANDSHAKE_TIMEOUT + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(limit, silent[0].read(&mut buf))
        .await
        .expect("the silent connection was closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    node.stop().await;
}

/// `backup` over HTTPS from a node that requires client certificates: with the CA and the
/// client certificate it works; without the CA the node's certificate is refused, without the
/// client certificate the node refuses the backup.
#[tokio::test]
async fn a_backup_is_taken_over_https_with_the_ca_and_refused_without() {
    use twinledger_node::backup::{BackupOptions, backup};
    let p = pki();
    let dir = TempDir::new().unwrap();
    let node = tls_node(&dir.path().join("node"), &p, true, 5000).await;
    let k = keys();
    let ev = node.event(
        &patient("tls-backup"),
        0,
        twinledger_core::EventPayload::ConsentGrant(
            twinledger_core::event::consent::ConsentGrant {
                patient: patient("tls-backup").public(),
                grantee: twinledger_core::event::consent::Grantee::Actor(k.physician.public()),
                scope: twinledger_core::event::delegation::Scope {
                    categories: [twinledger_core::codes::DataCategory::VitalSigns]
                        .into_iter()
                        .collect(),
                    purposes: [twinledger_core::codes::Purpose::Treat]
                        .into_iter()
                        .collect(),
                    actions: [twinledger_core::codes::Action::Read].into_iter().collect(),
                },
                valid_from: twinledger_core::Timestamp(0),
                valid_until: None,
            },
        ),
    );
    let r = client(Some(&p), Some(&p.client))
        .post(https(&node, "/v1/events"))
        .json(&serde_json::json!({"event": hex::encode(ev.to_bytes())}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    node.wait_log(1).await;
    let options = |ca: Option<PathBuf>, client: bool, out: &str| BackupOptions {
        url: https(&node, ""),
        key: k.validator.clone(),
        ca_cert: ca,
        client_cert: client.then(|| p.client.clone()),
        out: dir.path().join(out),
    };
    let s = backup(&options(Some(p.ca.pem.clone()), true, "ok.twlbak"))
        .await
        .unwrap();
    assert!(s.header.tip_height >= 1);
    let e = backup(&options(None, true, "refused.twlbak"))
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    let e = backup(&options(Some(p.ca.pem.clone()), false, "refused.twlbak"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, twinledger_node::backup::BackupError::Node { .. }),
        "{e}"
    );
    assert!(!dir.path().join("refused.twlbak").exists());
    node.stop().await;
}
