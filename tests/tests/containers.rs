//! The container image and the compose network of `node/deploy/container/`: four hospitals
//! (validators) and an observer, each in its own container on a private Docker network.
//!
//! `health_subcommand_exits_0_on_200_and_1_otherwise` needs no Docker: the image's HEALTHCHECK
//! (`twinledger-node health`) against a running node.
//!
//! `compose_network_survives_kill_pause_partition_and_refuses_a_stranger` skips, saying so,
//! when `docker info` or `docker-compose version` fails, or when the test cannot give files to
//! the containers' user (uid 10001). Otherwise, in order (each step waits on a condition with a
//! deadline):
//! 1. builds the image FROM scratch (`build-image.sh`, nothing pulled) from this build's
//!    `twinledger-node`, makes a genesis whose p2p addresses are the containers' names
//!    (`/dns4/hospital-<i>/tcp/7700`), and brings the network up under a project name of its
//!    own, each API published on 127.0.0.1 on a port the OS picks;
//! 2. every node answers /health 200, Docker reports every container `healthy` (the health
//!    check is the node binary itself), and it runs as uid 10001;
//! 3. a sixth container with a key outside the genesis joins the network: it is refused at the
//!    handshake, gets no block, and what is submitted to it never reaches the chain;
//! 4. signed events submitted to every hospital become final on all five;
//! 5. `docker kill` (SIGKILL) one hospital: the other three keep committing; started again, it
//!    catches up;
//! 6. `docker pause` one: the others commit; unpaused, it catches up;
//! 7. `docker network disconnect` one (a real partition): the other three commit; reconnected
//!    under its name, it catches up;
//! 8. all five serve the same block at a common height; stopped, every store re-verifies in
//!    full (`Chain::open` re-checking every signature and certificate, then the auditor's replay
//!    of its export) and the stores agree block by block.
//!
//! Whatever happens, `docker-compose down -v`, the stranger and the image are removed (a Drop
//! guard).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twinledger_core::devkit::patient_grant;
use twinledger_core::request::RequestAuth;
use twinledger_core::{ChainId, Genesis, Keypair, PublicKey};
use twinledger_node::chain::now;
use twinledger_node::{devnet, keyfile};
use twinledger_tests::procnet::exclusive;
use twinledger_tests::{NodeProcess, node_binary};

/// The containers' user (the image's `USER`).
const NODE_UID: &str = "10001";

fn container_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/deploy/container")
}

/// Runs a command; its stdout, or an error with its stderr.
fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why this machine cannot run the container test, if it cannot.
fn docker_missing() -> Option<String> {
    if let Err(e) = run(Command::new("docker").arg("info")) {
        return Some(format!("`docker info` failed: {e}"));
    }
    if let Err(e) = run(Command::new("docker-compose").arg("version")) {
        return Some(format!("`docker-compose version` failed: {e}"));
    }
    None
}

#[test]
fn health_subcommand_exits_0_on_200_and_1_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_dev(dir.path(), &[]).unwrap();
    let bin = node_binary().unwrap();
    let probe = |url: &str| {
        Command::new(&bin)
            .args(["health", "--url", url, "--timeout", "5"])
            .output()
            .unwrap()
    };
    let live = probe(&node.url("/live"));
    assert!(live.status.success(), "{live:?}");
    assert!(String::from_utf8_lossy(&live.stdout).starts_with("200 "));
    // A 404 is not healthy.
    let missing = probe(&node.url("/no-such-page"));
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    // Nothing listening: exit 1, naming the address.
    let free = devnet::free_port().unwrap();
    let closed = probe(&format!("http://127.0.0.1:{free}/health"));
    assert_eq!(closed.status.code(), Some(1), "{closed:?}");
    assert!(
        String::from_utf8_lossy(&closed.stderr).contains(&format!("127.0.0.1:{free}")),
        "{closed:?}"
    );
    // https:// to a plain-HTTP node: the handshake fails, the error names the URL, exit 1.
    let url = format!("https://{}/health", node.addr);
    let https = probe(&url);
    assert_eq!(https.status.code(), Some(1), "{https:?}");
    assert!(
        String::from_utf8_lossy(&https.stderr).contains(&url),
        "{https:?}"
    );
}

#[test]
fn devnet_init_names_validators_by_the_template_and_refuses_one_without_i() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = twinledger_tests::devnet_binary().unwrap();
    let init = |net: &Path, template: &str| {
        Command::new(&devnet)
            .args(["init", "--dir"])
            .arg(net)
            .args([
                "--validators",
                "4",
                "--observers",
                "1",
                "--p2p-addr",
                template,
            ])
            .output()
            .unwrap()
    };
    // One address for every validator would be no network: refused, nothing written.
    let bad = dir.path().join("bad");
    let out = init(&bad, "/dns4/hospital/tcp/7700");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no {i}"),
        "{out:?}"
    );
    assert!(!bad.join("genesis.json").exists());
    // The compose network's names.
    let good = dir.path().join("good");
    let out = init(&good, "/dns4/hospital-{i}/tcp/7700");
    assert!(out.status.success(), "{out:?}");
    let g = twinledger_genesis::GenesisFile::load(&good.join("genesis.json")).unwrap();
    let addrs: Vec<&str> = g
        .validators
        .iter()
        .map(|v| v.listen_addr.as_str())
        .collect();
    assert_eq!(
        addrs,
        [
            "/dns4/hospital-0/tcp/7700",
            "/dns4/hospital-1/tcp/7700",
            "/dns4/hospital-2/tcp/7700",
            "/dns4/hospital-3/tcp/7700"
        ]
    );
    assert_eq!(g.observers.len(), 1);
    for n in ["validator-0", "validator-3", "observer-0"] {
        assert!(good.join(n).join("node.key").exists(), "{n}");
    }
    // Not twice in the same directory.
    let again = init(&good, "/dns4/hospital-{i}/tcp/7700");
    assert_eq!(again.status.code(), Some(1), "{again:?}");
}

/// The services of compose.yaml, in order: validators 0..4, then the observer.
const SERVICES: [&str; 5] = [
    "hospital-0",
    "hospital-1",
    "hospital-2",
    "hospital-3",
    "observer",
];

/// A compose project of this test; `Drop` takes everything down.
#[derive(Debug)]
struct Project {
    name: String,
    image: String,
    env: Vec<(String, String)>,
    /// Containers started outside compose (the stranger).
    extra: Vec<String>,
}

impl Project {
    fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut c = Command::new("docker-compose");
        c.current_dir(container_dir())
            .args(["-f", "compose.yaml", "-p", &self.name])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        run(&mut c)
    }

    fn network(&self) -> String {
        format!("{}_ledger", self.name)
    }

    fn id(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service])
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The host address of a service's API (published on 127.0.0.1, port picked by the OS).
    fn api(&self, service: &str) -> Option<SocketAddr> {
        let out = self.compose(&["port", service, "7600"]).ok()?;
        out.lines().find_map(|l| l.trim().parse().ok())
    }

    /// The height a container's node reports on its own loopback (`docker exec` of the health
    /// command: reachable even when the container is off every network).
    fn inside_height(&self, id: &str) -> u64 {
        let out = Command::new("docker")
            .args([
                "exec",
                id,
                "/usr/local/bin/twinledger-node",
                "health",
                "--url",
            ])
            .arg("http://127.0.0.1:7600/health")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let body = text.split_once(' ').map_or("", |(_, b)| b);
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("health inside {id}: {e}: {text:?}"));
        v["height"].as_u64().expect("height")
    }

    fn docker(&self, args: &[&str]) -> String {
        run(Command::new("docker").args(args)).unwrap()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        for c in &self.extra {
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        // A paused container cannot be stopped: a failure mid-pause must not leave it behind.
        let _ = self.compose(&["unpause"]);
        let _ = self.compose(&["down", "-v", "--remove-orphans", "--timeout", "5"]);
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

/// The network seen from the host: each node's API, and the client that signs requests.
struct Net {
    http: reqwest::Client,
    apis: Vec<Option<SocketAddr>>,
    chain: ChainId,
    org: PublicKey,
    auditor: Keypair,
    created: u64,
    nonce: u64,
}

impl Net {
    async fn health(&self, i: usize) -> Option<(u16, Value)> {
        let a = self.apis[i]?;
        let r = self
            .http
            .get(format!("http://{a}/health"))
            .send()
            .await
            .ok()?;
        let code = r.status().as_u16();
        Some((code, r.json().await.ok()?))
    }

    async fn field(&self, i: usize, f: &str) -> u64 {
        self.health(i)
            .await
            .map_or(0, |(_, v)| v[f].as_u64().unwrap_or(0))
    }

    /// A fresh patient's consent grant to hospital 0, submitted to node `i`: whether accepted.
    async fn submit(&mut self, i: usize) -> bool {
        self.created += 1;
        let ev = patient_grant(
            self.chain,
            "containers",
            self.created,
            &self.org,
            now().plus_ms(600_000),
        );
        let Some(a) = self.apis[i] else {
            return false;
        };
        matches!(
            self.http
                .post(format!("http://{a}/v1/events"))
                .json(&json!({"event": hex::encode(ev.to_bytes())}))
                .send()
                .await,
            Ok(r) if r.status() == 202
        )
    }

    /// `GET /v1/blocks/{h}` of node `i`, signed by the auditor: the block's hash.
    async fn block_hash(&mut self, i: usize, h: u64) -> Option<String> {
        let a = self.apis[i]?;
        let path = format!("/v1/blocks/{h}");
        self.nonce += 1;
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&now().0.to_be_bytes());
        nonce[8..].copy_from_slice(&self.nonce.to_be_bytes());
        let auth = RequestAuth::sign(&self.auditor, &self.chain, "GET", &path, b"", now(), nonce);
        let mut req = self.http.get(format!("http://{a}{path}"));
        for (k, v) in auth.headers() {
            req = req.header(k, v);
        }
        let r = req.send().await.ok()?;
        if r.status() != 200 {
            return None;
        }
        let v: Value = r.json().await.ok()?;
        v["hash"].as_str().map(str::to_owned)
    }

    /// Waits until `ok` holds (polling every 200 ms); panics naming `what` after `deadline`.
    async fn wait(
        &mut self,
        what: &str,
        deadline: Duration,
        mut ok: impl AsyncFnMut(&mut Self) -> bool,
    ) {
        let end = Instant::now() + deadline;
        loop {
            if ok(self).await {
                return;
            }
            assert!(Instant::now() < end, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every node of `nodes` holds at least `n` events.
    async fn wait_final(&mut self, what: &str, nodes: &[usize], n: u64) {
        let nodes = nodes.to_vec();
        self.wait(what, Duration::from_secs(60), async |net| {
            for &i in &nodes {
                if net.field(i, "log_size").await < n {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// Submits `per_node` events to each node of `to`, then waits until `nodes` have them all
    /// and have committed at least two more blocks than before. Returns the events expected.
    async fn progress(&mut self, what: &str, to: &[usize], nodes: &[usize], expected: u64) -> u64 {
        let before = self.field(nodes[0], "height").await;
        let mut expected = expected;
        for _ in 0..2 {
            for &i in to {
                assert!(self.submit(i).await, "{what}: node {i} refused an event");
                expected += 1;
            }
        }
        self.wait_final(what, nodes, expected).await;
        let first = nodes[0];
        self.wait(what, Duration::from_secs(60), async |net| {
            net.field(first, "height").await >= before + 2
        })
        .await;
        expected
    }
}

fn chown(paths: &[&Path]) -> anyhow::Result<()> {
    let mut c = Command::new("chown");
    c.args(["-R", &format!("{NODE_UID}:{NODE_UID}")])
        .args(paths);
    run(&mut c).map(|_| ())
}

/// Every store verified as an auditor would (`procnet::verify_stores`); returns the tips.
fn verify_stores(genesis: &Genesis, dirs: &[(String, PathBuf)]) -> Vec<u64> {
    twinledger_tests::procnet::verify_stores(genesis, dirs)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the skip message and the phase timings are the test's output
async fn compose_network_survives_kill_pause_partition_and_refuses_a_stranger() {
    if let Some(why) = docker_missing() {
        eprintln!("skipping: {why}");
        return;
    }
    let _one = exclusive().await;
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let net_dir = tmp.path().join("net");
    let layout = devnet::create_with(&net_dir, 4, 1, |i| {
        Ok(format!("/dns4/hospital-{i}/tcp/7700"))
    })
    .unwrap();
    let data: Vec<PathBuf> = SERVICES
        .iter()
        .map(|s| tmp.path().join("data").join(s))
        .collect();
    for d in &data {
        std::fs::create_dir_all(d).unwrap();
    }
    let stranger_dir = tmp.path().join("stranger");
    std::fs::create_dir_all(&stranger_dir).unwrap();
    keyfile::write(
        &stranger_dir.join("node.key"),
        &keyfile::generate().unwrap(),
        "a node outside the genesis",
    )
    .unwrap();
    // The containers run as uid 10001 and refuse key files others can read.
    let mut owned: Vec<&Path> = layout.nodes.iter().map(|n| n.data_dir.as_path()).collect();
    owned.extend(data.iter().map(PathBuf::as_path));
    owned.push(&stranger_dir);
    if let Err(e) = chown(&owned) {
        eprintln!("skipping: cannot give the node files to uid {NODE_UID} (needs root): {e}");
        return;
    }
    let genesis_file = twinledger_genesis::GenesisFile::load(&layout.genesis_path).unwrap();
    let genesis = genesis_file.ledger_genesis().unwrap();

    // 1. The image, from this build's node binary; the network, ports picked by the OS.
    let unique = format!("{}{}", std::process::id(), now().0 % 1_000_000_000);
    let image = format!("twinledger-node:test-{unique}");
    let bin = node_binary().unwrap();
    let mut env = vec![
        ("TWINLEDGER_IMAGE".to_owned(), image.clone()),
        (
            "TWINLEDGER_NET_DIR".to_owned(),
            net_dir.display().to_string(),
        ),
        ("OBSERVER_PORT".to_owned(), String::new()),
        ("OBSERVER_DATA".to_owned(), data[4].display().to_string()),
        (
            "RUST_LOG".to_owned(),
            "warn,twinledger_node=info".to_owned(),
        ),
    ];
    for (i, d) in data.iter().enumerate().take(4) {
        env.push((format!("HOSPITAL_{i}_PORT"), String::new()));
        env.push((format!("HOSPITAL_{i}_DATA"), d.display().to_string()));
    }
    let mut project = Project {
        name: format!("tlct{unique}"),
        image: image.clone(),
        env,
        extra: Vec::new(),
    };
    let image_start = Instant::now();
    run(Command::new(container_dir().join("build-image.sh"))
        .arg(&bin)
        .arg(&image))
    .unwrap();
    let image_took = image_start.elapsed();
    let built = started.elapsed();
    project.compose(&["up", "-d"]).unwrap();
    let apis = SERVICES.iter().map(|s| project.api(s)).collect();
    let mut net = Net {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap(),
        apis,
        chain: genesis.chain_id(),
        org: genesis.organisations[0].key,
        auditor: keyfile::read(&net_dir.join("keys/auditor.key")).unwrap(),
        created: 0,
        nonce: 0,
    };
    assert!(net.apis.iter().all(Option::is_some), "{:?}", net.apis);

    // 2. Every node ready; Docker's health check (the node binary) agrees; uid 10001.
    net.wait(
        "every node answers /health 200",
        Duration::from_secs(120),
        async |net| {
            for i in 0..5 {
                if !matches!(net.health(i).await, Some((200, _))) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let ids: Vec<String> = SERVICES.iter().map(|s| project.id(s)).collect();
    let end = Instant::now() + Duration::from_secs(60);
    for (s, id) in SERVICES.iter().zip(&ids) {
        let user = project.docker(&["inspect", "-f", "{{.Config.User}}", id]);
        assert_eq!(user.trim(), "10001:10001", "{s} runs as {user}");
        loop {
            let h = project.docker(&["inspect", "-f", "{{.State.Health.Status}}", id]);
            if h.trim() == "healthy" {
                break;
            }
            assert!(Instant::now() < end, "{s}: Docker health status {h}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let up = started.elapsed();

    // 3. A stranger: same network, same genesis, a key the genesis does not list.
    let stranger = format!("{}-stranger", project.name);
    project.extra.push(stranger.clone());
    project.docker(&[
        "run",
        "-d",
        "--name",
        &stranger,
        "--network",
        &project.network(),
        "-e",
        "TWINLEDGER_OBSERVER=true",
        "-e",
        "TWINLEDGER_INSECURE_HTTP=true",
        "-v",
        &format!("{}:/keys:ro", stranger_dir.display()),
        "-v",
        &format!(
            "{}:/etc/twinledger/genesis.json:ro",
            layout.genesis_path.display()
        ),
        "-p",
        "127.0.0.1::7600",
        &image,
    ]);
    let stranger_api: SocketAddr = project
        .docker(&["port", &stranger, "7600"])
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .expect("stranger's published port");
    net.apis.push(Some(stranger_api));
    let s = 5;
    net.wait(
        "the stranger answers",
        Duration::from_secs(60),
        async |net| net.health(s).await.is_some(),
    )
    .await;
    assert!(
        net.submit(s).await,
        "the stranger's own node admits its event"
    );

    // 4. Events submitted to every hospital become final on all five.
    let all = [0, 1, 2, 3, 4];
    let mut expected = net
        .progress("events final on all five", &[0, 1, 2, 3], &all, 0)
        .await;

    // 5. SIGKILL one hospital: three commit on; started again, it catches up.
    project.docker(&["kill", &ids[3]]);
    net.apis[3] = None;
    expected = net
        .progress(
            "three commit with hospital-3 killed",
            &[0, 1, 2],
            &[0, 1, 2, 4],
            expected,
        )
        .await;
    project.docker(&["start", &ids[3]]);
    net.apis[3] = project.api("hospital-3");
    net.wait_final("hospital-3 catches up after its restart", &[3], expected)
        .await;
    let killed = started.elapsed();

    // 6. Pause one (its processes frozen): the others commit; unpaused, it catches up.
    project.docker(&["pause", &ids[1]]);
    let paused_api = net.apis[1].take();
    expected = net
        .progress(
            "three commit with hospital-1 paused",
            &[0, 2, 3],
            &[0, 2, 3, 4],
            expected,
        )
        .await;
    project.docker(&["unpause", &ids[1]]);
    net.apis[1] = paused_api;
    net.wait_final("hospital-1 catches up after unpause", &[1], expected)
        .await;
    let paused = started.elapsed();

    // 7. A real partition: hospital-2 off the network; the others commit; reconnected (under
    //    its name, which the others dial), it catches up.
    project.docker(&["network", "disconnect", &project.network(), &ids[2]]);
    net.apis[2] = None;
    let cut_at = project.inside_height(&ids[2]);
    expected = net
        .progress(
            "three commit with hospital-2 partitioned",
            &[0, 1, 3],
            &[0, 1, 3, 4],
            expected,
        )
        .await;
    net.wait(
        "the others 3 blocks past the partitioned one",
        Duration::from_secs(60),
        async |net| net.field(0, "height").await >= cut_at + 3,
    )
    .await;
    // Asked from inside its container (its own loopback): it saw none of that.
    let isolated = project.inside_height(&ids[2]);
    assert!(
        isolated <= cut_at + 1,
        "hospital-2 committed {cut_at} -> {isolated} while cut off: not a partition"
    );
    project.docker(&[
        "network",
        "connect",
        "--alias",
        "hospital-2",
        &project.network(),
        &ids[2],
    ]);
    net.apis[2] = project.api("hospital-2");
    net.wait_final(
        "hospital-2 catches up after the partition heals",
        &[2],
        expected,
    )
    .await;
    let partitioned = started.elapsed();

    // 8. Agreement: one more round of events everywhere, then the same block at a common
    //    height on all five.
    expected = net
        .progress("all five after the faults", &[0, 1, 2, 3], &all, expected)
        .await;
    let mut heights = Vec::new();
    for i in all {
        heights.push(net.field(i, "height").await);
    }
    let common = *heights.iter().min().unwrap();
    assert!(common >= 5, "{heights:?}");
    let mut hashes = HashSet::new();
    for i in all {
        let h = net
            .block_hash(i, common)
            .await
            .unwrap_or_else(|| panic!("{}: no block {common}", SERVICES[i]));
        hashes.insert(h);
    }
    assert_eq!(
        hashes.len(),
        1,
        "blocks at height {common} differ: {hashes:?}"
    );

    // The stranger was refused: no block, its event not on the chain, still pending at it.
    let (_, st) = net.health(s).await.expect("the stranger answers");
    assert_eq!(
        st["height"].as_u64(),
        Some(0),
        "the stranger received blocks: {st}"
    );
    assert_eq!(st["mempool"].as_u64(), Some(1), "{st}");
    assert_eq!(
        net.field(0, "log_size").await,
        expected,
        "the stranger's event reached the chain"
    );
    let logs = project.docker(&["logs", "--tail", "200", &stranger]);
    eprintln!(
        "stranger's last log lines:\n{}",
        logs.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );

    // Stopped (SIGTERM), every store re-verifies in full and they agree block by block.
    project.compose(&["stop", "--timeout", "30"]).unwrap();
    let dirs: Vec<(String, PathBuf)> = SERVICES
        .iter()
        .zip(&data)
        .map(|(s, d)| ((*s).to_owned(), d.clone()))
        .collect();
    let tips = verify_stores(&genesis, &dirs);
    assert!(tips.iter().all(|t| *t >= common), "{tips:?}");
    eprintln!(
        "containers: image built {:.1?} (build-image.sh {image_took:.1?}), all healthy {:.1?}, kill+restart done {:.1?}, pause done \
         {:.1?}, partition done {:.1?}, verified {:.1?}; {expected} events, tips {tips:?}",
        built,
        up,
        killed,
        paused,
        partitioned,
        started.elapsed()
    );
}
