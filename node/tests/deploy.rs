//! The systemd unit `node/deploy/systemd/twinledger-node.service` and its sysusers.d snippet:
//! every hardening directive is there with its value, every flag of `ExecStart` is one the real
//! `twinledger-node --help` lists, and `systemd-analyze verify` accepts the unit when the tool
//! exists (the test says so and skips that step otherwise).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

const NODE: &str = env!("CARGO_BIN_EXE_twinledger-node");
const INSTALLED_BINARY: &str = "/usr/local/bin/twinledger-node";

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd")
}

fn unit_text() -> String {
    std::fs::read_to_string(deploy_dir().join("twinledger-node.service")).unwrap()
}

/// The unit's `[Section]` → directive → values (a directive may repeat), comments left out.
fn parse_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        assert!(!line.ends_with('\\'), "keep directives on one line: {line}");
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a directive: {line}"));
        assert!(!section.is_empty(), "directive outside a section: {line}");
        out.entry(section.clone())
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    out
}

/// The long flags `twinledger-node --help` lists.
fn node_flags() -> Vec<String> {
    let o = Command::new(NODE).arg("--help").output().unwrap();
    assert!(o.status.success());
    let help = String::from_utf8(o.stdout).unwrap();
    let flags: Vec<String> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect();
    assert!(flags.iter().any(|f| f == "--data-dir"), "{help}");
    flags
}

#[test]
fn the_unit_has_every_hardening_directive() {
    let unit = parse_unit(&unit_text());
    let service = &unit["Service"];
    let one = |key: &str| -> &str {
        let v = service
            .get(key)
            .unwrap_or_else(|| panic!("[Service] lacks {key}"));
        assert_eq!(v.len(), 1, "{key} set more than once: {v:?}");
        &v[0]
    };
    for (key, want) in [
        ("User", "twinledger"),
        ("Group", "twinledger"),
        ("DynamicUser", "no"),
        ("StateDirectory", "twinledger"),
        ("ConfigurationDirectory", "twinledger"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("UMask", "0077"),
    ] {
        assert_eq!(one(key), want, "{key}");
    }
    let nofile: u64 = one("LimitNOFILE").parse().expect("LimitNOFILE is a number");
    assert!(nofile >= 4096, "LimitNOFILE {nofile}");
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
}

#[test]
fn a_weakened_unit_is_caught_by_the_parser() {
    // The checks above read what the file says, not a substring somewhere in it: a directive
    // commented out, or set twice (the last one wins in systemd), is seen.
    let text = unit_text()
        .replace("NoNewPrivileges=yes", "#NoNewPrivileges=yes")
        .replace(
            "ProtectSystem=strict",
            "ProtectSystem=strict\nProtectSystem=no",
        );
    let unit = parse_unit(&text);
    assert!(!unit["Service"].contains_key("NoNewPrivileges"));
    assert_eq!(unit["Service"]["ProtectSystem"], ["strict", "no"]);
}

#[test]
fn exec_start_uses_only_flags_the_node_lists() {
    let unit = parse_unit(&unit_text());
    let exec = &unit["Service"]["ExecStart"];
    assert_eq!(exec.len(), 1, "{exec:?}");
    let words: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(words[0], INSTALLED_BINARY);
    let known = node_flags();
    let used: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| w.starts_with("--"))
        .collect();
    for flag in &used {
        let name = flag.split('=').next().unwrap();
        assert!(
            known.iter().any(|k| k == name),
            "{name} is not a flag of twinledger-node"
        );
    }
    for needed in ["--data-dir", "--config", "--genesis", "--validator-key"] {
        assert!(used.contains(&needed), "ExecStart lacks {needed}");
    }
    // The data dir is the StateDirectory, the files are in the ConfigurationDirectory.
    let value = |flag: &str| words[words.iter().position(|w| *w == flag).unwrap() + 1];
    assert_eq!(value("--data-dir"), "/var/lib/twinledger");
    for flag in ["--config", "--genesis", "--validator-key"] {
        assert!(value(flag).starts_with("/etc/twinledger/"), "{flag}");
    }
    // A flag the node does not know is refused by the node (so the check above is meaningful).
    let o = Command::new(NODE).arg("--no-such-flag").output().unwrap();
    assert!(!o.status.success());
    assert!(!known.iter().any(|k| k == "--no-such-flag"));
}

#[test]
fn the_sysusers_snippet_makes_the_units_user() {
    let text = std::fs::read_to_string(deploy_dir().join("twinledger.conf")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(&fields[..3], ["u", "twinledger", "-"], "{fields:?}");
    assert_eq!(fields.last(), Some(&"/usr/sbin/nologin"));
}

/// `systemd-analyze verify` of `text` (ExecStart pointed at the binary just built, since verify
/// checks that the program exists): its success and its stderr, or None (with a message) when
/// the tool is missing.
fn systemd_analyze_verify(text: &str) -> Option<(bool, String)> {
    let Ok(o) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed");
        return None;
    };
    if !o.status.success() {
        eprintln!("skipped: systemd-analyze --version failed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("twinledger-node.service");
    assert!(text.contains(INSTALLED_BINARY));
    std::fs::write(&unit, text.replace(INSTALLED_BINARY, NODE)).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    Some((
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Some((ok, err)) = systemd_analyze_verify(&unit_text()) else {
        return;
    };
    assert!(ok, "systemd-analyze verify: {err}");
    // verify exits 0 on directives it ignores, but names the file and line: none may appear.
    assert!(
        !err.contains("twinledger-node.service:"),
        "systemd-analyze warns about the unit: {err}"
    );
}

#[test]
fn systemd_analyze_verify_reports_a_misspelt_or_invalid_directive() {
    // What the test above relies on: a unit systemd would silently weaken is reported.
    let bad = unit_text()
        .replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
        .replace("ProtectSystem=strict", "ProtectSystem=bogus");
    let Some((_, err)) = systemd_analyze_verify(&bad) else {
        return;
    };
    assert!(err.contains("NoNewPrivilege"), "{err}");
    assert!(err.contains("bogus"), "{err}");
}
