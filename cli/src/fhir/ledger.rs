//! What the FHIR resources need from the patient's events beyond the node's consent and access
//! lists: block times (when a grant was made, when it was revoked, when a review was signed),
//! the commitment to the twin resource of each request, and deterministic resource ids.

use std::collections::BTreeMap;

use serde_json::Value;
use twinledger_core::{EventPayload, Receipt, SignedEvent};

use crate::CliError;
use crate::history::VerifiedHistory;

/// One of the patient's events with its block's time.
#[derive(Debug, Clone)]
pub struct LedgerEvent {
    /// The event id (hex).
    pub id: String,
    /// The signed event.
    pub event: SignedEvent,
    /// Its block's time (ms since the Unix epoch).
    pub time: u64,
}

/// Facts about the patient's events, by event id (hex).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// The chain id (hex): the ledger that decided, recorded and serves as the audit source.
    pub chain_id: String,
    /// The time (ms) of every event.
    pub time_of: BTreeMap<String, u64>,
    /// The revocation time (ms) of every revoked grant, by grant id.
    pub revoked_time_of: BTreeMap<String, u64>,
    /// The commitment (hex) to the twin resource of every access and break-glass request.
    pub resource_of: BTreeMap<String, String>,
}

impl Ledger {
    /// Collects the facts from the patient's events (in chain order).
    pub fn new(chain_id: String, events: &[LedgerEvent]) -> Self {
        let mut l = Ledger {
            chain_id,
            ..Ledger::default()
        };
        for e in events {
            l.time_of.insert(e.id.clone(), e.time);
            match &e.event.event.payload {
                EventPayload::ConsentRevoke(r) => {
                    l.revoked_time_of.insert(r.grant.to_hex(), e.time);
                }
                EventPayload::AccessRequest(a) => {
                    l.resource_of.insert(e.id.clone(), a.resource.0.to_hex());
                }
                EventPayload::BreakGlassRequest(b) => {
                    l.resource_of.insert(e.id.clone(), b.resource.0.to_hex());
                }
                _ => {}
            }
        }
        l
    }
}

/// The events of a verified history.
pub fn from_verified(h: &VerifiedHistory) -> Vec<LedgerEvent> {
    h.events
        .iter()
        .map(|e| LedgerEvent {
            id: e.id.to_hex(),
            event: e.event.clone(),
            time: e.time,
        })
        .collect()
}

/// The events of a history answer (`GET /v1/patients/{did}/history`) read as they are, without
/// verification (for exports made without `--genesis`).
pub fn from_answer(answer: &Value) -> Result<Vec<LedgerEvent>, CliError> {
    let events = answer["events"].as_array().ok_or_else(|| {
        CliError::Invalid("the node's history answer has no list of events".into())
    })?;
    events
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let r: Receipt = serde_json::from_value(v.clone()).map_err(|e| {
                CliError::Invalid(format!("the node's history answer: event {i}: {e}"))
            })?;
            Ok(LedgerEvent {
                id: r.event_id().to_hex(),
                time: r.header.time.0,
                event: r.event,
            })
        })
        .collect()
}

/// A name-based UUID (RFC 9562 version 8) for the resource of `kind` made from ledger event
/// `id`: the first 16 bytes of a BLAKE3 hash of both, with the version and variant bits set.
/// Two exports of one chain give every resource the same id and `fullUrl`.
pub fn uuid(kind: &str, id: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"twinledger/fhir/resource-id/v1\0");
    h.update(kind.as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uuids_are_version_8_stable_and_distinct_per_kind() {
        let id = "ab".repeat(32);
        let a = uuid("consent", &id);
        assert_eq!(a, uuid("consent", &id), "deterministic");
        assert_ne!(a, uuid("access", &id), "kinds differ");
        assert_ne!(a, uuid("consent", &"cd".repeat(32)), "ids differ");
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "version 8: {a}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "RFC variant: {a}"
        );
    }
}
