//! `twinctl` against a real node (in-process, 127.0.0.1:0), one module per flow: consent,
//! delegation, break-glass, the access report, twin anchors, FHIR export, audit, key rotation
//! and refusals. Each test starts its own node ([`common::node::TestNode::start`]) and builds
//! the state it needs through the shared steps there, so any test runs alone
//! (`cargo test -p twinledger-cli --test flows consent::`).
//!
//! The flows are modules of one test binary rather than one binary each: a binary links the
//! whole node (libp2p, sled, axum), which costs more than every test here takes to run, and the
//! tests of one binary run in parallel.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod break_glass;
mod consent;
mod delegation;
mod errors;
mod fhir;
mod report;
mod rotation;
mod twin;
