//! Byzantine fault tolerant consensus among the validators (ADR 0006).
//!
//! - `context`: Malachite's `Context` for our types;
//! - `engine`: the sans-I/O engine around Malachite's Tendermint driver;
//! - `app`: the engine's view of the chain and the signing record (the I/O side);
//! - `replica`: the runtime that connects engine, chain, network and timers;
//! - `solo`: a chain of one validator, through the same propose, validate and commit steps;
//! - `wal`: the consensus write-ahead log the engine replays after a restart.

pub mod app;
pub mod context;
pub mod engine;
pub mod replica;
pub mod solo;
pub mod wal;

pub use engine::{AlreadySigned, App, Effect, Engine, EngineConfig, Msg, Refused, Slot};
