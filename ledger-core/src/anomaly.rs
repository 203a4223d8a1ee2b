//! Irregular access, for review: rules over the access log of a verified chain, each finding
//! naming the events behind it. Pure: records in, findings out; thresholds are parameters.
//!
//! [`Log`] collects the records from committed blocks, with what each request asked for and
//! what each revocation took away, so that `after_revoke` flags only the accesses a revoked
//! grant covered. [`find`] runs the rules over bare records, which do not say what was revoked:
//! its `after_revoke` flags every access to the patient in the window.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::block::{BlockResults, Decision, Outcome};
use crate::codes::{DataCategory, Purpose, Role};
use crate::event::consent::Grantee;
use crate::event::delegation::Scope;
use crate::event::{EventPayload, SignedEvent};
use crate::hash::EventId;
use crate::keys::PublicKey;
use crate::state::State;
use crate::state::records::ActorRecord;
use crate::time::Timestamp;

/// How an access attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    /// Permitted by consent.
    Permitted,
    /// Denied.
    Denied,
    /// Break-glass.
    BreakGlass,
}

/// One access attempt from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRecord {
    /// The event.
    pub id: EventId,
    /// Block time.
    pub time: Timestamp,
    /// Who asked.
    pub actor: PublicKey,
    /// Its organisation.
    pub organisation: PublicKey,
    /// Whose twin.
    pub patient: PublicKey,
    /// How it ended.
    pub kind: AccessKind,
}

/// A consent revocation from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeRecord {
    /// The revoke event.
    pub id: EventId,
    /// Block time.
    pub time: Timestamp,
    /// Whose consent.
    pub patient: PublicKey,
}

/// Rule thresholds (each a `twinctl audit anomalies` flag).
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// Volume: an actor reading more than `volume_factor` × its median daily number of distinct
    /// patients (and at least `volume_min_patients`) in one UTC day.
    pub volume_factor: u64,
    /// See `volume_factor`.
    pub volume_min_patients: u64,
    /// Hours: an hour of the day (UTC) in which an organisation made at most this share
    /// (per mille) of its accesses is outside its usual hours...
    pub hours_max_share_permille: u64,
    /// ...once the organisation has at least this many accesses.
    pub hours_min_history: u64,
    /// Denied burst: this many denied attempts by one actor...
    pub denied_burst: u64,
    /// ...within this many ms.
    pub denied_window_ms: u64,
    /// Repeated break-glass: this many by one actor...
    pub break_glass_repeat: u64,
    /// ...within this many ms.
    pub break_glass_window_ms: u64,
    /// After revoke: an access to a patient within this many ms after the patient revoked a
    /// grant that covered it (same grantee, a revoked category and purpose; see [`Log`]).
    pub after_revoke_ms: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            volume_factor: 3,
            volume_min_patients: 10,
            hours_max_share_permille: 10,
            hours_min_history: 100,
            denied_burst: 5,
            denied_window_ms: 10 * 60 * 1000,
            break_glass_repeat: 3,
            break_glass_window_ms: 7 * 24 * 3600 * 1000,
            after_revoke_ms: 24 * 3600 * 1000,
        }
    }
}

/// One irregularity, with the events behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule: `volume`, `off_hours`, `denied_burst`, `repeated_break_glass`, `after_revoke`.
    pub rule: &'static str,
    /// The actor concerned.
    pub actor: PublicKey,
    /// What was seen.
    pub detail: String,
    /// The events behind it.
    pub events: Vec<EventId>,
}

const DAY_MS: u64 = 24 * 3600 * 1000;

/// One actor's day: the distinct patients and the events.
type DayActivity = (BTreeSet<PublicKey>, Vec<EventId>);
const HOUR_MS: u64 = 3600 * 1000;

/// Runs every rule over bare records (in time order). They do not say what a revoke took away,
/// so `after_revoke` flags every access to the patient within the window; [`Log::find`] flags
/// only the accesses the revoked grant covered.
pub fn find(accesses: &[AccessRecord], revokes: &[RevokeRecord], t: &Thresholds) -> Vec<Finding> {
    run(accesses, revokes, t, &|_, _| true)
}

/// What an access or break-glass request asked for, beside its [`AccessRecord`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    /// The requester's role, when it is an enrolled actor.
    pub role: Option<Role>,
    /// The data category.
    pub category: DataCategory,
    /// The purpose (none for a break-glass request).
    pub purpose: Option<Purpose>,
}

/// What a revocation took away, beside its [`RevokeRecord`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The revoked grant.
    pub grant: EventId,
    /// Its grantee.
    pub grantee: Grantee,
    /// Its scope.
    pub scope: Scope,
}

impl Revoked {
    /// Whether the revoked grant would have covered the request `a` asking `asked`: the
    /// grantee covers the requester, the category is a revoked one, and the purpose is one too
    /// (a break-glass request names no purpose and matches on the grantee and category alone).
    /// The patient is compared by the caller.
    pub fn matches(&self, a: &AccessRecord, asked: &Asked) -> bool {
        let grantee = match asked.role {
            Some(role) => self.grantee.covers(
                &a.actor,
                &ActorRecord {
                    organisation: a.organisation,
                    role,
                    live: true,
                },
            ),
            None => self.grantee == Grantee::Actor(a.actor),
        };
        grantee
            && self.scope.categories.contains(asked.category)
            && asked
                .purpose
                .is_none_or(|p| self.scope.purposes.contains(p))
    }
}

/// The access log of a chain, built block by block: access and break-glass requests with what
/// they asked for, and accepted consent revocations with what they took away.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Every access attempt, in chain order.
    pub accesses: Vec<AccessRecord>,
    /// What each of `accesses` asked for (same order).
    pub asked: Vec<Asked>,
    /// Every accepted consent revocation, in chain order.
    pub revokes: Vec<RevokeRecord>,
    /// What each of `revokes` took away (same order).
    pub revoked: Vec<Revoked>,
}

impl Log {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a committed block's requests and revocations. `events` and `results` are the
    /// block's, `time` its time, `state` the state after it (it holds every grant, revoked or
    /// not, and every actor ever enrolled).
    pub fn add_block(
        &mut self,
        events: &[SignedEvent],
        results: &BlockResults,
        time: Timestamp,
        state: &State,
    ) {
        for (ev, outcome) in events.iter().zip(&results.outcomes) {
            let author = ev.event.author;
            let kind = match outcome {
                Outcome::Access(Decision::Permit { .. }) => AccessKind::Permitted,
                Outcome::Access(Decision::Deny { .. }) => AccessKind::Denied,
                Outcome::Access(Decision::BreakGlass) => AccessKind::BreakGlass,
                Outcome::Applied => {
                    if let EventPayload::ConsentRevoke(r) = &ev.event.payload
                        && let Some(g) = state.grant(&r.grant)
                    {
                        self.revokes.push(RevokeRecord {
                            id: ev.id(),
                            time,
                            patient: r.patient,
                        });
                        self.revoked.push(Revoked {
                            grant: r.grant,
                            grantee: g.grant.grantee,
                            scope: g.grant.scope,
                        });
                    }
                    continue;
                }
            };
            let (patient, category, purpose) = match &ev.event.payload {
                EventPayload::AccessRequest(a) => (a.patient, a.category, Some(a.purpose)),
                EventPayload::BreakGlassRequest(b) => (b.patient, b.category, None),
                _ => continue,
            };
            let actor = state.actor(&author);
            self.accesses.push(AccessRecord {
                id: ev.id(),
                time,
                actor: author,
                organisation: actor.map_or(author, |a| a.organisation),
                patient,
                kind,
            });
            self.asked.push(Asked {
                role: actor.map(|a| a.role),
                category,
                purpose,
            });
        }
    }

    /// Keeps only the access attempts and revocations at or after `since` (with what they
    /// asked for and took away).
    pub fn retain_since(&mut self, since: Timestamp) {
        let keep: Vec<bool> = self.accesses.iter().map(|a| a.time >= since).collect();
        let mut k = keep.iter();
        self.asked.retain(|_| *k.next().unwrap_or(&false));
        self.accesses.retain(|a| a.time >= since);
        let keep: Vec<bool> = self.revokes.iter().map(|r| r.time >= since).collect();
        let mut k = keep.iter();
        self.revoked.retain(|_| *k.next().unwrap_or(&false));
        self.revokes.retain(|r| r.time >= since);
    }

    /// Runs every rule; `after_revoke` flags an access only when the revoked grant covered it
    /// ([`Revoked::matches`]).
    pub fn find(&self, t: &Thresholds) -> Vec<Finding> {
        run(
            &self.accesses,
            &self.revokes,
            t,
            &|r, a| match (self.revoked.get(r), self.asked.get(a)) {
                (Some(rev), Some(asked)) => rev.matches(&self.accesses[a], asked),
                _ => false,
            },
        )
    }
}

/// Whether revoke `r` (an index into the revokes) concerns access `a` (an index into the
/// accesses), beyond being of the same patient within the window.
type Matches<'a> = &'a dyn Fn(usize, usize) -> bool;

fn run(
    accesses: &[AccessRecord],
    revokes: &[RevokeRecord],
    t: &Thresholds,
    matches: Matches<'_>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    volume(accesses, t, &mut out);
    off_hours(accesses, t, &mut out);
    bursts(
        accesses,
        AccessKind::Denied,
        t.denied_burst,
        t.denied_window_ms,
        "denied_burst",
        "denied attempts",
        &mut out,
    );
    bursts(
        accesses,
        AccessKind::BreakGlass,
        t.break_glass_repeat,
        t.break_glass_window_ms,
        "repeated_break_glass",
        "break-glass accesses",
        &mut out,
    );
    after_revoke(accesses, revokes, t, matches, &mut out);
    out
}

fn volume(accesses: &[AccessRecord], t: &Thresholds, out: &mut Vec<Finding>) {
    // actor -> day -> (patients, events)
    let mut days: BTreeMap<PublicKey, BTreeMap<u64, DayActivity>> = BTreeMap::new();
    for a in accesses {
        let d = days
            .entry(a.actor)
            .or_default()
            .entry(a.time.0 / DAY_MS)
            .or_default();
        d.0.insert(a.patient);
        d.1.push(a.id);
    }
    for (actor, per_day) in days {
        let mut counts: Vec<u64> = per_day.values().map(|(p, _)| p.len() as u64).collect();
        counts.sort_unstable();
        let median = counts[counts.len() / 2];
        let limit = (median * t.volume_factor).max(t.volume_min_patients);
        for (day, (patients, events)) in per_day {
            let n = patients.len() as u64;
            if n > limit {
                out.push(Finding {
                    rule: "volume",
                    actor,
                    detail: format!(
                        "{n} distinct patients on day {day} (UTC), over {limit} (median {median} a day × {})",
                        t.volume_factor
                    ),
                    events,
                });
            }
        }
    }
}

fn off_hours(accesses: &[AccessRecord], t: &Thresholds, out: &mut Vec<Finding>) {
    let mut per_org: BTreeMap<PublicKey, [u64; 24]> = BTreeMap::new();
    for a in accesses {
        per_org.entry(a.organisation).or_insert([0; 24])[((a.time.0 / HOUR_MS) % 24) as usize] += 1;
    }
    let mut flagged: BTreeMap<(PublicKey, u64), Vec<EventId>> = BTreeMap::new();
    for a in accesses {
        let hours = per_org[&a.organisation];
        let total: u64 = hours.iter().sum();
        let hour = (a.time.0 / HOUR_MS) % 24;
        if total >= t.hours_min_history
            && hours[hour as usize] * 1000 <= total * t.hours_max_share_permille
        {
            flagged.entry((a.actor, hour)).or_default().push(a.id);
        }
    }
    for ((actor, hour), events) in flagged {
        out.push(Finding {
            rule: "off_hours",
            actor,
            detail: format!("{} access(es) at {hour:02}:00–{hour:02}:59 UTC, outside its organisation's usual hours", events.len()),
            events,
        });
    }
}

fn bursts(
    accesses: &[AccessRecord],
    kind: AccessKind,
    n: u64,
    window: u64,
    rule: &'static str,
    what: &str,
    out: &mut Vec<Finding>,
) {
    let mut per_actor: BTreeMap<PublicKey, Vec<&AccessRecord>> = BTreeMap::new();
    for a in accesses.iter().filter(|a| a.kind == kind) {
        per_actor.entry(a.actor).or_default().push(a);
    }
    for (actor, list) in per_actor {
        // Sliding window; report each maximal run once.
        let mut start = 0;
        let mut reported_until = 0;
        for end in 0..list.len() {
            while list[end].time.0 - list[start].time.0 > window {
                start += 1;
            }
            if (end - start + 1) as u64 >= n && end >= reported_until {
                let mut stop = end;
                while stop + 1 < list.len() && list[stop + 1].time.0 - list[start].time.0 <= window
                {
                    stop += 1;
                }
                out.push(Finding {
                    rule,
                    actor,
                    detail: format!("{} {what} within {} min", stop - start + 1, window / 60_000),
                    events: list[start..=stop].iter().map(|a| a.id).collect(),
                });
                reported_until = stop + 1;
            }
        }
    }
}

fn after_revoke(
    accesses: &[AccessRecord],
    revokes: &[RevokeRecord],
    t: &Thresholds,
    matches: Matches<'_>,
    out: &mut Vec<Finding>,
) {
    for (ri, r) in revokes.iter().enumerate() {
        for (ai, a) in accesses.iter().enumerate() {
            let in_window = a.patient == r.patient
                && a.time >= r.time
                && a.time.0 - r.time.0 <= t.after_revoke_ms;
            if !in_window || !matches(ri, ai) {
                continue;
            }
            out.push(Finding {
                rule: "after_revoke",
                actor: a.actor,
                detail: format!(
                    "access attempt ({:?}) {} s after the patient revoked consent",
                    a.kind,
                    (a.time.0 - r.time.0) / 1000
                ),
                events: vec![r.id, a.id],
            });
        }
    }
}
