//! The access log of a verified export: what `break-glass`, `denied` and `anomalies` report on.

use twinledger_core::anomaly::{AccessKind, AccessRecord, RevokeRecord};
use twinledger_core::{Decision, EventPayload, Outcome};
use twinledger_genesis::GenesisFile;

use super::pipeline::verify;
use crate::CliError;

/// The access log of a verified export.
#[derive(Debug, Default)]
pub(super) struct Log {
    pub(super) accesses: Vec<AccessRecord>,
    pub(super) revokes: Vec<RevokeRecord>,
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
                let patient = match &ev.event.payload {
                    EventPayload::AccessRequest(a) => a.patient,
                    EventPayload::BreakGlassRequest(b) => b.patient,
                    _ => continue,
                };
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
