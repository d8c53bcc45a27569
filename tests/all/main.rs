//! Integration tests: they drive the real `rulehost` binary on files.
//!
//! Golden outputs live in `tests/golden/`; `UPDATE_GOLDEN=1 cargo test` rewrites them, and
//! a rewrite is reviewed like code.

mod authoring;
mod bad_input;
mod cli;
mod defender;
mod hot_swap;
mod kafka;
mod layout;
mod live;
mod registry;
mod sandbox;
mod sigma;
mod sigma_differential;
mod signing;
mod util;
mod windows;
