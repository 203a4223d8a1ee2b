//! Seal and open throughput (MB/s, 1 MB = 10^6 bytes) for 1 MiB and 64 MiB versions, the
//! latency of wrapping a data key for a requester and unwrapping it (p50/p99), of a custodian
//! release (read, unwrap at rest, wrap for the requester), and the peak memory of sealing a
//! stream far larger than it (constant memory).
//!
//! `cargo bench -p twinledger-sealed` (`SEALED_RUNS_64M=3` for a quicker run).
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::io::{self, Read};
use std::time::{Duration, Instant};

use twinledger_sealed::custodian::{KeyStore, MasterKey};
use twinledger_sealed::{DataKey, Expected, VersionId, open, seal, unwrap_with, wrap_for};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn pct(d: &mut [Duration], p: f64) -> Duration {
    d.sort();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((d.len() as f64 - 1.0) * p).round() as usize;
    d[i]
}

fn mbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / 1e6 / t.as_secs_f64()
}

fn main() {
    // Constant memory: seal a 1 GiB stream (never held in memory) first, before any large buffer.
    let before = vm_hwm_mb();
    let big = 1u64 << 30;
    let t = Instant::now();
    let s = seal(io::repeat(0x5A).take(big), io::sink()).unwrap();
    let el = t.elapsed();
    assert_eq!(s.size, big);
    println!(
        "streamed seal of 1 GiB: {:.0} MB/s, peak RSS {:.1} MB (before {:.1} MB)",
        mbps(usize::try_from(big).unwrap(), el),
        vm_hwm_mb(),
        before
    );

    for (label, size, runs) in [
        ("1 MiB", 1usize << 20, env("SEALED_RUNS_1M", 50)),
        ("64 MiB", 64usize << 20, env("SEALED_RUNS_64M", 7)),
    ] {
        let plain: Vec<u8> = (0..size)
            .map(|i| u8::try_from(i * 7 % 251).unwrap())
            .collect();
        let mut ct = Vec::with_capacity(size + size / 1000 + 1024);
        let mut seal_t = Vec::new();
        let mut key = None;
        for _ in 0..runs {
            ct.clear();
            let t = Instant::now();
            let s = seal(plain.as_slice(), &mut ct).unwrap();
            seal_t.push(t.elapsed());
            key = Some(s.data_key);
        }
        let key = key.unwrap();
        let mut out = Vec::with_capacity(size);
        let mut open_t = Vec::new();
        for _ in 0..runs {
            out.clear();
            let t = Instant::now();
            open(ct.as_slice(), &mut out, &key, &Expected::default()).unwrap();
            open_t.push(t.elapsed());
        }
        assert_eq!(out, plain);
        println!(
            "{label}: seal {:.0} MB/s, open {:.0} MB/s (median of {runs} runs; seal includes \
             BLAKE3 of plaintext and ciphertext)",
            mbps(size, median(seal_t)),
            mbps(size, median(open_t)),
        );
    }

    let n = env("SEALED_KEY_RUNS", 1000);
    let id = VersionId::new(&"ab".repeat(32), 1).unwrap();
    let secret = [3u8; 32];
    let public = ed25519_dalek::SigningKey::from_bytes(&secret)
        .verifying_key()
        .to_bytes();
    let key = DataKey::generate().unwrap();
    let mut wrap_t = Vec::new();
    let mut unwrap_t = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let w = wrap_for(&key, &id, &public).unwrap();
        wrap_t.push(t.elapsed());
        let t = Instant::now();
        let k = unwrap_with(&w, &id, &secret).unwrap();
        unwrap_t.push(t.elapsed());
        drop(k);
    }
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate_file(&dir.path().join("master.key")).unwrap();
    let ks = KeyStore::open(dir.path().join("keys"), master).unwrap();
    ks.put(&id, &key).unwrap();
    let mut release_t = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let w = ks.release(&id, &public).unwrap();
        release_t.push(t.elapsed());
        drop(w);
    }
    for (what, d) in [
        ("wrap_for", &mut wrap_t),
        ("unwrap_with", &mut unwrap_t),
        ("KeyStore::release", &mut release_t),
    ] {
        println!(
            "{what}: p50 {:.1} µs, p99 {:.1} µs ({n} runs)",
            pct(d, 0.5).as_secs_f64() * 1e6,
            pct(d, 0.99).as_secs_f64() * 1e6
        );
    }
}
