//! The terminal glue of the `rulehost` binary, one module per command or concern; the
//! work itself is in the library.

/// `eprintln!` for the lines this binary writes to stderr: they carry text from outside (an
/// input's name, a reason that quotes a record, a rule's words), whose control characters are
/// escaped (see [`rulehost::text`]) so that they cannot drive the terminal, nor a line break
/// in a file's name write a line of its own.
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("{}", rulehost::text::printable(&format!($($arg)*), &[]))
    };
}

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
