//! The real `twinledger-node` and `twinledger-devnet` binaries, for tests that run them as a
//! user would: a `--dev` node process on an OS-chosen loopback port, a devnet, a key command.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a node may take to print its API address.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The directory holding this build profile's `twinledger-node` and `twinledger-devnet`, built
/// once per test process (`cargo build -p twinledger-node --bins`).
pub fn bin_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/<test binary>
            let exe = std::env::current_exe().expect("test binary path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>")
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-q", "-p", "twinledger-node", "--bins"]);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("running cargo build");
            assert!(
                status.success(),
                "building twinledger-node failed: {status}"
            );
            profile_dir
        })
        .clone()
}

/// Runs `twinledger-node args` to completion (key commands).
pub fn node_cmd(args: &[&str]) -> Output {
    Command::new(bin_dir().join("twinledger-node"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("running twinledger-node")
}

/// Runs `twinledger-devnet args` to completion.
pub fn devnet_cmd(args: &[&str]) -> Output {
    Command::new(bin_dir().join("twinledger-devnet"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("running twinledger-devnet")
}

/// A `twinledger-node --dev` process, killed on drop.
#[derive(Debug)]
pub struct DevNode {
    child: Child,
    /// Its API address (`http://127.0.0.1:<port>`).
    pub api: String,
    /// What it printed on stdout up to its API line (the banner and start-up logs).
    pub banner: String,
}

impl DevNode {
    /// Starts (or continues) a dev chain in `data_dir`, API on a port the OS picks, and waits
    /// (deadline 60 s) for its API address.
    pub fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(bin_dir().join("twinledger-node"))
            .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning twinledger-node --dev");
        let stdout = child.stdout.take().expect("node stdout");
        let seen = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let lines = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(api) = line.trim().strip_prefix("API") {
                    let _ = tx.send(api.trim().to_string());
                }
            }
        });
        let api = match rx.recv_timeout(START_DEADLINE) {
            Ok(api) => api,
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "the dev node printed no API address ({e}); it printed:\n{}",
                    seen.lock().unwrap()
                );
            }
        };
        let banner = seen.lock().unwrap().clone();
        Self { child, api, banner }
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A devnet started with `twinledger-devnet up`, stopped with `down` on drop.
#[derive(Debug)]
pub struct Devnet {
    dir: PathBuf,
    /// What `up` printed.
    pub up: String,
}

impl Devnet {
    /// `twinledger-devnet up --dir dir --validators n --observers 0`, asserting success.
    pub fn up(dir: &Path, validators: usize) -> Self {
        let o = devnet_cmd(&[
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--validators",
            &validators.to_string(),
            "--observers",
            "0",
        ]);
        let net = Self {
            dir: dir.to_owned(),
            up: String::from_utf8_lossy(&o.stdout).into_owned(),
        };
        assert!(
            o.status.success(),
            "devnet up failed:\n{}{}",
            net.up,
            String::from_utf8_lossy(&o.stderr)
        );
        net
    }

    /// The API address `up` printed for `node` (`validator-0`, ...).
    pub fn api(&self, node: &str) -> String {
        self.up
            .lines()
            .find(|l| l.split_whitespace().next() == Some(node))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
            .unwrap_or_else(|| panic!("no API address of {node} in:\n{}", self.up))
            .to_string()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = devnet_cmd(&["down", "--dir", self.dir.to_str().unwrap()]);
    }
}

/// Waits (deadline `within`) until `cond` holds.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
