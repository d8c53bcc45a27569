//! Version 2 of the `test-versioned` rule; built only for the hot-swap tests.

include!("../../versioned-1/src/rule.rs");
