//! Sigma rules compiled for rulehost: [`ir`], the data a pack carries (written by the host's
//! compiler), and [`matcher`], which evaluates it over events. The host links this crate to
//! compile and to check, the pack component to evaluate, so both read one definition.

pub mod ir;
pub mod matcher;
mod regex_texts;
mod text_search;

pub use text_search::equal;

/// A small deterministic generator (xorshift) for the tests' drawn cases, so that a failure is
/// reproduced.
#[cfg(test)]
pub(crate) struct Draw(pub(crate) u64);

#[cfg(test)]
impl Draw {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub use ir::{Column, Pack, Rule, View};
pub use matcher::{Event, Matcher, Scratch};
