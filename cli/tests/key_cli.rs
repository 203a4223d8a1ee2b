//! `twinctl key` through the real binary: create, show, export; wrong passphrase, corrupt and
//! truncated files, wrong permissions: a clear error and the right exit code.

use std::path::Path;
use std::process::{Command, Output};

fn twinctl(args: &[&str], pass: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinctl"));
    cmd.args(args).env_remove("TWINCTL_PASSPHRASE");
    if let Some(p) = pass {
        cmd.env("TWINCTL_PASSPHRASE", p);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn key_life_cycle_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alice.key");
    let f = file.to_str().unwrap();
    let pass = "a long enough passphrase";

    let o = twinctl(&["--json", "key", "new", "--out", f], Some(pass));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let did = v["did"].as_str().unwrap().to_string();
    assert!(did.starts_with("did:key:z6Mk"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(!std::fs::read_to_string(&file).unwrap().contains("secret"));

    // Show with the passphrase from a file; export without one.
    let pf = dir.path().join("pass.txt");
    std::fs::write(&pf, format!("{pass}\n")).unwrap();
    let o = twinctl(
        &["key", "show", f, "--passphrase-file", pf.to_str().unwrap()],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&did));
    let o = twinctl(&["key", "export-public", f], None);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), did);

    // Never overwritten.
    let o = twinctl(&["key", "new", "--out", f], Some(pass));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    // Wrong passphrase.
    let o = twinctl(&["key", "show", f], Some("not the passphrase"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("wrong passphrase"), "{}", stderr(&o));
    // Short passphrase for a new key.
    let o = twinctl(
        &[
            "key",
            "new",
            "--out",
            dir.path().join("b.key").to_str().unwrap(),
        ],
        Some("short"),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("too short"), "{}", stderr(&o));
    // Truncated and corrupt files.
    let text = std::fs::read_to_string(&file).unwrap();
    let bad = |name: &str, content: &str| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        p.to_str().unwrap().to_string()
    };
    for (name, content) in [("t.key", &text[..text.len() - 40]), ("j.key", "not json")] {
        let p = bad(name, content);
        let o = twinctl(&["key", "show", &p], Some(pass));
        assert_eq!(o.status.code(), Some(2), "{name}");
        assert!(
            stderr(&o).contains("not a valid key file"),
            "{}",
            stderr(&o)
        );
    }
    // Wrong permissions: refused before any passphrase is asked for.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = twinctl(&["key", "show", f], Some(pass));
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));
    }
    // Missing file: an I/O error.
    let o = twinctl(
        &[
            "key",
            "export-public",
            Path::new("/nonexistent/x.key").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}
