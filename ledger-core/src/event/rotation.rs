//! Patient key rotation (PROTOCOL.md §5.3, rules §6.4). The patient id stays the first key;
//! consents and history follow the patient, the old key can never sign again.

use serde::{Deserialize, Serialize};

use crate::block::Outcome;
use crate::codec;
use crate::keys::{PublicKey, Signature, sig_domain};
use crate::state::records::{PatientKey, PatientRecord};
use crate::state::{Ctx, RejectReason, Tx};

/// Signed by the patient's current key; `new_key_proof` is the new key's signature over
/// `(patient, new_key)` (domain `twinledger/v1/key-rotation`), proving its holder agreed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotation {
    /// The patient id.
    pub patient: PublicKey,
    /// The key the patient signs with from now on.
    pub new_key: PublicKey,
    /// The new key's proof of possession.
    pub new_key_proof: Signature,
}

impl KeyRotation {
    /// The bytes the new key signs.
    pub fn proof_body(patient: &PublicKey, new_key: &PublicKey) -> Vec<u8> {
        codec::encode(&(patient, new_key))
    }

    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        tx.acting_for(cx, &self.patient, None)?;
        if tx.key_in_use(&self.new_key) {
            return Err(RejectReason::KeyInUse(self.new_key));
        }
        let chain = tx.st().chain_id();
        self.new_key
            .verify(
                sig_domain::KEY_ROTATION,
                &chain,
                &Self::proof_body(&self.patient, &self.new_key),
                &self.new_key_proof,
            )
            .map_err(|_| RejectReason::BadSignature(self.new_key))?;
        let old = tx
            .st()
            .patient(&self.patient)
            .cloned()
            .expect("acting_for registered the patient");
        let retired = PatientKey {
            patient: self.patient,
            retired: true,
        };
        let fresh = PatientKey {
            patient: self.patient,
            retired: false,
        };
        let rec = PatientRecord {
            key: self.new_key,
            grants: old.grants,
        };
        tx.put_patient_key(old.key, retired);
        tx.put_patient_key(self.new_key, fresh);
        tx.put_patient(self.patient, rec);
        Ok(Outcome::Applied)
    }
}
