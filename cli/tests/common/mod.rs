//! What the end-to-end `twinctl` tests share: running the binary against a node, and key files.
#![allow(dead_code)] // each test binary uses its own subset

pub mod node_process;

use std::path::Path;
use std::process::{Command, Output};

use twinledger_core::Keypair;

pub mod node;
pub mod serve;

/// The passphrase of every test key file (given to twinctl through `TWINCTL_PASSPHRASE`).
pub const PASS: &str = "a long enough passphrase";

/// Runs `twinctl args` against `node`.
pub fn twinctl(node: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twinctl"))
        .args(args)
        .env("TWINCTL_NODE", node)
        .env("TWINCTL_PASSPHRASE", PASS)
        .output()
        .unwrap()
}

/// [`twinctl`] off the async runtime (the node under test runs on it).
pub async fn run(node: &str, args: &[&str]) -> Output {
    let (node, args): (String, Vec<String>) =
        (node.into(), args.iter().map(|s| s.to_string()).collect());
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        twinctl(&node, &a)
    })
    .await
    .unwrap()
}

/// [`run`], asserting that twinctl succeeded (what it printed in the message).
pub async fn run_ok(node: &str, args: &[&str]) -> Output {
    let o = run(node, args).await;
    assert!(o.status.success(), "{}", err(&o));
    o
}

/// [`run`], asserting twinctl's exit code (what it printed in the message).
pub async fn run_exit(node: &str, args: &[&str], code: i32) -> Output {
    let o = run(node, args).await;
    assert_eq!(o.status.code(), Some(code), "{}", err(&o));
    o
}

/// What a run printed, for assertion messages.
pub fn err(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes `key` to `<dir>/<name>.key` under [`PASS`]; returns the path. A cheap key-derivation
/// cost keeps the tests fast (twinctl honours the file's cost).
pub fn write_key(dir: &Path, name: &str, key: &Keypair) -> String {
    let path = dir.join(format!("{name}.key"));
    twinledger_cli::keystore::write_with_cost(&path, key, PASS.as_bytes(), 1024, 1).unwrap();
    path.to_str().unwrap().to_string()
}
pub mod solo;
