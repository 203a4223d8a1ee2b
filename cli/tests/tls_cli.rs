//! `twinctl` against a node that serves HTTPS (issue #16): `--ca-cert` (or `TWINCTL_CA_CERT`)
//! makes a hospital's own CA trusted; without it the node's certificate is refused, and a CA
//! file that is missing or not PEM is refused naming the file.

mod common;

use std::path::Path;

use common::node::key_file;
use common::{err, run};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use twinledger_core::devkit::dev_key;

/// A CA and a server certificate for 127.0.0.1 signed by it: (CA file, cert file, key file).
fn pki(dir: &Path) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hospital test CA");
    p.distinguished_name = dn;
    let ca = p.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("server.pem"), cert.pem()).unwrap();
    std::fs::write(path("server.key"), key.serialize_pem()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path("server.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    // A client certificate from the same CA (for the node that requires one).
    let ckey = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ccert = p.signed_by(&ckey, &ca, &ca_key).unwrap();
    std::fs::write(path("client.pem"), ccert.pem()).unwrap();
    std::fs::write(path("client.key"), ckey.serialize_pem()).unwrap();
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

/// A one-validator chain served over HTTPS from `dir` (client certificates from the test CA
/// required if `client_ca`): its URL and a stop handle.
async fn serve_tls(
    dir: &Path,
    client_ca: bool,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (ca, cert, key) = pki(dir);
    let hospital = dev_key("cli-tls/hospital");
    let validator = dev_key("cli-tls/validator");
    let mut g = twinledger_node::dev::solo_genesis(
        "cli-tls",
        1_767_225_600_000,
        "Hospital",
        &hospital,
        &validator,
    )
    .unwrap();
    g.limits.block_interval_ms = 50;
    let store = twinledger_node::open_store(&dir.join("data")).unwrap();
    let chain = twinledger_node::open_chain(&g, store, validator.clone(), false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let tls = twinledger_node::api::tls::server_config(&twinledger_node::api::tls::TlsFiles {
        cert: cert.into(),
        key: key.into(),
        client_ca: client_ca.then(|| ca.into()),
    })
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = twinledger_node::run_with(
        listener,
        chain,
        validator,
        twinledger_node::ApiOptions {
            tls: Some(tls),
            ..Default::default()
        },
        async move {
            let _ = stopped.await;
        },
    );
    let server = tokio::spawn(async move {
        if let Err(e) = served.await {
            panic!("the node stopped with an error: {e:#}");
        }
    });
    (url, stop, server)
}

#[tokio::test]
async fn twinctl_presents_its_client_certificate_to_a_node_that_requires_one() {
    let dir = tempfile::tempdir().unwrap();
    let (url, stop, server) = serve_tls(dir.path(), true).await;
    let f = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (ca, cert, key) = (f("ca.pem"), f("client.pem"), f("client.key"));
    let (patient_file, _) = key_file(dir.path(), "patient");
    let hospital = format!("org:{}", dev_key("cli-tls/hospital").public().to_did());
    let grant = |extra: &[&str]| {
        let mut a: Vec<String> = vec!["--ca-cert".into(), ca.clone()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(
            [
                "consent",
                "grant",
                "--key",
                &patient_file,
                "--to",
                &hospital,
                "--category",
                "vital-signs",
                "--purpose",
                "TREAT",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        a
    };
    // Without a client certificate: refused at the handshake (exit 5).
    let a = grant(&[]);
    let o = run(&url, &a.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    // With one: a signed write, final.
    let a = grant(&["--client-cert", &cert, "--client-key", &key]);
    let o = run(&url, &a.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("final in block"), "{}", err(&o));
    // A certificate without its key: refused before anything is sent (exit 2).
    let a = grant(&["--client-cert", &cert]);
    let o = run(&url, &a.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--client-key"), "{}", err(&o));
    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test]
async fn twinctl_talks_to_an_https_node_with_ca_cert_and_refuses_it_without() {
    let dir = tempfile::tempdir().unwrap();
    let (url, stop, server) = serve_tls(dir.path(), false).await;
    let ca = dir.path().join("ca.pem").to_str().unwrap().to_string();
    let hospital = dev_key("cli-tls/hospital");

    // A signed write over HTTPS (the patient's grant, waited for until final), then a read.
    let (patient_file, _) = key_file(dir.path(), "patient");
    let o = run(
        &url,
        &[
            "--ca-cert",
            &ca,
            "--json",
            "consent",
            "grant",
            "--key",
            &patient_file,
            "--to",
            &format!("org:{}", hospital.public().to_did()),
            "--category",
            "vital-signs",
            "--purpose",
            "TREAT",
        ],
    )
    .await;
    assert!(o.status.success(), "{}", err(&o));
    let out = dir.path().join("cp.txt");
    let o = run(
        &url,
        &[
            "--ca-cert",
            &ca,
            "audit",
            "checkpoint",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert!(o.status.success(), "{}", err(&o));
    assert!(out.exists());

    // Without the CA: the node's certificate is not trusted (exit 5, naming the cause).
    let o = run(&url, &["audit", "checkpoint", "--out", "unused"]).await;
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(
        err(&o).to_lowercase().contains("certificate"),
        "{}",
        err(&o)
    );

    // A CA file that is missing, or not PEM: refused naming the file.
    let missing = dir.path().join("missing.pem");
    let o = run(
        &url,
        &[
            "--ca-cert",
            missing.to_str().unwrap(),
            "audit",
            "checkpoint",
            "--out",
            "x",
        ],
    )
    .await;
    assert!(!o.status.success());
    assert!(err(&o).contains("missing.pem"), "{}", err(&o));
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let o = run(
        &url,
        &[
            "--ca-cert",
            junk.to_str().unwrap(),
            "audit",
            "checkpoint",
            "--out",
            "x",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("junk.pem") && err(&o).contains("CERTIFICATE"),
        "{}",
        err(&o)
    );

    let _ = stop.send(());
    server.await.unwrap();
}
