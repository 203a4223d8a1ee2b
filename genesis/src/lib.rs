//! `twinledger-genesis`: the genesis file format, its validation and the chain id.
//!
//! Stub: issue #3 ("genesis and a real node") fills this crate. Until then the genesis *content*
//! that the state machine consumes is `twinledger_core::state::Genesis`.
