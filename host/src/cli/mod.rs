//! The terminal glue of the `rulehost` binary, one module per command or concern; the
//! work itself is in the library.

pub(crate) mod authoring;
pub(crate) mod config;
pub(crate) mod eval;
pub(crate) mod inspect;
pub(crate) mod keys;
pub(crate) mod live;
pub(crate) mod progress;
pub(crate) mod registry;
pub(crate) mod scheduling;
pub(crate) mod setup;
pub(crate) mod sigma;
pub(crate) mod summary;
pub(crate) mod terminal;
