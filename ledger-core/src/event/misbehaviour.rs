//! Misbehaviour evidence (PROTOCOL.md §5.9, rules §6.11): a validator reports that another
//! validator signed two different values in one consensus slot. The evidence is checkable by
//! anyone (both signatures, PROTOCOL.md §12.4); recording it names the validator on chain for
//! governance to act on (this issue only records; cutting power is a governance action).

use crate::block::Outcome;
use crate::consensus::DoubleSign;
use crate::state::{Ctx, RejectReason, Tx};

/// How old (in heights) evidence may be when it is recorded. Older evidence is refused: the
/// set it must be checked against may have changed, and the bound keeps the table small.
pub const MAX_EVIDENCE_AGE: u64 = 100_000;

impl DoubleSign {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        let set = tx.st().validators_for(cx.height).clone();
        if set.get(&cx.author).is_none() {
            return Err(RejectReason::Misbehaviour(
                "the reporter is not a validator at this height".into(),
            ));
        }
        let (height, round, kind) = self.slot();
        if height > cx.height {
            return Err(RejectReason::Misbehaviour(
                "the evidence is for a height after this block".into(),
            ));
        }
        if cx.height - height > MAX_EVIDENCE_AGE {
            return Err(RejectReason::Misbehaviour(format!(
                "the evidence is more than {MAX_EVIDENCE_AGE} heights old"
            )));
        }
        self.verify(&tx.st().chain_id(), &set)
            .map_err(|e| RejectReason::Misbehaviour(e.to_string()))?;
        let key = (self.validator(), height, round, kind);
        if tx.st().misbehaviour_recorded(&key) {
            return Err(RejectReason::Misbehaviour(
                "this double sign is already recorded".into(),
            ));
        }
        tx.put_misbehaviour(key, cx.id);
        Ok(Outcome::Applied)
    }
}
