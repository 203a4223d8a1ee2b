//! Load generator: `cargo bench -p twinledger-node --bench load`.
//!
//! Starts a single-validator node in-process (sled store in a temp dir, API on 127.0.0.1:0),
//! signs every event up front, then submits over HTTP:
//! 1. throughput: N consent grants (N distinct patients) in batches of 1,000 over 4
//!    connections; reports committed events/s from the first submission to the last commit;
//! 2. latency: single-event submissions offered at a fixed rate (default 2,000 events/s for 5 s);
//!    reports commit latency percentiles (submission start to the block being final and
//!    flushed).
//!
//! Env: `LOAD_EVENTS` (default 100000), `LOAD_RATE` (2000), `LOAD_SECONDS` (5),
//! `LOAD_BLOCK_MS` (50).
#![allow(clippy::print_stdout, missing_docs)]

mod common;

use std::collections::HashMap;

use common::{env, grant};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use twinledger_core::devkit::dev_key;
use twinledger_core::{EventId, Role, SignedEvent};
use twinledger_genesis::ActorEntry;
use twinledger_node::chain::now;
use twinledger_node::dev::solo_genesis;
use twinledger_node::{ApiOptions, open_chain, open_store, run_with};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // cargo's `--bench` argument is ignored. RUST_LOG=twinledger_node=debug shows block timings.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let n = env("LOAD_EVENTS", 100_000);
    let rate = env("LOAD_RATE", 2_000);
    let seconds = env("LOAD_SECONDS", 5);
    let block_ms = env("LOAD_BLOCK_MS", 50);

    let validator = dev_key("load/validator");
    let hospital = dev_key("load/hospital");
    let physician = dev_key("load/physician");
    let mut g = solo_genesis("load", now().0, "Load Hospital", &hospital, &validator)?;
    g.limits.block_interval_ms = block_ms;
    g.limits.max_events_per_block = 10_000;
    g.limits.mempool_size = 1_000_000;
    g.add_actor(ActorEntry {
        key: physician.public(),
        organisation: hospital.public(),
        role: Role::Physician,
    })?;
    let dir = tempfile::tempdir()?;
    let chain = open_chain(&g, open_store(dir.path())?, validator.clone(), false)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // One client sends everything: no per-client rate limit in the benchmark.
    let options = ApiOptions {
        rate_limit_per_client: 0,
        rate_limit_per_key: 0,
        ..ApiOptions::default()
    };
    let server = tokio::spawn(run_with(
        listener,
        chain.clone(),
        validator,
        options,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let http = reqwest::Client::new();
    let id = chain.chain_id();

    // Phase 1: throughput.
    let t = Instant::now();
    let events: Vec<String> = {
        let org = hospital.clone();
        tokio::task::spawn_blocking(move || {
            (0..n)
                .map(|i| hex::encode(grant(id, "load", i, &org).to_bytes()))
                .collect()
        })
        .await?
    };
    println!("signed {n} events in {:.1} s", t.elapsed().as_secs_f64());
    let start = Instant::now();
    let batches: Vec<Vec<String>> = events.chunks(1000).map(<[String]>::to_vec).collect();
    let queue = Arc::new(Mutex::new(batches));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (queue, http, base) = (queue.clone(), http.clone(), base.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let Some(batch) = queue.lock().expect("queue").pop() else {
                    break;
                };
                loop {
                    let r = http
                        .post(format!("{base}/v1/events/batch"))
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
    let mut rx = chain.subscribe();
    while chain.state().log_size() < n {
        let _ = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await;
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "not all events committed"
        );
    }
    let total = start.elapsed();
    println!(
        "throughput: {n} events submitted in {:.2} s, all committed in {:.2} s: {:.0} events/s committed (height {})",
        submitted.as_secs_f64(),
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        chain.state().height()
    );

    // Phase 2: latency at a fixed offered rate, single-event submissions.
    let m = rate * seconds;
    let events: Vec<SignedEvent> = {
        let org = hospital.clone();
        tokio::task::spawn_blocking(move || {
            (n..n + m).map(|i| grant(id, "load", i, &org)).collect()
        })
        .await?
    };
    let sent: Arc<Mutex<HashMap<EventId, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut hist = Histogram::<u64>::new(3)?;
    let watcher = {
        let (chain, sent) = (chain.clone(), sent.clone());
        let mut rx = chain.subscribe();
        tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            let mut seen = 0u64;
            while seen < m {
                let Ok(height) = rx.recv().await else { break };
                let at = Instant::now();
                let Ok(Some(sb)) = chain.store().block(height) else {
                    continue;
                };
                let sent = sent.lock().expect("sent");
                for ev in &sb.block.events {
                    if let Some(t0) = sent.get(&ev.id()) {
                        h.record(
                            u64::try_from(at.duration_since(*t0).as_micros()).unwrap_or(u64::MAX),
                        )
                        .expect("record");
                        seen += 1;
                    }
                }
            }
            h
        })
    };
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let offered = Instant::now();
    for ev in events {
        tick.tick().await;
        let (http, base, sent) = (http.clone(), base.clone(), sent.clone());
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
    hist.add(tokio::time::timeout(Duration::from_secs(120), watcher).await??)?;
    println!(
        "latency: {m} events offered at {rate}/s over {:.2} s; commit latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms (block interval {block_ms} ms)",
        offered_for.as_secs_f64(),
        hist.value_at_quantile(0.50) as f64 / 1000.0,
        hist.value_at_quantile(0.90) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
    );
    let _ = stop_tx.send(());
    server.await??;

    // Phase 3: start-up verification of the store just written (the node replays it).
    let events = chain.state().log_size();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&chain) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(chain);
    for verify_all in [false, true] {
        let t = Instant::now();
        let reopened = open_chain(
            &g,
            open_store(dir.path())?,
            dev_key("load/validator"),
            verify_all,
        )?;
        println!(
            "start-up: replayed and checked {} blocks / {events} events in {:.2} s (verify_all = {verify_all})",
            reopened.state().height(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
