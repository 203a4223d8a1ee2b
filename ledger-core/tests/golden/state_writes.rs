//! The state-map writes of PROTOCOL.md §6.10, transcribed from the document: which records each
//! event sets, in which order, with which key and value. The generator rebuilds a block's
//! writes from these rules and the public state after each event (not from the state machine's
//! own log, which is private), and the caller refuses to pin writes whose map root
//! (`golden/state_map.rs`) is not the block's `state_hash`; the checker decodes a pinned write
//! with the types of §6.10.

use serde::Serialize;
use twinledger_core::codec;
use twinledger_core::consensus::VoteKind;
use twinledger_core::event::governance::GovernanceAction;
use twinledger_core::hash::hash_in;
use twinledger_core::state::SignatureCheck;
use twinledger_core::state::records::*;
use twinledger_core::*;

/// Table names of §6.10, by index.
pub const TABLES: [&str; 17] = [
    "nonce",
    "patient",
    "patient-key",
    "organisation",
    "actor",
    "auditor",
    "grant",
    "delegation",
    "break-glass",
    "twin",
    "pending-validators",
    "governance-seq",
    "misbehaviour",
    "patient-events",
    "sealed",
    "release",
    "observer",
];

/// One write: `table[key] = value`, key and value canonically encoded.
#[derive(Clone, Debug)]
pub struct Write {
    pub table: u8,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl Write {
    pub fn new<K: Serialize, V: Serialize>(table: &str, key: &K, value: &V) -> Self {
        let index = TABLES
            .iter()
            .position(|t| *t == table)
            .expect("a §6.10 table");
        Self {
            table: u8::try_from(index).unwrap(),
            key: codec::encode(key),
            value: codec::encode(value),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "table": self.table,
            "name": TABLES[usize::from(self.table)],
            "key_hex": hex::encode(&self.key),
            "value_hex": hex::encode(&self.value),
        })
    }
}

/// The writes of `ev`, applied at `height` to `before`, giving `after` (§6.10 rules).
fn event_writes(before: &State, after: &State, ev: &SignedEvent, height: u64) -> Vec<Write> {
    let id = ev.id();
    let author = ev.event.author;
    let mut w = Vec::new();
    // A patient's first event, signed by the patient id itself, registers the patient first.
    let register = |w: &mut Vec<Write>, patient: &PublicKey| {
        if before.patient(patient).is_none() && author == *patient {
            w.push(Write::new(
                "patient",
                patient,
                &PatientRecord {
                    key: *patient,
                    grants: 0,
                },
            ));
            w.push(Write::new(
                "patient-key",
                patient,
                &PatientKey {
                    patient: *patient,
                    retired: false,
                },
            ));
        }
    };
    match &ev.event.payload {
        EventPayload::ConsentGrant(p) => {
            register(&mut w, &p.patient);
            w.push(Write::new(
                "patient",
                &p.patient,
                after.patient(&p.patient).unwrap(),
            ));
            w.push(Write::new("grant", &id, after.grant(&id).unwrap()));
        }
        EventPayload::ConsentRevoke(p) => {
            w.push(Write::new(
                "grant",
                &p.grant,
                after.grant(&p.grant).unwrap(),
            ));
            w.push(Write::new(
                "patient",
                &p.patient,
                after.patient(&p.patient).unwrap(),
            ));
        }
        EventPayload::DelegateGrant(p) => {
            register(&mut w, &p.patient);
            w.push(Write::new(
                "delegation",
                &id,
                after.delegation(&id).unwrap(),
            ));
        }
        EventPayload::DelegateRevoke(p) => {
            w.push(Write::new(
                "delegation",
                &p.delegation,
                after.delegation(&p.delegation).unwrap(),
            ));
        }
        EventPayload::KeyRotation(p) => {
            register(&mut w, &p.patient);
            let old = before.patient(&p.patient).map_or(p.patient, |r| r.key);
            w.push(Write::new(
                "patient-key",
                &old,
                after.patient_of_key(&old).unwrap(),
            ));
            w.push(Write::new(
                "patient-key",
                &p.new_key,
                after.patient_of_key(&p.new_key).unwrap(),
            ));
            w.push(Write::new(
                "patient",
                &p.patient,
                after.patient(&p.patient).unwrap(),
            ));
        }
        EventPayload::AccessRequest(_) => {}
        EventPayload::BreakGlassRequest(_) => {
            // Only a permitted request is recorded (a denied one writes nothing but the nonce).
            if let Some(rec) = after.break_glass(&id) {
                w.push(Write::new("break-glass", &id, rec));
            }
        }
        EventPayload::BreakGlassReview(p) => {
            w.push(Write::new(
                "break-glass",
                &p.request,
                after.break_glass(&p.request).unwrap(),
            ));
        }
        EventPayload::TwinAnchor(p) => {
            // Keyed by the twin id bound to the author's organisation (§5.6, protocol 2.3).
            let org = before.actor(&ev.event.author).unwrap().organisation;
            let id = p.twin_id(&org);
            w.push(Write::new("twin", &id, after.twin(&id).unwrap()));
        }
        EventPayload::TwinSeal(p) => {
            // The anchor's write, then the sealed record (§6.12, protocol 2.4).
            let org = before.actor(&ev.event.author).unwrap().organisation;
            let twin = p.anchor().twin_id(&org);
            w.push(Write::new("twin", &twin, after.twin(&twin).unwrap()));
            let key = (twin, p.version);
            w.push(Write::new(
                "sealed",
                &key,
                after.sealed(&twin, p.version).unwrap(),
            ));
        }
        EventPayload::KeyRelease(p) => {
            w.push(Write::new("release", &p.access, &id));
        }
        EventPayload::TwinErase(p) => {
            register(&mut w, &p.patient);
            w.push(Write::new(
                "sealed",
                &(p.twin, p.version),
                after.sealed(&p.twin, p.version).unwrap(),
            ));
        }
        EventPayload::ActorEnrol(p) => {
            w.push(Write::new(
                "actor",
                &p.actor,
                after.actor(&p.actor).unwrap(),
            ));
        }
        EventPayload::ActorRevoke(p) => {
            w.push(Write::new(
                "actor",
                &p.actor,
                after.actor(&p.actor).unwrap(),
            ));
        }
        EventPayload::Governance(g) => {
            match &g.action {
                GovernanceAction::OrgEnrol { org, .. } | GovernanceAction::OrgRevoke { org } => {
                    w.push(Write::new(
                        "organisation",
                        org,
                        after.organisation(org).unwrap(),
                    ));
                }
                GovernanceAction::AuditorEnrol { auditor } => {
                    w.push(Write::new("auditor", auditor, &true));
                }
                GovernanceAction::AuditorRevoke { auditor } => {
                    w.push(Write::new("auditor", auditor, &false));
                }
                GovernanceAction::ValidatorSetChange { validators } => {
                    let at = height + 2;
                    assert_eq!(after.validators_for(at), validators);
                    w.push(Write::new("pending-validators", &at, &validators.hash()));
                }
                // 2.5: the observer record, organisation kept by a removal.
                GovernanceAction::ObserverAdd {
                    observer,
                    organisation,
                } => {
                    let rec = ObserverRecord {
                        organisation: Some(*organisation),
                        live: true,
                    };
                    assert_eq!(after.observer(observer), Some(&rec));
                    w.push(Write::new("observer", observer, &rec));
                }
                GovernanceAction::ObserverRemove { observer } => {
                    let rec = after.observer(observer).copied().unwrap();
                    assert!(!rec.live);
                    w.push(Write::new("observer", observer, &rec));
                }
            }
            w.push(Write::new("governance-seq", &(), &after.governance_seq()));
        }
        EventPayload::Misbehaviour(ds) => {
            let (h, round, kind) = ds.slot();
            w.push(Write::new(
                "misbehaviour",
                &(ds.validator(), h, round, kind),
                &id,
            ));
        }
    }
    // Table 13: every accepted event that concerns a patient (decided on the state before it)
    // advances the patient's count and chain head.
    if let Some(p) = before.patient_concerned(ev) {
        let (count, head) = before
            .patient_events(&p)
            .map_or((0, Hash::ZERO), |r| (r.count, r.head));
        let mut chained = head.as_bytes().to_vec();
        chained.extend(id.as_bytes());
        let next = (count + 1, hash_in("twinledger v2 patient-events", &chained));
        let rec = after.patient_events(&p).expect("recorded");
        assert_eq!((rec.count, rec.head), next);
        w.push(Write::new("patient-events", &p, &next));
    }
    w.push(Write::new("nonce", &author, &(ev.event.seq + 1)));
    w
}

/// The writes of `block` applied to `before` (the state after the previous block), in order.
pub fn block_writes(before: &State, block: &Block) -> Vec<Write> {
    let height = block.header.height;
    let mut st = before.clone();
    let mut writes = Vec::new();
    for ev in &block.events {
        let prev = st.clone();
        st.admit(ev, block.header.time, SignatureCheck::Verify)
            .expect("a committed event applies");
        writes.extend(event_writes(&prev, &st, ev, height));
    }
    writes
}

/// Decodes one pinned write with the key and value types of its table (§6.10), refusing
/// anything that is not their exact canonical encoding.
pub fn check_write(table: u8, key: &[u8], value: &[u8]) {
    fn both<K, V>(key: &[u8], value: &[u8])
    where
        K: Serialize + serde::de::DeserializeOwned,
        V: Serialize + serde::de::DeserializeOwned,
    {
        codec::decode::<K>("state key", key, 1 << 16).expect("key decodes as its table's key");
        codec::decode::<V>("state value", value, 1 << 16)
            .expect("value decodes as its table's value");
    }
    match table {
        0 => both::<PublicKey, u64>(key, value),
        1 => both::<PublicKey, PatientRecord>(key, value),
        2 => both::<PublicKey, PatientKey>(key, value),
        3 => both::<PublicKey, OrgRecord>(key, value),
        4 => both::<PublicKey, ActorRecord>(key, value),
        5 => both::<PublicKey, bool>(key, value),
        6 => both::<EventId, GrantRecord>(key, value),
        7 => both::<EventId, DelegationRecord>(key, value),
        8 => both::<EventId, BreakGlassRecord>(key, value),
        9 => both::<TwinId, TwinRecord>(key, value),
        10 => both::<u64, Hash>(key, value),
        11 => {
            assert!(key.is_empty(), "the governance-seq key is the empty tuple");
            both::<(), u64>(key, value);
        }
        12 => both::<(PublicKey, u64, u32, VoteKind), EventId>(key, value),
        13 => both::<PublicKey, PatientEvents>(key, value),
        t => panic!("no state table {t}"),
    }
}
