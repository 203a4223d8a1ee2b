//! A chain whose only validator is this node (`--dev`, a single-hospital pilot): the same
//! three steps a network takes for every block ([`Chain::propose`], [`Chain::validate`],
//! [`Chain::commit`]), with this validator's own precommit as the whole certificate. There is
//! no second write path: what a set of one commits went through exactly the code a set of four
//! uses, as raft-rs's `single_mem_node` drives the same `RawNode` a cluster does.
//!
//! No signing record is kept: the precommit leaves this process only inside the written block,
//! so a crash between signing and writing leaves no signature anywhere, and the next block at
//! that height cannot conflict with one anybody saw.

use std::sync::Arc;
use std::time::Duration;

use twinledger_core::checkpoint::CommitVote;
use twinledger_core::{CommitCertificate, Keypair, Timestamp};

use crate::chain::{Chain, CommitError, ValidateError, now};

/// Why one step of the single validator failed.
#[derive(Debug, thiserror::Error)]
pub enum SoloError {
    /// Its own proposal did not validate (a clock far behind the last block, or a bug).
    #[error("own proposal refused: {0}")]
    Validate(#[from] ValidateError),
    /// Committing failed (the key does not hold a quorum, or writing failed).
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// Governance changed the set: this key alone no longer makes a quorum.
    #[error(
        "the validator set in force at height {height} is not this node alone (governance \
         changed it): a solo node cannot sign for it; restart this node (it then runs as one \
         validator of a replicated network, with its peers)"
    )]
    NotAlone {
        /// The height it would have produced.
        height: u64,
    },
}

/// The single validator.
#[derive(Debug, Clone)]
pub struct Solo {
    chain: Arc<Chain>,
    key: Keypair,
}

impl Solo {
    /// The single validator of `chain`, signing with `key`.
    pub fn new(chain: Arc<Chain>, key: Keypair) -> Self {
        Self { chain, key }
    }

    /// One block, if the mempool holds anything, at `time`: propose, validate, sign the
    /// precommit, commit. Returns the new height.
    pub fn step(&self, time: Timestamp) -> Result<Option<u64>, SoloError> {
        {
            let st = self.chain.state();
            let height = st.height() + 1;
            let set = st.validators_for(height);
            let mine = set.get(&self.key.public()).map_or(0, |v| v.power);
            if !set.is_quorum(mine) {
                return Err(SoloError::NotAlone { height });
            }
        }
        let Some(block) = self.chain.propose(self.key.public(), time, false) else {
            return Ok(None);
        };
        self.chain.validate(&block, Some(time))?;
        let vote = CommitVote {
            checkpoint: block.header.checkpoint(),
            round: 0,
        };
        let certificate = CommitCertificate::new(0, vec![vote.sign(&self.key)]);
        let height = block.header.height;
        self.chain.commit(block, certificate)?;
        Ok(Some(height))
    }

    /// Steps every `interval` until `shutdown` is set; then commits what was admitted before
    /// (so nothing acknowledged as pending is dropped silently) and returns. A failed step is
    /// logged and retried at the next interval: nothing of it was made visible.
    pub async fn run(self, interval: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            self.step_logged().await;
        }
        self.step_logged().await;
        tracing::info!("block producer stopped");
    }

    async fn step_logged(&self) {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.step(now())).await {
            Ok(Ok(Some(height))) => tracing::debug!(height, "block final"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "block production failed"),
            Err(e) => tracing::error!(error = %e, "block production panicked"),
        }
    }
}
