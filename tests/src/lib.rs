//! `twinledger-tests`: a harness that runs real `twinledger-node` processes, and the
//! multi-process scenarios in `tests/` (kill -9 under load, restart, verify).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub mod procnet;
pub mod sim;
pub mod wan;

/// The `twinledger-node` binary of this build profile, built once per test process.
pub fn node_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/<test binary>
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .ok_or("cannot locate the target directory")?
                .to_path_buf();
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            // Both binaries of the package: the node, and the devnet tool that starts it.
            cmd.args(["build", "-q", "-p", "twinledger-node", "--bins"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("building twinledger-node failed: {status}"));
            }
            Ok(profile_dir.join("twinledger-node"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The `twinledger-devnet` binary of this build profile (built with the node).
pub fn devnet_binary() -> anyhow::Result<PathBuf> {
    Ok(node_binary()?.with_file_name("twinledger-devnet"))
}

/// A running node process.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    /// Its API address.
    pub addr: SocketAddr,
    /// Log lines it printed, and of them those that report a full gossip send queue.
    pub log: Arc<LogCounts>,
}

/// Counts of a node's log lines (warnings and above by default).
#[derive(Debug, Default)]
pub struct LogCounts {
    /// Every line.
    pub lines: AtomicU64,
    /// Lines reporting a full gossipsub send queue (`Send Queue full`).
    pub queue_full: AtomicU64,
    /// The last [`LOG_TAIL`] other lines, for a failing test to show what the node said.
    tail: std::sync::Mutex<std::collections::VecDeque<String>>,
}

/// How many of a node's last log lines [`LogCounts::tail`] keeps.
pub const LOG_TAIL: usize = 40;

impl LogCounts {
    /// The node's last log lines (other than full-send-queue reports), oldest first.
    pub fn tail(&self) -> String {
        let t = self.tail.lock().expect("log tail lock");
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn keep(&self, line: &str) {
        let mut t = self.tail.lock().expect("log tail lock");
        if t.len() == LOG_TAIL {
            t.pop_front();
        }
        t.push_back(line.to_string());
    }
}

impl NodeProcess {
    /// Starts `twinledger-node --dev` on `data_dir` with the API on an OS-chosen loopback port,
    /// and waits (deadline 60 s) for it to print its API address.
    pub fn start_dev(data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let mut args: Vec<String> = vec!["--dev".into(), "--listen".into(), "127.0.0.1:0".into()];
        args.push("--data-dir".into());
        args.push(data_dir.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start(&args)
    }

    /// Starts `twinledger-node` with `args` (which must put the API on a loopback port) and
    /// waits (deadline 60 s) for it to print its API address.
    pub fn start(args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(node_binary()?)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("TWINLEDGER_TEST_LOG")
                    .unwrap_or_else(|_| "warn,twinledger_node=info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning twinledger-node")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(LogCounts::default());
        let counts = log.clone();
        std::thread::spawn(move || {
            // The node logs to stdout; with TWINLEDGER_TEST_LOG set, pass its lines on.
            let echo = std::env::var_os("TWINLEDGER_TEST_LOG").is_some();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                counts.lines.fetch_add(1, Ordering::Relaxed);
                if line.contains("Send Queue full") {
                    counts.queue_full.fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.keep(&line);
                }
                if let Some(url) = line.trim().strip_prefix("API") {
                    let _ = tx.send(url.trim().trim_start_matches("http://").to_string());
                } else if echo {
                    #[allow(clippy::print_stderr)]
                    {
                        eprintln!("{line}");
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().context("API address")?,
            Err(_) => {
                let _ = child.kill();
                bail!("the node did not print its API address within 60 s");
            }
        };
        Ok(Self { child, addr, log })
    }

    /// Sends a signal (`-STOP`, `-CONT`, ...) with kill(1).
    pub fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill {sig} failed: {status}");
        Ok(())
    }

    /// kill -9.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Whether the process has exited (and how).
    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits for the process to exit (deadline), returning its status.
    pub fn wait_exit(&mut self, deadline: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                bail!("node did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
