//! `twinledger-cli` (binary `twinctl`): patient, hospital, auditor and genesis commands.
//!
//! Stub: issues #3, #5 and #6 fill this crate.
