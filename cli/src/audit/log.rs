//! The access log of a verified export: what `break-glass`, `denied` and `anomalies` report on.

use std::collections::BTreeMap;

use twinledger_core::codes::Code as _;
use twinledger_core::{Decision, EventId, EventPayload, Outcome, PublicKey, State};
use twinledger_genesis::GenesisFile;

use super::pipeline::verify;
use crate::CliError;

/// The access log of a verified export.
#[derive(Debug, Default)]
pub(super) struct Log {
    /// Access attempts and revocations with what they asked for and took away (the core's
    /// log, so `after_revoke` flags only accesses the revoked grant covered).
    pub(super) core: twinledger_core::anomaly::Log,
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
            log.core
                .add_block(&cb.block.events, &cb.results, cb.block.header.time, state);
            for (ev, outcome) in cb.block.events.iter().zip(&cb.results.outcomes) {
                let category = match &ev.event.payload {
                    EventPayload::AccessRequest(a) => a.category,
                    EventPayload::BreakGlassRequest(b) => b.category,
                    _ => continue,
                };
                if let Outcome::Access(Decision::Deny { reason }) = outcome {
                    log.deny_reasons.insert(
                        ev.id(),
                        crate::codes::deny_words(*reason, Some(category.code())),
                    );
                }
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
