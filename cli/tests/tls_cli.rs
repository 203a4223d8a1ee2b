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
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

#[tokio::test]
async fn twinctl_talks_to_an_https_node_with_ca_cert_and_refuses_it_without() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path());
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
    let store = twinledger_node::open_store(&dir.path().join("data")).unwrap();
    let chain = twinledger_node::open_chain(&g, store, validator.clone(), false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let tls = twinledger_node::api::tls::server_config(&twinledger_node::api::tls::TlsFiles {
        cert: cert.into(),
        key: key.into(),
        client_ca: None,
    })
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(twinledger_node::run_with(
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
    ));

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
    server.await.unwrap().unwrap();
}
