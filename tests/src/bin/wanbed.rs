//! `wanbed`: runs the WAN-like test bed (`twinledger_tests::wan`) and prints its figures.
//!
//! ```text
//! cargo build --release -p twinledger-node -p twinledger-tests --bins
//! sudo target/release/wanbed all            # bench, partition, soak
//! sudo target/release/wanbed bench --rate 1000 --seconds 10 --events 20000
//! sudo target/release/wanbed partition --partition-secs 60
//! sudo target/release/wanbed soak --cycles 10
//! ```
//!
//! Options (defaults in brackets): `--validators` [4], `--delay LO-HI` one-way ms [20-80],
//! `--jitter` ± ms [5], `--loss` per direction [0.01], `--seed` [1], `--mechanism
//! auto|relay|netem` [auto: netem when the kernel has it], `--rate` events/s offered [1000],
//! `--seconds` of offered load [10], `--events` for saturation [20000], `--partition-secs` [60],
//! `--cycles` of the kill -9 soak [10]. Needs root (network namespaces, iptables).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use twinledger_tests::wan::{self, Mechanism, WanBed, WanConfig};

struct Opts {
    what: String,
    kv: HashMap<String, String>,
}

impl Opts {
    fn parse() -> anyhow::Result<Self> {
        let mut args = std::env::args().skip(1);
        let what = args.next().unwrap_or_else(|| "all".into());
        if what == "-h" || what == "--help" {
            println!(
                "usage: wanbed [bench|partition|soak|all] [--validators N] [--delay LO-HI] [--jitter MS] [--loss P] [--seed N] [--mechanism auto|relay|netem] [--rate N] [--seconds N] [--events N] [--partition-secs N] [--cycles N]"
            );
            std::process::exit(0);
        }
        if !["bench", "partition", "soak", "all"].contains(&what.as_str()) {
            bail!("unknown run {what:?}: bench, partition, soak or all");
        }
        let mut kv = HashMap::new();
        while let Some(k) = args.next() {
            let Some(name) = k.strip_prefix("--") else {
                bail!("unexpected argument {k:?} (options are --name value)");
            };
            let v = args
                .next()
                .with_context(|| format!("--{name} needs a value"))?;
            kv.insert(name.to_owned(), v);
        }
        Ok(Self { what, kv })
    }

    fn num(&self, name: &str, default: u64) -> anyhow::Result<u64> {
        self.kv.get(name).map_or(Ok(default), |v| {
            v.parse()
                .with_context(|| format!("--{name} {v:?} is not a number"))
        })
    }
}

fn node_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let node = exe.with_file_name("twinledger-node");
    anyhow::ensure!(
        node.exists(),
        "{} is missing: build it first (cargo build --release -p twinledger-node -p twinledger-tests --bins)",
        node.display()
    );
    Ok(node)
}

fn config(o: &Opts) -> anyhow::Result<WanConfig> {
    let mut cfg = WanConfig::new(node_binary()?);
    cfg.validators = usize::try_from(o.num("validators", 4)?)?;
    if let Some(d) = o.kv.get("delay") {
        let (lo, hi) = d.split_once('-').context("--delay is LO-HI (ms)")?;
        cfg.delay_ms = (lo.parse()?, hi.parse()?);
    }
    cfg.jitter_ms = o.num("jitter", 5)?;
    if let Some(l) = o.kv.get("loss") {
        cfg.loss = l.parse().context("--loss is a probability (0.01 = 1%)")?;
        anyhow::ensure!(
            (0.0..1.0).contains(&cfg.loss),
            "--loss {l} is not in [0, 1)"
        );
    }
    cfg.seed = o.num("seed", 1)?;
    cfg.mechanism = match o.kv.get("mechanism").map(String::as_str) {
        None | Some("auto") => None,
        Some("relay") => Some(Mechanism::Relay),
        Some("netem") => Some(Mechanism::Netem),
        Some(m) => bail!("--mechanism {m:?}: auto, relay or netem"),
    };
    Ok(cfg)
}

async fn bed(cfg: &WanConfig) -> anyhow::Result<(tempfile::TempDir, Arc<WanBed>)> {
    let dir = tempfile::tempdir()?;
    let bed = Arc::new(WanBed::start(dir.path(), cfg.clone()).await?);
    println!("bed: {}", bed.describe());
    let all: Vec<usize> = (0..bed.len()).collect();
    let t = Instant::now();
    bed.wait_at(&all, 2, Duration::from_secs(120)).await?;
    println!(
        "bed: every node at height 2 after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok((dir, bed))
}

async fn bench(o: &Opts, cfg: &WanConfig) -> anyhow::Result<()> {
    let (_dir, bed) = bed(cfg).await?;
    let all: Vec<usize> = (0..bed.len()).collect();
    let rate = o.num("rate", 1000)?;
    let seconds = o.num("seconds", 10)?;
    let l = wan::latency(&bed, "wan-latency", 0, rate, seconds, &all).await?;
    println!("latency: {l}");
    let n = o.num("events", 20_000)?;
    let s = wan::saturation(&bed, "wan-saturation", n).await?;
    println!(
        "saturation: {} events submitted across {} validators in {:.2} s, all final on node 0 in {:.2} s: {:.0} events/s committed (height {})",
        s.events,
        bed.len(),
        s.submit_secs,
        s.total_secs,
        s.rate(),
        s.height
    );
    let top = bed.height(0).await;
    bed.wait_at(&all, top, Duration::from_secs(120)).await?;
    let tips = bed.stop_and_verify()?;
    println!("verify: every store re-verified, no fork, tips {tips:?}");
    Ok(())
}

async fn partition(o: &Opts, cfg: &WanConfig) -> anyhow::Result<()> {
    let (_dir, bed) = bed(cfg).await?;
    let secs = o.num("partition-secs", 60)?;
    let r = wan::partition(
        &bed,
        bed.len() - 1,
        Duration::from_secs(secs),
        100,
        "wan-partition",
    )
    .await?;
    println!("partition: {r}");
    let tips = bed.stop_and_verify()?;
    println!("verify: every store re-verified, no fork, tips {tips:?}");
    Ok(())
}

async fn soak(o: &Opts, cfg: &WanConfig) -> anyhow::Result<()> {
    let (_dir, bed) = bed(cfg).await?;
    let cycles = o.num("cycles", 10)?;
    let r = wan::kill_soak(&bed, cycles, cfg.seed).await?;
    println!(
        "soak: {} cycles (kill -9 of one or two validators, or SIGSTOP of one; seed {}), {} events accepted, recovery median {:.2?}, p99 {:.2?}, max {:.2?}; every store re-verified, no fork, tips {:?}",
        r.cycles,
        cfg.seed,
        r.submitted,
        wan::percentile(&r.recoveries, 50),
        wan::percentile(&r.recoveries, 99),
        r.recoveries.last().copied().unwrap_or_default(),
        r.tips
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let o = Opts::parse()?;
    // Options first: a bad one is refused before anything is created.
    let cfg = config(&o)?;
    if let Err(why) = wan::check_facilities() {
        bail!("this machine cannot host the WAN bed: {why}");
    }
    println!(
        "machine: {} cores, kernel {}; netem available: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        wan::netem_available()
    );
    let run = async {
        match o.what.as_str() {
            "bench" => bench(&o, &cfg).await,
            "partition" => partition(&o, &cfg).await,
            "soak" => soak(&o, &cfg).await,
            "all" => {
                bench(&o, &cfg).await?;
                partition(&o, &cfg).await?;
                soak(&o, &cfg).await
            }
            w => bail!("unknown run {w:?}: bench, partition, soak or all"),
        }
    };
    // On Ctrl-C the run is dropped: its bed kills the nodes and removes the namespaces.
    tokio::select! {
        r = run => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted (the bed was removed)"),
    }
}
