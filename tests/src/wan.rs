//! A WAN-like test bed: every validator in its own Linux network namespace, one-way delay and
//! jitter between them, packet loss, and real partitions.
//!
//! Topology (one run; every name carries the run's prefix `tlw<pid><letter>`):
//!
//! ```text
//!   root namespace (this process)            <prefix>-hub namespace          <prefix>-n<i>
//!   veth <prefix>: 10.77.X.254 (API client)  bridge br0 ── p<i> ──── veth ──── eth0 10.77.X.<i+1>
//!                  10.77.X.253 (relays)  ─── <prefix>u                          node i: p2p :26656,
//!                                                                               API :8080
//! ```
//!
//! The bridge lives in its own namespace so that the host's firewall (a `FORWARD DROP` policy
//! with bridge netfilter, as a Docker host has) never sees the bed's traffic.
//!
//! Delay and jitter come from one of two mechanisms ([`Mechanism`]):
//!
//! - **netem**, when the kernel has the qdisc: `tc qdisc add dev eth0 root netem delay D J` on
//!   every node's interface (D: that node's one-way delay, drawn from the configured range);
//! - **relay** otherwise (kernels built without `sch_netem`): every node reaches every other
//!   node through a TCP relay in this process. In node j's namespace an iptables `nat OUTPUT`
//!   rule rewrites "to node i's p2p port" into "to the relay of link j→i" (10.77.X.253:port);
//!   the relay connects to node i and forwards each chunk it reads after the link's one-way
//!   delay ± jitter (uniform), in order (a chunk never overtakes the one before it). The link
//!   delays are drawn once per unordered pair from the configured range (seeded).
//!
//! Loss is always real packet loss: iptables `-m statistic --mode random --probability p -j
//! DROP` in the receiving node's namespace, on the packets of its peer links, so TCP
//! retransmits. (With the relay, a dropped segment is retransmitted on the short leg between
//! the relay and the node: the retransmission timer is the kernel's minimum RTO, not one
//! based on the WAN round trip.) Partitions are iptables DROP of everything between a node's
//! namespace and its peers (the API stays reachable from the harness, as a hospital's own
//! clients would still reach their node).
//!
//! Needs root (namespaces, iptables) and `ip`, `iptables`; [`check_facilities`] says why not.
//! Everything is removed when the [`WanBed`] is dropped, also on panic.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;
use twinledger_core::audit::CommittedBlock;
use twinledger_core::request::RequestAuth;
use twinledger_core::{ChainId, EventId, Genesis, Hash, Keypair, SignedEvent, codec};
use twinledger_node::chain::now;
use twinledger_node::devnet::{self, Devnet};
use twinledger_node::keyfile;

/// Every node's p2p port (each node has its own namespace, so they can share it).
pub const P2P_PORT: u16 = 26656;
/// Every node's API port.
pub const API_PORT: u16 = 8080;

/// How the bed delays packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// `tc netem` on each node's interface (kernels with `sch_netem`).
    Netem,
    /// A delaying TCP relay per link in the harness process.
    Relay,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::Netem => "tc netem on each node's interface",
            Mechanism::Relay => "userspace TCP relay per link (the kernel has no netem qdisc)",
        })
    }
}

/// What the bed looks like.
#[derive(Clone, Debug)]
pub struct WanConfig {
    /// Number of validators (one namespace each).
    pub validators: usize,
    /// One-way delay range, milliseconds (each link draws one value in it).
    pub delay_ms: (u64, u64),
    /// Jitter, ± milliseconds (uniform).
    pub jitter_ms: u64,
    /// Packet loss probability, per direction of every link (0.01 = 1%).
    pub loss: f64,
    /// Seed of the link delays and jitter.
    pub seed: u64,
    /// None: netem when the kernel has it, else the relay.
    pub mechanism: Option<Mechanism>,
    /// Genesis `max_events_per_block`.
    pub max_events_per_block: u32,
    /// The `twinledger-node` binary.
    pub node_binary: PathBuf,
}

impl WanConfig {
    /// Four validators, 20–80 ms one-way, ±5 ms jitter, 1% loss.
    pub fn new(node_binary: PathBuf) -> Self {
        Self {
            validators: 4,
            delay_ms: (20, 80),
            jitter_ms: 5,
            loss: 0.01,
            seed: 1,
            mechanism: None,
            max_events_per_block: 2_000,
            node_binary,
        }
    }
}

fn run(cmd: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", cmd.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            cmd.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_in(ns: &str, cmd: &[&str]) -> anyhow::Result<String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(cmd);
    run(&full)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn fresh_prefix() -> String {
    let k = SEQ.fetch_add(1, Ordering::Relaxed);
    // Interface names are at most 15 bytes: "tlw" + 7 digits + 2 letters + "u" fits.
    format!(
        "tlw{}{}{}",
        std::process::id() % 10_000_000,
        char::from(b'a' + u8::try_from(k / 26 % 26).unwrap_or(0)),
        char::from(b'a' + u8::try_from(k % 26).unwrap_or(0))
    )
}

/// Whether this machine can host the bed: root, `ip`, `iptables`, and a network namespace can
/// be created (it is removed again). The error says what is missing.
pub fn check_facilities() -> Result<(), String> {
    for tool in [["ip", "-V"], ["iptables", "-V"]] {
        match Command::new(tool[0])
            .arg(tool[1])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(s) if s.success() => {}
            _ => return Err(format!("`{}` is not available", tool[0])),
        }
    }
    let probe = format!("{}-probe", fresh_prefix());
    run(&["ip", "netns", "add", &probe]).map_err(|e| {
        format!("cannot create a network namespace (root and CAP_SYS_ADMIN needed): {e}")
    })?;
    let ipt = run_in(
        &probe,
        &[
            "iptables",
            "-A",
            "INPUT",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.5",
            "-j",
            "DROP",
        ],
    );
    let _ = run(&["ip", "netns", "del", &probe]);
    ipt.map_err(|e| format!("iptables does not work in a namespace: {e}"))?;
    Ok(())
}

/// Whether the kernel has the netem qdisc (tried on a probe namespace's loopback).
pub fn netem_available() -> bool {
    let probe = format!("{}-probe", fresh_prefix());
    if run(&["ip", "netns", "add", &probe]).is_err() {
        return false;
    }
    let ok = run_in(&probe, &["ip", "link", "set", "lo", "up"]).is_ok()
        && run_in(
            &probe,
            &[
                "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
            ],
        )
        .is_ok();
    let _ = run(&["ip", "netns", "del", &probe]);
    ok
}

/// The namespaces, links and addresses of one run; removed on drop.
#[derive(Debug)]
struct Netns {
    prefix: String,
    subnet: u8,
    nodes: usize,
    created: Vec<String>,
}

impl Netns {
    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    fn node(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, u8::try_from(i + 1).expect("few nodes"))
    }

    fn harness_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 254)
    }

    fn relay_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 253)
    }

    fn create(nodes: usize) -> anyhow::Result<Self> {
        ensure!((1..=200).contains(&nodes), "1 to 200 nodes, not {nodes}");
        let used = run(&["ip", "-4", "-o", "addr"])?;
        let start = u8::try_from(std::process::id() % 200).unwrap_or(0) + 20;
        let subnet = (0..250u16)
            .map(|k| u8::try_from((u16::from(start) + k) % 250 + 1).unwrap_or(1))
            .find(|x| !used.contains(&format!("10.77.{x}.")))
            .context("no free 10.77.x.0/24 subnet")?;
        let mut net = Self {
            prefix: fresh_prefix(),
            subnet,
            nodes,
            created: Vec::new(),
        };
        net.build().inspect_err(|_| net.remove())?;
        Ok(net)
    }

    fn add_ns(&mut self, name: String) -> anyhow::Result<()> {
        run(&["ip", "netns", "add", &name])?;
        run_in(&name, &["ip", "link", "set", "lo", "up"])?;
        self.created.push(name);
        Ok(())
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let hub = self.hub();
        self.add_ns(hub.clone())?;
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        let up = format!("{}u", self.prefix);
        run(&[
            "ip",
            "link",
            "add",
            &self.prefix,
            "type",
            "veth",
            "peer",
            "name",
            &up,
            "netns",
            &hub,
        ])?;
        run(&["ip", "-n", &hub, "link", "set", &up, "master", "br0", "up"])?;
        for ip in [self.harness_ip(), self.relay_ip()] {
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                &self.prefix,
            ])?;
        }
        run(&["ip", "link", "set", &self.prefix, "up"])?;
        for i in 0..self.nodes {
            let ns = self.node(i);
            self.add_ns(ns.clone())?;
            let port = format!("p{i}");
            run(&[
                "ip", "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            run(&[
                "ip", "-n", &hub, "link", "set", &port, "master", "br0", "up",
            ])?;
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.ip(i)),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    fn remove(&mut self) {
        // Deleting a namespace deletes its interfaces, their veth peers and its iptables rules.
        for ns in self.created.drain(..).rev() {
            let _ = run(&["ip", "netns", "del", &ns]);
        }
        let _ = run(&["ip", "link", "del", &self.prefix]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A one-way delay stage: `d` ± `jitter`, in order.
#[derive(Clone, Copy, Debug)]
struct Stage {
    delay: Duration,
    jitter: Duration,
}

/// Copies `r` to `w`, delivering each chunk `stage` after it was read, never before the chunk
/// read before it.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    stage: Stage,
    seed: u64,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Option<Vec<u8>>)>(512);
    let reader = async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut last = tokio::time::Instant::now();
        let j = u64::try_from(stage.jitter.as_micros()).unwrap_or(0);
        loop {
            let mut buf = vec![0u8; 32 * 1024];
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n);
            let base = tokio::time::Instant::now() + stage.delay;
            let at = if j == 0 {
                base
            } else {
                let k = rng.random_range(0..=2 * j);
                (base + Duration::from_micros(k))
                    .checked_sub(stage.jitter)
                    .unwrap_or(base)
            };
            last = last.max(at);
            if tx.send((last, Some(buf))).await.is_err() {
                return;
            }
        }
        let _ = tx.send((last, None)).await;
    };
    let writer = async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            match data {
                Some(b) => {
                    if w.write_all(&b).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = w.shutdown().await;
                    return;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

/// Serves link `from → to`: accepts what `from` dialled and connects to `to` from `bind`.
async fn serve_link(
    listener: tokio::net::TcpListener,
    to: SocketAddr,
    bind: Ipv4Addr,
    fwd: Stage,
    back: Stage,
    seed: u64,
) {
    let mut n = 0u64;
    while let Ok((client, _)) = listener.accept().await {
        n += 1;
        let s = seed.wrapping_mul(1_000_003).wrapping_add(n);
        tokio::spawn(async move {
            let Ok(sock) = tokio::net::TcpSocket::new_v4() else {
                return;
            };
            if sock
                .bind(SocketAddr::V4(SocketAddrV4::new(bind, 0)))
                .is_err()
            {
                return;
            }
            let Ok(server) = sock.connect(to).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(pump(cr, sw, fwd, s), pump(sr, cw, back, s ^ 0x5a5a));
        });
    }
}

/// A node process in its namespace.
#[derive(Debug)]
struct BedNode {
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl BedNode {
    fn start(ns: &str, binary: &Path, args: &[String]) -> anyhow::Result<Self> {
        // `ip netns exec` enters the namespace and execs the node: the child's pid is the
        // node's, so kill -9 reaches it.
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(binary)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("TWINLEDGER_TEST_LOG")
                    .unwrap_or_else(|_| "warn,twinledger_node=info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning twinledger-node in its namespace")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = tail.clone();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let echo = std::env::var_os("TWINLEDGER_TEST_LOG").is_some();
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.trim().starts_with("API") {
                    let _ = tx.send(());
                }
                if echo {
                    #[allow(clippy::print_stderr)]
                    {
                        eprintln!("{line}");
                    }
                }
                if !line.contains("Send Queue full") {
                    let mut t = keep.lock().expect("tail");
                    if t.len() == 40 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the node in {ns} did not print its API address within 60 s");
        }
        Ok(Self { child, tail })
    }

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        run(&["kill", sig, &self.child.id().to_string()]).map(drop)
    }
}

impl Drop for BedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The running bed: namespaces, relays, nodes.
#[derive(Debug)]
pub struct WanBed {
    // Declared first: dropped (killed) before the namespaces are removed.
    nodes: Mutex<Vec<Option<BedNode>>>,
    stopped: Mutex<Vec<bool>>,
    relays: Vec<JoinHandle<()>>,
    net: Netns,
    /// The devnet's files.
    pub devnet: Devnet,
    /// The ledger genesis.
    pub genesis: Genesis,
    /// The chain.
    pub chain: ChainId,
    cfg: WanConfig,
    mechanism: Mechanism,
    /// One-way delay of each link, ms (`delays[i][j]`, symmetric; netem: node i's egress).
    pub delays: Vec<Vec<u64>>,
    auditor: Keypair,
    org: Keypair,
    http: reqwest::Client,
    nonce: AtomicU64,
    /// iptables rules added by [`WanBed::isolate`] / [`WanBed::set_uplink_loss`], per node.
    extra_rules: Mutex<HashMap<usize, Vec<Vec<String>>>>,
    /// Events accepted by some node.
    pub submitted: AtomicU64,
}

impl WanBed {
    /// Builds the bed in `dir` (devnet files), starts every node, and waits until every node
    /// answers its API.
    pub async fn start(dir: &Path, cfg: WanConfig) -> anyhow::Result<Self> {
        let mechanism = match cfg.mechanism {
            Some(m) => m,
            None if netem_available() => Mechanism::Netem,
            None => Mechanism::Relay,
        };
        let n = cfg.validators;
        let net = Netns::create(n)?;
        let devnet = devnet::create(dir, n, 0)?;
        // The genesis names the namespace addresses and the benchmark's block size; the dev
        // key files are re-marked with the new chain id.
        let mut g = twinledger_genesis::GenesisFile::load(&devnet.genesis_path)?;
        for (i, v) in g.validators.iter_mut().enumerate() {
            v.listen_addr = format!("/ip4/{}/tcp/{P2P_PORT}", net.ip(i));
        }
        g.limits.max_events_per_block = cfg.max_events_per_block;
        g.limits.mempool_size = 1_000_000;
        g.save(&devnet.genesis_path)?;
        let chain = g.chain_id()?;
        let genesis = g.ledger_genesis()?;
        let mut auditor = None;
        let mut org = None;
        let paths: Vec<(String, PathBuf)> = devnet
            .nodes
            .iter()
            .map(|d| (d.name.clone(), d.key_path.clone()))
            .chain(
                devnet
                    .user_keys
                    .iter()
                    .map(|k| (k.role.clone(), k.path.clone())),
            )
            .collect();
        for (role, path) in paths {
            let key = keyfile::read(&path)?;
            std::fs::remove_file(&path)?;
            keyfile::write_dev(&path, &key, chain, "DEV ONLY: WAN test bed key")?;
            if role.starts_with("auditor") {
                auditor = Some(key.clone());
            }
            if role == "organisation Hospital 0" {
                org = Some(key);
            }
        }
        // Link delays, drawn once per unordered pair (netem: per node).
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let (lo, hi) = cfg.delay_ms;
        ensure!(lo <= hi, "delay range {lo}-{hi} ms is empty");
        let mut delays = vec![vec![0u64; n]; n];
        #[allow(clippy::needless_range_loop)] // a symmetric matrix, filled by index
        for i in 0..n {
            for j in i + 1..n {
                let d = rng.random_range(lo..=hi);
                delays[i][j] = d;
                delays[j][i] = d;
            }
            if mechanism == Mechanism::Netem {
                delays[i][i] = rng.random_range(lo..=hi);
            }
        }
        let mut bed = Self {
            nodes: Mutex::new((0..n).map(|_| None).collect()),
            stopped: Mutex::new(vec![false; n]),
            relays: Vec::new(),
            net,
            devnet,
            genesis,
            chain,
            mechanism,
            delays,
            auditor: auditor.context("the devnet has no auditor key")?,
            org: org.context("the devnet has no Hospital 0 key")?,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()?,
            nonce: AtomicU64::new(0),
            extra_rules: Mutex::new(HashMap::new()),
            submitted: AtomicU64::new(0),
            cfg,
        };
        bed.shape().await?;
        for i in 0..n {
            bed.start_node(i)?;
        }
        Ok(bed)
    }

    /// The delay mechanism in use.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.cfg.validators
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.cfg.validators == 0
    }

    /// The configuration.
    pub fn config(&self) -> &WanConfig {
        &self.cfg
    }

    /// Where node `i`'s peers' packets come from, as its namespace sees them.
    fn peer_sources(&self, i: usize) -> Vec<String> {
        match self.mechanism {
            Mechanism::Relay => vec![self.net.relay_ip().to_string()],
            Mechanism::Netem => (0..self.len())
                .filter(|&j| j != i)
                .map(|j| self.net.ip(j).to_string())
                .collect(),
        }
    }

    /// Delay (netem or relays) and base loss.
    async fn shape(&mut self) -> anyhow::Result<()> {
        let n = self.len();
        let j = self.cfg.jitter_ms;
        for i in 0..n {
            let ns = self.net.node(i);
            if self.mechanism == Mechanism::Netem {
                run_in(
                    &ns,
                    &[
                        "tc",
                        "qdisc",
                        "add",
                        "dev",
                        "eth0",
                        "root",
                        "netem",
                        "delay",
                        &format!("{}ms", self.delays[i][i]),
                        &format!("{j}ms"),
                    ],
                )?;
            }
            if self.cfg.loss > 0.0 {
                for src in self.peer_sources(i) {
                    run_in(
                        &ns,
                        &[
                            "iptables",
                            "-A",
                            "INPUT",
                            "-s",
                            &src,
                            "-m",
                            "statistic",
                            "--mode",
                            "random",
                            "--probability",
                            &format!("{}", self.cfg.loss),
                            "-j",
                            "DROP",
                        ],
                    )?;
                }
            }
        }
        if self.mechanism == Mechanism::Relay {
            let relay_ip = self.net.relay_ip();
            for from in 0..n {
                for to in 0..n {
                    if from == to {
                        continue;
                    }
                    let listener =
                        tokio::net::TcpListener::bind(SocketAddrV4::new(relay_ip, 0)).await?;
                    let port = listener.local_addr()?.port();
                    let stage = Stage {
                        delay: Duration::from_millis(self.delays[from][to]),
                        jitter: Duration::from_millis(j),
                    };
                    let target = SocketAddr::V4(SocketAddrV4::new(self.net.ip(to), P2P_PORT));
                    let seed = self.cfg.seed ^ ((from as u64) << 32 | to as u64);
                    self.relays.push(tokio::spawn(serve_link(
                        listener, target, relay_ip, stage, stage, seed,
                    )));
                    run_in(
                        &self.net.node(from),
                        &[
                            "iptables",
                            "-t",
                            "nat",
                            "-A",
                            "OUTPUT",
                            "-p",
                            "tcp",
                            "-d",
                            &self.net.ip(to).to_string(),
                            "--dport",
                            &P2P_PORT.to_string(),
                            "-j",
                            "DNAT",
                            "--to-destination",
                            &format!("{relay_ip}:{port}"),
                        ],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// A one-line description of the links: mechanism, delay range, jitter, loss, and the
    /// drawn delays.
    pub fn describe(&self) -> String {
        let mut links = Vec::new();
        for i in 0..self.len() {
            for j in i + 1..self.len() {
                if self.mechanism == Mechanism::Relay {
                    links.push(format!("{i}-{j}:{}ms", self.delays[i][j]));
                }
            }
            if self.mechanism == Mechanism::Netem {
                links.push(format!("{i}:{}ms", self.delays[i][i]));
            }
        }
        format!(
            "{} validators, {}; one-way delay {}-{} ms (drawn: {}), jitter ±{} ms, loss {}% per direction (iptables statistic DROP)",
            self.len(),
            self.mechanism,
            self.cfg.delay_ms.0,
            self.cfg.delay_ms.1,
            links.join(" "),
            self.cfg.jitter_ms,
            self.cfg.loss * 100.0
        )
    }

    fn api(&self, i: usize) -> String {
        format!("http://{}:{API_PORT}", self.net.ip(i))
    }

    /// Starts node `i` (again) in its namespace.
    pub fn start_node(&self, i: usize) -> anyhow::Result<()> {
        let d = &self.devnet.nodes[i];
        let args: Vec<String> = vec![
            "--genesis".into(),
            self.devnet.genesis_path.display().to_string(),
            "--validator-key".into(),
            d.key_path.display().to_string(),
            "--data-dir".into(),
            d.data_dir.display().to_string(),
            "--listen".into(),
            format!("{}:{API_PORT}", self.net.ip(i)),
            // The bed's private subnet inside the sandbox: plain HTTP off loopback on purpose.
            "--insecure-http".into(),
            "--rate-limit".into(),
            "0".into(),
            "--rate-limit-per-key".into(),
            "0".into(),
        ];
        let p = BedNode::start(&self.net.node(i), &self.cfg.node_binary, &args)?;
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(p);
        self.stopped.lock().unwrap_or_else(PoisonError::into_inner)[i] = false;
        Ok(())
    }

    /// kill -9 of node `i`.
    pub fn kill9(&self, i: usize) {
        let p = self.nodes.lock().unwrap_or_else(PoisonError::into_inner)[i].take();
        if let Some(mut p) = p {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        self.stopped.lock().unwrap_or_else(PoisonError::into_inner)[i] = false;
    }

    /// SIGSTOP (`stop`) or SIGCONT (`!stop`) to node `i`.
    pub fn pause(&self, i: usize, stop: bool) -> anyhow::Result<()> {
        if let Some(p) = &self.nodes.lock().unwrap_or_else(PoisonError::into_inner)[i] {
            p.signal(if stop { "-STOP" } else { "-CONT" })?;
            self.stopped.lock().unwrap_or_else(PoisonError::into_inner)[i] = stop;
        }
        Ok(())
    }

    /// Whether node `i` runs and is not stopped.
    pub fn is_live(&self, i: usize) -> bool {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)[i].is_some()
            && !self.stopped.lock().unwrap_or_else(PoisonError::into_inner)[i]
    }

    /// Node `i`'s last log lines.
    pub fn log_tail(&self, i: usize) -> String {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)[i]
            .as_ref()
            .map_or_else(String::new, |p| {
                p.tail
                    .lock()
                    .expect("tail")
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }

    fn add_rules(&self, i: usize, rules: Vec<Vec<String>>) -> anyhow::Result<()> {
        let ns = self.net.node(i);
        for r in &rules {
            let mut cmd = vec!["iptables", "-I"];
            cmd.extend(r.iter().map(String::as_str));
            run_in(&ns, &cmd)?;
        }
        self.extra_rules
            .lock()
            .expect("rules")
            .entry(i)
            .or_default()
            .extend(rules);
        Ok(())
    }

    /// Removes every rule [`WanBed::isolate`] and [`WanBed::set_uplink_loss`] added to node
    /// `i` (the base delay and loss stay).
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        let rules = self
            .extra_rules
            .lock()
            .expect("rules")
            .remove(&i)
            .unwrap_or_default();
        let ns = self.net.node(i);
        for r in &rules {
            let mut cmd = vec!["iptables", "-D"];
            // "-I CHAIN 1 ..." was added; "-D CHAIN ..." removes it.
            cmd.push(&r[0]);
            cmd.extend(r[2..].iter().map(String::as_str));
            run_in(&ns, &cmd)?;
        }
        Ok(())
    }

    /// A real partition: drops every packet between node `i` and its peers, both ways (its
    /// API stays reachable from the harness). [`WanBed::heal`] ends it.
    pub fn isolate(&self, i: usize) -> anyhow::Result<()> {
        let mut rules = Vec::new();
        for src in self.peer_sources(i) {
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                rules.push(
                    [chain, "1", dir, &src, "-j", "DROP"]
                        .map(String::from)
                        .to_vec(),
                );
            }
        }
        self.add_rules(i, rules)
    }

    /// A lossy uplink: drops `p` of node `i`'s peer packets, each way, on top of the base loss.
    pub fn set_uplink_loss(&self, i: usize, p: f64) -> anyhow::Result<()> {
        let mut rules = Vec::new();
        let p = format!("{p}");
        for src in self.peer_sources(i) {
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                rules.push(
                    [
                        chain,
                        "1",
                        dir,
                        &src,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &p,
                        "-j",
                        "DROP",
                    ]
                    .map(String::from)
                    .to_vec(),
                );
            }
        }
        self.add_rules(i, rules)
    }

    /// Node `i`'s TCP connections (`ss -tin` in its namespace): how many, the highest
    /// retransmission backoff, the highest RTO in ms. Zeros if `ss` fails.
    pub fn tcp_stats(&self, i: usize) -> (usize, u64, f64) {
        let Ok(out) = run_in(&self.net.node(i), &["ss", "-tin", "state", "established"]) else {
            return (0, 0, 0.0);
        };
        let field = |line: &str, name: &str| -> Option<f64> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .and_then(|v| v.parse().ok())
        };
        let (mut n, mut backoff, mut rto) = (0, 0u64, 0f64);
        for line in out.lines().filter(|l| l.contains("rto:")) {
            n += 1;
            backoff = backoff.max(
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix("backoff:"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            );
            rto = rto.max(field(line, "rto:").unwrap_or(0.0));
        }
        (n, backoff, rto)
    }

    /// `/health` of node `i` (None: down or unreachable).
    pub async fn health(&self, i: usize) -> Option<serde_json::Value> {
        if !self.is_live(i) {
            return None;
        }
        let r = self
            .http
            .get(format!("{}/health", self.api(i)))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// Committed height of node `i` (0 if unreachable).
    pub async fn height(&self, i: usize) -> u64 {
        self.health(i)
            .await
            .map_or(0, |v| v["height"].as_u64().unwrap_or(0))
    }

    /// Events in node `i`'s log (0 if unreachable).
    pub async fn log_size(&self, i: usize) -> u64 {
        self.health(i)
            .await
            .map_or(0, |v| v["log_size"].as_u64().unwrap_or(0))
    }

    /// Every node's height.
    pub async fn heights(&self) -> Vec<u64> {
        let mut v = Vec::new();
        for i in 0..self.len() {
            v.push(self.height(i).await);
        }
        v
    }

    /// Waits until `ok` holds, polling every 50 ms; an error naming `what` after `deadline`.
    pub async fn wait_for(
        &self,
        what: &str,
        deadline: Duration,
        mut ok: impl AsyncFnMut(&Self) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            if ok(self).await {
                return Ok(start.elapsed());
            }
            ensure!(
                start.elapsed() < deadline,
                "timed out after {deadline:?} waiting for: {what} (heights {:?})",
                self.heights().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every node in `which` has committed height `h`.
    pub async fn wait_at(
        &self,
        which: &[usize],
        h: u64,
        deadline: Duration,
    ) -> anyhow::Result<Duration> {
        let which = which.to_vec();
        self.wait_for(
            &format!("nodes {which:?} at height {h}"),
            deadline,
            async |b| {
                for &i in &which {
                    if b.height(i).await < h {
                        return false;
                    }
                }
                true
            },
        )
        .await
    }

    /// Block `h` of node `i`, read as the devnet's auditor.
    pub async fn block(&self, i: usize, h: u64) -> anyhow::Result<CommittedBlock> {
        let path = format!("/v1/blocks/{h}");
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&now().0.to_be_bytes());
        nonce[8..].copy_from_slice(&self.nonce.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let auth = RequestAuth::sign(&self.auditor, &self.chain, "GET", &path, b"", now(), nonce);
        let mut req = self.http.get(format!("{}{path}", self.api(i)));
        for (h, v) in auth.headers() {
            req = req.header(h, v);
        }
        let r = req.send().await?;
        ensure!(r.status() == 200, "block {h} of node {i}: {}", r.status());
        let v: serde_json::Value = r.json().await?;
        let bytes = hex::decode(v["bytes_hex"].as_str().context("bytes_hex")?)?;
        Ok(codec::decode("block", &bytes, 1 << 30)?)
    }

    /// The hash of block `h` on every node in `which`; an error if two differ.
    pub async fn agree_at(&self, which: &[usize], h: u64) -> anyhow::Result<Hash> {
        let mut seen: Option<Hash> = None;
        for &i in which {
            let b = self.block(i, h).await?;
            let hash = b.block.header.hash();
            if let Some(s) = seen {
                ensure!(
                    s == hash,
                    "FORK: node {i} holds another block at height {h}"
                );
            }
            seen = Some(hash);
        }
        seen.context("no node")
    }

    /// Submits hex-encoded events to node `i` as one batch; retries while the node answers
    /// 503 (deadline 60 s). Errors on any other refusal.
    pub async fn submit_batch(&self, i: usize, events: &[String]) -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .http
                .post(format!("{}/v1/events/batch", self.api(i)))
                .json(&json!({ "events": events }))
                .send()
                .await?;
            if r.status() == 503 && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            ensure!(r.status() == 200, "batch to node {i}: {}", r.status());
            self.submitted
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
    }

    /// Submits one event to node `i`; whether it was accepted (202).
    pub async fn submit(&self, i: usize, ev: &SignedEvent) -> bool {
        if !self.is_live(i) {
            return false;
        }
        let ok = matches!(
            self.http
                .post(format!("{}/v1/events", self.api(i)))
                .json(&json!({"event": hex::encode(ev.to_bytes())}))
                .send()
                .await,
            Ok(r) if r.status() == 202
        );
        if ok {
            self.submitted.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Signs `range` fresh patients' consent grants (as the `bft` benchmark does), on a
    /// blocking thread.
    pub async fn grants(&self, label: &str, range: std::ops::Range<u64>) -> Vec<SignedEvent> {
        let (chain, org, label) = (self.chain, self.org.clone(), label.to_owned());
        tokio::task::spawn_blocking(move || range.map(|i| grant(chain, &label, i, &org)).collect())
            .await
            .expect("signing thread")
    }

    /// Stops every process, re-opens every store as a new node would (every signature,
    /// certificate and block re-executed), replays each store through the auditor, checks
    /// that blocks are identical at every height two stores share and that no misbehaviour was
    /// recorded (as `procnet::ProcNet::stop_and_verify`). Returns the tips.
    pub fn stop_and_verify(&self) -> anyhow::Result<Vec<u64>> {
        self.stop_all();
        let dirs: Vec<(String, std::path::PathBuf)> = self
            .devnet
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.data_dir.clone()))
            .collect();
        Ok(crate::procnet::verify_stores(&self.genesis, &dirs)?.0)
    }
}

impl WanBed {
    /// Kills every node (a stopped one is continued first).
    pub fn stop_all(&self) {
        for i in 0..self.len() {
            if self.stopped.lock().map(|s| s[i]).unwrap_or(false) {
                let _ = self.pause(i, false);
            }
            self.kill9(i);
        }
    }
}

impl Drop for WanBed {
    fn drop(&mut self) {
        for r in &self.relays {
            r.abort();
        }
        self.stop_all();
        // `net` is dropped after this: the namespaces go.
    }
}

/// Patient `i`'s consent grant to `org` (keys from `label`), signed: the event of the `bft`
/// benchmark (`node/benches/common`).
pub fn grant(chain: ChainId, label: &str, i: u64, org: &Keypair) -> SignedEvent {
    twinledger_core::devkit::patient_grant(chain, label, i, &org.public(), now().plus_ms(3_600_000))
}

/// Saturation, as the `bft` benchmark's phase 1: every event in batches of 1,000, round-robin
/// over the nodes, four senders; from the first submission to the last event final on node 0.
#[derive(Clone, Copy, Debug)]
pub struct Saturation {
    /// Events.
    pub events: u64,
    /// Seconds to submit them.
    pub submit_secs: f64,
    /// Seconds until all were final on node 0.
    pub total_secs: f64,
    /// Node 0's height at the end.
    pub height: u64,
}

impl Saturation {
    /// Committed events a second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.total_secs
    }
}

/// Runs the saturation phase with `n` events labelled `label`.
pub async fn saturation(bed: &Arc<WanBed>, label: &str, n: u64) -> anyhow::Result<Saturation> {
    let events: Vec<String> = bed
        .grants(label, 0..n)
        .await
        .iter()
        .map(|e| hex::encode(e.to_bytes()))
        .collect();
    let base = bed.log_size(0).await;
    let start = Instant::now();
    let nodes = bed.len();
    let batches: Vec<(usize, Vec<String>)> = events
        .chunks(1000)
        .enumerate()
        .map(|(i, c)| (i % nodes, c.to_vec()))
        .collect();
    let queue = Arc::new(Mutex::new(batches));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (queue, bed) = (queue.clone(), bed.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().expect("queue").pop();
                let Some((node, batch)) = next else {
                    return Ok::<(), anyhow::Error>(());
                };
                bed.submit_batch(node, &batch).await?;
            }
        }));
    }
    for s in senders {
        s.await??;
    }
    let submit_secs = start.elapsed().as_secs_f64();
    bed.wait_for(
        "every saturation event final on node 0",
        Duration::from_secs(900),
        async |b| b.log_size(0).await >= base + n,
    )
    .await?;
    Ok(Saturation {
        events: n,
        submit_secs,
        total_secs: start.elapsed().as_secs_f64(),
        height: bed.height(0).await,
    })
}

/// Finality latency at a fixed offered rate, as the `bft` benchmark's phase 2.
#[derive(Clone, Debug)]
pub struct Latency {
    /// Events offered.
    pub offered: u64,
    /// Offered rate, events/s.
    pub rate: u64,
    /// Seconds the offering took.
    pub offered_secs: f64,
    /// Events seen final on node 0 within the deadline.
    pub seen: u64,
    /// Submissions refused or failed.
    pub refused: u64,
    /// Finality latency (ms): p50, p90, p99, max.
    pub p50: f64,
    /// p90.
    pub p90: f64,
    /// p99.
    pub p99: f64,
    /// max.
    pub max: f64,
}

/// Offers `rate` single-event submissions a second for `seconds`, round-robin over the nodes
/// `to`, and measures submission → the block holding the event committed on node 0 (node 0's
/// height polled every 5 ms and each new block read once, over its API).
pub async fn latency(
    bed: &Arc<WanBed>,
    label: &str,
    first: u64,
    rate: u64,
    seconds: u64,
    to: &[usize],
) -> anyhow::Result<Latency> {
    let m = rate * seconds;
    let events = bed.grants(label, first..first + m).await;
    let sent: Arc<Mutex<HashMap<EventId, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let refused = Arc::new(AtomicU64::new(0));
    // How many events the watcher waits for: unknown (all) until every submission answered.
    let expect = Arc::new(AtomicU64::new(u64::MAX));
    let watcher = {
        let (bed, sent, expect) = (bed.clone(), sent.clone(), expect.clone());
        tokio::spawn(async move {
            let mut lat: Vec<u64> = Vec::new();
            let mut next = bed.height(0).await + 1;
            let end = Instant::now() + Duration::from_secs(seconds + 120);
            while (lat.len() as u64) < expect.load(Ordering::Relaxed).min(m) && Instant::now() < end
            {
                let tip = bed.height(0).await;
                if tip < next {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let at = Instant::now();
                for h in next..=tip {
                    let Ok(b) = bed.block(0, h).await else {
                        continue;
                    };
                    let sent = sent.lock().expect("sent");
                    for ev in &b.block.events {
                        if let Some(t0) = sent.get(&ev.id()) {
                            lat.push(
                                u64::try_from(at.duration_since(*t0).as_micros())
                                    .unwrap_or(u64::MAX),
                            );
                        }
                    }
                }
                next = tip + 1;
            }
            lat
        })
    };
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let offered = Instant::now();
    let mut tasks = Vec::new();
    for (k, ev) in events.into_iter().enumerate() {
        tick.tick().await;
        let (bed, sent, refused) = (bed.clone(), sent.clone(), refused.clone());
        let node = to[k % to.len()];
        sent.lock().expect("sent").insert(ev.id(), Instant::now());
        tasks.push(tokio::spawn(async move {
            if !bed.submit(node, &ev).await {
                refused.fetch_add(1, Ordering::Relaxed);
                sent.lock().expect("sent").remove(&ev.id());
            }
        }));
    }
    let offered_secs = offered.elapsed().as_secs_f64();
    for t in tasks {
        t.await?;
    }
    let refused = refused.load(Ordering::Relaxed);
    expect.store(m - refused, Ordering::Relaxed);
    let mut lat = watcher.await?;
    lat.sort_unstable();
    // Nearest rank, `per_mille` of 1,000.
    let q = |per_mille: usize| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let idx = ((lat.len() - 1) * per_mille + 500) / 1000;
        lat[idx.min(lat.len() - 1)] as f64 / 1000.0
    };
    Ok(Latency {
        offered: m,
        rate,
        offered_secs,
        seen: lat.len() as u64,
        refused,
        p50: q(500),
        p90: q(900),
        p99: q(990),
        max: lat.last().map_or(0.0, |&v| v as f64 / 1000.0),
    })
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events offered at {}/s over {:.2} s ({} refused), {} final on node 0; finality p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.offered,
            self.rate,
            self.offered_secs,
            self.refused,
            self.seen,
            self.p50,
            self.p90,
            self.p99,
            self.max
        )
    }
}

/// What a partition run showed.
#[derive(Clone, Debug)]
pub struct PartitionReport {
    /// The isolated node.
    pub isolated: usize,
    /// How long it was cut off.
    pub hold: Duration,
    /// Blocks the others committed meanwhile.
    pub majority_blocks: u64,
    /// Events the others committed meanwhile.
    pub majority_events: u64,
    /// Blocks the isolated node committed meanwhile (0 expected: no quorum alone).
    pub isolated_blocks: u64,
    /// From the heal until the isolated node reached the others' height at the heal.
    pub catch_up: Duration,
    /// From the heal until the isolated node was within one height of the others (who keep
    /// committing meanwhile).
    pub in_step: Duration,
    /// The isolated node's TCP connections just before the heal (`ss -tin` in its namespace):
    /// how many there were, the highest retransmission backoff and the highest RTO (ms).
    pub tcp_at_heal: (usize, u64, f64),
    /// The height at which every node was checked to hold the same block.
    pub agreed_at: u64,
}

impl std::fmt::Display for PartitionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} isolated for {:.0} s: the others committed {} blocks ({} events) meanwhile, the isolated node {}; after the heal it reached the others' height at the heal in {:.2} s and was within one height of them after {:.2} s; every node holds the same block at height {}; at the heal its {} TCP connections had retransmission backoff up to {} and RTO up to {:.0} ms",
            self.isolated,
            self.hold.as_secs_f64(),
            self.majority_blocks,
            self.majority_events,
            self.isolated_blocks,
            self.catch_up.as_secs_f64(),
            self.in_step.as_secs_f64(),
            self.agreed_at,
            self.tcp_at_heal.0,
            self.tcp_at_heal.1,
            self.tcp_at_heal.2,
        )
    }
}

/// Isolates node `isolated` for `hold` while `rate` events a second go to the other nodes;
/// then heals it, waits until it has caught up, and checks that every node holds the same
/// block at the top common height. Errors if the others made no progress, if the isolated node
/// committed alone, or on a fork.
pub async fn partition(
    bed: &Arc<WanBed>,
    isolated: usize,
    hold: Duration,
    rate: u64,
    label: &str,
) -> anyhow::Result<PartitionReport> {
    let others: Vec<usize> = (0..bed.len()).filter(|&i| i != isolated).collect();
    let all: Vec<usize> = (0..bed.len()).collect();
    let h0 = bed.height(others[0]).await;
    bed.wait_at(&all, h0, Duration::from_secs(60)).await?;
    bed.isolate(isolated)?;
    let iso0 = bed.height(isolated).await;
    let maj0 = bed.height(others[0]).await;
    let log0 = bed.log_size(others[0]).await;
    let n = (rate * hold.as_secs()).max(1);
    let events = bed.grants(label, 0..n).await;
    let start = Instant::now();
    let period = Duration::from_secs_f64(hold.as_secs_f64() / n as f64);
    let mut tick = tokio::time::interval(period);
    for (k, ev) in events.iter().enumerate() {
        tick.tick().await;
        bed.submit(others[k % others.len()], ev).await;
    }
    if let Some(rest) = hold.checked_sub(start.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let maj1 = bed.height(others[0]).await;
    let log1 = bed.log_size(others[0]).await;
    let iso1 = bed.height(isolated).await;
    ensure!(
        maj1 > maj0,
        "the {} connected validators made no progress while node {isolated} was isolated (height {maj0} → {maj1})",
        others.len()
    );
    let tcp_at_heal = bed.tcp_stats(isolated);
    bed.heal(isolated)?;
    let healed = Instant::now();
    let catch_up = bed
        .wait_at(&[isolated], maj1, Duration::from_secs(300))
        .await?;
    let o = others[0];
    bed.wait_for(
        "the isolated node within one height of the others",
        Duration::from_secs(300),
        async |b| b.height(isolated).await + 1 >= b.height(o).await,
    )
    .await?;
    let in_step = healed.elapsed();
    let top = bed.height(isolated).await.min(bed.height(others[0]).await);
    bed.wait_at(&all, top, Duration::from_secs(60)).await?;
    bed.agree_at(&all, top).await?;
    Ok(PartitionReport {
        isolated,
        hold,
        majority_blocks: maj1 - maj0,
        majority_events: log1 - log0,
        isolated_blocks: iso1.saturating_sub(iso0),
        catch_up,
        in_step,
        tcp_at_heal,
        agreed_at: top,
    })
}

/// What a kill -9 soak on the bed showed.
#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    /// Fault cycles run.
    pub cycles: u64,
    /// Recovery times (from the heal until every validator committed a height above the top at
    /// the heal), sorted.
    pub recoveries: Vec<Duration>,
    /// Events accepted.
    pub submitted: u64,
    /// The tips of the verified stores at the end.
    pub tips: Vec<u64>,
}

/// The kill -9 soak of `tests/tests/soak.rs` on the bed: per cycle, one fault chosen from
/// `seed` (kill -9 of one validator, of two, or SIGSTOP of one) held 1–4 s under about 40
/// events a second to the live validators, then healed; every validator must then commit a
/// new height within 120 s. At the end every store is re-verified and compared
/// ([`WanBed::stop_and_verify`]).
pub async fn kill_soak(bed: &Arc<WanBed>, cycles: u64, seed: u64) -> anyhow::Result<SoakReport> {
    let n = bed.len();
    let all: Vec<usize> = (0..n).collect();
    bed.wait_at(&all, 2, Duration::from_secs(120)).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = SoakReport::default();
    let mut next_event = 0u64;
    for cycle in 0..cycles {
        let a = rng.random_range(0..n);
        let b = (a + rng.random_range(1..n)) % n;
        let kind = rng.random_range(0..3);
        match kind {
            0 => bed.kill9(a),
            1 => {
                bed.kill9(a);
                bed.kill9(b);
            }
            _ => bed.pause(a, true)?,
        }
        let hold = Duration::from_millis(rng.random_range(1000..4000));
        let end = Instant::now() + hold;
        let events = bed
            .grants(
                "soak",
                next_event..next_event + u64::try_from(hold.as_millis() / 25).unwrap_or(160) + 1,
            )
            .await;
        next_event += events.len() as u64;
        for (k, ev) in events.iter().enumerate() {
            if Instant::now() > end {
                break;
            }
            let live: Vec<usize> = (0..n).filter(|&i| bed.is_live(i)).collect();
            if !live.is_empty() {
                bed.submit(live[k % live.len()], ev).await;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        match kind {
            0 => bed.start_node(a)?,
            1 => {
                bed.start_node(a)?;
                bed.start_node(b)?;
            }
            _ => bed.pause(a, false)?,
        }
        let mut top = 0;
        for i in 0..n {
            top = top.max(bed.height(i).await);
        }
        let took = bed
            .wait_at(&all, top + 1, Duration::from_secs(120))
            .await
            .with_context(|| format!("soak seed {seed} cycle {cycle}: permanent halt"))?;
        report.recoveries.push(took);
        report.cycles += 1;
    }
    report.submitted = bed.submitted.load(Ordering::Relaxed);
    report.recoveries.sort();
    let mut top = 0;
    for i in 0..n {
        top = top.max(bed.height(i).await);
    }
    bed.wait_at(&all, top, Duration::from_secs(120)).await?;
    report.tips = bed.stop_and_verify()?;
    Ok(report)
}

/// The `pct`-th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) * pct + 50) / 100;
    sorted[idx.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relay's delay stage (used where the kernel has no netem): every byte arrives no
    /// sooner than the one-way delay minus the jitter after it was sent, and in order.
    #[tokio::test]
    async fn the_relay_stage_delays_every_chunk_and_keeps_order() {
        let delay = Duration::from_millis(40);
        let jitter = Duration::from_millis(10);
        let stage = Stage { delay, jitter };
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = l.local_addr().unwrap();
        let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let via = relay.local_addr().unwrap();
        let server = tokio::spawn(serve_link(relay, to, Ipv4Addr::LOCALHOST, stage, stage, 7));
        let mut client = tokio::net::TcpStream::connect(via).await.unwrap();
        client.set_nodelay(true).unwrap();
        let (mut peer, _) = l.accept().await.unwrap();
        let mut sent = Vec::new();
        let mut got = Vec::new();
        for k in 0..20u8 {
            sent.push(Instant::now());
            client.write_all(&[k]).await.unwrap();
            let mut b = [0u8; 1];
            peer.read_exact(&mut b).await.unwrap();
            got.push((b[0], sent[usize::from(k)].elapsed()));
        }
        for (k, (byte, took)) in got.iter().enumerate() {
            assert_eq!(usize::from(*byte), k, "out of order");
            assert!(*took >= delay - jitter, "byte {k} arrived after {took:?}");
        }
        // Back the other way too.
        let t = Instant::now();
        peer.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        client.read_exact(&mut b).await.unwrap();
        assert!(t.elapsed() >= delay - jitter);
        server.abort();
    }
}
