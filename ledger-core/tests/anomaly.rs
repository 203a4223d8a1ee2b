//! One test per anomaly rule: a small made-up log that triggers it, and one that does not.

mod common;

use common::{access_payload, break_glass_payload, grant_payload, patient, revoke_payload};
use twinledger_core::anomaly::{AccessKind, AccessRecord, Log, RevokeRecord, Thresholds, find};
use twinledger_core::devkit::{DevChain, dev_key};
use twinledger_core::event::consent::Grantee;
use twinledger_core::{Action, DataCategory, EventId, PublicKey, Purpose, Timestamp};

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

/// `after_revoke` on a real chain ([`Log`]): after the patient revokes the researcher's grant
/// (laboratory, research), accesses under the physician's and the nurses' still-valid grants
/// are not flagged, whatever their outcome; the researcher's attempts that the revoked grant
/// covered are (the same grantee, a revoked category and purpose), and one outside it is not.
#[test]
fn after_revoke_flags_only_accesses_the_revoked_grant_covered() {
    use DataCategory::*;
    use Purpose::*;
    let mut chain = DevChain::new(1);
    let alice = patient("alice");
    let phys = chain.physician.clone();
    let nurse = chain.nurse.clone();
    let res = chain.researcher.clone();
    let a = alice.public();
    let to_res = chain.event(
        &alice,
        grant_payload(
            &a,
            Grantee::Actor(res.public()),
            &[Laboratory, VitalSigns],
            &[Research],
            &[Action::Read],
        ),
    );
    let res_grant = to_res.id();
    let to_phys = chain.event(
        &alice,
        grant_payload(
            &a,
            Grantee::Actor(phys.public()),
            &[Laboratory, VitalSigns],
            &[Treat],
            &[Action::Read],
        ),
    );
    let to_nurses = chain.event(
        &alice,
        grant_payload(
            &a,
            Grantee::Role {
                role: twinledger_core::codes::Role::Nurse,
                organisation: None,
            },
            &[VitalSigns],
            &[Treat],
            &[Action::Read],
        ),
    );
    chain.commit(vec![to_res, to_phys, to_nurses]);
    let revoke = chain.event(&alice, revoke_payload(&a, res_grant));
    chain.commit(vec![revoke]);
    // (who, payload, flagged?, what it shows)
    let cases = [
        (
            &phys,
            access_payload(&a, Laboratory, Treat, Action::Read),
            false,
            "permit under the physician's own grant",
        ),
        (
            &phys,
            access_payload(&a, Imaging, Treat, Action::Read),
            false,
            "physician denied, not the revoked grantee",
        ),
        (
            &nurse,
            access_payload(&a, VitalSigns, Treat, Action::Read),
            false,
            "permit under the nurses' role grant",
        ),
        (
            &phys,
            break_glass_payload(&a, Laboratory),
            false,
            "break-glass by another actor",
        ),
        (
            &res,
            access_payload(&a, Laboratory, Research, Action::Read),
            true,
            "the researcher, as the revoked grant allowed",
        ),
        (
            &res,
            access_payload(&a, VitalSigns, Research, Action::Read),
            true,
            "the researcher, another revoked category",
        ),
        (
            &res,
            access_payload(&a, Imaging, Research, Action::Read),
            false,
            "the researcher, a category never granted",
        ),
        (
            &res,
            access_payload(&a, Laboratory, Treat, Action::Read),
            false,
            "the researcher, a purpose never granted",
        ),
    ];
    let mut want_flagged = Vec::new();
    let mut want_clear = Vec::new();
    for (who, payload, flagged, what) in cases {
        let ev = chain.event(who, payload);
        if flagged {
            want_flagged.push((ev.id(), what));
        } else {
            want_clear.push((ev.id(), what));
        }
        let c = chain.commit(vec![ev]);
        assert!(c.rejected.is_empty(), "{what}: {:?}", c.rejected);
    }
    // The log as an auditor builds it from the committed blocks and the state after each.
    let mut log = Log::new();
    let mut state = twinledger_core::State::from_genesis(&chain.genesis).unwrap();
    for b in &chain.blocks {
        let (next, results) = state.apply_block(&b.block).unwrap();
        log.add_block(&b.block.events, &results, b.block.header.time, &next);
        state = next;
    }
    assert_eq!(log.accesses.len(), 8);
    let findings = log.find(&Thresholds::default());
    let flagged: Vec<EventId> = findings
        .iter()
        .filter(|f| f.rule == "after_revoke")
        .map(|f| f.events[1])
        .collect();
    for (id, what) in &want_flagged {
        assert!(flagged.contains(id), "not flagged: {what}");
    }
    for (id, what) in &want_clear {
        assert!(!flagged.contains(id), "flagged: {what}");
    }
    assert_eq!(flagged.len(), want_flagged.len());
    // Bare records cannot tell: `find` flags every access to the patient in the window.
    let bare = find(&log.accesses, &log.revokes, &Thresholds::default());
    assert_eq!(bare.iter().filter(|f| f.rule == "after_revoke").count(), 8);
}
