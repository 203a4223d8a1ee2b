//! `twinledger-devnet`: a local BFT network in one command.
//!
//! `twinledger-devnet up --validators 4` creates (first time) a genesis with 4 hospitals, each
//! running a validator, plus an observer, keys for an auditor, a physician and a patient; starts
//! every node as a `twinledger-node` process on loopback (p2p ports picked free by the OS, API
//! ports chosen by the OS) and prints their API addresses. `twinledger-devnet down` stops them
//! (SIGTERM, then SIGKILL after 30 s); `status` shows each node's height. Data, keys and logs
//! stay in the devnet directory, so `up` again continues the same chain.
#![allow(clippy::print_stdout)] // the printed table is this tool's interface

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{CommandFactory as _, Parser, Subcommand};
use twinledger_node::{devnet, keyfile, shell};

#[derive(Debug, Parser)]
#[command(
    name = "twinledger-devnet",
    version,
    about = "Run a local multi-validator network"
)]
struct Cli {
    /// The devnet directory.
    #[arg(
        long,
        global = true,
        default_value = ".twinledger-devnet",
        env = "TWINLEDGER_DEVNET_DIR"
    )]
    dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create (first time) and start the network; print the API addresses.
    Up {
        /// Number of validators (one hospital each), 1..=16. Only used when creating.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Number of observers. Only used when creating.
        #[arg(long, default_value_t = 1)]
        observers: usize,
    },
    /// Create the files of a devnet (genesis, keys) without starting it: e.g. for containers,
    /// with `--p2p-addr '/dns4/hospital-{i}/tcp/7700'` (node/deploy/container/).
    Init {
        /// Number of validators (one hospital each), 1..=16.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Number of observers.
        #[arg(long, default_value_t = 1)]
        observers: usize,
        /// Validator i's p2p address in the genesis, `{i}` standing for i (0, 1, ...); default:
        /// a free loopback port each.
        #[arg(long, value_name = "TEMPLATE")]
        p2p_addr: Option<String>,
    },
    /// Stop every node.
    Down,
    /// Show every node's API address and height.
    Status,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: shell::Shell,
    },
    /// Write man pages (one per command and subcommand) into an existing directory.
    Man {
        /// The existing directory to write the pages into (twinledger-devnet.1, ...).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Up {
            validators,
            observers,
        } => up(&cli.dir, validators, observers),
        Cmd::Init {
            validators,
            observers,
            p2p_addr,
        } => init(&cli.dir, validators, observers, p2p_addr.as_deref()),
        Cmd::Down => down(&cli.dir),
        Cmd::Status => status(&cli.dir),
        Cmd::Completions { shell } => {
            print!("{}", shell::completions(Cli::command(), shell));
            Ok(())
        }
        Cmd::Man { out } => {
            let written = shell::write_man_pages(Cli::command(), &out)
                .with_context(|| format!("cannot write man pages to {}", out.display()))?;
            println!("wrote {} man pages to {}", written.len(), out.display());
            Ok(())
        }
    }
}

fn node_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .with_file_name("twinledger-node")
        .with_extension(std::env::consts::EXE_EXTENSION);
    if bin.exists() {
        return Ok(bin);
    }
    // Under `cargo run`, build the node binary beside this one.
    if let Ok(cargo) = std::env::var("CARGO") {
        let ok = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "twinledger-node",
                "--bin",
                "twinledger-node",
            ])
            .status()
            .context("building twinledger-node")?
            .success();
        if ok && bin.exists() {
            return Ok(bin);
        }
    }
    bail!(
        "twinledger-node not found next to {} (build it: cargo build -p twinledger-node)",
        exe.display()
    )
}

fn pid_path(node: &devnet::DevnetNode) -> PathBuf {
    node.data_dir.join("node.pid")
}

fn api_of(node: &devnet::DevnetNode) -> Option<String> {
    let log = std::fs::read_to_string(node.data_dir.join("node.log")).ok()?;
    log.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("API").map(|a| a.trim().to_owned()))
}

fn running(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn read_pid(node: &devnet::DevnetNode) -> Option<u32> {
    std::fs::read_to_string(pid_path(node))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn up(dir: &Path, validators: usize, observers: usize) -> anyhow::Result<()> {
    let net = if dir.join("genesis.json").exists() {
        devnet::load(dir)?
    } else {
        let n = devnet::create(dir, validators, observers)?;
        println!(
            "created a devnet of {validators} validators in {}",
            dir.display()
        );
        n
    };
    let bin = node_binary()?;
    for node in &net.nodes {
        if read_pid(node).is_some_and(running) {
            println!("{:<12} already running", node.name);
            continue;
        }
        std::fs::create_dir_all(&node.data_dir)?;
        let log_path = node.data_dir.join("node.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(&bin)
            .args(node.args(&net.genesis_path))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", node.name))?;
        std::fs::write(pid_path(node), child.id().to_string())?;
    }
    // Wait (deadline) for every node to print its API address.
    let end = Instant::now() + Duration::from_secs(60);
    println!("{:<12} {:<8} API", "node", "pid");
    for node in &net.nodes {
        let api = loop {
            if let Some(a) = api_of(node) {
                break a;
            }
            if Instant::now() > end {
                bail!(
                    "{} did not start; see {}",
                    node.name,
                    node.data_dir.join("node.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        println!(
            "{:<12} {:<8} {api}",
            node.name,
            read_pid(node).unwrap_or_default()
        );
    }
    println!();
    println!("genesis: {}", net.genesis_path.display());
    println!(
        "keys: {} (unencrypted, development only; twinctl opens them without a passphrase \
         against this devnet)",
        dir.join("keys").display()
    );
    for k in &net.user_keys {
        // The nodes are running: a key that cannot be read is reported, not fatal.
        let did = keyfile::read(&k.path)
            .map(|key| key.public().to_did())
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        let name = k
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("  {name:<12} {did}  {}  ({})", k.path.display(), k.role);
    }
    println!("show a key again: twinctl key show <file>  (or twinledger-node key show <file>)");
    println!("stop with: twinledger-devnet down --dir {}", dir.display());
    Ok(())
}

fn init(
    dir: &Path,
    validators: usize,
    observers: usize,
    p2p_addr: Option<&str>,
) -> anyhow::Result<()> {
    let net = match p2p_addr {
        None => devnet::create(dir, validators, observers)?,
        Some(t) => {
            anyhow::ensure!(
                t.contains("{i}"),
                "--p2p-addr {t:?} has no {{i}}: every validator needs its own address"
            );
            devnet::create_with(dir, validators, observers, |i| {
                Ok(t.replace("{i}", &i.to_string()))
            })?
        }
    };
    println!(
        "created a devnet of {validators} validators and {observers} observers in {}",
        dir.display()
    );
    println!("genesis: {}", net.genesis_path.display());
    for node in &net.nodes {
        println!("  {:<12} key {}", node.name, node.key_path.display());
    }
    for k in &net.user_keys {
        println!("  {:<12} {}  ({})", "", k.path.display(), k.role);
    }
    Ok(())
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let net = devnet::load(dir)?;
    for node in &net.nodes {
        let Some(pid) = read_pid(node) else {
            continue;
        };
        if running(pid) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let end = Instant::now() + Duration::from_secs(30);
            while running(pid) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(100));
            }
            if running(pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            println!("{:<12} stopped", node.name);
        }
        let _ = std::fs::remove_file(pid_path(node));
    }
    Ok(())
}

fn health(api: &str) -> Option<String> {
    let addr = api.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.split("\r\n\r\n").nth(1).map(str::to_owned)
}

fn status(dir: &Path) -> anyhow::Result<()> {
    let net = devnet::load(dir)?;
    println!("{:<12} {:<8} {:<28} health", "node", "pid", "API");
    for node in &net.nodes {
        let pid = read_pid(node).filter(|p| running(*p));
        let api = api_of(node).unwrap_or_default();
        let h = if pid.is_some() { health(&api) } else { None };
        println!(
            "{:<12} {:<8} {:<28} {}",
            node.name,
            pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            api,
            h.unwrap_or_else(|| "down".into())
        );
    }
    Ok(())
}
