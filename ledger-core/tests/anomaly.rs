//! One test per anomaly rule: a small made-up log that triggers it, and one that does not.

use twinledger_core::anomaly::{AccessKind, AccessRecord, RevokeRecord, Thresholds, find};
use twinledger_core::devkit::dev_key;
use twinledger_core::{EventId, PublicKey, Timestamp};

const H: u64 = 3600 * 1000;
const DAY: u64 = 24 * H;
const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00Z

fn k(label: &str) -> PublicKey {
    dev_key(label).public()
}

fn id(n: u64) -> EventId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_be_bytes());
    EventId(b)
}

fn rec(n: u64, time: u64, actor: &str, patient: u64, kind: AccessKind) -> AccessRecord {
    AccessRecord {
        id: id(n),
        time: Timestamp(time),
        actor: k(actor),
        organisation: k("org"),
        patient: k(&format!("patient/{patient}")),
        kind,
    }
}

fn rules(accesses: &[AccessRecord], revokes: &[RevokeRecord]) -> Vec<&'static str> {
    find(accesses, revokes, &Thresholds::default())
        .into_iter()
        .map(|f| f.rule)
        .collect()
}

#[test]
fn volume_far_over_the_actors_baseline() {
    // 5 patients a day for 6 days at 10:00, then 40 on day 7.
    let mut log = Vec::new();
    let mut n = 0;
    for day in 0..6 {
        for p in 0..5 {
            n += 1;
            log.push(rec(
                n,
                T0 + day * DAY + 10 * H,
                "dr",
                p,
                AccessKind::Permitted,
            ));
        }
    }
    let quiet = log.clone();
    for p in 0..40 {
        n += 1;
        log.push(rec(
            n,
            T0 + 6 * DAY + 10 * H,
            "dr",
            100 + p,
            AccessKind::Permitted,
        ));
    }
    let f = find(&log, &[], &Thresholds::default());
    let v: Vec<_> = f.iter().filter(|f| f.rule == "volume").collect();
    assert_eq!(v.len(), 1, "{f:?}");
    assert_eq!(v[0].events.len(), 40, "the day's events are named");
    assert!(!rules(&quiet, &[]).contains(&"volume"));
}

#[test]
fn off_hours_for_the_organisation() {
    // 200 accesses at 09:00–16:59, then one at 03:00.
    let mut log: Vec<_> = (0..200)
        .map(|i| {
            rec(
                i,
                T0 + (i % 30) * DAY + (9 + i % 8) * H,
                "dr",
                i,
                AccessKind::Permitted,
            )
        })
        .collect();
    let usual = log.clone();
    log.push(rec(
        999,
        T0 + 31 * DAY + 3 * H,
        "night-owl",
        1,
        AccessKind::Permitted,
    ));
    let f = find(&log, &[], &Thresholds::default());
    let o: Vec<_> = f.iter().filter(|f| f.rule == "off_hours").collect();
    assert_eq!(o.len(), 1, "{f:?}");
    assert_eq!(o[0].actor, k("night-owl"));
    assert_eq!(o[0].events, vec![id(999)]);
    assert!(!rules(&usual, &[]).contains(&"off_hours"));
}

#[test]
fn burst_of_denied_attempts() {
    let burst: Vec<_> = (0..6)
        .map(|i| rec(i, T0 + i * 60_000, "prober", i, AccessKind::Denied))
        .collect();
    let f = find(&burst, &[], &Thresholds::default());
    let d: Vec<_> = f.iter().filter(|f| f.rule == "denied_burst").collect();
    assert_eq!(d.len(), 1, "{f:?}");
    assert_eq!(d[0].events.len(), 6);
    // The same attempts spread over hours: nothing.
    let spread: Vec<_> = (0..6)
        .map(|i| rec(i, T0 + i * H, "prober", i, AccessKind::Denied))
        .collect();
    assert!(!rules(&spread, &[]).contains(&"denied_burst"));
}

#[test]
fn repeated_break_glass_by_one_actor() {
    let often: Vec<_> = (0..3)
        .map(|i| rec(i, T0 + i * DAY, "er", i, AccessKind::BreakGlass))
        .collect();
    assert!(rules(&often, &[]).contains(&"repeated_break_glass"));
    let rare: Vec<_> = (0..3)
        .map(|i| rec(i, T0 + i * 10 * DAY, "er", i, AccessKind::BreakGlass))
        .collect();
    assert!(!rules(&rare, &[]).contains(&"repeated_break_glass"));
}

#[test]
fn access_just_after_a_revoke() {
    let revoke = RevokeRecord {
        id: id(500),
        time: Timestamp(T0),
        patient: k("patient/7"),
    };
    let soon = vec![rec(1, T0 + 5 * 60_000, "dr", 7, AccessKind::Denied)];
    let f = find(&soon, std::slice::from_ref(&revoke), &Thresholds::default());
    let a: Vec<_> = f.iter().filter(|f| f.rule == "after_revoke").collect();
    assert_eq!(a.len(), 1, "{f:?}");
    assert_eq!(
        a[0].events,
        vec![id(500), id(1)],
        "the revoke and the access are named"
    );
    let later = vec![rec(1, T0 + 3 * DAY, "dr", 7, AccessKind::Denied)];
    let other_patient = vec![rec(1, T0 + 60_000, "dr", 8, AccessKind::Denied)];
    let before = vec![rec(1, T0 - 60_000, "dr", 7, AccessKind::Permitted)];
    for log in [later, other_patient, before] {
        assert!(!rules(&log, std::slice::from_ref(&revoke)).contains(&"after_revoke"));
    }
}
