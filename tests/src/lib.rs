//! `twinledger-tests`: the multi-node harness and end-to-end scenarios over real processes.
//!
//! Stub: issues #3 and #4 fill this crate. The ledger-core tests live in `ledger-core/tests/`.
