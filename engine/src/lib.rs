//! `tickcore`: the engine binary's library half — command line, input handling and reports.
//!
//! Owns everything between the operator and the `shards` crate: parsing flags (clap), opening and
//! memory-mapping feeds with errors that name the file and the byte offset, generating sessions,
//! and rendering summaries and the book JSON that other tools read. It never contains book logic.
//! A panic here is a bug: every bad input ends in a one-line error and a non-zero exit.

pub mod checkpoint;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod control;
pub mod error;
pub mod exchange;
pub mod feed;
pub mod fmt;
pub mod gateway;
pub mod live;
pub mod log;
pub mod net;
pub mod paths;
pub mod progress;
pub mod report;
pub mod runtime;
pub mod telemetry;

pub use error::Failure;
