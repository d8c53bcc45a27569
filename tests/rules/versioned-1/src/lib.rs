//! Version 1 of the `test-versioned` rule; built only for the hot-swap tests.

include!("rule.rs");
