//! rulehost runs security detection rules, compiled to sandboxed WebAssembly components,
//! over process events.
//!
//! - [`events`]: inputs and their normalization into one process event;
//! - [`contract`]: what a rule declares about itself, as the host holds it;
//! - [`runtime`]: the engine, compiled rules and their instances;
//! - [`rules`]: where rules come from and what they declare;
//! - [`sigma`]: Sigma rules compiled into packs;
//! - [`alerts`]: alerts and their windows;
//! - [`sources`]: where a live run's records come from;
//! - [`sinks`]: where alerts and matches are written;
//! - [`pipeline`]: source → normalized events → batches → rule instances → windows → sink;
//! - [`eval`]: the evaluation of inputs by rules, from first record to last alert.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod alerts;
pub mod cases;
pub mod config;
pub mod contract;
mod dirs;
mod errors;
pub mod eval;
pub mod events;
mod files;
mod in_order;
pub mod pipeline;
pub mod rules;
pub mod run;
pub mod runtime;
pub mod scaffold;
pub mod sigma;
pub mod sinks;
pub mod sources;
pub mod text;
