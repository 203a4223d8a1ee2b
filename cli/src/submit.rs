//! Sign, submit and wait for finality: what every mutating node command does.

use std::time::Duration;

use twinledger_core::{EventId, EventPayload, Keypair};

use crate::CliError;
use crate::client::NodeClient;

/// How long a command waits for its event to be final.
pub const WAIT: Duration = Duration::from_secs(30);

/// Signs `payload` as `key`, submits it to `node` and waits until it is final. Returns the event
/// id and the height of its block.
pub fn submit_and_wait(
    node: &str,
    key: &Keypair,
    payload: EventPayload,
) -> Result<(EventId, u64), CliError> {
    let client = NodeClient::connect(node)?;
    let ev = client.sign(key, payload)?;
    let id = client.submit(&ev)?;
    let v = client.wait_final(key, &id, WAIT)?;
    Ok((id, v["receipt"]["header"]["height"].as_u64().unwrap_or(0)))
}
