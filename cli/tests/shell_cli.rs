//! `twinctl completions <SHELL>` and `twinctl man --out DIR` through the real binary: the
//! scripts name every top-level command (bash's passes `bash -n`), there is a man page for every
//! command and subcommand, and a missing or non-directory `--out` is refused (exit 3) without
//! writing anything.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use twinledger_cli::exit;

fn twinctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twinctl"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The visible top-level commands, from the library's clap command (the binary's own).
fn top_level() -> Vec<String> {
    let names: Vec<String> = twinledger_cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_owned())
        .collect();
    for known in [
        "genesis",
        "consent",
        "access",
        "audit",
        "completions",
        "man",
    ] {
        assert!(names.iter().any(|n| n == known), "{known} in {names:?}");
    }
    names
}

/// The man page file names expected: one per command and subcommand, by path.
fn expected_pages() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut BTreeSet<String>) {
        out.insert(format!("{prefix}.1"));
        for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
            walk(sub, &format!("{prefix}-{}", sub.get_name()), out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&twinledger_cli::command(), "twinctl", &mut out);
    out
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn bash_completion_is_valid_bash_and_names_every_command() {
    let o = twinctl(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    for name in top_level() {
        assert!(script.contains(&name), "bash completion lacks {name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("twinctl.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", stderr(&check));
}

#[test]
fn zsh_fish_elvish_powershell_completions_name_every_command() {
    let names = top_level();
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = twinctl(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        for name in &names {
            assert!(
                script.contains(name.as_str()),
                "{shell} completion lacks {name}"
            );
        }
    }
}

#[test]
fn an_unknown_shell_is_invalid_input() {
    let o = twinctl(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(i32::from(exit::INVALID_INPUT)));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("tcsh"), "{}", stderr(&o));
}

#[test]
fn man_writes_a_page_for_every_command_and_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let o = twinctl(&["--json", "man", "--out", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = expected_pages();
    assert!(expected.contains("twinctl.1"));
    assert!(expected.contains("twinctl-consent-grant.1"));
    assert!(expected.contains("twinctl-genesis-add-validator.1"));
    assert_eq!(files_in(dir.path()), expected);
    for name in &expected {
        let page = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(
            page.starts_with(".TH"),
            "{name}: {}",
            &page[..page.len().min(80)]
        );
    }
    let grant = std::fs::read_to_string(dir.path().join("twinctl-consent-grant.1")).unwrap();
    assert!(grant.contains("twinctl\\-consent\\-grant"), "{grant}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["pages"].as_array().unwrap().len(), expected.len());
}

#[test]
fn man_refuses_a_missing_directory_and_writes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("no-such-dir");
    let o = twinctl(&["man", "--out", missing.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(i32::from(exit::IO_ERROR)),
        "{}",
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(err.starts_with("error: cannot write man pages to"), "{err}");
    assert!(err.contains("no-such-dir"), "{err}");
    assert!(o.stdout.is_empty());
    assert!(!missing.exists(), "the directory was created");
    assert!(files_in(parent.path()).is_empty());
}

#[test]
fn man_refuses_a_file_as_the_directory() {
    let parent = tempfile::tempdir().unwrap();
    let file = parent.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let o = twinctl(&["man", "--out", file.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(i32::from(exit::IO_ERROR)),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    assert_eq!(
        files_in(parent.path()),
        BTreeSet::from(["not-a-dir".to_owned()])
    );
}
