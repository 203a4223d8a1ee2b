//! Actor enrolment and revocation by an organisation (PROTOCOL.md §5.7, rules §6.7).
//! Organisations and auditors join or leave by governance (see [`super::governance`]).

use serde::{Deserialize, Serialize};

use crate::block::Outcome;
use crate::codes::Role;
use crate::keys::PublicKey;
use crate::state::records::ActorRecord;
use crate::state::{Ctx, RejectReason, Tx};

/// A live organisation enrols `actor` with `role`. A key revoked by the same organisation may
/// be enrolled again; a key in use by anyone else may not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorEnrol {
    /// The actor's key.
    pub actor: PublicKey,
    /// Its role.
    pub role: Role,
}

impl ActorEnrol {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        tx.live_org(cx)?;
        match tx.st().actor(&self.actor) {
            Some(a) if a.organisation == cx.author && !a.live => {}
            None if !tx.key_in_use(&self.actor) => {}
            _ => return Err(RejectReason::KeyInUse(self.actor)),
        }
        let rec = ActorRecord {
            organisation: cx.author,
            role: self.role,
            live: true,
        };
        tx.put_actor(self.actor, rec);
        Ok(Outcome::Applied)
    }
}

/// The enrolling organisation revokes `actor`; its later events are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRevoke {
    /// The actor's key.
    pub actor: PublicKey,
}

impl ActorRevoke {
    pub(crate) fn apply(&self, tx: &mut Tx<'_>, cx: &Ctx) -> Result<Outcome, RejectReason> {
        tx.live_org(cx)?;
        let mut a = match tx.st().actor(&self.actor) {
            Some(a) if a.organisation == cx.author => *a,
            _ => {
                return Err(RejectReason::NotPermitted {
                    author: cx.author,
                    what: "revoke an actor it did not enrol",
                });
            }
        };
        if !a.live {
            return Err(RejectReason::RevokedAuthor(self.actor));
        }
        a.live = false;
        tx.put_actor(self.actor, a);
        Ok(Outcome::Applied)
    }
}
