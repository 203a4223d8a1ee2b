//! `twinledger-node`: run a Twinledger node.
//!
//! `twinledger-node --dev` starts a local dev chain (keys and genesis created in the data dir on
//! first start, reused after). Otherwise: `--genesis FILE --validator-key FILE --data-dir DIR`.
//! Every flag can come from the environment (`TWINLEDGER_*`) or a TOML config file (`--config`);
//! flags win over the environment, which wins over the file.
//!
//! `twinledger-node key new --out FILE` makes a node key (a plain file, mode 0600, ADR 0011) and
//! `twinledger-node key show FILE` shows one: its did:key and libp2p peer id.
//! `twinledger-node health --url URL` exits 0 when the URL answers 200 (a container's health
//! check). `twinledger-node completions <SHELL>` prints a completion script, `twinledger-node man --out
//! DIR` writes the man pages.
#![allow(clippy::print_stdout)] // the startup banner is the dev mode's interface

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use serde::Deserialize;
use twinledger_genesis::{GenesisFile, peer_id_from_ed25519};
use twinledger_node::consensus::replica::Replica;
use twinledger_node::{
    ApiOptions, Role, dev, keyfile, open_chain_as, open_store, replica_config, role_of,
    run_replicated, run_with, shell,
};

#[derive(Debug, Parser)]
#[command(name = "twinledger-node", version, about = "Run a Twinledger node")]
struct Cli {
    /// A key command (without one: run the node).
    #[command(subcommand)]
    command: Option<Command>,
    /// Start (or continue) a local dev chain in the data dir, with no other setup.
    #[arg(long)]
    dev: bool,
    /// Where the node keeps its store (and, in dev mode, its keys and genesis).
    #[arg(long, env = "TWINLEDGER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The genesis file (not needed with --dev).
    #[arg(long, env = "TWINLEDGER_GENESIS")]
    genesis: Option<PathBuf>,
    /// This validator's key file (not needed with --dev).
    #[arg(long, env = "TWINLEDGER_VALIDATOR_KEY")]
    validator_key: Option<PathBuf>,
    /// HTTP API address (loopback by default).
    #[arg(long, env = "TWINLEDGER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Re-check every signature and certificate of the store at start-up.
    #[arg(long, env = "TWINLEDGER_VERIFY_ALL")]
    verify_all: bool,
    /// API requests a second per client IP address (bursts of twice that); 0 = no limit.
    #[arg(long, env = "TWINLEDGER_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Signed requests a second per known key (bursts of twice that; also sets the key's nonce
    /// quota); 0 = no limit.
    #[arg(long, env = "TWINLEDGER_RATE_LIMIT_PER_KEY")]
    rate_limit_per_key: Option<u32>,
    /// A reverse proxy (IP address or CIDR network) whose X-Forwarded-For / Forwarded headers
    /// name the client address; repeatable. Other peers' forwarding headers are ignored.
    #[arg(long = "trusted-proxy", value_name = "IP_OR_CIDR")]
    trusted_proxy: Vec<String>,
    /// Log as JSON lines.
    #[arg(long, env = "TWINLEDGER_LOG_JSON")]
    log_json: bool,
    /// Follow the chain without voting (the key is an observer's, listed in the genesis
    /// `observers` by peer id).
    #[arg(long, env = "TWINLEDGER_OBSERVER")]
    observer: bool,
    /// Peer-to-peer listen address (multiaddr); default: this validator's `listen_addr` in the
    /// genesis file (an observer: a loopback port the OS picks).
    #[arg(long, env = "TWINLEDGER_P2P_LISTEN")]
    p2p_listen: Option<String>,
    /// Another node to dial and keep dialling (multiaddr ending in /p2p/<peer id>); repeatable.
    /// The genesis validators are dialled anyway; this reaches nodes the genesis file does not
    /// list (a validator added by governance).
    #[arg(
        long = "peer",
        value_name = "MULTIADDR",
        env = "TWINLEDGER_PEERS",
        value_delimiter = ','
    )]
    peer: Vec<String>,
    /// Custodian mode (PROTOCOL.md §11.6): the key-release service's key file (a live actor
    /// with role service of its organisation). Needs a master key.
    #[arg(long, env = "TWINLEDGER_CUSTODIAN_KEY")]
    custodian_key: Option<PathBuf>,
    /// Custodian mode: the master key file (age X25519, mode 0600) the data keys are wrapped
    /// under at rest; the environment variable TWINLEDGER_CUSTODIAN_MASTER_KEY (the file's
    /// text) wins over it.
    #[arg(long)]
    custodian_master_key: Option<PathBuf>,
    /// Custodian mode: the key store's directory (default: DATA_DIR/custodian-keys).
    #[arg(long, env = "TWINLEDGER_CUSTODIAN_DIR")]
    custodian_dir: Option<PathBuf>,
    /// Custodian mode: how old (by its block's time) an access receipt may be for a release,
    /// seconds (default 900).
    #[arg(long, env = "TWINLEDGER_CUSTODIAN_RELEASE_WINDOW")]
    custodian_release_window: Option<u64>,
    /// A TOML config file with the same keys as the long flags (data_dir, genesis, ...).
    #[arg(long, env = "TWINLEDGER_CONFIG")]
    config: Option<PathBuf>,
    // HTTPS on the API (issue #16; node/src/api/tls.rs).
    /// HTTPS: the API's certificate chain (PEM, the server's certificate first).
    #[arg(long, env = "TWINLEDGER_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// HTTPS: the private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1; mode 0600).
    #[arg(long, env = "TWINLEDGER_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// HTTPS: require a client certificate chained to a CA certificate in this PEM file.
    #[arg(long, env = "TWINLEDGER_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback --listen address (without TLS that is refused):
    /// only behind a TLS-terminating proxy or on a private network.
    #[arg(long, env = "TWINLEDGER_INSECURE_HTTP")]
    insecure_http: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make or show a node key (a validator's or observer's identity).
    Key {
        /// The key command.
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: shell::Shell,
    },
    /// Write man pages (one per command and subcommand) into an existing directory.
    Man {
        /// The existing directory to write the pages into (twinledger-node.1, ...).
        #[arg(long)]
        out: PathBuf,
    },
    /// Ask a node's health endpoint: exit 0 on HTTP 200, 1 otherwise (the container
    /// HEALTHCHECK: a minimal image has no curl). Prints the answer's body.
    Health {
        /// The URL to ask (http:// or https://).
        #[arg(long, default_value = "http://127.0.0.1:7600/health")]
        url: String,
        /// Give up after this many seconds (connect, send and read).
        #[arg(long, default_value_t = 5)]
        timeout: u64,
        /// A CA certificate (PEM) to trust for an https:// URL, besides the system's.
        #[arg(long, env = "TWINLEDGER_CA_CERT", value_name = "FILE")]
        ca_cert: Option<PathBuf>,
    },
    // Online backup and restore (issue #16; node/src/backup.rs, ADR 0015).
    /// Back up a running node: its committed blocks and certificates (from /v1/export) in a
    /// self-checking file.
    Backup {
        /// The node's API address (http:// or https://).
        #[arg(long, default_value = "http://127.0.0.1:7600")]
        url: String,
        /// A key that may read the whole chain: this validator's node key (or a dev key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The backup file to write (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A CA certificate (PEM) to trust for an https:// address, besides the system's.
        #[arg(long, env = "TWINLEDGER_CA_CERT", value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// A client certificate (PEM) for a node that requires one (--tls-client-ca).
        #[arg(long, value_name = "FILE", requires = "client_key")]
        client_cert: Option<PathBuf>,
        /// The private key (PEM) of --client-cert.
        #[arg(long, value_name = "FILE", requires = "client_cert")]
        client_key: Option<PathBuf>,
    },
    /// Restore a backup into a new (empty) data directory, verifying every block and
    /// certificate against the genesis; the node then starts on it.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The new data directory (absent or empty).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The chain's genesis file.
        #[arg(long, value_name = "FILE")]
        genesis: PathBuf,
    },
}

/// Runs `backup` or `restore`: what it prints is its interface.
async fn backup_command(command: &Command) -> anyhow::Result<()> {
    use twinledger_node::backup;
    match command {
        Command::Backup {
            url,
            key,
            out,
            ca_cert,
            client_cert,
            client_key,
        } => {
            let key = keyfile::read(key)?;
            let s = backup::backup(&backup::BackupOptions {
                url: url.clone(),
                key,
                ca_cert: ca_cert.clone(),
                client_cert: client_cert.clone().zip(client_key.clone()),
                out: out.clone(),
            })
            .await
            .with_context(|| format!("backup of {url} to {}", out.display()))?;
            println!(
                "backup   {} ({} bytes)\nchain    {}\ntip      {} (log size {})",
                out.display(),
                s.bytes,
                s.header.chain_id,
                s.header.tip_height,
                s.header.checkpoint.log_size
            );
        }
        Command::Restore {
            from,
            data_dir,
            genesis,
        } => {
            let g = GenesisFile::load(genesis)?;
            let (file, dir) = (from.clone(), data_dir.clone());
            let s = tokio::task::spawn_blocking(move || backup::restore(&file, &dir, &g))
                .await
                .context("restore")?
                .with_context(|| format!("restore of {}", from.display()))?;
            println!(
                "restored {} into {}\nchain    {}\ntip      {} (log size {}), every block and \
                 certificate verified\nguard    a validator signs again once a block made \
                 after this restore is committed (ADR 0015)",
                from.display(),
                data_dir.display(),
                s.header.chain_id,
                s.header.tip_height,
                s.header.checkpoint.log_size
            );
        }
        _ => {}
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a node key in a new plain key file (mode 0600, never overwritten); print its
    /// did:key (the genesis `--consensus-key`) and libp2p peer id.
    New {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Show the did:key and libp2p peer id of a key file (node or development key).
    Show {
        /// The key file.
        file: PathBuf,
    },
}

/// Runs a key command: what it prints is its interface.
fn key_command(command: &KeyCommand) -> anyhow::Result<()> {
    let (path, key, kind) = match command {
        KeyCommand::New { out } => {
            let key = keyfile::generate()?;
            keyfile::write(
                out,
                &key,
                "twinledger node key: keep it readable by the node's user only",
            )?;
            (out, key, keyfile::KeyKind::Node)
        }
        KeyCommand::Show { file } => {
            let k = keyfile::read_file(file)?;
            (file, k.key, k.kind)
        }
    };
    print_key(path, &key, kind);
    Ok(())
}

fn print_key(path: &Path, key: &twinledger_core::Keypair, kind: keyfile::KeyKind) {
    println!("did      {}", key.public().to_did());
    println!("peer id  {}", peer_id_from_ed25519(&key.public()));
    println!("file     {} ({kind}, mode 0600)", path.display());
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    genesis: Option<PathBuf>,
    validator_key: Option<PathBuf>,
    listen: Option<SocketAddr>,
    verify_all: Option<bool>,
    log_json: Option<bool>,
    rate_limit: Option<u32>,
    rate_limit_per_key: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
    observer: Option<bool>,
    p2p_listen: Option<String>,
    peers: Option<Vec<String>>,
    custodian_key: Option<PathBuf>,
    custodian_master_key: Option<PathBuf>,
    custodian_dir: Option<PathBuf>,
    custodian_release_window: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    insecure_http: Option<bool>,
}

/// The API's TLS configuration from flags, environment or config file, checked against the
/// listen address before anything else happens: plain HTTP off loopback needs --insecure-http.
fn api_tls(
    cli: &Cli,
    file: &FileConfig,
    listen: SocketAddr,
) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
    use twinledger_node::api::tls;
    let cert = cli.tls_cert.clone().or(file.tls_cert.clone());
    let key = cli.tls_key.clone().or(file.tls_key.clone());
    let client_ca = cli.tls_client_ca.clone().or(file.tls_client_ca.clone());
    let insecure_http = cli.insecure_http || file.insecure_http.unwrap_or(false);
    let files = match (cert, key) {
        (Some(cert), Some(key)) => Some(tls::TlsFiles {
            cert,
            key,
            client_ca,
        }),
        (Some(_), None) => anyhow::bail!("--tls-cert given without --tls-key"),
        (None, Some(_)) => anyhow::bail!("--tls-key given without --tls-cert"),
        (None, None) => {
            anyhow::ensure!(
                client_ca.is_none(),
                "--tls-client-ca needs --tls-cert and --tls-key (client certificates are a TLS \
                 feature)"
            );
            None
        }
    };
    anyhow::ensure!(
        files.is_none() || !insecure_http,
        "--insecure-http and --tls-cert both given: choose one"
    );
    tls::check_plain_listen(listen, files.is_some(), insecure_http).map_err(anyhow::Error::msg)?;
    Ok(match files {
        Some(f) => Some(tls::server_config(&f)?),
        None => None,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Key { command }) => return key_command(command),
        Some(Command::Completions { shell }) => {
            print!("{}", shell::completions(Cli::command(), *shell));
            return Ok(());
        }
        Some(c @ (Command::Backup { .. } | Command::Restore { .. })) => {
            return backup_command(c).await;
        }
        Some(Command::Man { out }) => {
            let written = shell::write_man_pages(Cli::command(), out)
                .with_context(|| format!("cannot write man pages to {}", out.display()))?;
            println!("wrote {} man pages to {}", written.len(), out.display());
            return Ok(());
        }
        Some(Command::Health {
            url,
            timeout,
            ca_cert,
        }) => {
            let (code, body) = health_probe(
                url,
                std::time::Duration::from_secs(*timeout),
                ca_cert.as_deref(),
            )
            .await?;
            println!("{code} {}", body.trim());
            if code != 200 {
                std::process::exit(1);
            }
            return Ok(());
        }
        None => {}
    }
    let file: FileConfig = match &cli.config {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("config file {}", p.display()))?,
        None => FileConfig::default(),
    };
    let log_json = cli.log_json || file.log_json.unwrap_or(false);
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Logs go to stdout; colour codes only when that is a terminal, not a file or a pipe.
    let ansi = std::io::stdout().is_terminal();
    if log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .init();
    }
    let listen = cli
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:7600".parse().expect("valid default"));
    let tls = api_tls(&cli, &file, listen)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let data_dir = cli.data_dir.or(file.data_dir).unwrap_or_else(|| {
        PathBuf::from(if cli.dev {
            ".twinledger-dev"
        } else {
            "twinledger-data"
        })
    });
    let verify_all = cli.verify_all || file.verify_all.unwrap_or(false);

    let custodian_key_path = cli.custodian_key.clone().or(file.custodian_key.clone());
    let custodian_master_path = cli
        .custodian_master_key
        .clone()
        .or(file.custodian_master_key.clone());
    let custodian_dir = cli
        .custodian_dir
        .clone()
        .or(file.custodian_dir.clone())
        .unwrap_or_else(|| data_dir.join("custodian-keys"));
    let release_window = std::time::Duration::from_secs(
        cli.custodian_release_window
            .or(file.custodian_release_window)
            .unwrap_or(twinledger_node::custodian::DEFAULT_RELEASE_WINDOW.as_secs()),
    );
    let (genesis, key, banner) = if cli.dev {
        let s = dev::setup(&data_dir)?;
        (s.genesis.clone(), s.validator.clone(), Some(s))
    } else {
        let gpath = cli
            .genesis
            .or(file.genesis)
            .context("--genesis is required (or use --dev)")?;
        let kpath = cli
            .validator_key
            .or(file.validator_key)
            .context("--validator-key is required (or use --dev)")?;
        let genesis = GenesisFile::load(&gpath)?;
        let key = keyfile::read_file(&kpath)?;
        if let keyfile::KeyKind::Dev { chain_id } = key.kind {
            let chain = genesis.chain_id()?;
            anyhow::ensure!(
                chain_id == chain,
                "{} is a development key of dev chain {chain_id}, but {} is chain {chain}; a \
                 development key serves only the dev chain it was made for (make a node key with \
                 `twinledger-node key new --out FILE`)",
                kpath.display(),
                gpath.display()
            );
        }
        (genesis, key.key, None)
    };
    let observer = cli.observer || file.observer.unwrap_or(false);
    let store = open_store(&data_dir)?;
    let chain = open_chain_as(&genesis, store, key.clone(), verify_all, observer)?;
    let role = role_of(&genesis, Some(&chain.state()), &key, observer)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    if let Some(s) = &banner {
        let st = chain.state();
        println!(
            "Twinledger dev chain {} ({})",
            chain.chain_id(),
            if s.created { "created" } else { "continued" }
        );
        println!("  data dir   {}", data_dir.display());
        println!("  genesis    {}", s.genesis_path.display());
        println!(
            "  keys       {} (unencrypted, development only; twinctl opens them without a \
             passphrase against this chain)",
            s.keys_dir.display()
        );
        for k in &s.keys {
            println!(
                "    {:<10} {}  {}  ({})",
                k.name,
                k.public.to_did(),
                k.path.display(),
                k.role
            );
        }
        if let Some(c) = &s.custodian {
            println!(
                "    {:<10} {}  {}  (key custodian, service actor of Dev Hospital)",
                "custodian",
                c.key.public().to_did(),
                c.key_path.display()
            );
            println!(
                "    {:<10} {}  (age master key of the custodian's key store)",
                "master",
                c.master_path.display()
            );
        }
        println!(
            "    {:<10} {}  (the dev hospital's secret twin salt: twinctl twin ... --twin-salt)",
            "twin salt",
            s.twin_salt_path.display()
        );
        println!(
            "    Show a key again: twinctl key show <file>  (or twinledger-node key show <file>)"
        );
        println!("  height     {} ({} events)", st.height(), st.log_size());
        println!("  API        {scheme}://{addr}");
        println!();
        println!("Try:  curl {scheme}://{addr}/health");
        println!("      curl {scheme}://{addr}/v1/checkpoint");
        println!("      curl {scheme}://{addr}/metrics");
        println!("Stop with Ctrl-C; start again with the same command to continue this chain.");
    }
    let proxies = if cli.trusted_proxy.is_empty() {
        file.trusted_proxies.clone().unwrap_or_default()
    } else {
        cli.trusted_proxy.clone()
    };
    let trusted_proxies = proxies
        .iter()
        .map(|p| {
            p.parse()
                .map_err(|e: String| anyhow::anyhow!("trusted proxy {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Custodian mode: explicit flags, or the dev chain's custodian under --dev.
    let dev_custodian = banner.as_ref().and_then(|s| {
        s.custodian
            .as_ref()
            .map(|c| (c.key.clone(), c.master_path.clone()))
    });
    let custodian_cfg = match (custodian_key_path, dev_custodian) {
        (Some(kpath), _) => {
            let key = keyfile::read(&kpath)
                .with_context(|| format!("custodian key {}", kpath.display()))?;
            Some((key, custodian_master_path.clone()))
        }
        (None, Some((key, master))) => Some((key, custodian_master_path.clone().or(Some(master)))),
        (None, None) => {
            anyhow::ensure!(
                custodian_master_path.is_none(),
                "--custodian-master-key given without --custodian-key"
            );
            None
        }
    };
    let custodian = match custodian_cfg {
        Some((key, master)) => {
            let master =
                twinledger_sealed::custodian::MasterKey::from_env_or_file(master.as_deref())
                    .context("custodian master key")?;
            let c = twinledger_node::custodian::Custodian::open(
                twinledger_node::custodian::CustodianConfig {
                    key,
                    master,
                    dir: custodian_dir.clone(),
                    release_window,
                },
                &chain.state(),
            )?;
            if banner.is_none() {
                println!(
                    "  custodian  {} of {} (keys in {})",
                    c.public().to_did(),
                    c.organisation().to_did(),
                    custodian_dir.display()
                );
            }
            Some(std::sync::Arc::new(c))
        }
        None => None,
    };
    let options = ApiOptions {
        custodian,
        rate_limit_per_client: cli
            .rate_limit
            .or(file.rate_limit)
            .unwrap_or(ApiOptions::default().rate_limit_per_client),
        rate_limit_per_key: cli
            .rate_limit_per_key
            .or(file.rate_limit_per_key)
            .unwrap_or(ApiOptions::default().rate_limit_per_key),
        trusted_proxies,
        tls,
    };
    if role == Role::Solo && twinledger_node::backup::signing_guard(chain.store()).is_some() {
        tracing::warn!(
            "this store was restored from a backup; a chain of one validator has no peers to \
             catch up from: blocks the old node committed after the backup are lost and this \
             node continues from the backup's tip (ADR 0015)"
        );
    }
    if role == Role::Solo {
        if !cli.dev {
            println!(
                "Twinledger node (solo validator) chain {}",
                chain.chain_id()
            );
            println!("  API        {scheme}://{addr}");
        }
        return run_with(listener, chain, key, options, shutdown_signal()).await;
    }
    let p2p_listen = match cli.p2p_listen.or(file.p2p_listen) {
        Some(a) => Some(a.parse().with_context(|| format!("--p2p-listen {a}"))?),
        None => None,
    };
    let peers = if cli.peer.is_empty() {
        file.peers.clone().unwrap_or_default()
    } else {
        cli.peer.clone()
    };
    let peers = peers
        .iter()
        .map(|p| p.parse().with_context(|| format!("--peer {p}")))
        .collect::<anyhow::Result<Vec<libp2p::Multiaddr>>>()?;
    let cfg = replica_config(&genesis, &key, p2p_listen, &peers, &data_dir)?;
    let replica = Replica::start(chain.clone(), key, cfg).await?;
    println!(
        "Twinledger node ({}) chain {} height {}",
        if role == Role::Validator {
            "validator"
        } else {
            "observer"
        },
        chain.chain_id(),
        chain.height()
    );
    println!("  API        {scheme}://{addr}");
    println!("  P2P        {}/p2p/{}", replica.p2p_addr, replica.peer_id);
    run_replicated(listener, chain, replica, options, shutdown_signal()).await
}

/// `GET url` (http or https, through the node's HTTP client; the health subcommand): the status code
/// and body.
async fn health_probe(
    url: &str,
    timeout: std::time::Duration,
    ca_cert: Option<&std::path::Path>,
) -> anyhow::Result<(u16, String)> {
    let client = twinledger_node::backup::http_client(ca_cert, None)?;
    let answer = tokio::time::timeout(timeout, async {
        let r = client.get(url).timeout(timeout).send().await?;
        let code = r.status().as_u16();
        let body = r.text().await?;
        Ok::<_, reqwest::Error>((code, body))
    })
    .await
    .map_err(|_| anyhow::anyhow!("{url} did not answer within {} s", timeout.as_secs()))?
    .with_context(|| format!("asking {url}"))?;
    Ok(answer)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing the block in flight");
}
