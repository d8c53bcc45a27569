//! Sigma rules compiled for rulehost: [`ir`], the data a pack carries (written by the host's
//! compiler), and [`matcher`], which evaluates it over events. The host links this crate to
//! compile and to check, the pack component to evaluate, so both read one definition.

pub mod ir;
pub mod matcher;
mod text_search;

pub use ir::{Column, Pack, Rule, View};
pub use matcher::{Event, Matcher, Scratch};
