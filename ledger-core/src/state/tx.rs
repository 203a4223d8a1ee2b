//! [`Tx`]: the one way an event changes the state.
//!
//! A record is written only through its `Tx` method (`put_grant`, `put_twin`, `bump_nonce`, …),
//! which sets the typed map, updates the indexes derived from it (a patient's unrevoked grants,
//! delegations by patient and delegate, the review queue) and logs the write for the state map
//! (PROTOCOL.md §6.10), all together: a rule can neither write a record the state hash does not
//! commit to nor log a write the typed state does not hold. The maps are private to
//! [`crate::state`]; rules read through [`Tx::st`] and the getters of [`State`].

use serde::Serialize;

use super::records::*;
use super::{RejectReason, State, VALIDATOR_SET_DELAY};
use crate::codec;
use crate::consensus::VoteKind;
use crate::event::delegation::Scope;
use crate::hash::{EventId, TwinId};
use crate::keys::PublicKey;
use crate::statemap::Table;
use crate::time::Timestamp;
use crate::validator::ValidatorSet;

/// One write to the state map: a record's table, encoded key and encoded new value.
#[derive(Clone, Debug)]
pub(crate) struct Write {
    pub(super) table: Table,
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
}

/// A misbehaviour slot: (validator, height, round, vote kind) (§6.11).
pub(crate) type Slot = (PublicKey, u64, u32, VoteKind);

/// Context of the event being applied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    pub id: EventId,
    pub author: PublicKey,
    pub time: Timestamp,
    pub height: u64,
    pub kind: &'static str,
}

/// A state being changed by one event (or by genesis), logging every write for the state map.
pub(crate) struct Tx<'a> {
    st: &'a mut State,
    /// What each write replaced, in order: undone in reverse when the event is refused after
    /// it wrote something, so that a refused event changes nothing without the state being
    /// copied before every event (copying made every write copy its path in the persistent
    /// maps, the main cost of applying an event).
    undo: Vec<Undo>,
    /// `None`: the writes are not wanted (mempool admission, which never computes a state
    /// hash), so they are not encoded at all.
    writes: Option<Vec<Write>>,
}

impl<'a> Tx<'a> {
    /// Starts changing `st`, with an empty write log.
    pub(super) fn new(st: &'a mut State) -> Self {
        Self {
            st,
            undo: Vec::new(),
            writes: Some(Vec::new()),
        }
    }

    /// Starts changing `st` without a write log: for a state whose hash is never computed (a
    /// node's scratch state for mempool admission). The typed maps change exactly as with
    /// [`Tx::new`].
    pub(super) fn unlogged(st: &'a mut State) -> Self {
        Self {
            st,
            undo: Vec::new(),
            writes: None,
        }
    }

    /// Undoes every write made through this `Tx`, newest first: the state is as it was when
    /// the `Tx` started.
    pub(super) fn roll_back(mut self) {
        while let Some(u) = self.undo.pop() {
            u.restore(self.st);
        }
    }

    /// The writes made, in order (none for an [`Tx::unlogged`] one).
    pub(super) fn into_writes(self) -> Vec<Write> {
        self.writes.unwrap_or_default()
    }
}

impl Tx<'_> {
    /// The state as changed so far, to read.
    pub fn st(&self) -> &State {
        self.st
    }

    /// Logs a write: the new value of `table[key]`, to be set in the state map at the end of
    /// the block (§6.10). Private: only the typed writes below call it, each with its map insert.
    fn log<K: Serialize, V: Serialize>(&mut self, table: Table, key: &K, value: &V) {
        let Some(writes) = self.writes.as_mut() else {
            return;
        };
        writes.push(Write {
            table,
            key: codec::encode(key),
            value: codec::encode(value),
        });
    }

    // ---- Typed writes: one per table, each setting the record, its indexes and its log entry.

    /// `nonce[author]`: the author's next sequence number becomes one more than it is.
    pub fn bump_nonce(&mut self, author: &PublicKey) {
        let seq = self.st.next_seq(author) + 1;
        self.undo
            .push(Undo::Nonce(*author, self.st.nonces.get(author).copied()));
        self.log(Table::Nonce, author, &seq);
        self.st.nonces.insert_mut(*author, seq);
    }

    /// `patient[id] = rec`.
    pub fn put_patient(&mut self, id: PublicKey, rec: PatientRecord) {
        self.undo
            .push(Undo::Patient(id, self.st.patients.get(&id).cloned()));
        self.log(Table::Patient, &id, &rec);
        self.st.patients.insert_mut(id, rec);
    }

    /// `patient-key[key] = rec`.
    pub fn put_patient_key(&mut self, key: PublicKey, rec: PatientKey) {
        self.undo.push(Undo::PatientKey(
            key,
            self.st.patient_keys.get(&key).cloned(),
        ));
        self.log(Table::PatientKey, &key, &rec);
        self.st.patient_keys.insert_mut(key, rec);
    }

    /// `organisation[key] = rec`.
    pub fn put_org(&mut self, key: PublicKey, rec: OrgRecord) {
        self.undo
            .push(Undo::Org(key, self.st.orgs.get(&key).cloned()));
        self.log(Table::Org, &key, &rec);
        self.st.orgs.insert_mut(key, rec);
    }

    /// `actor[key] = rec`.
    pub fn put_actor(&mut self, key: PublicKey, rec: ActorRecord) {
        self.undo
            .push(Undo::Actor(key, self.st.actors.get(&key).cloned()));
        self.log(Table::Actor, &key, &rec);
        self.st.actors.insert_mut(key, rec);
    }

    /// `auditor[key] = live`.
    pub fn put_auditor(&mut self, key: PublicKey, live: bool) {
        self.undo
            .push(Undo::Auditor(key, self.st.auditors.get(&key).copied()));
        self.log(Table::Auditor, &key, &live);
        self.st.auditors.insert_mut(key, live);
    }

    /// `observer[key] = rec` (2.5).
    pub fn put_observer(&mut self, key: PublicKey, rec: ObserverRecord) {
        self.undo
            .push(Undo::Observer(key, self.st.observers.get(&key).copied()));
        self.log(Table::Observer, &key, &rec);
        self.st.observers.insert_mut(key, rec);
    }

    /// `grant[id] = rec`; the grant is in its patient's index of unrevoked grants exactly
    /// while `revoked_at` is none.
    pub fn put_grant(&mut self, id: EventId, rec: GrantRecord) {
        let index = (rec.grant.patient, id);
        self.undo.push(Undo::Grant(
            id,
            self.st.grants.get(&id).cloned(),
            index,
            self.st.patient_grants.contains_key(&index),
        ));
        self.log(Table::Grant, &id, &rec);
        if rec.revoked_at.is_none() {
            self.st.patient_grants.insert_mut(index, ());
        } else {
            self.st.patient_grants.remove_mut(&index);
        }
        self.st.grants.insert_mut(id, rec);
    }

    /// `delegation[id] = rec`; the delegation is in the (patient, delegate) index exactly
    /// while `revoked_at` is none.
    pub fn put_delegation(&mut self, id: EventId, rec: DelegationRecord) {
        let index = (rec.patient, rec.delegate, id);
        self.undo.push(Undo::Delegation(
            id,
            self.st.delegations.get(&id).cloned(),
            index,
            self.st.patient_delegates.contains_key(&index),
        ));
        self.log(Table::Delegation, &id, &rec);
        let by_delegate = (rec.delegate, id);
        if rec.revoked_at.is_none() {
            self.st.patient_delegates.insert_mut(index, ());
            self.st.delegate_delegations.insert_mut(by_delegate, ());
        } else {
            self.st.patient_delegates.remove_mut(&index);
            self.st.delegate_delegations.remove_mut(&by_delegate);
        }
        self.st.delegations.insert_mut(id, rec);
    }

    /// `break-glass[id] = rec`; the access is in the review queue exactly while `review` is
    /// none.
    pub fn put_break_glass(&mut self, id: EventId, rec: BreakGlassRecord) {
        self.undo.push(Undo::BreakGlass(
            id,
            self.st.break_glass.get(&id).cloned(),
            self.st.review_queue.contains_key(&id),
        ));
        self.log(Table::BreakGlass, &id, &rec);
        if rec.review.is_none() {
            self.st.review_queue.insert_mut(id, ());
        } else {
            self.st.review_queue.remove_mut(&id);
        }
        self.st.break_glass.insert_mut(id, rec);
    }

    /// `twin[id] = rec`.
    pub fn put_twin(&mut self, id: TwinId, rec: TwinRecord) {
        self.undo
            .push(Undo::Twin(id, self.st.twins.get(&id).cloned()));
        self.log(Table::Twin, &id, &rec);
        self.st.twins.insert_mut(id, rec);
    }

    /// `sealed[(twin, version)] = rec` (2.4).
    pub fn put_sealed(&mut self, key: (TwinId, u64), rec: SealedRecord) {
        self.undo
            .push(Undo::Sealed(key, self.st.sealed.get(&key).copied()));
        self.log(Table::Sealed, &key, &rec);
        self.st.sealed.insert_mut(key, rec);
    }

    /// `release[access] = release event` (2.4).
    pub fn put_release(&mut self, access: EventId, release: EventId) {
        self.undo.push(Undo::Release(
            access,
            self.st.releases.get(&access).copied(),
        ));
        self.log(Table::Release, &access, &release);
        self.st.releases.insert_mut(access, release);
    }

    /// Schedules a validator set change: `pending-validators[h + 2]` = the set's hash, the set
    /// pending from then on. Refused while another change is pending.
    pub fn schedule_validators(&mut self, cx: &Ctx, set: ValidatorSet) -> Result<(), RejectReason> {
        if self.st.pending_validators.is_some() {
            return Err(RejectReason::Governance(
                "a validator set change is already pending".into(),
            ));
        }
        let at = cx.height + VALIDATOR_SET_DELAY;
        let hash = set.hash();
        self.undo.push(Undo::Scheduled(
            at,
            self.st.scheduled_validators.get(&at).copied(),
            self.st.pending_validators.clone(),
        ));
        self.log(Table::PendingValidators, &at, &hash);
        self.st.scheduled_validators.insert_mut(at, hash);
        self.st.pending_validators = Some((at, set));
        Ok(())
    }

    /// `governance-seq[()]`: advances the governance sequence.
    pub fn bump_governance_seq(&mut self) {
        self.undo.push(Undo::GovernanceSeq(self.st.governance_seq));
        self.st.governance_seq += 1;
        let seq = self.st.governance_seq;
        self.log(Table::GovernanceSeq, &(), &seq);
    }

    /// `misbehaviour[slot] = id`: records a double sign in `slot` with its evidence event.
    pub fn put_misbehaviour(&mut self, slot: Slot, id: EventId) {
        self.undo.push(Undo::Misbehaviour(
            slot,
            self.st.misbehaviour.get(&slot).copied(),
        ));
        self.log(Table::Misbehaviour, &slot, &id);
        self.st.misbehaviour.insert_mut(slot, id);
    }

    /// `patient-events[patient]`: chains event `id` onto the events that concern `patient`.
    pub fn chain_patient_event(&mut self, patient: PublicKey, id: &EventId) {
        let rec = self
            .st
            .patient_events
            .get(&patient)
            .copied()
            .unwrap_or_default()
            .next(id);
        self.undo.push(Undo::PatientEvents(
            patient,
            self.st.patient_events.get(&patient).copied(),
        ));
        self.log(Table::PatientEvents, &patient, &rec);
        self.st.patient_events.insert_mut(patient, rec);
    }

    // ---- Checks shared by the rules (they read, and registration writes through the above).

    /// Whether `key` already identifies any party on this chain.
    pub fn key_in_use(&self, key: &PublicKey) -> bool {
        let s = &*self.st;
        s.patient_keys.contains_key(key)
            || s.orgs.contains_key(key)
            || s.actors.contains_key(key)
            || s.auditors.contains_key(key)
            || s.validators.get(key).is_some()
    }

    /// Who `author` acts as for `patient`: the patient (registering them on their first event)
    /// or a live delegate whose scope covers `needed`.
    pub fn acting_for(
        &mut self,
        cx: &Ctx,
        patient: &PublicKey,
        needed: Option<&Scope>,
    ) -> Result<GrantedBy, RejectReason> {
        match self.st.patients.get(patient) {
            Some(rec) if rec.key == cx.author => return Ok(GrantedBy::Patient),
            Some(_) => {}
            None if cx.author == *patient => {
                if self.key_in_use(patient) {
                    return Err(RejectReason::KeyInUse(*patient));
                }
                self.put_patient(
                    *patient,
                    PatientRecord {
                        key: *patient,
                        grants: 0,
                    },
                );
                self.put_patient_key(
                    *patient,
                    PatientKey {
                        patient: *patient,
                        retired: false,
                    },
                );
                return Ok(GrantedBy::Patient);
            }
            None => {}
        }
        let Some(needed) = needed else {
            return Err(RejectReason::NotAuthorisedForPatient {
                author: cx.author,
                patient: *patient,
                why: "only the patient may do this",
            });
        };
        let lo = (*patient, cx.author, EventId::ZERO);
        let hi = (*patient, cx.author, EventId([0xff; 32]));
        let mut any_live = false;
        for ((_, _, id), ()) in self.st.patient_delegates.range(lo..=hi) {
            let Some(d) = self.st.delegations.get(id) else {
                continue;
            };
            if d.live_at(cx.time) {
                any_live = true;
                if needed.is_within(&d.scope) {
                    return Ok(GrantedBy::Delegate(*id));
                }
            }
        }
        if any_live {
            Err(RejectReason::OutsideDelegation)
        } else {
            Err(RejectReason::NotAuthorisedForPatient {
                author: cx.author,
                patient: *patient,
                why: "not the patient's current key and no live delegation",
            })
        }
    }

    /// The author as a live actor of a live organisation: [`Tx::requesting_actor`] with a
    /// revoked enrolment or organisation refused (`revoked author`).
    pub fn live_actor(&self, cx: &Ctx) -> Result<ActorRecord, RejectReason> {
        match self.requesting_actor(cx)? {
            (a, None) => Ok(a),
            (_, Some(_)) => Err(RejectReason::RevokedAuthor(cx.author)),
        }
    }

    /// The author as an enrolled actor, for access and break-glass requests (§6.1, §6.5):
    /// `Ok((record, None))` for a live actor of a live organisation; `Ok((record,
    /// Some(reason)))` for an actor whose enrolment (`actor_revoked`) or organisation
    /// (`organisation_revoked`) was revoked, whose request is recorded as denied; refused
    /// (`unknown author`) for a key that was never enrolled.
    pub fn requesting_actor(
        &self,
        cx: &Ctx,
    ) -> Result<(ActorRecord, Option<crate::block::DenyReason>), RejectReason> {
        let a = self
            .st
            .actors
            .get(&cx.author)
            .copied()
            .ok_or(RejectReason::UnknownAuthor {
                author: cx.author,
                kind: cx.kind,
            })?;
        let denial = if !a.live {
            Some(crate::block::DenyReason::ActorRevoked)
        } else if !self.st.orgs.get(&a.organisation).is_some_and(|o| o.live) {
            Some(crate::block::DenyReason::OrganisationRevoked)
        } else {
            None
        };
        Ok((a, denial))
    }

    /// The author as a live organisation.
    pub fn live_org(&self, cx: &Ctx) -> Result<(), RejectReason> {
        match self.st.orgs.get(&cx.author) {
            Some(o) if o.live => Ok(()),
            Some(_) => Err(RejectReason::RevokedAuthor(cx.author)),
            None => Err(RejectReason::UnknownAuthor {
                author: cx.author,
                kind: cx.kind,
            }),
        }
    }

    /// The validator set in force.
    pub fn validators(&self) -> &ValidatorSet {
        &self.st.validators
    }

    /// Current governance sequence number.
    pub fn governance_seq(&self) -> u64 {
        self.st.governance_seq
    }

    /// The chain limits.
    pub fn limits(&self) -> &super::Limits {
        &self.st.limits
    }
}

/// What one typed write replaced (see [`Tx::roll_back`]).
enum Undo {
    Nonce(PublicKey, Option<u64>),
    Patient(PublicKey, Option<PatientRecord>),
    PatientKey(PublicKey, Option<PatientKey>),
    Org(PublicKey, Option<OrgRecord>),
    Actor(PublicKey, Option<ActorRecord>),
    Auditor(PublicKey, Option<bool>),
    Observer(PublicKey, Option<ObserverRecord>),
    /// The grant, and whether it was in its patient's index.
    Grant(EventId, Option<GrantRecord>, (PublicKey, EventId), bool),
    /// The delegation, and whether it was in the (patient, delegate) index.
    Delegation(
        EventId,
        Option<DelegationRecord>,
        (PublicKey, PublicKey, EventId),
        bool,
    ),
    /// The break-glass record, and whether it was in the review queue.
    BreakGlass(EventId, Option<BreakGlassRecord>, bool),
    Twin(TwinId, Option<TwinRecord>),
    /// The scheduled-set record at a height, and the pending set.
    Scheduled(u64, Option<crate::hash::Hash>, Option<(u64, ValidatorSet)>),
    GovernanceSeq(u64),
    Misbehaviour(Slot, Option<EventId>),
    PatientEvents(PublicKey, Option<PatientEvents>),
    Sealed((TwinId, u64), Option<SealedRecord>),
    Release(EventId, Option<EventId>),
}

/// Puts `old` back as `map[key]` (removing the key if there was none).
fn put_back<K: Ord + Clone, V: Clone>(
    map: &mut rpds::RedBlackTreeMapSync<K, V>,
    key: K,
    old: Option<V>,
) {
    match old {
        Some(v) => map.insert_mut(key, v),
        None => {
            map.remove_mut(&key);
        }
    }
}

impl Undo {
    fn restore(self, st: &mut State) {
        match self {
            Undo::Nonce(k, old) => put_back(&mut st.nonces, k, old),
            Undo::Patient(k, old) => put_back(&mut st.patients, k, old),
            Undo::PatientKey(k, old) => put_back(&mut st.patient_keys, k, old),
            Undo::Org(k, old) => put_back(&mut st.orgs, k, old),
            Undo::Actor(k, old) => put_back(&mut st.actors, k, old),
            Undo::Auditor(k, old) => put_back(&mut st.auditors, k, old),
            Undo::Observer(k, old) => put_back(&mut st.observers, k, old),
            Undo::Grant(id, old, index, indexed) => {
                put_back(&mut st.patient_grants, index, indexed.then_some(()));
                put_back(&mut st.grants, id, old);
            }
            Undo::Delegation(id, old, index, indexed) => {
                put_back(&mut st.patient_delegates, index, indexed.then_some(()));
                let (_, delegate, id_) = index;
                put_back(
                    &mut st.delegate_delegations,
                    (delegate, id_),
                    indexed.then_some(()),
                );
                put_back(&mut st.delegations, id, old);
            }
            Undo::BreakGlass(id, old, queued) => {
                put_back(&mut st.review_queue, id, queued.then_some(()));
                put_back(&mut st.break_glass, id, old);
            }
            Undo::Twin(id, old) => put_back(&mut st.twins, id, old),
            Undo::Scheduled(at, old, pending) => {
                put_back(&mut st.scheduled_validators, at, old);
                st.pending_validators = pending;
            }
            Undo::GovernanceSeq(seq) => st.governance_seq = seq,
            Undo::Misbehaviour(slot, old) => put_back(&mut st.misbehaviour, slot, old),
            Undo::PatientEvents(p, old) => put_back(&mut st.patient_events, p, old),
            Undo::Sealed(k, old) => put_back(&mut st.sealed, k, old),
            Undo::Release(k, old) => put_back(&mut st.releases, k, old),
        }
    }
}
