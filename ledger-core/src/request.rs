//! Signed read requests to a node's API (PROTOCOL.md §11.1): who is asking, proven by a
//! signature, never by a shared secret.
//!
//! The requester signs `(method, path_and_query, blake3(body), time_ms, nonce)` under the
//! domain `twinledger/v1/http-request` and the chain id. The node refuses a request whose time
//! is outside its window (stale) or whose `(key, nonce)` it has already seen (replay).

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::hash::ChainId;
use crate::keys::{KeyError, Keypair, PublicKey, Signature, sig_domain};
use crate::time::Timestamp;

/// Header names carrying a signed request.
pub mod header {
    /// The requester's did:key.
    pub const KEY: &str = "x-twinledger-key";
    /// Request time, ms since the Unix epoch.
    pub const TIME: &str = "x-twinledger-time";
    /// 16 random bytes, hex.
    pub const NONCE: &str = "x-twinledger-nonce";
    /// The signature, hex.
    pub const SIGNATURE: &str = "x-twinledger-signature";
}

/// A request's proof of origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestAuth {
    /// Who signs.
    pub key: PublicKey,
    /// When.
    pub time: Timestamp,
    /// Unique per request.
    pub nonce: [u8; 16],
    /// Signature over [`request_body`].
    pub signature: Signature,
}

/// The signed body: `encode((method, path_and_query, blake3(body), time, nonce))`.
pub fn request_body(
    method: &str,
    path_and_query: &str,
    body: &[u8],
    time: Timestamp,
    nonce: &[u8; 16],
) -> Vec<u8> {
    let body_hash: [u8; 32] = *blake3::hash(body).as_bytes();
    codec::encode(&(method, path_and_query, body_hash, time, nonce))
}

impl RequestAuth {
    /// Signs a request. `nonce` must be fresh random bytes from the caller.
    pub fn sign(
        key: &Keypair,
        chain: &ChainId,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        time: Timestamp,
        nonce: [u8; 16],
    ) -> Self {
        let msg = request_body(method, path_and_query, body, time, &nonce);
        Self {
            key: key.public(),
            time,
            nonce,
            signature: key.sign(sig_domain::HTTP_REQUEST, chain, &msg),
        }
    }

    /// Checks the signature (freshness and replay are the server's to check).
    pub fn verify(
        &self,
        chain: &ChainId,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), KeyError> {
        let msg = request_body(method, path_and_query, body, self.time, &self.nonce);
        self.key
            .verify(sig_domain::HTTP_REQUEST, chain, &msg, &self.signature)
    }

    /// The four header values.
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (header::KEY, self.key.to_did()),
            (header::TIME, self.time.0.to_string()),
            (header::NONCE, hex::encode(self.nonce)),
            (header::SIGNATURE, hex::encode(self.signature.0)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_method_path_body_time_and_nonce() {
        let k = Keypair::from_secret(&[3; 32]);
        let chain = ChainId([1; 32]);
        let a = RequestAuth::sign(&k, &chain, "GET", "/v1/x?y=1", b"", Timestamp(5), [7; 16]);
        assert!(a.verify(&chain, "GET", "/v1/x?y=1", b"").is_ok());
        assert!(a.verify(&chain, "POST", "/v1/x?y=1", b"").is_err());
        assert!(a.verify(&chain, "GET", "/v1/x?y=2", b"").is_err());
        assert!(a.verify(&chain, "GET", "/v1/x?y=1", b"x").is_err());
        assert!(
            a.verify(&ChainId([2; 32]), "GET", "/v1/x?y=1", b"")
                .is_err()
        );
        let mut b = a;
        b.nonce[0] ^= 1;
        assert!(b.verify(&chain, "GET", "/v1/x?y=1", b"").is_err());
        let mut c = a;
        c.time = Timestamp(6);
        assert!(c.verify(&chain, "GET", "/v1/x?y=1", b"").is_err());
    }
}
