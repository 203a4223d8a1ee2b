//! `twinledger-devnet up --validators 4`, `status`, `down` (the README's local network): real
//! processes on loopback, every step waited on with a deadline.

use std::process::Command;
use std::time::{Duration, Instant};

use twinledger_tests::devnet_binary;

fn devnet(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(devnet_binary().unwrap())
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn devnet_up_status_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let (ok, out) = devnet(&dir, &["up", "--validators", "4"]);
    assert!(ok, "{out}");
    let apis: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("validator-") || l.starts_with("observer-"))
        .map(|l| l.split_whitespace().last().unwrap().to_owned())
        .collect();
    assert_eq!(apis.len(), 5, "{out}");
    // Every node reaches height 2: the validators agree and the observer follows.
    let http = reqwest::blocking::Client::new();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let heights: Vec<u64> = apis
            .iter()
            .map(|a| {
                http.get(format!("{a}/health"))
                    .send()
                    .ok()
                    .and_then(|r| r.json::<serde_json::Value>().ok())
                    .and_then(|v| v["height"].as_u64())
                    .unwrap_or(0)
            })
            .collect();
        if heights.iter().all(|h| *h >= 2) {
            break;
        }
        assert!(Instant::now() < end, "heights {heights:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, status) = devnet(&dir, &["status"]);
    assert!(ok);
    assert_eq!(
        status
            .lines()
            .filter(|l| l.contains("\"status\":\"ok\""))
            .count(),
        5,
        "{status}"
    );
    // A second `up` finds them running.
    let (ok, again) = devnet(&dir, &["up"]);
    assert!(ok);
    assert_eq!(again.matches("already running").count(), 5, "{again}");
    let (ok, down) = devnet(&dir, &["down"]);
    assert!(ok);
    assert_eq!(down.matches("stopped").count(), 5, "{down}");
    let (_, status) = devnet(&dir, &["status"]);
    assert_eq!(status.matches("down").count(), 5, "{status}");
}
