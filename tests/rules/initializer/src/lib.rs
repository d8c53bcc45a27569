//! Exports an empty `_initialize`, as components built by C (wasi-sdk), TinyGo and
//! componentize-py do: wit-component runs it while the component is instantiated.
//!
//! Built only for the sandbox tests; never shipped.

use rulehost_sdk::{Alert, Event, Field, Metadata, Rule, Window};

/// The initializer wit-component calls when the component is instantiated.
#[allow(unsafe_code, reason = "the initializer is exported under its C name, which only `no_mangle` gives")]
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    // Nothing to set up: what a C or TinyGo module with no constructors exports.
}

/// The rule.
#[derive(Debug)]
pub struct TestRule;

impl Rule for TestRule {
    const METADATA: Metadata = Metadata::draft(
        "test-initializer",
        env!("CARGO_PKG_VERSION"),
        "Has an empty initializer",
        &[Field::ProcessCommandLine],
        &[Field::DeviceName],
    );

    fn matches(event: &Event<'_>) -> bool {
        event.process_command_line().contains("whoami")
    }

    fn summarize(_window: Window, matched: &[Event<'_>]) -> Vec<Alert> {
        vec![Alert::new(0..matched.len()).number("count", matched.len() as i64)]
    }
}

rulehost_sdk::export_rule!(TestRule);
