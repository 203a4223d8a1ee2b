//! A patient's certified history (PROTOCOL.md §11.3): the node's answer to
//! `GET /v1/patients/{did}/history`, verified against the genesis alone, and the reports built
//! from the verified events only (`access report`, `consent list`, `fhir export` with
//! `--genesis`).
//!
//! [`verify`] is a pure function of the genesis, the patient and the answer. It checks the chain
//! of validator-set changes from the genesis (§9.3); the tip's header names the set in force
//! and its certificate verifies against it (§9); the state proof of the patient's
//! patient-events record verifies against the tip's `state_hash` (§6.10); every event receipt
//! verifies against the set in force at its height (§9.2), lies at or before the tip and comes
//! after the one before it in the log; every event concerns the patient (§6.10); and the count
//! and chain head recomputed from the events' ids, in order, are the proven record; and the
//! actor record of every author of an access or break-glass request among the events is proven
//! against the same `state_hash` (`actors`, §11.3). Any mismatch is a [`CliError::Mismatch`]
//! (exit 6) naming what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Value, json};
use twinledger_core::state::records::{ActorRecord, PatientEvents};
use twinledger_core::{
    BlockHeader, CommitCertificate, Decision, EventId, EventPayload, Genesis, Outcome, PublicKey,
    Receipt, SignedEvent, StateProof, Table, codec,
};
use twinledger_genesis::GenesisFile;

use crate::CliError;
use crate::client::NodeClient;

/// The keys of a history answer, exactly.
const KEYS: [&str; 8] = [
    "patient",
    "height",
    "header",
    "certificate",
    "validator_set_changes",
    "patient_events",
    "state_proof",
    "events",
];

/// The key of the requesters' actor records and proofs (§11.3). Optional: an answer saved
/// before it existed has none, and its requesters are then looked up among the genesis actors
/// only (§11.4).
const ACTORS: &str = "actors";

/// Largest encoded state proof accepted (257 siblings of 65 bytes, a leaf and a value).
const MAX_PROOF_BYTES: usize = 64 * 1024;

/// `--genesis` / `--verify` / `--validator-sets` of the reporting commands.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The chain's genesis file: when given, the report is built from the patient's certified
    /// history (`GET /v1/patients/{did}/history`), verified against it: every event the ledger
    /// holds for the patient, none more, none missing, in chain order (exit 6 if the node's
    /// answer does not verify).
    #[arg(long)]
    pub genesis: Option<PathBuf>,
    /// Require verification (needs `--genesis`; verifying is the default when it is given).
    #[arg(long, requires = "genesis")]
    pub verify: bool,
    /// A chain of validator-set changes from a source you trust, merged with the node's.
    #[arg(long, requires = "genesis")]
    pub validator_sets: Option<PathBuf>,
}

/// One verified event of the history.
#[derive(Debug, Clone)]
pub struct VerifiedEvent {
    /// The event id.
    pub id: EventId,
    /// The signed event.
    pub event: SignedEvent,
    /// Its proven outcome.
    pub outcome: Outcome,
    /// Its block.
    pub height: u64,
    /// Its block's time (ms).
    pub time: u64,
    /// Its log position.
    pub leaf: u64,
}

/// A verified history: every event that concerns the patient up to the certified tip.
#[derive(Debug, Clone)]
pub struct VerifiedHistory {
    /// The patient.
    pub patient: PublicKey,
    /// The tip's header (certified).
    pub header: BlockHeader,
    /// The proven record (count and chain head; count 0 and zero head when absent).
    pub record: PatientEvents,
    /// The events, in chain order.
    pub events: Vec<VerifiedEvent>,
    /// The actor record of every author of a request among the events, proven against the
    /// tip's state hash (§11.3 `actors`); `None` when the answer has no `actors` key (saved
    /// before it existed): the requesters are then known from the genesis only.
    pub actors: Option<BTreeMap<PublicKey, ActorRecord>>,
}

fn mismatch(what: impl Into<String>) -> CliError {
    CliError::Mismatch(what.into())
}

/// The patient the event concerns by the rule of §6.10, `None` for none. A break-glass review
/// concerns the patient of the break-glass record it reviews; that record exists only for an
/// accepted, permitted break-glass request, keyed by its event id, and holds that request's
/// patient, so `permitted_break_glass` (the permitted break-glass requests seen so far in the
/// history, id → patient) answers for it. A review whose request is not among them concerns
/// no patient this history can show (`Err` naming the request).
fn concerns(
    ev: &SignedEvent,
    permitted_break_glass: &BTreeMap<EventId, PublicKey>,
) -> Result<Option<PublicKey>, EventId> {
    Ok(match &ev.event.payload {
        EventPayload::ConsentGrant(p) => Some(p.patient),
        EventPayload::ConsentRevoke(p) => Some(p.patient),
        EventPayload::DelegateGrant(p) => Some(p.patient),
        EventPayload::DelegateRevoke(p) => Some(p.patient),
        EventPayload::KeyRotation(p) => Some(p.patient),
        EventPayload::AccessRequest(p) => Some(p.patient),
        EventPayload::BreakGlassRequest(p) => Some(p.patient),
        EventPayload::BreakGlassReview(p) => match permitted_break_glass.get(&p.request) {
            Some(patient) => Some(*patient),
            None => return Err(p.request),
        },
        EventPayload::TwinAnchor(p) => Some(p.patient),
        EventPayload::TwinSeal(p) => Some(p.patient),
        EventPayload::KeyRelease(p) => Some(p.patient),
        EventPayload::TwinErase(p) => Some(p.patient),
        EventPayload::ActorEnrol(_)
        | EventPayload::ActorRevoke(_)
        | EventPayload::Governance(_)
        | EventPayload::Misbehaviour(_) => None,
    })
}

/// Verifies a history answer `v` for `patient` against `genesis` (and a trusted chain of
/// validator-set changes, merged with the answer's). See the module documentation.
pub fn verify(
    genesis: &Genesis,
    patient: &PublicKey,
    v: &Value,
    trusted: Option<&Path>,
) -> Result<VerifiedHistory, CliError> {
    let obj = v
        .as_object()
        .ok_or_else(|| CliError::Invalid("the history answer is not a JSON object".into()))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !KEYS.contains(&k.as_str()) && k.as_str() != ACTORS)
    {
        return Err(mismatch(format!(
            "the history answer holds an unknown field `{k}`: refusing what the proof does not bind"
        )));
    }
    if let Some(k) = KEYS.iter().find(|k| !obj.contains_key(**k)) {
        return Err(CliError::Invalid(format!(
            "the history answer has no field `{k}`"
        )));
    }
    if v["patient"] != json!(patient) {
        return Err(mismatch(format!(
            "the node answered with the history of {}, not of patient {patient}",
            v["patient"]
        )));
    }
    // 1. The chain of validator-set changes, from the genesis.
    let changes = crate::receipt::changes_in(v)?;
    let sets = crate::receipt::sets_for(genesis, &changes, "the node's history answer", trusted)?;
    // 2. The tip: its header names the set in force and its certificate verifies against it.
    let header: BlockHeader = crate::receipt::canonical(&v["header"], "header")?;
    let cert: CommitCertificate = crate::receipt::canonical(&v["certificate"], "certificate")?;
    let tip = header.height;
    if v["height"] != json!(tip) {
        return Err(mismatch(format!(
            "field `height` is {}, but the tip's header is of block {tip}",
            v["height"]
        )));
    }
    if header.chain_id != genesis.chain_id() {
        return Err(mismatch(format!(
            "the tip is a block of chain {}, not of this genesis's chain {}",
            header.chain_id,
            genesis.chain_id()
        )));
    }
    let in_force = sets.set_at(tip);
    if header.validators_hash != in_force.hash() {
        return Err(mismatch(format!(
            "the tip (block {tip}) names validator set {}, but the set in force there hashes to \
             {} (a validator-set change missing from the chain of changes, or a forged tip)",
            header.validators_hash,
            in_force.hash()
        )));
    }
    sets.verify_checkpoint(&header.checkpoint(), &cert)
        .map_err(|e| {
            mismatch(format!(
                "the tip's certificate (block {tip}) does not verify: {e}"
            ))
        })?;
    // 3. The patient-events record, proven against the tip's state hash.
    let proof_hex = v["state_proof"]
        .as_str()
        .ok_or_else(|| CliError::Invalid("field `state_proof` is not a hex string".into()))?;
    let proof_bytes = hex::decode(proof_hex)
        .map_err(|e| CliError::Invalid(format!("field `state_proof` is not hex: {e}")))?;
    let proof = StateProof::from_bytes(&proof_bytes, MAX_PROOF_BYTES)
        .map_err(|e| CliError::Invalid(format!("field `state_proof` does not decode: {e}")))?;
    let proven = proof
        .verify_value(
            header.state_hash,
            Table::PatientEvents,
            &codec::encode(patient),
        )
        .map_err(|e| {
            mismatch(format!(
                "the state proof of the patient-events record of {patient} does not verify \
                 against the tip's state hash {} (block {tip}): {e}",
                header.state_hash
            ))
        })?
        .map(|bytes| {
            codec::decode::<PatientEvents>("patient-events record", bytes, 64)
                .map_err(|e| mismatch(format!("the proven patient-events record: {e}")))
        })
        .transpose()?;
    let claimed: Option<PatientEvents> = if v["patient_events"].is_null() {
        None
    } else {
        Some(crate::receipt::canonical(
            &v["patient_events"],
            "patient_events",
        )?)
    };
    if claimed != proven {
        return Err(mismatch(format!(
            "field `patient_events` is {}, but the state proof proves {} at block {tip}: the \
             node lies about the record",
            json!(claimed),
            json!(proven)
        )));
    }
    let record = proven.unwrap_or_default();
    // 4. Every event: a genuine receipt, in order, at or before the tip, of this patient.
    let items = v["events"]
        .as_array()
        .ok_or_else(|| CliError::Invalid("field `events` is not a list".into()))?;
    let mut events: Vec<VerifiedEvent> = Vec::with_capacity(items.len());
    let mut permitted_break_glass = BTreeMap::new();
    let mut recomputed = PatientEvents::default();
    for (i, item) in items.iter().enumerate() {
        let r: Receipt = crate::receipt::canonical(item, &format!("events[{i}]"))?;
        let id = r.event_id();
        let outcome = sets.verify_receipt(&r).map_err(|e| {
            mismatch(format!(
                "events[{i}] (event {id}): a forged receipt, it does not verify: {e}"
            ))
        })?;
        if r.header.height > tip || r.leaf_index >= header.log_size {
            return Err(mismatch(format!(
                "events[{i}] (event {id}) is at block {}, leaf {}: after the tip (block {tip}, \
                 {} leaves)",
                r.header.height, r.leaf_index, header.log_size
            )));
        }
        if r.header.height == tip && r.header != header {
            return Err(mismatch(format!(
                "events[{i}] (event {id}) is in a block {tip} other than the tip's"
            )));
        }
        if let Some(prev) = events.last() {
            if r.leaf_index == prev.leaf {
                return Err(mismatch(format!(
                    "events[{i}] (event {id}) repeats events[{}]: a duplicated entry",
                    i - 1
                )));
            }
            if r.leaf_index < prev.leaf {
                return Err(mismatch(format!(
                    "events[{i}] (event {id}, leaf {}) comes before events[{}] (event {}, leaf \
                     {}) in the chain: a reordered entry",
                    r.leaf_index,
                    i - 1,
                    prev.id,
                    prev.leaf
                )));
            }
        }
        match concerns(&r.event, &permitted_break_glass) {
            Ok(Some(p)) if p == *patient => {}
            Ok(other) => {
                return Err(mismatch(format!(
                    "events[{i}] (event {id}, a {} event) concerns {}, not patient {patient}: an \
                     extra entry",
                    r.event.event.payload.kind(),
                    other.map_or_else(|| "no patient".to_string(), |p| p.to_string())
                )));
            }
            Err(request) => {
                return Err(mismatch(format!(
                    "events[{i}] (event {id}) reviews break-glass access {request}, which is not \
                     a permitted break-glass request earlier in this patient's history: an extra \
                     entry"
                )));
            }
        }
        if let EventPayload::BreakGlassRequest(b) = &r.event.event.payload
            && outcome == Outcome::Access(Decision::BreakGlass)
        {
            permitted_break_glass.insert(id, b.patient);
        }
        recomputed = recomputed.next(&id);
        events.push(VerifiedEvent {
            id,
            event: r.event.clone(),
            outcome,
            height: r.header.height,
            time: r.header.time.0,
            leaf: r.leaf_index,
        });
    }
    // 5. The events are all of them, in order.
    if recomputed.count < record.count {
        return Err(mismatch(format!(
            "the proven record counts {} events concerning patient {patient} at block {tip}, the \
             node served {}: {} omitted",
            record.count,
            recomputed.count,
            record.count - recomputed.count
        )));
    }
    if recomputed.count > record.count {
        return Err(mismatch(format!(
            "the proven record counts {} events concerning patient {patient} at block {tip}, the \
             node served {}: {} extra",
            record.count,
            recomputed.count,
            recomputed.count - record.count
        )));
    }
    if recomputed.head != record.head {
        return Err(mismatch(format!(
            "the {} events served are not the ones the proven record commits to (chain head {} \
             recomputed, {} proven): an entry replaced or omitted",
            record.count, recomputed.head, record.head
        )));
    }
    // 6. The requesters' actor records, proven against the same state hash.
    let actors = match obj.get(ACTORS) {
        None => None,
        Some(a) => Some(verify_actors(a, &header, &events)?),
    };
    Ok(VerifiedHistory {
        patient: *patient,
        header,
        record,
        events,
        actors,
    })
}

/// Verifies the `actors` of a history answer (§11.3): exactly one entry per distinct author of
/// an `AccessRequest` or `BreakGlassRequest` among `events`, each a state proof of
/// `actor[author]` against the tip's `state_hash` (§6.10) proving exactly the given `record`.
/// An accepted request's author is always an actor (an unknown author is refused, §6), and an
/// actor record is never deleted, so a record proven absent is refused too.
fn verify_actors(
    v: &Value,
    header: &BlockHeader,
    events: &[VerifiedEvent],
) -> Result<BTreeMap<PublicKey, ActorRecord>, CliError> {
    let tip = header.height;
    let obj = v
        .as_object()
        .ok_or_else(|| CliError::Invalid(format!("field `{ACTORS}` is not a JSON object")))?;
    let authors: std::collections::BTreeSet<PublicKey> = events
        .iter()
        .filter(|e| {
            matches!(
                e.event.event.payload,
                EventPayload::AccessRequest(_) | EventPayload::BreakGlassRequest(_)
            )
        })
        .map(|e| e.event.event.author)
        .collect();
    let mut out = BTreeMap::new();
    for (did, entry) in obj {
        let key = PublicKey::from_did(did).map_err(|e| {
            CliError::Invalid(format!("field `{ACTORS}`: `{did}` is not a did:key: {e}"))
        })?;
        if key.to_string() != *did {
            return Err(mismatch(format!(
                "field `{ACTORS}`: `{did}` is not in its canonical form"
            )));
        }
        if !authors.contains(&key) {
            return Err(mismatch(format!(
                "field `{ACTORS}` holds actor {key}, who authored no access or break-glass request                  of this history: an extra entry"
            )));
        }
        let e = entry.as_object().ok_or_else(|| {
            CliError::Invalid(format!(
                "field `{ACTORS}` of actor {key} is not a JSON object"
            ))
        })?;
        if let Some(k) = e
            .keys()
            .find(|k| !["record", "state_proof"].contains(&k.as_str()))
        {
            return Err(mismatch(format!(
                "field `{ACTORS}` of actor {key} holds an unknown field `{k}`: refusing what the                  proof does not bind"
            )));
        }
        let proof_hex = e
            .get("state_proof")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                CliError::Invalid(format!(
                    "field `{ACTORS}` of actor {key}: `state_proof` is not a hex string"
                ))
            })?;
        let proof_bytes = hex::decode(proof_hex).map_err(|err| {
            CliError::Invalid(format!(
                "field `{ACTORS}` of actor {key}: `state_proof` is not hex: {err}"
            ))
        })?;
        let proof = StateProof::from_bytes(&proof_bytes, MAX_PROOF_BYTES).map_err(|err| {
            CliError::Invalid(format!(
                "field `{ACTORS}` of actor {key}: `state_proof` does not decode: {err}"
            ))
        })?;
        let proven = proof
            .verify_value(header.state_hash, Table::Actor, &codec::encode(&key))
            .map_err(|err| {
                mismatch(format!(
                    "the state proof of the actor record of {key} does not verify against the                      tip's state hash {} (block {tip}): {err}",
                    header.state_hash
                ))
            })?
            .map(|bytes| {
                codec::decode::<ActorRecord>("actor record", bytes, 128).map_err(|err| {
                    mismatch(format!("the proven actor record of {key}: {err}"))
                })
            })
            .transpose()?;
        let claimed: Option<ActorRecord> = match e.get("record") {
            None | Some(Value::Null) => None,
            Some(r) => Some(crate::receipt::canonical(
                r,
                &format!("{ACTORS}[{key}].record"),
            )?),
        };
        if claimed != proven {
            return Err(mismatch(format!(
                "the actor record of {key} is given as {}, but its state proof proves {} at \
                 block {tip}: the node lies about the requester",
                json!(claimed),
                json!(proven)
            )));
        }
        let Some(record) = proven else {
            return Err(mismatch(format!(
                "actor {key} authored an accepted request, but the state proves it has no actor                  record at block {tip}"
            )));
        };
        out.insert(key, record);
    }
    if let Some(missing) = authors.iter().find(|a| !out.contains_key(a)) {
        return Err(mismatch(format!(
            "field `{ACTORS}` has no proven actor record for {missing}, the author of a request \
             in this history: an omitted entry"
        )));
    }
    Ok(out)
}

/// Fetches the patient's history from the node as `key` and verifies it against the genesis
/// file (and a trusted chain of validator-set changes). Returns it with the genesis.
pub fn fetch_verified(
    client: &NodeClient,
    key: &twinledger_core::Keypair,
    patient: &PublicKey,
    args: &VerifyArgs,
) -> Result<Option<(VerifiedHistory, Genesis)>, CliError> {
    let Some(genesis) = &args.genesis else {
        return Ok(None);
    };
    let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
    let v = client.signed_get(key, &format!("/v1/patients/{patient}/history"))?;
    let h = verify(&ledger, patient, &v, args.validator_sets.as_deref())?;
    Ok(Some((h, ledger)))
}

impl VerifiedHistory {
    /// One line saying what was verified.
    pub fn summary(&self) -> String {
        format!(
            "verified against the genesis: {} events concern patient {}, complete at block {} \
             (state hash {})\n",
            self.record.count, self.patient, self.header.height, self.header.state_hash
        )
    }

    /// What was verified, for JSON outputs.
    pub fn summary_json(&self) -> Value {
        json!({
            "height": self.header.height, "state_hash": self.header.state_hash,
            "events": self.record.count, "head": self.record.head,
        })
    }

    /// The access and break-glass requests, shaped as the node's accesses answer
    /// (`GET /v1/patients/{did}/accesses`), built from the verified events only. The
    /// organisation of the requester is that of its proven actor record (`actors`, §11.3), else
    /// the genesis's when the actor is a genesis actor (an actor's enrolment is not one of the
    /// patient's events); otherwise `null`.
    pub fn accesses(&self, genesis: &Genesis) -> Vec<Value> {
        let mut reviews: BTreeMap<EventId, Value> = BTreeMap::new();
        // The key release that answered each request (2.4): who actually decrypted, and when.
        let mut releases: BTreeMap<EventId, Value> = BTreeMap::new();
        for e in &self.events {
            match &e.event.event.payload {
                EventPayload::BreakGlassReview(r) => {
                    reviews.insert(
                        r.request,
                        json!({"reviewer": e.event.event.author, "finding": r.finding, "event": e.id}),
                    );
                }
                EventPayload::KeyRelease(r) => {
                    releases.insert(r.access, json!({"id": e.id, "at_ms": e.time}));
                }
                _ => {}
            }
        }
        self.events
            .iter()
            .filter_map(|e| {
                let (kind, category, purpose, action) = match &e.event.event.payload {
                    EventPayload::AccessRequest(a) => ("access", a.category, a.purpose, a.action),
                    EventPayload::BreakGlassRequest(b) => (
                        "break_glass",
                        b.category,
                        twinledger_core::Purpose::EmergencyTreat,
                        b.action,
                    ),
                    _ => return None,
                };
                let actor = e.event.event.author;
                let organisation = self
                    .actors
                    .as_ref()
                    .and_then(|m| m.get(&actor))
                    .map(|a| a.organisation)
                    .or_else(|| {
                        genesis
                            .actors
                            .iter()
                            .find(|a| a.key == actor)
                            .map(|a| a.organisation)
                    });
                Some(json!({
                    "id": e.id, "leaf": e.leaf, "height": e.height, "time": e.time,
                    "actor": actor, "organisation": organisation,
                    "kind": kind, "category": category, "purpose": purpose, "action": action,
                    "outcome": e.outcome,
                    "break_glass_review": reviews.get(&e.id),
                    "key_release": releases.get(&e.id),
                }))
            })
            .collect()
    }

    /// The consent grants and delegations, shaped as the node's consents answer
    /// (`GET /v1/patients/{did}/consents`), built from the verified events only; statuses at
    /// time `now` (ms).
    pub fn consents(&self, now: u64) -> Value {
        // Revocations: the revoked grant or delegation -> the height and time of the revoke.
        let mut revoked: BTreeMap<EventId, (u64, u64)> = BTreeMap::new();
        for e in &self.events {
            match &e.event.event.payload {
                EventPayload::ConsentRevoke(r) => {
                    revoked.insert(r.grant, (e.height, e.time));
                }
                EventPayload::DelegateRevoke(r) => {
                    revoked.insert(r.delegation, (e.height, e.time));
                }
                _ => {}
            }
        }
        let mut grants = Vec::new();
        let mut delegations = Vec::new();
        for e in &self.events {
            let revoked_at = revoked.get(&e.id).map(|r| r.0);
            match &e.event.event.payload {
                EventPayload::ConsentGrant(g) => {
                    let ended = if revoked_at.is_none() {
                        self.granted_under(e, g).and_then(|(d, valid_until)| {
                            match (revoked.get(&d), valid_until) {
                                (Some((_, t)), _) => Some(json!({
                                    "reason": "delegation_revoked", "delegation": d, "at_ms": t,
                                })),
                                (None, Some(u)) if u <= now => Some(json!({
                                    "reason": "delegation_expired", "delegation": d, "at_ms": u,
                                })),
                                _ => None,
                            }
                        })
                    } else {
                        None
                    };
                    let status = if revoked_at.is_some() {
                        "revoked"
                    } else if ended.is_some() {
                        "ended"
                    } else if g.valid_from.0 > now {
                        "future"
                    } else if g.valid_until.is_none_or(|u| now < u.0) {
                        "active"
                    } else {
                        "expired"
                    };
                    let mut entry = json!({
                        "id": e.id, "leaf": e.leaf, "status": status, "grant": g,
                        "author": e.event.event.author, "height": e.height,
                        "revoked_at": revoked_at,
                    });
                    if let Some(x) = ended {
                        entry["ended"] = x;
                    }
                    grants.push(entry);
                }
                EventPayload::DelegateGrant(d) => {
                    let status = if revoked_at.is_some() {
                        "revoked"
                    } else if d.valid_until.is_none_or(|u| now < u.0) {
                        "active"
                    } else {
                        "expired"
                    };
                    delegations.push(json!({
                        "id": e.id, "leaf": e.leaf, "status": status,
                        "delegation": {
                            "patient": d.patient, "delegate": d.delegate, "scope": d.scope,
                            "valid_until": d.valid_until, "revoked_at": revoked_at,
                        },
                    }));
                }
                _ => {}
            }
        }
        json!({
            "patient": self.patient, "grants": grants, "delegations": delegations,
            "verified": self.summary_json(),
        })
    }
}

impl VerifiedHistory {
    /// The delegation under which grant event `e` was made, by the rule the ledger applies
    /// (PROTOCOL.md §6.3, `acting_for`): when its author is not the patient, the first
    /// delegation of the patient to that author, in id order, live at the grant's time (made
    /// before it, not revoked before it, not expired) whose scope holds the grant's scope.
    /// Returns its id and end time (ms). `None` for a grant the patient signed.
    fn granted_under(
        &self,
        e: &VerifiedEvent,
        g: &twinledger_core::event::consent::ConsentGrant,
    ) -> Option<(EventId, Option<u64>)> {
        let author = e.event.event.author;
        let mut live: Vec<(EventId, Option<u64>)> = Vec::new();
        for d in self.events.iter().take_while(|d| d.leaf < e.leaf) {
            let EventPayload::DelegateGrant(dg) = &d.event.event.payload else {
                continue;
            };
            if dg.delegate != author || dg.patient != g.patient {
                continue;
            }
            let revoked_before = self.events.iter().any(|r| {
                r.leaf < e.leaf
                    && matches!(&r.event.event.payload,
                        EventPayload::DelegateRevoke(x) if x.delegation == d.id)
            });
            let expired = dg.valid_until.is_some_and(|u| e.time >= u.0);
            if !revoked_before && !expired && g.scope.is_within(&dg.scope) {
                live.push((d.id, dg.valid_until.map(|u| u.0)));
            }
        }
        live.sort_by_key(|(id, _)| *id);
        live.into_iter().next()
    }
}

/// The patient an access or break-glass receipt is about, or `None` for any other event.
pub fn request_patient(receipt: &Receipt) -> Option<PublicKey> {
    match &receipt.event.event.payload {
        EventPayload::AccessRequest(a) => Some(a.patient),
        EventPayload::BreakGlassRequest(b) => Some(b.patient),
        _ => None,
    }
}

/// Consent at *t* and absence (PROTOCOL.md §11.4) for a verified access or break-glass
/// receipt: takes the §11.3 history answer `v` ([`history_for`]), verifies it against the genesis
/// for the request's patient ([`verify`]), and checks the receipt's decision in it
/// ([`check_in_history`]). Returns the lines to print and the `consent` JSON object.
pub fn consent_check(
    genesis: &Genesis,
    receipt: &Receipt,
    outcome: &Outcome,
    v: &Value,
    trusted: Option<&Path>,
) -> Result<(String, Value), CliError> {
    let patient = request_patient(receipt).ok_or_else(|| {
        CliError::Invalid(format!(
            "--history: event {} is a {} event, not an access or break-glass request: there is \
             no decision to re-derive",
            receipt.event_id(),
            receipt.event.event.payload.kind()
        ))
    })?;
    let h = verify(genesis, &patient, v, trusted)?;
    check_in_history(genesis, &h, receipt, outcome)
}

/// The patient history to check a receipt file or bundle `v` against (PROTOCOL.md §11.4): the
/// §11.3 answer in `file` (`--history`) if given, else the `history` of an evidence bundle of
/// version 3, else none.
pub fn history_for(v: &Value, file: Option<&Path>) -> Result<Option<Value>, CliError> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(CliError::io("read", file))?;
        let h: Value = serde_json::from_str(&text).map_err(|e| {
            CliError::Invalid(format!(
                "{}: not a patient history answer: {e}",
                file.display()
            ))
        })?;
        return Ok(Some(h));
    }
    Ok(v.get("kind").and_then(|_| v.get("history")).cloned())
}

/// Finds the receipt's event in the verified history `h`, re-derives its decision from the
/// events before it by the rule of §6.1 (§6.5 for break-glass), the requester's organisation
/// and role taken from its actor record proven at the history's tip ([`VerifiedHistory::actors`];
/// from the genesis actors only for an answer without `actors`), and compares it with the
/// receipt's outcome. Exit 6
/// (`Mismatch`) when the event is not in the history, when the history records another outcome
/// for it, or when the re-derived decision differs, naming the grant at fault.
pub fn check_in_history(
    genesis: &Genesis,
    h: &VerifiedHistory,
    receipt: &Receipt,
    outcome: &Outcome,
) -> Result<(String, Value), CliError> {
    use twinledger_core::consent_proof::{
        ConsentProofError, HistoryEntry, Requester, verify_decision,
    };
    let id = receipt.event_id();
    let height = receipt.header.height;
    let tip = h.header.height;
    let Some(index) = h.events.iter().position(|e| e.id == id) else {
        return Err(mismatch(if height > tip {
            format!(
                "event {id} (block {height}) is not in the patient's history, which ends at block \
                 {tip}: fetch a history at or after block {height}"
            )
        } else {
            format!(
                "event {id} (block {height}) is missing from the patient's history complete up to \
                 block {tip}: the receipt and the history are of two different chains"
            )
        }));
    };
    if h.events[index].outcome != *outcome {
        return Err(mismatch(format!(
            "the history records outcome {} for event {id}, the receipt {}",
            json!(h.events[index].outcome),
            json!(outcome)
        )));
    }
    let author = receipt.event.event.author;
    let (requester, requester_from) = match &h.actors {
        Some(actors) => {
            let a = actors.get(&author).ok_or_else(|| {
                CliError::Invalid(format!(
                    "requester {author} has no proven actor record in the patient's history \
                     (field `{ACTORS}`, PROTOCOL.md §11.3)"
                ))
            })?;
            let r = Requester {
                key: author,
                organisation: a.organisation,
                role: a.role,
            };
            (r, format!("its actor record proven at block {tip}"))
        }
        None => {
            let actor = genesis
                .actors
                .iter()
                .find(|a| a.key == author)
                .ok_or_else(|| {
                    CliError::Invalid(format!(
                        "requester {author} is not a genesis actor and the history answer has no \
                         `{ACTORS}` (saved before it existed): its organisation and role are not \
                         proven; fetch the history again (PROTOCOL.md §11.4)"
                    ))
                })?;
            let r = Requester {
                key: author,
                organisation: actor.organisation,
                role: actor.role,
            };
            (r, "the genesis actors".to_string())
        }
    };
    let entries: Vec<HistoryEntry> = h.events[..=index]
        .iter()
        .map(|e| HistoryEntry {
            id: e.id,
            event: e.event.clone(),
            outcome: e.outcome,
            height: e.height,
            time: twinledger_core::Timestamp(e.time),
        })
        .collect();
    let proof = verify_decision(&h.patient, &entries, index, &requester).map_err(|e| match e {
        ConsentProofError::Disagrees(_) | ConsentProofError::Inconsistent { .. } => {
            mismatch(format!("consent: {e}"))
        }
        other => CliError::Invalid(format!("consent: {other}")),
    })?;
    let mut text = format!(
        "consent:   re-derived from the patient's history ({} events, complete at block {tip}): \
         {} of request {id} by {} ({}, organisation {}, from {requester_from})\n",
        h.record.count,
        crate::receipt::describe_outcome(&Outcome::Access(proof.decision)),
        author,
        requester.role,
        requester.organisation
    );
    let line = |g: &twinledger_core::consent_proof::GrantCheck| {
        let by = match g.granted_by {
            twinledger_core::state::records::GrantedBy::Patient => "the patient".to_string(),
            twinledger_core::state::records::GrantedBy::Delegate(d) => {
                format!("a delegate under delegation {d}")
            }
        };
        format!("grant {} (block {}, by {by})", g.grant, g.height)
    };
    match proof.decision {
        twinledger_core::Decision::Permit { .. } => {
            if let Some(g) = proof.permitting() {
                text.push_str(&format!(
                    "           {} was live at the request: not revoked, in its validity window, \
                     grantee, category, purpose and action covered{}\n",
                    line(g),
                    match g.granted_by {
                        twinledger_core::state::records::GrantedBy::Patient => "",
                        _ => ", delegation live",
                    }
                ));
            }
        }
        twinledger_core::Decision::Deny {
            reason: twinledger_core::DenyReason::NoCoveringGrant,
        } => {
            if proof.grants.is_empty() {
                text.push_str("           no grant of the patient before the request\n");
            }
            for g in &proof.grants {
                let why: Vec<String> = g.not_covering.iter().map(|n| n.to_string()).collect();
                text.push_str(&format!("           {}: {}\n", line(g), why.join(", ")));
            }
        }
        _ => text.push_str(&format!(
            "           break-glass: role {} {} break glass (§6.5)\n",
            requester.role,
            if requester.role.may_break_glass() {
                "may"
            } else {
                "may not"
            }
        )),
    }
    let j = json!({
        "verified": true,
        "history": h.summary_json(),
        "decision": proof.decision,
        "requester": requester,
        "requester_from": if h.actors.is_some() { "actor_record" } else { "genesis" },
        "grants": proof.grants,
    });
    Ok((text, j))
}

#[cfg(test)]
mod tests {
    //! The attacker: a node that omits an event, adds one of another patient, reorders two,
    //! forges a receipt or lies about the record is refused, naming what is wrong.
    use twinledger_core::codes::{Action, DataCategory, Purpose, Role};
    use twinledger_core::devkit::{DevChain, dev_key};
    use twinledger_core::event::access::AccessRequest;
    use twinledger_core::event::break_glass::{BreakGlassRequest, BreakGlassReview, Finding};
    use twinledger_core::event::consent::{ConsentGrant, Grantee};
    use twinledger_core::event::delegation::Scope;
    use twinledger_core::{Commitment, DenyReason, Keypair, Timestamp};

    use super::*;

    fn grant(patient: &Keypair, to: PublicKey) -> EventPayload {
        EventPayload::ConsentGrant(ConsentGrant {
            patient: patient.public(),
            grantee: Grantee::Actor(to),
            scope: Scope {
                categories: [DataCategory::VitalSigns].into_iter().collect(),
                purposes: [Purpose::Treat].into_iter().collect(),
                actions: [Action::Read].into_iter().collect(),
            },
            valid_from: Timestamp(0),
            valid_until: None,
        })
    }

    fn access(patient: &Keypair, category: DataCategory) -> EventPayload {
        EventPayload::AccessRequest(AccessRequest {
            patient: patient.public(),
            category,
            purpose: Purpose::Treat,
            action: Action::Read,
            resource: Commitment::new(&[1; 32], b"twin://x"),
        })
    }

    /// The receipts of every committed event of `dc`, in chain order.
    fn receipts(dc: &DevChain) -> Vec<Receipt> {
        let mut out = Vec::new();
        for c in &dc.blocks {
            let h = &c.block.header;
            let first = h.log_size - u64::from(h.event_count);
            for (i, ev) in c.block.events.iter().enumerate() {
                let leaf = first + i as u64;
                out.push(Receipt {
                    event: ev.clone(),
                    index: u32::try_from(i).unwrap(),
                    leaf_index: leaf,
                    inclusion_proof: dc
                        .log
                        .inclusion_proof(leaf, h.log_size)
                        .unwrap()
                        .into_iter()
                        .map(twinledger_core::Hash)
                        .collect(),
                    header: h.clone(),
                    results: c.results.clone(),
                    certificate: c.certificate.clone(),
                });
            }
        }
        out
    }

    /// What an honest node answers for `patient` at `dc`'s tip.
    fn answer(dc: &DevChain, patient: &PublicKey) -> Value {
        let tip = dc.blocks.last().unwrap();
        let events: Vec<Receipt> = receipts(dc)
            .into_iter()
            .filter(|r| dc.state.patient_concerned(&r.event) == Some(*patient))
            .collect();
        let mut actors = serde_json::Map::new();
        for r in &events {
            if matches!(
                r.event.event.payload,
                EventPayload::AccessRequest(_) | EventPayload::BreakGlassRequest(_)
            ) {
                let a = r.event.event.author;
                actors.insert(
                    a.to_string(),
                    json!({
                        "record": dc.state.actor(&a),
                        "state_proof": hex::encode(dc.state.prove(Table::Actor, &a).to_bytes()),
                    }),
                );
            }
        }
        json!({
            "patient": patient,
            "height": tip.block.header.height,
            "header": tip.block.header,
            "certificate": tip.certificate,
            "validator_set_changes": [],
            "patient_events": dc.state.patient_events(patient),
            "state_proof": hex::encode(dc.state.prove(Table::PatientEvents, patient).to_bytes()),
            "events": events,
            "actors": actors,
        })
    }

    /// Alice: a grant, a permitted and a denied access, a break-glass access and its review;
    /// Bob: a grant and an access, interleaved with hers.
    fn chain() -> (DevChain, Keypair, Keypair) {
        let mut dc = DevChain::new(1);
        let alice = dev_key("history/alice");
        let bob = dev_key("history/bob");
        let phys = dc.physician.clone();
        let nurse = dc.nurse.clone();
        let auditor = dc.auditor.clone();
        let a = dc.event(&alice, grant(&alice, phys.public()));
        let b = dc.event(&bob, grant(&bob, phys.public()));
        assert!(dc.commit(vec![a, b]).rejected.is_empty());
        let a = dc.event(&phys, access(&alice, DataCategory::VitalSigns));
        let b = dc.event(&phys, access(&bob, DataCategory::VitalSigns));
        let c = dc.event(&phys, access(&alice, DataCategory::Genetic));
        assert!(dc.commit(vec![a, b, c]).rejected.is_empty());
        let bg = dc.event(
            &nurse,
            EventPayload::BreakGlassRequest(BreakGlassRequest {
                patient: alice.public(),
                category: DataCategory::VitalSigns,
                action: Action::Read,
                resource: Commitment::new(&[2; 32], b"twin://y"),
                reason: Commitment::new(&[3; 32], b"unconscious"),
            }),
        );
        let bg_id = bg.id();
        let c = dc.commit(vec![bg]);
        assert!(c.rejected.is_empty(), "{:?}", c.rejected);
        let review = dc.event(
            &auditor,
            EventPayload::BreakGlassReview(BreakGlassReview {
                request: bg_id,
                finding: Finding::Justified,
                notes: Commitment::new(&[4; 32], b"ok"),
            }),
        );
        let c = dc.commit(vec![review]);
        assert!(c.rejected.is_empty(), "{:?}", c.rejected);
        // An empty tip: the record is proven at a block after the last event.
        dc.commit(vec![]);
        (dc, alice, bob)
    }

    fn refused(g: &Genesis, p: &PublicKey, v: &Value, needle: &str) {
        match verify(g, p, v, None) {
            Err(e @ CliError::Mismatch(_)) => {
                assert!(e.to_string().contains(needle), "{needle:?} not in: {e}");
                assert_eq!(e.exit_code(), crate::exit::MISMATCH);
            }
            other => panic!("expected a mismatch naming {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_genuine_history_verifies_and_yields_the_report() {
        let (dc, alice, bob) = chain();
        let g = dc.genesis.clone();
        let h = verify(&g, &alice.public(), &answer(&dc, &alice.public()), None).unwrap();
        assert_eq!((h.record.count, h.events.len()), (5, 5));
        assert_eq!(h.header.height, 5);
        let rows = crate::access::rows(&h.accesses(&g));
        let decisions: Vec<&str> = rows.iter().map(|r| r.decision.as_str()).collect();
        assert_eq!(
            decisions,
            ["permit", "deny (no_covering_grant)", "break-glass"]
        );
        assert_eq!(rows[2].review, "justified");
        assert!(rows.iter().all(|r| !r.organisation.is_empty()));
        let consents = h.consents(u64::MAX / 2);
        assert_eq!(consents["grants"].as_array().unwrap().len(), 1);
        assert_eq!(consents["grants"][0]["status"], "active");
        let h = verify(&g, &bob.public(), &answer(&dc, &bob.public()), None).unwrap();
        assert_eq!(h.events.len(), 2);
        // A patient no event concerns: a non-membership proof and no events.
        let carol = dev_key("history/carol").public();
        let v = answer(&dc, &carol);
        assert!(v["patient_events"].is_null());
        let h = verify(&g, &carol, &v, None).unwrap();
        assert_eq!((h.record.count, h.events.len()), (0, 0));
    }

    #[test]
    fn an_omitted_event_is_refused() {
        let (dc, alice, _) = chain();
        let p = alice.public();
        let mut v = answer(&dc, &p);
        v["events"].as_array_mut().unwrap().remove(2);
        refused(&dc.genesis, &p, &v, "1 omitted");
        // The last one too (what an older answer would lack).
        let mut v = answer(&dc, &p);
        v["events"].as_array_mut().unwrap().pop();
        refused(&dc.genesis, &p, &v, "1 omitted");
        // A patient told they have none.
        let mut v = answer(&dc, &p);
        v["events"] = json!([]);
        refused(&dc.genesis, &p, &v, "5 omitted");
    }

    #[test]
    fn an_event_of_another_patient_is_refused() {
        let (dc, alice, bob) = chain();
        let p = alice.public();
        let mut v = answer(&dc, &p);
        let bobs = answer(&dc, &bob.public())["events"][1].clone();
        v["events"].as_array_mut().unwrap().insert(2, bobs);
        refused(&dc.genesis, &p, &v, "an extra entry");
        // Carol's empty history padded with one of Alice's events.
        let carol = dev_key("history/carol").public();
        let mut v = answer(&dc, &carol);
        v["events"] = json!([answer(&dc, &p)["events"][0].clone()]);
        refused(&dc.genesis, &carol, &v, "an extra entry");
        // A review whose break-glass access is left out does not concern anyone shown.
        let mut v = answer(&dc, &p);
        v["events"].as_array_mut().unwrap().remove(3);
        refused(&dc.genesis, &p, &v, "not a permitted break-glass request");
        // A duplicated entry.
        let mut v = answer(&dc, &p);
        let first = v["events"][0].clone();
        v["events"].as_array_mut().unwrap().insert(1, first);
        refused(&dc.genesis, &p, &v, "a duplicated entry");
    }

    #[test]
    fn reordered_events_are_refused() {
        let (dc, alice, _) = chain();
        let p = alice.public();
        let mut v = answer(&dc, &p);
        v["events"].as_array_mut().unwrap().swap(0, 1);
        refused(&dc.genesis, &p, &v, "a reordered entry");
        // Two events of one block.
        let mut v = answer(&dc, &p);
        v["events"].as_array_mut().unwrap().swap(1, 2);
        refused(&dc.genesis, &p, &v, "a reordered entry");
    }

    #[test]
    fn a_forged_receipt_is_refused() {
        let (dc, alice, _) = chain();
        let p = alice.public();
        // The denied access reported as permitted.
        let mut v = answer(&dc, &p);
        let mut r: Receipt = serde_json::from_value(v["events"][2].clone()).unwrap();
        assert!(matches!(
            r.results.outcomes[r.index as usize],
            Outcome::Access(Decision::Deny {
                reason: DenyReason::NoCoveringGrant
            })
        ));
        r.results.outcomes[r.index as usize] = Outcome::Access(Decision::Permit {
            grant: r.event.id(),
        });
        v["events"][2] = json!(r);
        refused(&dc.genesis, &p, &v, "a forged receipt");
        // An event the ledger never held, signed by its author but never certified.
        let mut v = answer(&dc, &p);
        let mut r: Receipt = serde_json::from_value(v["events"][1].clone()).unwrap();
        let mut dc2 = DevChain::new(1);
        let phys = dc2.physician.clone();
        r.event = dc2.event(&phys, access(&alice, DataCategory::Imaging));
        v["events"][1] = json!(r);
        refused(&dc.genesis, &p, &v, "a forged receipt");
        // A tip certified by keys that are not the validators.
        let mut v = answer(&dc, &p);
        let mut cert: CommitCertificate = serde_json::from_value(v["certificate"].clone()).unwrap();
        cert.signatures[0].signature.0[0] ^= 1;
        v["certificate"] = json!(cert);
        refused(&dc.genesis, &p, &v, "the tip's certificate");
        // Another chain's genesis.
        let other = DevChain::new(2).genesis;
        match verify(&other, &p, &answer(&dc, &p), None) {
            Err(CliError::Mismatch(_)) => {}
            r => panic!("another genesis: {r:?}"),
        }
    }

    #[test]
    fn a_lie_about_the_record_is_refused() {
        let (dc, alice, bob) = chain();
        let p = alice.public();
        let honest = answer(&dc, &p);
        // The field claims fewer events than proven.
        let mut v = honest.clone();
        v["patient_events"]["count"] = json!(4);
        refused(&dc.genesis, &p, &v, "lies about the record");
        // The proof itself altered: its value says four.
        let mut proof = dc.state.prove(Table::PatientEvents, &p);
        let mut rec: PatientEvents =
            codec::decode("r", proof.value.as_deref().unwrap(), 64).unwrap();
        rec.count = 4;
        proof.value = Some(codec::encode(&rec));
        let mut v = honest.clone();
        v["state_proof"] = json!(hex::encode(proof.to_bytes()));
        v["patient_events"] = json!(rec);
        refused(
            &dc.genesis,
            &p,
            &v,
            "does not verify against the tip's state hash",
        );
        // Bob's proven record served for Alice.
        let mut v = honest.clone();
        let bobs = answer(&dc, &bob.public());
        v["state_proof"] = bobs["state_proof"].clone();
        v["patient_events"] = bobs["patient_events"].clone();
        refused(&dc.genesis, &p, &v, "does not verify");
        // A non-membership proof claimed for a patient that has events.
        let carol = answer(&dc, &dev_key("history/carol").public());
        let mut v = honest.clone();
        v["state_proof"] = carol["state_proof"].clone();
        v["patient_events"] = Value::Null;
        v["events"] = json!([]);
        refused(&dc.genesis, &p, &v, "does not verify");
        // An unknown field is refused rather than ignored.
        let mut v = honest;
        v["complete"] = json!(true);
        refused(&dc.genesis, &p, &v, "unknown field");
    }

    // Consent at t and absence (PROTOCOL.md §11.4).

    fn receipt_of(dc: &DevChain, id: EventId) -> Receipt {
        receipts(dc)
            .into_iter()
            .find(|r| r.event_id() == id)
            .unwrap()
    }

    fn mismatch_naming(r: Result<(String, Value), CliError>, needles: &[&str]) {
        match r {
            Err(e @ CliError::Mismatch(_)) => {
                for n in needles {
                    assert!(e.to_string().contains(n), "{n:?} not in: {e}");
                }
                assert_eq!(e.exit_code(), crate::exit::MISMATCH);
            }
            other => panic!("expected a mismatch naming {needles:?}, got {other:?}"),
        }
    }

    /// A genuine permit names its live grant; a genuine deny names why each grant did not
    /// cover; a break-glass access is re-derived from the role.
    #[test]
    fn consent_genuine_permit_deny_and_break_glass_verify() {
        let (dc, alice, _) = chain();
        let g = dc.genesis.clone();
        let h = verify(&g, &alice.public(), &answer(&dc, &alice.public()), None).unwrap();
        let grant_id = h.events[0].id;
        for (i, want) in [(1, "permitted"), (2, "denied"), (3, "break-glass")] {
            let e = &h.events[i];
            let r = receipt_of(&dc, e.id);
            let (text, j) = check_in_history(&g, &h, &r, &e.outcome).unwrap();
            assert!(text.contains(want), "{text}");
            assert_eq!(
                j["decision"],
                json!(match e.outcome {
                    Outcome::Access(d) => d,
                    Outcome::Applied => unreachable!(),
                })
            );
            if i == 1 {
                assert!(text.contains(&format!("grant {grant_id}")), "{text}");
                assert!(text.contains("was live at the request"), "{text}");
            }
            if i == 2 {
                assert!(text.contains("category not granted"), "{text}");
            }
        }
    }

    /// A permit whose grant the history shows revoked before the request is refused; so is a
    /// deny for which the history shows a live covering grant (naming it); and a request that
    /// is not in the history.
    #[test]
    fn consent_forged_decisions_and_missing_events_are_refused() {
        let mut dc = DevChain::new(1);
        let alice = dev_key("history/alice");
        let phys = dc.physician.clone();
        let ga = dc.event(&alice, grant(&alice, phys.public()));
        let gid = ga.id();
        assert!(dc.commit(vec![ga]).rejected.is_empty());
        let early = dc.event(&phys, access(&alice, DataCategory::VitalSigns));
        let early_id = early.id();
        assert!(dc.commit(vec![early]).rejected.is_empty());
        let before_revoke = answer(&dc, &alice.public());
        let rv = dc.event(
            &alice,
            EventPayload::ConsentRevoke(twinledger_core::event::consent::ConsentRevoke {
                patient: alice.public(),
                grant: gid,
            }),
        );
        assert!(dc.commit(vec![rv]).rejected.is_empty());
        let late = dc.event(&phys, access(&alice, DataCategory::VitalSigns));
        let late_id = late.id();
        assert!(dc.commit(vec![late]).rejected.is_empty());
        let g = dc.genesis.clone();
        let h = verify(&g, &alice.public(), &answer(&dc, &alice.public()), None).unwrap();
        let permit = Outcome::Access(Decision::Permit { grant: gid });
        let deny = Outcome::Access(Decision::Deny {
            reason: DenyReason::NoCoveringGrant,
        });
        // Genuine: permit before the revoke, deny after.
        assert!(check_in_history(&g, &h, &receipt_of(&dc, early_id), &permit).is_ok());
        let (text, j) = check_in_history(&g, &h, &receipt_of(&dc, late_id), &deny).unwrap();
        assert!(text.contains("revoked at block"), "{text}");
        // The JSON form of §11.4.
        let g0 = &j["grants"][0];
        assert_eq!(g0["grant"], json!(gid));
        assert_eq!(g0["granted_by"], json!("Patient"));
        assert!(
            g0["not_covering"][0]["revoked"]["at_height"].is_u64(),
            "{j}"
        );
        assert_eq!(
            j["decision"],
            json!({"deny": {"reason": "no_covering_grant"}})
        );
        // Forged: the late request recorded as a permit under the revoked grant.
        let mut forged = h.clone();
        let i = forged.events.iter().position(|e| e.id == late_id).unwrap();
        forged.events[i].outcome = permit;
        mismatch_naming(
            check_in_history(&g, &forged, &receipt_of(&dc, late_id), &permit),
            &[&format!("grant {gid} did not cover it: revoked at block")],
        );
        // Forged: the early request recorded as a deny although the grant was live.
        let mut forged = h.clone();
        let i = forged.events.iter().position(|e| e.id == early_id).unwrap();
        forged.events[i].outcome = deny;
        mismatch_naming(
            check_in_history(&g, &forged, &receipt_of(&dc, early_id), &deny),
            &[&format!("grant {gid}"), "would have permitted"],
        );
        // The history says one outcome, the receipt another.
        mismatch_naming(
            check_in_history(&g, &h, &receipt_of(&dc, early_id), &deny),
            &["the history records outcome"],
        );
        // A history that ends before the request.
        let old = verify(&g, &alice.public(), &before_revoke, None).unwrap();
        mismatch_naming(
            check_in_history(&g, &old, &receipt_of(&dc, late_id), &deny),
            &[&format!("event {late_id}"), "not in the patient's history"],
        );
        // A history with the request left out (a forged list: the count would catch it).
        let mut gap = h.clone();
        gap.events.retain(|e| e.id != late_id);
        mismatch_naming(
            check_in_history(&g, &gap, &receipt_of(&dc, late_id), &deny),
            &["missing from the patient's history"],
        );
    }

    /// The requesters' actor records (§11.3 `actors`): a lie about an actor's role or
    /// organisation, an altered proof, an omitted or an extra actor are refused, naming it.
    #[test]
    fn a_lie_about_an_actor_is_refused() {
        let (dc, alice, _) = chain();
        let p = alice.public();
        let g = &dc.genesis;
        let honest = answer(&dc, &p);
        let nurse = dc.nurse.public().to_string();
        let phys = dc.physician.public().to_string();
        assert_eq!(honest["actors"].as_object().unwrap().len(), 2);
        let h = verify(g, &p, &honest, None).unwrap();
        assert_eq!(h.actors.as_ref().unwrap().len(), 2);
        // The nurse claimed a physician; the physician claimed another organisation.
        let mut v = honest.clone();
        v["actors"][&nurse]["record"]["role"] = json!(Role::Physician);
        refused(g, &p, &v, &format!("the actor record of {nurse}"));
        refused(g, &p, &v, "lies about the requester");
        let mut v = honest.clone();
        v["actors"][&phys]["record"]["organisation"] = json!(dc.institute.public());
        refused(g, &p, &v, &format!("the actor record of {phys}"));
        // The proof altered to prove the lie.
        let mut proof = dc.state.prove(Table::Actor, &dc.nurse.public());
        let mut rec = *dc.state.actor(&dc.nurse.public()).unwrap();
        rec.role = Role::Pharmacist;
        proof.value = Some(codec::encode(&rec));
        let mut v = honest.clone();
        v["actors"][&nurse] = json!({"record": rec, "state_proof": hex::encode(proof.to_bytes())});
        refused(
            g,
            &p,
            &v,
            &format!("actor record of {nurse} does not verify"),
        );
        // Another actor's proof; a proven absence.
        let mut v = honest.clone();
        v["actors"][&nurse] = honest["actors"][&phys].clone();
        refused(g, &p, &v, "does not verify");
        let ghost = dev_key("history/ghost").public();
        let mut v = honest.clone();
        v["actors"][&nurse] = json!({
            "record": null,
            "state_proof": hex::encode(dc.state.prove(Table::Actor, &ghost).to_bytes()),
        });
        refused(g, &p, &v, "does not verify");
        // Omitted, extra, or with an unknown field.
        let mut v = honest.clone();
        v["actors"].as_object_mut().unwrap().remove(&nurse);
        refused(g, &p, &v, "an omitted entry");
        let mut v = honest.clone();
        let researcher = dc.researcher.public();
        v["actors"][researcher.to_string()] = json!({
            "record": dc.state.actor(&researcher),
            "state_proof": hex::encode(dc.state.prove(Table::Actor, &researcher).to_bytes()),
        });
        refused(g, &p, &v, "an extra entry");
        let mut v = honest;
        v["actors"][&nurse]["live"] = json!(true);
        refused(g, &p, &v, "unknown field");
    }

    /// An actor enrolled after the genesis: its organisation and role come from its proven
    /// record, so its requests verify (and a deny is re-derived from the proven role); without
    /// `actors` (an answer saved before the key existed) only genesis actors can be checked.
    #[test]
    fn consent_for_an_actor_enrolled_after_genesis_verifies() {
        let mut dc = DevChain::new(1);
        let alice = dev_key("history/alice");
        let hospital = dc.hospital.clone();
        let medic = dev_key("history/medic");
        let clerk = dev_key("history/clerk");
        let e1 = dc.event(
            &hospital,
            EventPayload::ActorEnrol(twinledger_core::event::membership::ActorEnrol {
                actor: medic.public(),
                role: Role::Paramedic,
            }),
        );
        let e2 = dc.event(
            &hospital,
            EventPayload::ActorEnrol(twinledger_core::event::membership::ActorEnrol {
                actor: clerk.public(),
                role: Role::Pharmacist,
            }),
        );
        assert!(dc.commit(vec![e1, e2]).rejected.is_empty());
        // A grant to every paramedic of the hospital.
        let mut ga = grant(&alice, medic.public());
        if let EventPayload::ConsentGrant(g) = &mut ga {
            g.grantee = Grantee::Role {
                role: Role::Paramedic,
                organisation: Some(hospital.public()),
            };
        }
        let ga = dc.event(&alice, ga);
        let gid = ga.id();
        assert!(dc.commit(vec![ga]).rejected.is_empty());
        let a1 = dc.event(&medic, access(&alice, DataCategory::VitalSigns));
        let a2 = dc.event(&clerk, access(&alice, DataCategory::VitalSigns));
        let (a1_id, a2_id) = (a1.id(), a2.id());
        assert!(dc.commit(vec![a1, a2]).rejected.is_empty());
        let g = dc.genesis.clone();
        let v = answer(&dc, &alice.public());
        let h = verify(&g, &alice.public(), &v, None).unwrap();
        let permit = Outcome::Access(Decision::Permit { grant: gid });
        let deny = Outcome::Access(Decision::Deny {
            reason: DenyReason::NoCoveringGrant,
        });
        let (text, j) = check_in_history(&g, &h, &receipt_of(&dc, a1_id), &permit).unwrap();
        assert!(text.contains("paramedic"), "{text}");
        assert!(text.contains("actor record proven at block"), "{text}");
        assert_eq!(j["requester"]["role"], json!(Role::Paramedic));
        assert_eq!(j["requester"]["organisation"], json!(hospital.public()));
        assert_eq!(j["requester_from"], "actor_record");
        let (text, j) = check_in_history(&g, &h, &receipt_of(&dc, a2_id), &deny).unwrap();
        assert!(text.contains("another grantee"), "{text}");
        assert_eq!(j["grants"][0]["not_covering"], json!(["other_grantee"]));
        // The clerk claimed a paramedic: refused before any decision is re-derived.
        let mut lie = v.clone();
        lie["actors"][clerk.public().to_string()]["record"]["role"] = json!(Role::Paramedic);
        refused(&g, &alice.public(), &lie, "lies about the requester");
        // The verified organisation is the proven one in the access report too.
        let rows = h.accesses(&g);
        assert!(
            rows.iter()
                .all(|r| r["organisation"] == json!(hospital.public()))
        );
        // Without `actors`: verifies, but the enrolled actor's facts are not proven (exit 2).
        let mut old = v;
        old.as_object_mut().unwrap().remove("actors");
        let h = verify(&g, &alice.public(), &old, None).unwrap();
        assert!(h.actors.is_none());
        match check_in_history(&g, &h, &receipt_of(&dc, a1_id), &permit) {
            Err(e @ CliError::Invalid(_)) => {
                assert!(e.to_string().contains("not a genesis actor"), "{e}");
            }
            other => panic!("expected exit 2, got {other:?}"),
        }
    }
}
