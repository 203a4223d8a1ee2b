//! `twinledger-node`: the daemon (tokio, libp2p, sled, HTTP API, metrics).
//!
//! Stub: issue #3 ("genesis and a real node") fills this crate; issue #4 adds BFT replication.
//! It will be the only crate that performs network or disk I/O for the ledger.
