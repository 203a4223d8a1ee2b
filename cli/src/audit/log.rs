//! The access log of a verified export: what `break-glass`, `denied` and `anomalies` report on.

use std::collections::BTreeMap;
use twinledger_core::anomaly::{AccessKind, AccessRecord, RevokeRecord};

use twinledger_core::codes::Code as _;
use twinledger_core::{Decision, EventId, EventPayload, Outcome, PublicKey, State};
use twinledger_genesis::GenesisFile;

use super::pipeline::verify;
use crate::CliError;

/// The access log of a verified export.
#[derive(Debug, Default)]
pub(super) struct Log {
    pub(super) accesses: Vec<AccessRecord>,
    pub(super) revokes: Vec<RevokeRecord>,
    /// Why each denied attempt was denied, in words ("no consent covers GDIS").
    pub(super) deny_reasons: BTreeMap<EventId, String>,
}

/// An organisation's name as the verified state records it, else its did.
pub(super) fn org_name(state: &State, org: &PublicKey) -> String {
    state
        .organisation(org)
        .map_or_else(|| org.to_did(), |o| o.name.clone())
}

/// Verifies an export (refusing one that does not verify) and collects its access log.
pub(super) fn collect(
    file: &std::path::Path,
    genesis: &std::path::Path,
) -> Result<(Log, twinledger_core::State), CliError> {
    let ledger = GenesisFile::load(genesis)?.ledger_genesis()?;
    let bytes = crate::files::read(file)?;
    let mut log = Log::default();
    let mut last = None;
    verify(
        &ledger,
        &bytes,
        false,
        &indicatif::ProgressBar::hidden(),
        |cb, state| {
            let time = cb.block.header.time;
            for (ev, outcome) in cb.block.events.iter().zip(&cb.results.outcomes) {
                let actor = ev.event.author;
                let organisation = state.actor(&actor).map(|a| a.organisation).unwrap_or(actor);
                let kind = match outcome {
                    Outcome::Access(Decision::Permit { .. }) => AccessKind::Permitted,
                    Outcome::Access(Decision::Deny { .. }) => AccessKind::Denied,
                    Outcome::Access(Decision::BreakGlass) => AccessKind::BreakGlass,
                    Outcome::Applied => {
                        if let EventPayload::ConsentRevoke(r) = &ev.event.payload {
                            log.revokes.push(RevokeRecord {
                                id: ev.id(),
                                time,
                                patient: r.patient,
                            });
                        }
                        continue;
                    }
                };
                let (patient, category) = match &ev.event.payload {
                    EventPayload::AccessRequest(a) => (a.patient, a.category),
                    EventPayload::BreakGlassRequest(b) => (b.patient, b.category),
                    _ => continue,
                };
                if let Outcome::Access(Decision::Deny { reason }) = outcome {
                    log.deny_reasons.insert(
                        ev.id(),
                        crate::codes::deny_words(*reason, Some(category.code())),
                    );
                }
                log.accesses.push(AccessRecord {
                    id: ev.id(),
                    time,
                    actor,
                    organisation,
                    patient,
                    kind,
                });
            }
            last = Some(state.clone());
        },
    )
    .map_err(|f| CliError::Mismatch(format!("chain does not verify: {f}")))?;
    let state = match last {
        Some(s) => s,
        None => twinledger_core::State::from_genesis(&ledger)
            .map_err(|e| CliError::Invalid(e.to_string()))?,
    };
    Ok((log, state))
}
