//! 4-validator BFT load generator: `cargo bench -p twinledger-node --bench bft`.
//!
//! Starts 4 validators in one process (each: sled store in a temp dir, API on 127.0.0.1:0,
//! libp2p on 127.0.0.1 with an OS-chosen port, its own consensus thread), signs every event up
//! front, and submits over HTTP across the four nodes:
//! 1. saturation: `BFT_EVENTS` consent grants in batches of 1,000, round-robin over the nodes;
//!    reports committed events/s (first submission to the last event final on node 0);
//! 2. latency: single-event submissions offered at `BFT_RATE`/s (default 1,000) for
//!    `BFT_SECONDS` (5), round-robin over the nodes; reports finality latency percentiles
//!    (submission to the block being final and flushed on node 0);
//! 3. catch-up: an observer with an empty store joins and commits every block node 0 has
//!    (block sync, each block's certificate verified and the block re-executed); reports
//!    events/s.
#![allow(clippy::print_stdout, missing_docs)]

mod common;

use std::collections::HashMap;

use common::{env, grant};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use twinledger_core::devkit::dev_key;
use twinledger_core::{EventId, Keypair, SignedEvent};
use twinledger_genesis::{GenesisFile, ValidatorEntry, peer_id_from_ed25519};
use twinledger_node::chain::{Chain, now};
use twinledger_node::consensus::replica::Replica;
use twinledger_node::{ApiOptions, open_chain, open_store, replica_config, run_replicated};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let n = env("BFT_EVENTS", 40_000);
    let rate = env("BFT_RATE", 1_000);
    let seconds = env("BFT_SECONDS", 5);

    let orgs: Vec<Keypair> = (0..4).map(|i| dev_key(&format!("bft/org/{i}"))).collect();
    let vals: Vec<Keypair> = (0..4).map(|i| dev_key(&format!("bft/val/{i}"))).collect();
    let mut g = GenesisFile::new("bft-bench", now().0);
    for i in 0..4 {
        g.add_org(&format!("Hospital {i}"), orgs[i].public())?;
        g.add_validator(ValidatorEntry {
            organisation: orgs[i].public(),
            consensus_key: vals[i].public(),
            power: 1,
            peer_id: peer_id_from_ed25519(&vals[i].public()),
            // Placeholders: the benchmark listens on OS-chosen ports and dials them itself.
            listen_addr: format!("/ip4/127.0.0.1/tcp/{}", 20_000 + i),
        })?;
    }
    // An observer that joins at the end with an empty store (phase 3: catch-up).
    let late = dev_key("bft/late-observer");
    g.observers.push(twinledger_genesis::ObserverEntry {
        name: "late observer".into(),
        peer_id: peer_id_from_ed25519(&late.public()),
    });
    g.limits.max_events_per_block = u32::try_from(env("BFT_BLOCK_EVENTS", 2_000))?;
    g.limits.mempool_size = 1_000_000;
    let dirs: Vec<tempfile::TempDir> = (0..4)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut chains: Vec<Arc<Chain>> = Vec::new();
    let mut replicas = Vec::new();
    for i in 0..4 {
        let chain = open_chain(&g, open_store(dirs[i].path())?, vals[i].clone(), false)?;
        let mut cfg = replica_config(
            &g,
            &vals[i],
            Some("/ip4/127.0.0.1/tcp/0".parse()?),
            &[],
            dirs[i].path(),
        )?;
        cfg.net.dial.clear();
        let r = Replica::start(chain.clone(), vals[i].clone(), cfg).await?;
        chains.push(chain);
        replicas.push(r);
    }
    let addrs: Vec<String> = replicas
        .iter()
        .map(|r| format!("{}/p2p/{}", r.p2p_addr, r.peer_id))
        .collect();
    for (i, r) in replicas.iter().enumerate() {
        for (j, a) in addrs.iter().enumerate() {
            if i != j {
                r.dial(a.parse()?).await;
            }
        }
    }
    let mut bases = Vec::new();
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for (chain, replica) in chains.iter().zip(replicas) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        bases.push(format!("http://{}", listener.local_addr()?));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        servers.push(tokio::spawn(run_replicated(
            listener,
            chain.clone(),
            replica,
            ApiOptions {
                rate_limit_per_client: 0,
                rate_limit_per_key: 0,
                ..ApiOptions::default()
            },
            async move {
                let _ = rx.await;
            },
        )));
    }
    let chain0 = chains[0].clone();
    let id = chain0.chain_id();
    let http = reqwest::Client::new();
    // Wait for the network to form (blocks are being made).
    let t = Instant::now();
    while chain0.height() < 2 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "the network did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Phase 1: saturation.
    let t = Instant::now();
    let events: Vec<String> = {
        let org = orgs[0].clone();
        tokio::task::spawn_blocking(move || {
            (0..n)
                .map(|i| hex::encode(grant(id, "bft", i, &org).to_bytes()))
                .collect()
        })
        .await?
    };
    println!("signed {n} events in {:.1} s", t.elapsed().as_secs_f64());
    let base_log = chain0.state().log_size();
    let start = Instant::now();
    let batches: Vec<(usize, Vec<String>)> = events
        .chunks(1000)
        .enumerate()
        .map(|(i, c)| (i % 4, c.to_vec()))
        .collect();
    let queue = Arc::new(Mutex::new(batches));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (queue, http, bases) = (queue.clone(), http.clone(), bases.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some((node, batch)) = queue.lock().expect("queue").pop() else {
                    break;
                };
                loop {
                    let r = http
                        .post(format!("{}/v1/events/batch", bases[node]))
                        .json(&json!({ "events": batch }))
                        .send()
                        .await
                        .expect("submit");
                    if r.status() == 503 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    assert_eq!(r.status(), 200);
                    break;
                }
            }
        }));
    }
    for s in senders {
        s.await?;
    }
    let submitted = start.elapsed();
    while chain0.state().log_size() < base_log + n {
        tokio::time::sleep(Duration::from_millis(20)).await;
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(900),
            "not all events committed"
        );
    }
    let total = start.elapsed();
    println!(
        "saturation: {n} events submitted across 4 validators in {:.2} s, all final on node 0 in {:.2} s: {:.0} events/s committed (height {})",
        submitted.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        chain0.height()
    );

    // Phase 2: finality latency at a fixed offered rate.
    let m = rate * seconds;
    let events: Vec<SignedEvent> = {
        let org = orgs[0].clone();
        tokio::task::spawn_blocking(move || (n..n + m).map(|i| grant(id, "bft", i, &org)).collect())
            .await?
    };
    let sent: Arc<Mutex<HashMap<EventId, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let watcher = {
        let (chain, sent) = (chain0.clone(), sent.clone());
        tokio::spawn(async move {
            // Polls node 0's height (a broadcast subscription can lag under load) and scans
            // every new block once.
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let mut seen = 0u64;
            let mut next = chain.height() + 1;
            let end = Instant::now() + Duration::from_secs(120);
            while seen < m && Instant::now() < end {
                let tip = chain.height();
                if tip < next {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let at = Instant::now();
                for height in next..=tip {
                    let Ok(Some(sb)) = chain.store().block(height) else {
                        continue;
                    };
                    let sent = sent.lock().expect("sent");
                    for ev in &sb.block.events {
                        if let Some(t0) = sent.get(&ev.id()) {
                            h.record(
                                u64::try_from(at.duration_since(*t0).as_micros())
                                    .unwrap_or(u64::MAX),
                            )
                            .expect("record");
                            seen += 1;
                        }
                    }
                }
                next = tip + 1;
            }
            (h, seen)
        })
    };
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let offered = Instant::now();
    for (k, ev) in events.into_iter().enumerate() {
        tick.tick().await;
        let (http, base, sent) = (http.clone(), bases[k % 4].clone(), sent.clone());
        sent.lock().expect("sent").insert(ev.id(), Instant::now());
        tokio::spawn(async move {
            let r = http
                .post(format!("{base}/v1/events"))
                .json(&json!({"event": hex::encode(ev.to_bytes())}))
                .send()
                .await
                .expect("submit");
            assert_eq!(r.status(), 202);
        });
    }
    let offered_for = offered.elapsed();
    let (hist, seen) = watcher.await?;
    println!(
        "latency: {m} events offered at {rate}/s across 4 validators over {:.2} s, {seen} final within 120 s; finality p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        offered_for.as_secs_f64(),
        hist.value_at_quantile(0.50) as f64 / 1000.0,
        hist.value_at_quantile(0.90) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
    );

    // Phase 3: catch-up. An observer with an empty store joins; from its start until it has
    // committed (verified, re-executed, written) every block node 0 had then.
    let target = chain0.height();
    let events = chain0.state().log_size();
    let late_dir = tempfile::tempdir()?;
    let late_chain = twinledger_node::open_chain_as(
        &g,
        open_store(late_dir.path())?,
        late.clone(),
        false,
        true,
    )?;
    let mut cfg = replica_config(
        &g,
        &late,
        Some("/ip4/127.0.0.1/tcp/0".parse()?),
        &[],
        late_dir.path(),
    )?;
    cfg.net.dial = addrs.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    let started = Instant::now();
    let late_replica = Replica::start(late_chain.clone(), late.clone(), cfg).await?;
    while late_chain.height() < target {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the late observer did not catch up within 600 s (at {} of {target})",
            late_chain.height()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "catch-up: an observer with an empty store reached height {target} ({events} events) in {took:.2} s: {:.0} events/s",
        events as f64 / took
    );
    late_replica.stop().await?;
    for s in stops {
        let _ = s.send(());
    }
    for s in servers {
        s.await??;
    }
    Ok(())
}
