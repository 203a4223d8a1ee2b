//! `completions <SHELL>` and `man --out DIR` of `twinledger-node` and `twinledger-devnet`,
//! through the real binaries: the scripts name every top-level subcommand (bash's passes
//! `bash -n`), there is a man page for every command and subcommand (read from the binaries'
//! own `--help`), and a missing or non-directory `--out` is refused without writing anything.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const NODE: &str = env!("CARGO_BIN_EXE_twinledger-node");
const DEVNET: &str = env!("CARGO_BIN_EXE_twinledger-devnet");

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("TWINLEDGER_DEVNET_DIR")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The subcommands `bin <path> --help` lists under "Commands:" (clap's `help` left out).
fn subcommands(bin: &str, path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let o = run(bin, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = String::from_utf8(o.stdout).unwrap();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect()
}

/// One page per command and subcommand, found by walking `--help`.
fn expected_pages(bin: &str, name: &str) -> BTreeSet<String> {
    fn walk(bin: &str, path: &mut Vec<String>, name: &str, out: &mut BTreeSet<String>) {
        let mut page = name.to_owned();
        for p in path.iter() {
            page.push('-');
            page.push_str(p);
        }
        out.insert(format!("{page}.1"));
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(bin, &refs) {
            path.push(sub);
            walk(bin, path, name, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(bin, &mut Vec::new(), name, &mut out);
    out
}

fn files_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn check_completions(bin: &str, expected_top: &[&str]) {
    let top = subcommands(bin, &[]);
    for known in expected_top {
        assert!(top.iter().any(|t| t == known), "{known} in {top:?}");
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(bin, &["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        assert!(!script.trim().is_empty(), "{shell}: empty");
        for name in &top {
            assert!(script.contains(name.as_str()), "{shell} lacks {name}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("completion.bash");
            std::fs::write(&file, &script).unwrap();
            let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "bash -n: {}", stderr(&check));
        }
    }
    let o = run(bin, &["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(o.stdout.is_empty());
}

fn check_man(bin: &str, name: &str, must_have: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let o = run(bin, &["man", "--out", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = expected_pages(bin, name);
    for page in must_have {
        assert!(expected.contains(*page), "{page} in {expected:?}");
    }
    assert_eq!(files_in(dir.path()), expected);
    for page in &expected {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.starts_with(".TH"), "{page}");
    }
}

fn check_man_refusals(bin: &str) {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("no-such-dir");
    let o = run(bin, &["man", "--out", missing.to_str().unwrap()]);
    // Like the binary's other file errors: anyhow's `Error: ...` on stderr, exit code 1.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cannot write man pages to"), "{err}");
    assert!(err.contains("no-such-dir"), "{err}");
    assert!(!missing.exists());
    assert!(files_in(parent.path()).is_empty());

    let file = parent.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = run(bin, &["man", "--out", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    assert_eq!(
        files_in(parent.path()),
        BTreeSet::from(["a-file".to_owned()])
    );
}

#[test]
fn node_completions_are_valid_and_name_every_subcommand() {
    check_completions(NODE, &["key", "completions", "man"]);
}

#[test]
fn devnet_completions_are_valid_and_name_every_subcommand() {
    check_completions(DEVNET, &["up", "down", "status", "completions", "man"]);
}

#[test]
fn node_man_writes_a_page_for_every_command_and_subcommand() {
    check_man(
        NODE,
        "twinledger-node",
        &[
            "twinledger-node.1",
            "twinledger-node-key-new.1",
            "twinledger-node-key-show.1",
        ],
    );
}

#[test]
fn devnet_man_writes_a_page_for_every_command_and_subcommand() {
    check_man(
        DEVNET,
        "twinledger-devnet",
        &[
            "twinledger-devnet.1",
            "twinledger-devnet-up.1",
            "twinledger-devnet-status.1",
        ],
    );
}

#[test]
fn node_man_refuses_a_missing_or_non_directory_out() {
    check_man_refusals(NODE);
}

#[test]
fn devnet_man_refuses_a_missing_or_non_directory_out() {
    check_man_refusals(DEVNET);
}
