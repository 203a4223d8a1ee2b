//! The engine's view of the node: the chain (build, re-execute, commit) and the signing record
//! in the store. This is where consensus meets the disk.

use std::sync::Arc;
use std::time::Duration;

use twinledger_core::{
    Block, Checkpoint, CommitCertificate, PublicKey, Timestamp, ValidatorSet, codec,
};

use super::engine::{AlreadySigned, App, Slot};
use crate::chain::{Chain, CommitError, ValidateError};

/// [`App`] over a [`Chain`].
#[derive(Debug)]
pub struct ChainApp {
    chain: Arc<Chain>,
    proposer: Option<PublicKey>,
    /// With an empty mempool, propose an empty block only after this long without a block
    /// (keeps rounds moving and time advancing without filling the chain with empty blocks).
    idle: Duration,
    last_commit: u64,
    /// A store restored from a backup: sign nothing until the committed chain's last block
    /// time passes this (ms; ADR 0015, [`crate::backup::signing_guard`]).
    restore_guard: Option<u64>,
}

impl ChainApp {
    /// The app for the validator `proposer` (`None`: an observer).
    pub fn new(chain: Arc<Chain>, proposer: Option<PublicKey>, idle: Duration) -> Self {
        Self {
            proposer,
            idle,
            last_commit: 0,
            restore_guard: crate::backup::signing_guard(chain.store()),
            chain,
        }
    }

    /// The chain.
    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }
}

/// The signing record key of a slot: height (u64 BE), round (u32 BE), kind (0 proposal,
/// 1 prevote, 2 precommit).
pub fn slot_key(slot: Slot) -> Vec<u8> {
    let (h, r, k) = match slot {
        Slot::Proposal(h, r) => (h, r, 0u8),
        Slot::Vote(h, r, twinledger_core::consensus::VoteKind::Prevote) => (h, r, 1),
        Slot::Vote(h, r, twinledger_core::consensus::VoteKind::Precommit) => (h, r, 2),
    };
    let mut key = h.to_be_bytes().to_vec();
    key.extend_from_slice(&r.to_be_bytes());
    key.push(k);
    key
}

impl App for ChainApp {
    fn build_block(&mut self, height: u64, now: u64) -> Option<Block> {
        let proposer = self.proposer?;
        if height != self.chain.height() + 1 {
            return None;
        }
        if self.last_commit == 0 {
            self.last_commit = now;
        }
        let idle = now.saturating_sub(self.last_commit)
            >= u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX);
        self.chain.propose(proposer, Timestamp(now), idle)
    }

    fn validate_block(&mut self, block: &Block, now: Option<u64>) -> Result<(), ValidateError> {
        self.chain.validate(block, now.map(Timestamp))
    }

    fn validators_for(&self, height: u64) -> Option<ValidatorSet> {
        let st = self.chain.state();
        // Set changes take effect two heights after the block that holds them.
        (height <= st.height() + 2).then(|| st.validators_for(height).clone())
    }

    fn commit(
        &mut self,
        block: Block,
        certificate: CommitCertificate,
    ) -> Result<ValidatorSet, CommitError> {
        let t = block.header.time.0;
        let set = self.chain.commit(block, certificate)?;
        self.last_commit = self.last_commit.max(t);
        Ok(set)
    }

    fn record_signature(
        &mut self,
        slot: Slot,
        value: Option<Checkpoint>,
    ) -> Result<(), AlreadySigned> {
        if let Some(after) = self.restore_guard {
            if !crate::backup::guard_allows(&self.chain, after) {
                tracing::debug!(
                    ?slot,
                    "restored from a backup: not signing until a block made after the restore is committed"
                );
                return Err(AlreadySigned { slot });
            }
            tracing::info!("restore guard released: a block made after the restore is committed");
            self.restore_guard = None;
        }
        let key = slot_key(slot);
        let bytes = codec::encode(&value);
        let store = self.chain.store();
        match store.signed(&key) {
            Ok(Some(prev)) if prev == bytes => Ok(()),
            Ok(Some(_)) => Err(AlreadySigned { slot }),
            Ok(None) => store.record_signed(&key, &bytes).map_err(|e| {
                // Not durable: do not sign (signing unrecorded could double-sign after a crash).
                tracing::error!(error = %e, "signing record write failed");
                AlreadySigned { slot }
            }),
            Err(e) => {
                tracing::error!(error = %e, "signing record read failed");
                Err(AlreadySigned { slot })
            }
        }
    }

    fn committed(&self, height: u64) -> Option<(Block, CommitCertificate)> {
        self.chain.committed_block(height)
    }
}
